"""Backbones: token-id path == hard one-hot through inputs_embeds; gradients reach soft inputs."""

import importlib.util

import pytest
import torch

from bib_ray.alphabets import DNA, PROTEIN
from bib_ray.backbones import build_backbone, list_backbones
from bib_ray.backbones.base import Backbone
from bib_ray.errors import UserError
from hf_models import make_dnabert3, make_esm2, make_protein_bert

PROTEIN_SEQS = ["MKTAYIAKQR", "ACDEFGHIKL", "WWYYVVTTSS"]
DNA_SEQS = ["ACGTACGTAA", "TTTTGGGGCA", "GATTACAGAT"]


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"esm2": make_esm2(root / "esm2"), "bert": make_protein_bert(root / "bert"),
            "dnabert3": make_dnabert3(root / "dnabert3")}


def one_hot_path(backbone: Backbone, sequences):
    """The base-class path: one-hot through ``embed`` (inputs_embeds for HF models)."""
    return Backbone.embed_token_ids(backbone, sequences)


@pytest.mark.parametrize("name,alphabet,sequences", [
    ("esm2", PROTEIN, PROTEIN_SEQS), ("bert", PROTEIN, PROTEIN_SEQS), ("dnabert3", DNA, DNA_SEQS)])
def test_token_ids_equal_one_hot_inputs_embeds(hf_dirs, name, alphabet, sequences):
    backbone = build_backbone(f"hf:{hf_dirs[name]}", alphabet)
    by_ids = backbone.embed_token_ids(sequences)
    by_one_hot = one_hot_path(backbone, sequences)
    assert by_ids.shape == (3, backbone.hidden_size)
    torch.testing.assert_close(by_one_hot, by_ids, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(by_ids[0], by_ids[1]), "different sequences must embed differently"


def test_esm_token_dropout_scale_is_needed(hf_dirs):
    """Without ESM's token-dropout rescaling, inputs_embeds would not match the token-id path."""
    backbone = build_backbone(f"hf:{hf_dirs['esm2']}", PROTEIN)
    assert backbone.input_scale == pytest.approx(0.88)
    reference = backbone.embed_token_ids(PROTEIN_SEQS[:1])
    backbone.input_scale = 1.0
    assert not torch.allclose(one_hot_path(backbone, PROTEIN_SEQS[:1]), reference, atol=1e-4)


def test_kmer_probability_is_product_of_positions(hf_dirs):
    backbone = build_backbone(f"hf:{hf_dirs['dnabert3']}", DNA)
    assert backbone.kmer == 3
    probs = torch.softmax(torch.randn(2, 6, 4), -1)
    joint = backbone._kmer_probs(probs)
    assert joint.shape == (2, 4, 64)
    a, b, c = 1, 2, 3  # the k-mer "CGT" sits at index a*16 + b*4 + c
    torch.testing.assert_close(joint[:, 0, a * 16 + b * 4 + c], probs[:, 0, a] * probs[:, 1, b] * probs[:, 2, c])
    torch.testing.assert_close(joint.sum(-1), torch.ones(2, 4))


@pytest.mark.parametrize("name", ["esm2", "dnabert3"])
def test_gradients_reach_soft_inputs(hf_dirs, name):
    alphabet = DNA if name == "dnabert3" else PROTEIN
    backbone = build_backbone(f"hf:{hf_dirs[name]}", alphabet)
    logits = torch.randn(2, 8, len(alphabet), requires_grad=True)
    backbone.embed(torch.softmax(logits, -1)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.parameters()), "backbone weights stay frozen"


def test_tiny_backbone_is_seeded_and_consistent():
    a, b = build_backbone("tiny", DNA), build_backbone("tiny", DNA)
    torch.testing.assert_close(a.embed_token_ids(DNA_SEQS), b.embed_token_ids(DNA_SEQS), rtol=0, atol=0)
    other = build_backbone("tiny:seed=1", DNA)
    assert not torch.allclose(a.embed_token_ids(DNA_SEQS), other.embed_token_ids(DNA_SEQS))
    assert other.spec == "tiny:hidden_size=64,layers=2,heads=4,seed=1"
    assert build_backbone(other.spec, DNA).embed_token_ids(DNA_SEQS).allclose(other.embed_token_ids(DNA_SEQS))


@pytest.mark.skipif(importlib.util.find_spec("antiberty") is None, reason="antiberty not installed")
def test_antiberty_real_weights():
    backbone = build_backbone("antiberty", PROTEIN)
    assert backbone.hidden_size == 512 and backbone.describe()["parameters"] > 20_000_000
    heavy = ["EVQLVESGGGLVQPGGSLRLSCAASGFTFS", "QVQLQESGPGLVKPSETLSLTCTVSGGSIS"]
    by_ids = backbone.embed_token_ids(heavy)
    torch.testing.assert_close(one_hot_path(backbone, heavy), by_ids, rtol=1e-5, atol=1e-5)
    # a pre-trained model separates a real antibody from a shuffled one more than two real ones
    shuffled = ["".join(sorted(heavy[0]))]
    shuffled_phi = backbone.embed_token_ids(shuffled)
    assert torch.dist(by_ids[0], by_ids[1]) < torch.dist(by_ids[0], shuffled_phi[0])


def test_bad_specs_are_user_errors(hf_dirs, tmp_path):
    with pytest.raises(UserError, match="unknown backbone"):
        build_backbone("nope", DNA)
    with pytest.raises(UserError, match="unirep-64, unirep-256"):
        build_backbone("unirep-100", PROTEIN)
    with pytest.raises(UserError, match="name=<integer>"):
        build_backbone("tiny:hidden_size=big", DNA)
    with pytest.raises(UserError, match="no token"):
        build_backbone(f"hf:{hf_dirs['dnabert3']}", PROTEIN)
    with pytest.raises(UserError, match="cannot load Hugging Face model"):
        build_backbone(f"hf:{tmp_path / 'missing'}", DNA)


def test_listing_names_every_family():
    specs = {info.spec for info in list_backbones()}
    assert {"tiny", "unirep-256", "antiberty", "esm2-8m", "hf:<id or path>"} <= specs
