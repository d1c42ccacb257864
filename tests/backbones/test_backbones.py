"""Backbones: token-id path == hard one-hot through inputs_embeds; gradients reach soft inputs."""

import importlib.util

import pytest
import torch

from bib_ray.alphabets import DNA, PROTEIN
from bib_ray.backbones import build_backbone, list_backbones
from bib_ray.backbones.base import Backbone
from bib_ray.errors import UserError
from tests.backbones.hf_models import make_dnabert3, make_esm2, make_protein_bert

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


def test_kmer_probability_is_product_of_positions(hf_dirs):
    from bib_ray.backbones.tokens import kmer_probs

    backbone = build_backbone(f"hf:{hf_dirs['dnabert3']}", DNA)
    assert str(backbone.scheme) == "kmer3-overlap"
    probs = torch.softmax(torch.randn(2, 6, 4), -1)
    joint = kmer_probs(probs, 3, 1)
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
        build_backbone(f"hf:{hf_dirs['dnabert3']}", "ACDEFGHIKLMNPQRSVWY")
    with pytest.raises(UserError, match="cannot load Hugging Face model"):
        build_backbone(f"hf:{tmp_path / 'missing'}", DNA)


def test_listing_names_every_family():
    specs = {info.spec for info in list_backbones()}
    assert {"tiny", "unirep-256", "antiberty", "esm2-8m", "prott5", "dnabert-6", "nt-500m-human", "nt-v2-100m",
            "hf:<id or path>"} <= specs


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name,alphabet", [("tiny", DNA), ("esm2", PROTEIN), ("dnabert3", DNA)])
def test_bfloat16_weights_embed_and_differentiate_like_float32(hf_dirs, name, alphabet):
    spec = "tiny" if name == "tiny" else f"hf:{hf_dirs[name]}"
    full, half = build_backbone(spec, alphabet), build_backbone(spec, alphabet, dtype="bfloat16")
    assert full.dtype == torch.float32 and half.dtype == torch.bfloat16
    assert half.describe()["dtype"] == "bfloat16"
    logits = torch.randn(3, 8, len(alphabet), generator=torch.Generator().manual_seed(0))
    grads, phis = [], []
    for backbone in (full, half):
        leaf = logits.clone().requires_grad_(True)
        phi = backbone.embed(torch.softmax(leaf, -1))
        assert phi.dtype == torch.float32, "phi is float32 whatever the weights' precision"
        (phi * torch.linspace(-1, 1, phi.shape[1])).sum().backward()
        assert leaf.grad is not None and leaf.grad.dtype == torch.float32 and leaf.grad.abs().sum() > 0
        grads.append(leaf.grad)
        phis.append(phi.detach())
    assert all(p.grad is None for p in half.parameters()), "backbone weights stay frozen"
    assert _relative_error(phis[1], phis[0]) < 0.02  # bfloat16 keeps 8 bits of mantissa: about 0.5% here
    assert _relative_error(grads[1], grads[0]) < 0.05


def test_float16_weights_embed_on_cpu():
    backbone = build_backbone("tiny", DNA, dtype=torch.float16)
    assert backbone.dtype == torch.float16
    phi = backbone.embed_token_ids(DNA_SEQS)
    assert phi.dtype == torch.float32 and torch.isfinite(phi).all()
    assert _relative_error(phi, build_backbone("tiny", DNA).embed_token_ids(DNA_SEQS)) < 0.05


def test_devices_place_the_weights(hf_dirs):
    tiny = build_backbone("tiny", DNA, devices=["meta"])
    assert tiny.device.type == "meta" and not tiny.split
    esm = build_backbone(f"hf:{hf_dirs['esm2']}", PROTEIN, devices=[torch.device("meta")])
    assert esm.device.type == "meta" and esm.letter_token_ids.device.type == "meta"


