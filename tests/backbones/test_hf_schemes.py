"""Hugging Face backbones fed as each model was trained: token schemes, pooling, refusals, options.

The parity tests compare the soft path at one-hot input with the family's own tokenizer and model run
the way its users run them (``hf_models.reference_phi``), on small random models built from each
family's config class with tokenizers in the family's real vocabulary format.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bib_ray.alphabets import DNA, PROTEIN, encode
from bib_ray.backbones import HF_ALIASES, BackboneSpec, build_backbone, list_backbones
from bib_ray.backbones.base import Backbone
from bib_ray.backbones.tokens import TokenScheme, detect_scheme, kmer_probs
from bib_ray.errors import UserError
from tests.backbones.hf_models import (
    FAMILIES,
    NT_VOCAB,
    Family,
    make_bpe_dna,
    make_nucleotide_transformer,
    reference_phi,
)

PARITY_ATOL = 1e-5
FAMILY_IDS = [family.name for family in FAMILIES]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("families")
    return {family.name: family.build(root / f"family{index}") for index, family in enumerate(FAMILIES)}


def one_hot(sequences, alphabet: str) -> torch.Tensor:
    codes = torch.as_tensor(encode(list(sequences), alphabet))
    return torch.nn.functional.one_hot(codes, len(alphabet)).to(torch.float32)


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_soft_path_at_one_hot_equals_the_model_as_its_users_run_it(family: Family, family_dirs):
    backbone = build_backbone(family.spec(family_dirs[family.name]), family.alphabet)
    assert str(backbone.scheme) == family.scheme, "detected from the tokenizer"
    reference, ids = reference_phi(family, family_dirs[family.name], list(family.sequences))
    assert [backbone.token_ids(s) for s in family.sequences] == ids.tolist(), "the tokens its tokenizer emits"
    soft = backbone.embed(one_hot(family.sequences, family.alphabet))
    assert (soft - reference).abs().max() < PARITY_ATOL
    assert (backbone.embed_token_ids(list(family.sequences)) - reference).abs().max() < PARITY_ATOL
    assert not torch.allclose(soft[0], soft[1]), "different sequences embed differently"


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.has_cls], ids=[f.name for f in FAMILIES if f.has_cls])
def test_cls_pooling_equals_the_models_cls_state(family: Family, family_dirs):
    backbone = build_backbone(family.spec(family_dirs[family.name], pooling="cls"), family.alphabet)
    reference, _ = reference_phi(family, family_dirs[family.name], list(family.sequences), pooling="cls")
    assert (backbone.embed(one_hot(family.sequences, family.alphabet)) - reference).abs().max() < PARITY_ATOL
    mean = build_backbone(family.spec(family_dirs[family.name]), family.alphabet)
    assert not torch.allclose(mean.embed_token_ids(list(family.sequences)), reference)


def test_nucleotide_transformer_is_fed_6mer_blocks_with_letter_tails(tmp_path):
    """The case of issue 14: NT's vocabulary holds single letters too, so picking the smallest complete
    k gave one token per nucleotide; its tokenizer cuts non-overlapping 6-mers, letters only for the tail."""
    from transformers import AutoTokenizer

    directory = make_nucleotide_transformer(tmp_path / "nt")
    nt = next(family for family in FAMILIES if family.scheme == "kmer6-block")
    backbone = build_backbone(f"hf:{directory}", DNA)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    for sequences in (["ACGTACGTAGGCTTA", "GATTACAGATCCGAG"], ["ACGTACGTAGGC"], ["GATTA"], ["ACGTACGTAGGCT"]):
        reference, own = reference_phi(nt, directory, sequences)
        assert (backbone.embed(one_hot(sequences, DNA)) - reference).abs().max() < PARITY_ATOL
        assert own.shape[1] == 1 + len(sequences[0]) // 6 + len(sequences[0]) % 6
        assert [backbone.token_ids(s) for s in sequences] == own.tolist()
    assert tokenizer.convert_ids_to_tokens(backbone.token_ids("ACGTACGTAGGCTTA")) == [
        "<cls>", "ACGTAC", "GTAGGC", "T", "T", "A"]


def test_detection_reads_the_vocabulary():
    assert detect_scheme(["[CLS]", *PROTEIN], PROTEIN, "m") == TokenScheme("letters")
    assert detect_scheme(["\u2581" + letter for letter in PROTEIN], PROTEIN, "m") == TokenScheme("letters")
    assert detect_scheme(NT_VOCAB, DNA, "m") == TokenScheme("block", 6)
    assert detect_scheme(TokenScheme("overlap", 4).kmers(DNA), DNA, "m") == TokenScheme("overlap", 4)
    with pytest.raises(UserError, match="cannot tell how model 'm' tokenises"):
        detect_scheme([*DNA, "AC", "GT"], DNA, "m")
    with pytest.raises(UserError, match=r"no token for letter\(s\) \['T'\]"):
        detect_scheme(["A", "C", "G"], DNA, "m")


def test_schemes_split_count_and_distribute():
    block = TokenScheme.parse("kmer3-block")
    assert str(block) == "kmer3-block" and TokenScheme.parse("letters").k == 1
    assert block.split("ACGTACGT") == ["ACG", "TAC", "G", "T"] and block.token_count(8) == 4
    assert TokenScheme("overlap", 3).split("ACGTA") == ["ACG", "CGT", "GTA"]
    with pytest.raises(UserError, match="kmer<k>-overlap"):
        TokenScheme.parse("kmer6-blocks")
    probs = torch.softmax(torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(0)), -1)
    segments = block.distributions(probs)
    assert [(unit, tuple(d.shape)) for unit, d in segments] == [("kmer", (2, 2, 64)), ("letter", (2, 2, 4))]
    a, b, c = 1, 2, 3  # the second block (positions 3..5) takes "CGT" with probability P3[C] P4[G] P5[T]
    torch.testing.assert_close(segments[0][1][:, 1, a * 16 + b * 4 + c], probs[:, 3, a] * probs[:, 4, b] * probs[:, 5, c])
    torch.testing.assert_close(kmer_probs(probs, 3, 1).sum(-1), torch.ones(2, 6))
    assert sum(d.shape[1] for _, d in TokenScheme("overlap", 3).distributions(probs)) == 6


def test_spec_names_the_scheme_against_detection(family_dirs):
    nt_dir = family_dirs["Nucleotide Transformer (EsmConfig)"]
    letters = build_backbone(f"hf:{nt_dir},tokens=letters", DNA)
    assert str(letters.scheme) == "letters" and letters.layout.spaced, "raw text would be cut into 6-mers"
    assert letters.spec == f"hf:{nt_dir},tokens=letters"
    assert len(letters.token_ids("ACGTACGTAG")) == 1 + 10
    with pytest.raises(UserError, match="does not tokenise 'ACGT' sequences as kmer3-overlap"):
        build_backbone(f"hf:{nt_dir},tokens=kmer3-overlap", DNA)
    with pytest.raises(UserError, match="as kmer3-block"):
        build_backbone(f"hf:{family_dirs['DNABERT-1 k=3 (BertConfig)']},tokens=kmer3-block", DNA)


def test_bpe_tokenizer_is_refused_with_the_reason(tmp_path):
    with pytest.raises(UserError, match="byte-pair-encoding tokenizer") as refused:
        build_backbone(f"hf:{make_bpe_dna(tmp_path / 'bpe')}", DNA)
    assert "boundaries depend on the letters" in str(refused.value)
    assert "--trust-remote-code" not in str(refused.value), "refused for BPE before its own code comes up"


def test_custom_code_needs_trust_remote_code(family_dirs, tmp_path):
    own_code = family_dirs["character-level DNA, own code (HyenaDNA-style)"]
    with pytest.raises(UserError, match="needs its own code .*--trust-remote-code"):
        build_backbone(f"hf:{own_code}", DNA)
    trusted = build_backbone(f"hf:{own_code},trust_remote_code=true", DNA)
    assert trusted.describe()["trust_remote_code"] is True and trusted.spec.endswith(",trust_remote_code=true")
    # a built-in model type with code of its own (Nucleotide Transformer v2) is refused, not silently built-in
    import json

    directory = make_nucleotide_transformer(tmp_path / "nt-v2")
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM"}
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"config.json auto_map: AutoModelForMaskedLM -> modeling_esm"):
        build_backbone(f"hf:{directory}", DNA)


def test_trust_remote_code_flag_reaches_the_spec():
    from bib_ray.cli import build_parser
    from bib_ray.flags import model_flag_values
    from bib_ray.run.config import DesignConfig, build_config

    args = build_parser().parse_args(["design", "--trust-remote-code", "--backbone", "nt-v2-100m"])
    config = build_config(model_flag_values(args, DesignConfig))
    assert config.trust_remote_code and config.backbone == "nt-v2-100m:trust_remote_code=true"
    assert build_config({"backbone": "hf:org/model,pooling=cls", "trust_remote_code": True}).backbone == \
        "hf:org/model,pooling=cls,trust_remote_code=true"
    assert build_config({"backbone": "tiny", "trust_remote_code": True}).backbone == "tiny"
    assert build_config({"backbone": "hf:org/model"}).backbone == "hf:org/model", "off by default"
    twice = BackboneSpec.parse("esm2-8m").with_trust_remote_code().with_trust_remote_code()
    assert str(twice) == "esm2-8m:trust_remote_code=true"


def test_hf_specs_parse_to_canonical_options():
    spec = BackboneSpec.parse("hf:org/m, pooling=cls ,tokens=kmer6-block")
    assert (spec.name, spec.target, spec.option_values()) == ("hf", "org/m", {"tokens": "kmer6-block", "pooling": "cls"})
    assert str(spec) == "hf:org/m,tokens=kmer6-block,pooling=cls" and BackboneSpec.parse(str(spec)) == spec
    alias = BackboneSpec.parse("nt-500m-human:pooling=cls")
    assert alias.is_huggingface and str(alias) == "nt-500m-human:pooling=cls"
    tiny = BackboneSpec.parse("tiny:seed=1")
    assert not tiny.is_huggingface and tiny.option_values() == {"seed": 1}
    for bad, message in [("hf:org/m,pool=cls", "is not one of tokens="), ("hf:org/m,pooling=max", "mean .* or cls"),
                         ("hf:org/m,trust_remote_code=maybe", "use true or false"), ("hf:,pooling=cls", "model id")]:
        with pytest.raises(UserError, match=message):
            build_backbone(bad, DNA)


def test_aliases_carry_their_scheme():
    expected = {"nt-500m-human": "kmer6-block", "nt-v2-100m": "kmer6-block", "dnabert-6": "kmer6-overlap",
                "esm2-650m": "letters", "esm2-3b": "letters", "prott5": "letters", "protbert": "letters"}
    assert {alias: HF_ALIASES[alias].tokens for alias in expected} == expected
    assert HF_ALIASES["nt-v2-100m"].remote_code and not HF_ALIASES["nt-500m-human"].remote_code
    for checkpoint in HF_ALIASES.values():
        TokenScheme.parse(checkpoint.tokens)


def test_listing_marks_the_aliases_in_the_local_cache(tmp_path, monkeypatch):
    import huggingface_hub

    snapshot = tmp_path / "models--InstaDeepAI--nucleotide-transformer-500m-human-ref" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    infos = {info.spec: info for info in list_backbones()}
    assert infos["nt-500m-human"].available and "in the local HF cache" in infos["nt-500m-human"].note
    assert "kmer6-block" in infos["nt-500m-human"].description
    assert not infos["esm2-3b"].available and "needs a download" in infos["esm2-3b"].note
    assert "--trust-remote-code" in infos["nt-v2-100m"].note


def test_cls_pooling_needs_a_cls_token(family_dirs):
    with pytest.raises(UserError, match="puts no CLS token before a sequence.*use pooling=mean"):
        build_backbone(f"hf:{family_dirs['ProtT5 (T5Config, encoder)']},pooling=cls", PROTEIN)


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_gradients_reach_soft_inputs(family: Family, family_dirs):
    """Also shows the soft embeddings are what the model reads: parity at one-hot alone would hold if
    they never reached it."""
    backbone = build_backbone(family.spec(family_dirs[family.name]), family.alphabet)
    logits = torch.randn(2, 15, len(family.alphabet), requires_grad=True)
    phi = backbone.embed(torch.softmax(logits, -1))
    (phi * torch.linspace(-1, 1, phi.shape[1])).sum().backward()  # a plain sum of layer-normed states is constant
    assert logits.grad is not None and logits.grad.abs().sum(-1).min() > 0, "every position, tail included"
    assert all(p.grad is None for p in backbone.parameters())


def test_artifact_records_and_rebuilds_scheme_and_pooling(family_dirs, tmp_path):
    from bib_ray.proxy.artifacts import load_proxy_artifact
    from bib_ray.core.aux_ensemble import AuxiliarySettings
    from bib_ray.proxy.fitting import ProxySettings, fit_and_save_proxy
    from bib_ray.tasks.base import Task

    nt_dir = family_dirs["Nucleotide Transformer (EsmConfig)"]
    rng = np.random.default_rng(0)
    task = Task("toy", DNA, rng.integers(0, 4, size=(12, 15)), rng.normal(size=12))
    spec = f"hf:{nt_dir},pooling=cls"
    out = fit_and_save_proxy(task, ProxySettings(BackboneSpec.parse(spec), device="cpu"), tmp_path / "proxy",
                             AuxiliarySettings(members=1, epochs=1))
    loaded = load_proxy_artifact(out)
    assert loaded.meta["backbone"]["spec"] == spec
    assert loaded.meta["backbone"]["pooling"] == "cls" and loaded.meta["backbone"]["tokens"] == "kmer6-block"
    backbone = loaded.embedder.backbone
    assert backbone.options.pooling == "cls" and str(backbone.scheme) == "kmer6-block"
    mean = build_backbone(f"hf:{nt_dir}", DNA)
    sequences = ["ACGTACGTAGGCTTA"]
    assert not torch.allclose(mean.embed_token_ids(sequences), Backbone.embed_token_ids(backbone, sequences))
