"""Any Hugging Face encoder (ESM-2, BERT family, DNABERT-style k-mer models) as a backbone.

Residue distributions enter through ``inputs_embeds``: for single-residue vocabularies
inputs_embeds[j] = P[j] @ E[residue tokens]; for a k-mer vocabulary (DNABERT: overlapping
k-mers, one token per window) the probability of k-mer (a_1..a_k) at window j is
prod_t P[j + t - 1, a_t], and inputs_embeds[j] = sum_kmer prob(kmer) E[kmer]. The tokenizer's
own special tokens (CLS/BOS before, SEP/EOS after) are added as their embedding rows, and
phi is the mean of the last hidden states over the residue (or k-mer) positions.

The weights load in the requested ``dtype``; given several CUDA devices the model is loaded
straight onto them with a balanced device map (Hugging Face ``from_pretrained(device_map=...)``,
which needs the ``accelerate`` package): each device holds some of the layers and activations
pass from one to the next, so an LM larger than one GPU fits on a shard's GPUs.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Sequence
from pathlib import Path

import torch

from bib_ray.backbones.base import Backbone
from bib_ray.errors import UserError

# ESM's embedding layer rescales token embeddings by (1 - 0.15 * 0.8) / (1 - observed mask ratio)
# when token_dropout is on and input_ids are given; inputs_embeds skip that, so we apply it here.
_ESM_TOKEN_DROPOUT_SCALE = 1.0 - 0.15 * 0.8

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


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer, BertTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as auto_error:  # directories with only vocab.txt (e.g. AntiBERTy) need the BERT class;
        try:  # residue vocabularies are upper case, so BERT's default lower-casing would map them to [UNK]
            return BertTokenizer.from_pretrained(path, do_lower_case=False)
        except Exception:
            raise UserError(f"cannot load a tokenizer from {path!r}: {auto_error}") from None


class HuggingFaceBackbone(Backbone):
    """A frozen ``transformers`` encoder fed soft one-hot residues through ``inputs_embeds``.

    ``dtype`` is the precision the weights are loaded in. ``devices``: None loads on the CPU (move
    it later with ``.to``); one device loads there; several CUDA devices split the model over them
    (see ``split_loading_kwargs``), after which the backbone must not be moved.
    """

    def __init__(self, alphabet: str, model_path: str, tokenizer_path: str | None = None,
                 kmer: int | None = None, spec: str | None = None, dtype: torch.dtype = torch.float32,
                 devices: Sequence[torch.device | str] | None = None) -> None:
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging

        self.alphabet = alphabet
        self.spec = spec or f"hf:{model_path}"
        self.model_path = model_path
        transformers_logging.set_verbosity_error()  # unused MLM-head weights are expected, not news
        transformers_logging.disable_progress_bar()
        load_kwargs: dict = {_dtype_keyword(): dtype}
        if devices is not None and len(devices) > 1:
            load_kwargs.update(split_loading_kwargs(devices))
        try:
            self.model = AutoModel.from_pretrained(model_path, **load_kwargs)
        except OSError as error:
            raise UserError(
                f"cannot load Hugging Face model {model_path!r}: {error}. Without network access, "
                "pass a local directory (config.json + weights) or a model already in the HF cache.") from None
        self.tokenizer = _load_tokenizer(tokenizer_path or model_path)
        self.hidden_size = int(self.model.config.hidden_size)
        self.kmer = kmer or self._detect_kmer()
        input_device = self.device
        self.register_buffer("residue_token_ids", self._residue_token_ids().to(input_device), persistent=False)
        prefix, suffix = self._special_tokens()
        self.register_buffer("prefix_ids", prefix.to(input_device), persistent=False)
        self.register_buffer("suffix_ids", suffix.to(input_device), persistent=False)
        self.input_scale = _ESM_TOKEN_DROPOUT_SCALE if getattr(self.model.config, "token_dropout", False) else 1.0
        self.freeze()
        if devices is not None and len(devices) == 1:
            self.to(devices[0])

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

    def _detect_kmer(self) -> int:
        vocab = self.tokenizer.get_vocab()
        for k in (1, 3, 4, 5, 6, 2):
            if all("".join(word) in vocab for word in itertools.product(self.alphabet, repeat=k)):
                return k
        missing = [letter for letter in self.alphabet if letter not in vocab]
        raise UserError(f"model {self.model_path!r} has no token for letter(s) {missing} "
                        f"(alphabet {self.alphabet!r}) nor k-mer tokens over it")

    def _residue_token_ids(self) -> torch.Tensor:
        """Token id of every k-mer over the alphabet, in lexicographic (itertools.product) order."""
        vocab = self.tokenizer.get_vocab()
        words = ["".join(word) for word in itertools.product(self.alphabet, repeat=self.kmer)]
        missing = [word for word in words if word not in vocab]
        if missing:
            raise UserError(f"model {self.model_path!r} has no token for {missing[:5]} with kmer={self.kmer}")
        return torch.tensor([vocab[word] for word in words], dtype=torch.long)

    def _text(self, sequence: str) -> str:
        """Tokenizer input: tokens separated by spaces (k-mers overlap with stride 1)."""
        return " ".join(sequence[i:i + self.kmer] for i in range(len(sequence) - self.kmer + 1))

    def _special_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The special tokens the tokenizer puts before and after the residue tokens."""
        probe = (self.alphabet * 3)[: max(self.kmer + 2, 4)]
        ids = self.tokenizer(self._text(probe))["input_ids"]
        special = set(self.tokenizer.all_special_ids)
        body = [i for i, token in enumerate(ids) if token not in special]
        expected = len(probe) - self.kmer + 1
        if len(body) != expected or body != list(range(body[0], body[0] + expected)):
            raise UserError(f"tokenizer of {self.model_path!r} splits {probe!r} into {ids}: "
                            f"expected {expected} residue tokens")
        return torch.tensor(ids[: body[0]], dtype=torch.long), torch.tensor(ids[body[-1] + 1:], dtype=torch.long)

    def _kmer_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, L, V) -> (B, L - k + 1, V^k): product of position probabilities for each window."""
        windows = probs.unfold(1, self.kmer, 1)  # (B, W, V, k)
        joint = windows[..., 0]
        for t in range(1, self.kmer):
            joint = (joint.unsqueeze(-1) * windows[..., t].unsqueeze(-2)).flatten(-2)
        return joint

    def _pool(self, hidden: torch.Tensor) -> torch.Tensor:
        start = self.prefix_ids.shape[0]
        stop = hidden.shape[1] - self.suffix_ids.shape[0]
        return hidden[:, start:stop].mean(1)

    def embed(self, probs: torch.Tensor) -> torch.Tensor:
        table = self.model.get_input_embeddings().weight
        token_probs = probs if self.kmer == 1 else self._kmer_probs(probs)
        residues = token_probs.to(table.dtype) @ table[self.residue_token_ids]
        batch = residues.shape[0]
        prefix = table[self.prefix_ids].expand(batch, -1, -1)
        suffix = table[self.suffix_ids].expand(batch, -1, -1)
        inputs = torch.cat([prefix, residues, suffix], dim=1) * self.input_scale
        mask = torch.ones(inputs.shape[:2], dtype=torch.long, device=inputs.device)
        hidden = self.model(inputs_embeds=inputs, attention_mask=mask).last_hidden_state
        return self._pool(hidden).to(inputs.device, torch.float32)

    @torch.no_grad()
    def embed_token_ids(self, sequences: list[str]) -> torch.Tensor:
        encoded = self.tokenizer([self._text(s) for s in sequences], return_tensors="pt", padding=True)
        lengths = {len(s) for s in sequences}
        if len(lengths) != 1:
            raise ValueError("embed_token_ids takes sequences of one length")
        ids = encoded["input_ids"].to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=encoded["attention_mask"].to(self.device)).last_hidden_state
        return self._pool(hidden).to(ids.device, torch.float32)

    def describe(self) -> dict:
        return {**super().describe(), "model_path": self.model_path, "kmer": self.kmer,
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
