"""Any Hugging Face encoder (ESM-2, BERT family, T5 encoders, k-mer DNA models) as a backbone.

A ``TokenScheme`` (``bib_ray.backbones.tokens``) says how a sequence becomes the model's tokens -- one
per letter, overlapping k-mers (DNABERT-1), or k-mer blocks with single-letter tail tokens (Nucleotide
Transformer) -- and gives every token position a distribution D over its vocabulary entries, built
from the position distributions P. The soft embedding of a token is D @ e(entries), e being the
model's own input-embedding layer applied to those entries. It replaces that layer's output inside
a normal forward pass on the token ids closest to D (the argmax entries), with the tokenizer's own
special tokens around them, so everything the model does after the lookup -- position embeddings,
ESM's token-dropout rescaling, layer norms, masks -- happens as it does for real tokens. At one-hot
input this is exactly the model run on its tokenizer's output for the sequence, given the way its
users call it (``TokenLayout.text``), which ``embed_token_ids`` runs for comparison.

phi pools the last hidden states: ``mean`` over the residue tokens (default) or the ``cls`` token's.

Loading refuses, with the reason, what per-position design cannot feed faithfully: byte-pair-encoding
tokenizers, and checkpoints with their own code unless ``trust_remote_code`` is given (a checkpoint
that ships code but names a built-in model type would otherwise load into the built-in class without
a word). T5-family checkpoints load as their encoder.

The weights load in the requested ``dtype``; given several CUDA devices the model is loaded
straight onto them with a balanced device map (Hugging Face ``from_pretrained(device_map=...)``,
which needs the ``accelerate`` package): each device holds some of the layers and activations
pass from one to the next, so an LM larger than one GPU fits on a shard's GPUs.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from bib_ray.backbones.base import Backbone
from bib_ray.backbones.tokens import (
    TokenLayout,
    TokenScheme,
    detect_scheme,
    refuse_bpe,
    resolve_layout,
)
from bib_ray.errors import UserError

#: share of each GPU's free memory a device map may fill with weights (the rest is left for activations)
SPLIT_MEMORY_FRACTION = 0.9


def split_loading_kwargs(devices: Sequence[torch.device | str]) -> dict:
    """``from_pretrained`` arguments that spread a model's layers over the CUDA ``devices``, balanced.

    Returns ``{"device_map": "balanced", "max_memory": {index: bytes}}`` with only the given GPUs
    (so no layer lands on another GPU, the CPU or disk), each capped at ``SPLIT_MEMORY_FRACTION``
    of its free memory. Raises UserError for non-CUDA or repeated devices, or without accelerate.
    """
    if importlib.util.find_spec("accelerate") is None:
        raise UserError("splitting a Hugging Face model over several GPUs needs accelerate: pip install accelerate")
    indices = []
    for device in map(torch.device, devices):
        if device.type != "cuda" or device.index is None:
            raise UserError(f"a model is split only over numbered CUDA devices (cuda:N), got {str(device)!r}")
        indices.append(device.index)
    if len(set(indices)) != len(indices):
        raise UserError(f"devices to split a model over must differ, got {[str(d) for d in devices]}")
    return {"device_map": "balanced",
            "max_memory": {index: int(torch.cuda.mem_get_info(index)[0] * SPLIT_MEMORY_FRACTION)
                           for index in indices}}


def _dtype_keyword() -> str:
    """``from_pretrained``'s precision argument: ``dtype`` from transformers 4.56 on, ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


Pooling = Literal["mean", "cls"]
POOLINGS: tuple[str, ...] = ("mean", "cls")
#: spec options of Hugging Face backbones, in the order a canonical spec lists them
HF_OPTION_NAMES: tuple[str, ...] = ("tokens", "pooling", "trust_remote_code")
#: encoder classes of the T5 family: their checkpoints are encoder-decoders, of which only the encoder embeds
T5_ENCODERS = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_hf_options(items: Sequence[str], what: str) -> dict[str, str]:
    """['tokens=kmer6-block', 'pooling=cls', 'trust_remote_code=true'] -> the same as a dict of
    normalised values (scheme spelled canonically, booleans 'true'/'false'); UserError naming ``what``
    for unknown names or bad values."""
    options: dict[str, str] = {}
    usage = "tokens=letters|kmer<k>-overlap|kmer<k>-block, pooling=mean|cls, trust_remote_code=true|false"
    for item in filter(None, (part.strip() for part in items)):
        key, _, value = (part.strip() for part in item.partition("="))
        if key not in HF_OPTION_NAMES or not value:
            raise UserError(f"{what}: option {item!r} is not one of {usage}")
        if key == "tokens":
            value = str(TokenScheme.parse(value))
        elif key == "pooling" and value not in POOLINGS:
            raise UserError(f"{what}: pooling={value!r}: choose mean (over residue tokens) or cls")
        elif key == "trust_remote_code":
            if value.lower() not in _TRUE + _FALSE:
                raise UserError(f"{what}: trust_remote_code={value!r}: use true or false")
            value = "true" if value.lower() in _TRUE else "false"
        options[key] = value
    return options