def test_bad_dtype_and_impossible_splits_are_user_errors(hf_dirs):
    from bib_ray.backbones.huggingface import split_loading_kwargs

    with pytest.raises(UserError, match="unsupported LM dtype 'int8'"):
        build_backbone("tiny", DNA, dtype="int8")
    with pytest.raises(UserError, match="runs on one device, got 2"):
        build_backbone("tiny", DNA, devices=["cpu", "cpu"])
    with pytest.raises(UserError, match="numbered CUDA devices"):
        split_loading_kwargs(["cpu", "cuda:1"])
    with pytest.raises(UserError, match="must differ"):
        split_loading_kwargs(["cuda:0", "cuda:0"])


def test_split_loading_uses_only_the_given_gpus(monkeypatch):
    from bib_ray.backbones import huggingface

    free = {2: 10_000, 5: 20_000}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (free[index], 80_000))
    kwargs = huggingface.split_loading_kwargs([torch.device("cuda", 2), "cuda:5"])
    assert kwargs["device_map"] == "balanced"
    assert kwargs["max_memory"] == {2: int(10_000 * huggingface.SPLIT_MEMORY_FRACTION),
                                    5: int(20_000 * huggingface.SPLIT_MEMORY_FRACTION)}


def test_embedder_never_moves_a_split_backbone():
    """A backbone spread over devices (one layer elsewhere stands in for a device map) stays put."""
    import numpy as np

    from bib_ray.proxy.embedding import SequenceEmbedder
    from bib_ray.tasks.base import Task

    backbone = build_backbone("tiny", DNA)
    backbone.layers[1].to("meta")
    assert backbone.split and backbone.device.type == "cpu"
    task = Task("toy", DNA, np.zeros((2, 10), dtype=np.int64), np.zeros(2))
    embedder = SequenceEmbedder(backbone, task)
    assert embedder.device.type == "cpu" and embedder.backbone is backbone
    assert next(backbone.layers[1].parameters()).device.type == "meta"
    with pytest.raises(ValueError, match="split over several devices"):
        SequenceEmbedder(backbone, task, "meta")
    moved = SequenceEmbedder(build_backbone("tiny", DNA), task, "meta")
    assert moved.device.type == "meta" and moved.backbone.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_hf_model_split_over_two_gpus(tmp_path):
    """An 8-layer ESM in bfloat16 spread over two GPUs embeds like one float32 copy and passes gradients."""
    from transformers import EsmConfig, EsmModel

    from tests.backbones.hf_models import ESM_VOCAB, _write_vocab

    _write_vocab(tmp_path, ESM_VOCAB, "EsmTokenizer")
    config = EsmConfig(vocab_size=len(ESM_VOCAB), hidden_size=256, num_hidden_layers=8, num_attention_heads=4,
                       intermediate_size=1024, pad_token_id=1, mask_token_id=len(ESM_VOCAB) - 1,
                       position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
                       max_position_embeddings=1026)
    torch.manual_seed(0)
    EsmModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    devices = [torch.device("cuda", 0), torch.device("cuda", 1)]
    split = build_backbone(f"hf:{tmp_path}", PROTEIN, dtype="bfloat16", devices=devices)
    assert split.split, f"expected layers on both GPUs, got {split.model.hf_device_map}"
    assert {p.device for p in split.parameters()} == set(devices)
    single = build_backbone(f"hf:{tmp_path}", PROTEIN, devices=[devices[0]])
    logits = torch.randn(4, 12, len(PROTEIN), device=devices[0], requires_grad=True)
    phi = split.embed(torch.softmax(logits, -1))
    assert phi.dtype == torch.float32 and phi.device == devices[0]
    phi.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert _relative_error(phi.detach(), single.embed(torch.softmax(logits.detach(), -1))) < 0.05
    import numpy as np

    from bib_ray.proxy.embedding import SequenceEmbedder
    from bib_ray.tasks.base import Task

    task = Task("toy", PROTEIN, np.zeros((2, 12), dtype=np.int64), np.zeros(2))
    embedder = SequenceEmbedder(split, task)
    assert embedder.device == devices[0]
    assert embedder.embed_codes(np.arange(24).reshape(2, 12) % len(PROTEIN)).shape == (2, 256)