def hf_option_items(options: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The options of ``parse_hf_options`` as (name, value) pairs in ``HF_OPTION_NAMES`` order."""
    return tuple((name, options[name]) for name in HF_OPTION_NAMES if name in options)


@dataclass(frozen=True)
class HFOptions:
    """How a Hugging Face backbone is fed and pooled.

    Attributes:
        tokens: the token scheme; None detects it from the tokenizer (``tokens.detect_scheme``).
        pooling: ``mean`` of the last hidden states over the residue tokens, or the ``cls`` token's.
        trust_remote_code: let a checkpoint's own modelling / tokenizer code run (transformers'
            ``trust_remote_code``); off by default, and checkpoints that ship code are refused without it.
    """

    tokens: TokenScheme | None = None
    pooling: Pooling = "mean"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")

    @classmethod
    def from_strings(cls, options: dict[str, str]) -> HFOptions:
        """From ``parse_hf_options``' output."""
        return cls(tokens=TokenScheme.parse(options["tokens"]) if "tokens" in options else None,
                   pooling=options.get("pooling", "mean"),  # type: ignore[arg-type]
                   trust_remote_code=options.get("trust_remote_code") == "true")


def _remote_code_error(model: str, where: str, auto_map: dict) -> UserError:
    """The refusal of a checkpoint whose ``where`` file maps auto classes onto its own code (``auto_map``)."""
    classes = ", ".join(f"{name} -> {target if isinstance(target, str) else ' / '.join(filter(None, target))}"
                        for name, target in sorted(auto_map.items()))
    return UserError(
        f"model {model!r} needs its own code ({where} auto_map: {classes}), which bib-ray does not run unless "
        "asked: pass --trust-remote-code (or add trust_remote_code=true to the backbone spec) if you trust that "
        "code, which then runs on this machine with your permissions. Without it the checkpoint would load into "
        "a different network than it was trained as, or not at all")


def _hub_json(path: str, filename: str, required: bool) -> dict | None:
    """A JSON file of a model directory or hub id (hub cache included); None when absent and not ``required``."""
    from transformers.utils import cached_file

    try:
        file = cached_file(path, filename, _raise_exceptions_for_missing_entries=required,
                           _raise_exceptions_for_connection_errors=required)
    except (OSError, ValueError) as error:
        raise UserError(
            f"cannot load Hugging Face model {path!r}: {error}. Without network access, "
            "pass a local directory (config.json + weights) or a model already in the HF cache.") from None
    return None if file is None else json.loads(Path(file).read_text())


def _load_tokenizer(path: str, trust_remote_code: bool, model_config: dict):
    """The tokenizer at ``path`` (``AutoTokenizer``, else a case-keeping ``BertTokenizer`` for a bare
    vocab.txt); UserError when it is the checkpoint's own code and ``trust_remote_code`` is off."""
    from transformers import AutoTokenizer, BertTokenizer

    for where, config in (("tokenizer_config.json", _hub_json(path, "tokenizer_config.json", False) or {}),
                          ("config.json", model_config)):
        auto_map = config.get("auto_map") or {}
        if "AutoTokenizer" in auto_map and not trust_remote_code:
            raise _remote_code_error(path, where, {"AutoTokenizer": auto_map["AutoTokenizer"]})
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as auto_error:  # directories with only vocab.txt (e.g. AntiBERTy) need the BERT class;
        try:  # residue vocabularies are upper case, so BERT's default lower-casing would map them to [UNK]
            return BertTokenizer.from_pretrained(path, do_lower_case=False)
        except Exception:
            raise UserError(f"cannot load a tokenizer from {path!r}: {auto_error}") from None


def _load_model(path: str, config: dict, trust_remote_code: bool, load_kwargs: dict) -> torch.nn.Module:
    """The encoder of the checkpoint at ``path``: a T5-family encoder class for T5 checkpoints, the
    checkpoint's own class with ``trust_remote_code`` (its masked-LM class's base model when it maps no
    plain AutoModel, as the Nucleotide Transformer v2), else ``AutoModel``."""
    import transformers

    auto_map = config.get("auto_map") or {}
    model_type = config.get("model_type")
    if auto_map and not trust_remote_code:
        raise _remote_code_error(path, "config.json", auto_map)
    take_base = False
    if model_type in T5_ENCODERS:
        loader = getattr(transformers, T5_ENCODERS[model_type])
    elif config.get("is_encoder_decoder"):
        raise UserError(f"model {path!r} is an encoder-decoder ({model_type}); bib-ray embeds with encoders, and "
                        f"loads the encoder alone only for the T5 family ({', '.join(T5_ENCODERS)})")
    else:
        loader = transformers.AutoModel
        if auto_map and "AutoModel" not in auto_map and "AutoModelForMaskedLM" in auto_map:
            loader, take_base = transformers.AutoModelForMaskedLM, True
        load_kwargs = {**load_kwargs, "trust_remote_code": trust_remote_code}
    try:
        model = loader.from_pretrained(path, **load_kwargs)
    except OSError as error:
        raise UserError(
            f"cannot load Hugging Face model {path!r}: {error}. Without network access, "
            "pass a local directory (config.json + weights) or a model already in the HF cache.") from None
    return model.base_model if take_base else model


class HuggingFaceBackbone(Backbone):
    """A frozen ``transformers`` encoder fed soft residues in place of its input-embedding lookup (module docstring).

    ``options`` pick the token scheme (detected when None), pooling and whether checkpoint code may run.
    ``dtype`` is the precision the weights are loaded in. ``devices``: None loads on the CPU (move it
    later with ``.to``); one device loads there; several CUDA devices split the model over them (see
    ``split_loading_kwargs``), after which the backbone must not be moved.

    Raises UserError for models it cannot feed as they were trained (see the module docstring).
    """

    def __init__(self, alphabet: str, model_path: str, tokenizer_path: str | None = None,
                 spec: str | None = None, dtype: torch.dtype = torch.float32,
                 devices: Sequence[torch.device | str] | None = None, options: HFOptions = HFOptions()) -> None:
        super().__init__()
        from transformers.utils import logging as transformers_logging

        self.alphabet = alphabet
        self.spec = spec or f"hf:{model_path}"
        self.model_path = model_path
        self.options = options
        transformers_logging.set_verbosity_error()  # unused MLM-head weights are expected, not news
        transformers_logging.disable_progress_bar()
        config = _hub_json(model_path, "config.json", True) or {}
        self.tokenizer = _load_tokenizer(tokenizer_path or model_path, options.trust_remote_code, config)
        refuse_bpe(self.tokenizer, model_path)
        scheme = options.tokens or detect_scheme(self.tokenizer.get_vocab(), alphabet, model_path)
        self.layout: TokenLayout = resolve_layout(self.tokenizer, scheme, alphabet, model_path)
        self.cls_index = self._cls_index() if options.pooling == "cls" else None
        load_kwargs: dict = {_dtype_keyword(): dtype}
        if devices is not None and len(devices) > 1:
            load_kwargs.update(split_loading_kwargs(devices))
        self.model = _load_model(model_path, config, options.trust_remote_code, load_kwargs)
        embeddings = self.model.get_input_embeddings()
        if not isinstance(getattr(embeddings, "weight", None), torch.Tensor):
            raise UserError(f"model {model_path!r} ({type(self.model).__name__}) exposes no input embedding table "
                            "(get_input_embeddings), so residue distributions cannot be fed to it")
        self._takes_attention_mask = "attention_mask" in inspect.signature(self.model.forward).parameters
        model_config = self.model.config
        self.hidden_size = int(getattr(model_config, "hidden_size", None) or getattr(model_config, "d_model", None)
                               or self.model.get_input_embeddings().embedding_dim)
        input_device = self.device
        for name, ids in (("letter_token_ids", self.layout.letter_ids), ("kmer_token_ids", self.layout.kmer_ids),
                          ("prefix_ids", self.layout.prefix), ("suffix_ids", self.layout.suffix)):
            self.register_buffer(name, torch.tensor(ids or (), dtype=torch.long, device=input_device),
                                 persistent=False)
        self.freeze()
        if devices is not None and len(devices) == 1:
            self.to(devices[0])

    @property
    def scheme(self) -> TokenScheme:
        return self.layout.scheme

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the input embedding table (the first of a split model's)."""
        return self.model.get_input_embeddings().weight.device

    def place(self, devices: Sequence[torch.device | str]) -> Backbone:
        """Move onto one device, as ``Backbone.place``; a split backbone cannot be moved (UserError):
        splitting happens only when loading (``devices`` of the constructor)."""
        if len(devices) == 1 and self.split:
            raise UserError(f"backbone {self.spec!r} is split over several devices and cannot be moved")
        return super().place(devices)

    def _cls_index(self) -> int:
        """Position of the CLS token among the special tokens before the residues (UserError without one)."""
        cls_id = getattr(self.tokenizer, "cls_token_id", None)
        if cls_id is None or cls_id not in self.layout.prefix:
            raise UserError(f"model {self.model_path!r} puts no CLS token before a sequence (its tokenizer adds "
                            f"{list(self.layout.prefix)} before, {list(self.layout.suffix)} after): use pooling=mean")
        return self.layout.prefix.index(cls_id)

    def token_ids(self, sequence: str) -> list[int]:
        """The token ids the soft path feeds for ``sequence`` at one-hot input: special tokens around the
        tokens on which each token position's distribution puts all its mass."""
        return [*self.layout.prefix, *self.layout.residue_ids(sequence, self.alphabet), *self.layout.suffix]

    def _pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, H) last hidden states -> (B, H): the CLS token's, or the mean over the residue tokens."""
        if self.cls_index is not None:
            return hidden[:, self.cls_index]
        start = self.prefix_ids.shape[0]
        stop = hidden.shape[1] - self.suffix_ids.shape[0]
        return hidden[:, start:stop].mean(1)

    def _embedding_layers(self) -> list[torch.nn.Module]:
        """The input-embedding layer and every module sharing its table (T5's encoder calls its own
        ``embed_tokens``, tied to the model's ``shared``): whichever the forward calls is the lookup."""
        lookup = self.model.get_input_embeddings()
        return [lookup, *(module for module in self.model.modules()
                          if module is not lookup and getattr(module, "weight", None) is lookup.weight)]

    def _last_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states of the model run on ``input_ids``; with ``embeddings`` (B, T, H), those stand
        in for the output of the input-embedding lookup (a forward hook), the rest of the forward unchanged.
        RuntimeError when the forward does not make exactly one lookup (the hook would not mean that)."""
        inputs = {"input_ids": input_ids}
        if self._takes_attention_mask:
            inputs["attention_mask"] = attention_mask
        if embeddings is None:
            output = self.model(**inputs)
        else:
            lookups = []

            def substitute(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
                lookups.append(module)
                return embeddings

            handles = [layer.register_forward_hook(substitute) for layer in self._embedding_layers()]
            try:
                output = self.model(**inputs)
            finally:
                for handle in handles:
                    handle.remove()
            if len(lookups) != 1:
                raise RuntimeError(f"{type(self.model).__name__} looked up its input embeddings {len(lookups)} times "
                                   "in one forward pass; bib-ray feeds residue distributions through exactly one")
        return output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def embed(self, probs: torch.Tensor) -> torch.Tensor:
        lookup = self.model.get_input_embeddings()
        units = {"letter": self.letter_token_ids, "kmer": self.kmer_token_ids}
        segments = self.scheme.distributions(probs)
        rows = {unit: lookup(units[unit]) for unit in {unit for unit, _ in segments}}  # e(entries), (n, H)
        residues = torch.cat([dist.to(rows[unit].dtype) @ rows[unit] for unit, dist in segments], dim=1)
        closest = torch.cat([units[unit][dist.argmax(-1)] for unit, dist in segments], dim=1)
        batch = residues.shape[0]
        embeddings = torch.cat([lookup(self.prefix_ids).expand(batch, -1, -1), residues,
                                lookup(self.suffix_ids).expand(batch, -1, -1)], dim=1)
        ids = torch.cat([self.prefix_ids.expand(batch, -1), closest, self.suffix_ids.expand(batch, -1)], dim=1)
        mask = torch.ones_like(ids)
        hidden = self._last_hidden(ids, mask, embeddings)
        return self._pool(hidden).to(embeddings.device, torch.float32)

    @torch.no_grad()
    def embed_token_ids(self, sequences: list[str]) -> torch.Tensor:
        """phi through the model's tokenizer applied to each sequence as its users call it (raw or spaced,
        ``TokenLayout.text``) and the input-id path; sequences of one length."""
        if len({len(s) for s in sequences}) != 1:
            raise ValueError("embed_token_ids takes sequences of one length")
        encoded = self.tokenizer([self.layout.text(s) for s in sequences], return_tensors="pt", padding=True)
        ids = encoded["input_ids"].to(self.device)
        hidden = self._last_hidden(ids, encoded["attention_mask"].to(self.device))
        return self._pool(hidden).to(ids.device, torch.float32)

    def describe(self) -> dict:
        return {**super().describe(), "model_path": self.model_path, "tokens": str(self.scheme),
                "tokenizer_input": "spaced" if self.layout.spaced else "raw", "pooling": self.options.pooling,
                "trust_remote_code": self.options.trust_remote_code,
                "model_type": self.model.config.model_type,
                "parameters": sum(p.numel() for p in self.model.parameters())}

def antiberty_paths() -> tuple[str, str]:
    """(model dir, tokenizer dir) inside the installed ``antiberty`` package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("antiberty")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("backbone 'antiberty' needs the antiberty package: pip install --no-deps antiberty==0.1.3")
    root = Path(list(spec.submodule_search_locations)[0]) / "trained_models"
    return str(root / "AntiBERTy_md_smooth"), str(root)
