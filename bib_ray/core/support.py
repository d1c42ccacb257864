"""Designs that stay where the offline data can vouch for them: support constraints and an exact decode.

The constraints are learned from the offline sequences x (N, L) over an alphabet of V letters:

- letters: A[l, v] = 1 iff some offline sequence has letter v at position l;
- pairs:   P[l, u, v] = 1 iff some offline sequence has u at position l and v at l + 1;
- edits:   at most K positions differ from a per-design base sequence b (its start, or a DMS wild type).

Decoding the final design logits Z (B, L, V) under them is the exact maximisation

    max_s  sum_l Z[l, s_l]   s.t.  A[l, s_l],  P[l, s_l, s_{l+1}],  #{l : s_l != b_l} <= K,

solved by a Viterbi programme over positions with state (letter, edits used): O(L V^2 (K + 1)) per
design, vectorised over the batch. Each design's own base letters and base pairs are always allowed,
so its base is feasible and the decode scores it at least as high as the base: when no sequence
with larger summed logits satisfies the constraints, the base comes back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch



DECODE_BLOCK = 128  # designs per run of the programme: larger blocks were slower per design (memory-bound)


class SupportLevel(str, Enum):
    """Which constraints the final decode enforces (the edit limit K is set separately)."""

    NONE = "none"  # argmax of the logits (subject to K when K is set)
    LETTERS = "letters"  # letters seen at each position
    PAIRS = "pairs"  # letters seen at each position and adjacent pairs seen at each pair of positions


@dataclass(frozen=True)
class SupportConstraints:
    """Allowed letters (L, V), allowed adjacent pairs (L-1, V, V) or None for any, and an edit limit.

    ``pairs[l, u, v]`` allows letter u at position l followed by v at position l + 1; ``max_edits``
    (K, or None for no limit) counts positions that differ from a per-design base sequence.
    """

    letters: np.ndarray
    pairs: np.ndarray | None = None
    max_edits: int | None = None

    def __post_init__(self) -> None:
        letters = np.asarray(self.letters, dtype=bool)
        if letters.ndim != 2:
            raise ValueError(f"letters must be (L, V), got shape {letters.shape}")
        object.__setattr__(self, "letters", letters)
        length, vocab = letters.shape
        if self.pairs is not None:
            pairs = np.asarray(self.pairs, dtype=bool)
            if pairs.shape != (max(length - 1, 0), vocab, vocab):
                raise ValueError(f"pairs must be (L-1, V, V) = {(length - 1, vocab, vocab)}, got {pairs.shape}")
            object.__setattr__(self, "pairs", pairs)
        if self.max_edits is not None and self.max_edits < 0:
            raise ValueError("max_edits must be >= 0 or None")

    @classmethod
    def from_sequences(cls, codes: np.ndarray, vocab_size: int, level: SupportLevel = SupportLevel.PAIRS,
                       max_edits: int | None = None) -> "SupportConstraints":
        """Constraints seen in ``codes`` (N, L): letters (and pairs) at ``level``; NONE allows everything."""
        codes = np.asarray(codes, dtype=np.int64)
        length = codes.shape[1]
        if level is SupportLevel.NONE:
            return cls(np.ones((length, vocab_size), dtype=bool), None, max_edits)
        letters = np.zeros((length, vocab_size), dtype=bool)
        letters[np.broadcast_to(np.arange(length), codes.shape), codes] = True
        pairs = None
        if level is SupportLevel.PAIRS:
            pairs = np.zeros((max(length - 1, 0), vocab_size, vocab_size), dtype=bool)
            positions = np.broadcast_to(np.arange(length - 1), (codes.shape[0], length - 1))
            pairs[positions, codes[:, :-1], codes[:, 1:]] = True
        return cls(letters, pairs, max_edits)

    @property
    def length(self) -> int:
        return int(self.letters.shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self.letters.shape[1])

    def satisfied(self, codes: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """(B,) bool: whether each row of ``codes`` (B, L) meets the constraints. A position or pair
        equal to the row's ``base`` (B, L) is always allowed; ``base`` is required when K is set."""
        codes = np.asarray(codes, dtype=np.int64)
        positions = np.arange(self.length)[None, :]
        letter_ok = self.letters[positions, codes]
        if base is not None:
            base = np.broadcast_to(np.asarray(base, dtype=np.int64), codes.shape)
            letter_ok |= codes == base
        ok = letter_ok.all(1)
        if self.pairs is not None and self.length > 1:
            pair_ok = self.pairs[positions[:, :-1], codes[:, :-1], codes[:, 1:]]
            if base is not None:
                pair_ok |= (codes[:, :-1] == base[:, :-1]) & (codes[:, 1:] == base[:, 1:])
            ok &= pair_ok.all(1)
        if self.max_edits is not None:
            if base is None:
                raise ValueError("an edit limit needs the base sequences the edits are counted from")
            ok &= (codes != base).sum(1) <= self.max_edits
        return ok

    def decode(self, logits: np.ndarray | torch.Tensor, base: np.ndarray | None = None,
               allowed: np.ndarray | None = None) -> np.ndarray:
        """The exact constrained maximiser of the summed logits, per design.

        Args:
            logits: (B, L, V) final design logits Z.
            base: (B, L) per-design base sequences; required when K is set. Their own letters
                and adjacent pairs are allowed in addition to the learned ones.
            allowed: (B, L, V) bool, letters each design may use at all (e.g. only its own letter at
                a position the user fixed); None allows every letter the constraints allow.

        Returns:
            (B, L) int64 codes s maximising sum_l Z[b, l, s_l] under the constraints; under an
            edit limit, among maximisers one with the fewest edits from the base.
        """
        z = torch.as_tensor(np.asarray(logits, dtype=np.float64) if not torch.is_tensor(logits) else logits,
                            dtype=torch.float64).cpu()
        batch, length, vocab = z.shape
        if (length, vocab) != tuple(self.letters.shape):
            raise ValueError(f"logits {(length, vocab)} do not match the constraints {tuple(self.letters.shape)}")
        if self.max_edits is not None and base is None:
            raise ValueError("an edit limit needs the base sequences the edits are counted from")
        base_np = None if base is None else np.broadcast_to(np.asarray(base, dtype=np.int64), (batch, length)).copy()
        letters = torch.as_tensor(self.letters)[None].expand(batch, length, vocab)
        if base_np is not None:
            letters = letters | torch.nn.functional.one_hot(torch.as_tensor(base_np), vocab).bool()
        if allowed is not None:
            letters = letters & torch.as_tensor(np.asarray(allowed, dtype=bool))
        emit = torch.where(letters, z, torch.tensor(float("-inf"), dtype=torch.float64))  # (B, L, V)
        # A design whose per-position best letters are unique and already meet the pairs and the edit limit is
        # the constrained maximiser itself (the only one): the programme below runs for the others.
        top = emit.topk(min(2, vocab), dim=-1)
        codes = top.indices[..., 0].numpy().copy()
        clear = torch.isfinite(top.values[..., 0]).all(1)
        if vocab > 1:
            clear &= (top.values[..., 0] > top.values[..., 1]).all(1)
        rest = np.flatnonzero(~(clear.numpy() & self.satisfied(codes, base_np)))
        for start in range(0, len(rest), DECODE_BLOCK):  # small blocks: faster per design
            block = rest[start:start + DECODE_BLOCK]
            codes[block] = self._viterbi(emit[block], None if base_np is None else torch.as_tensor(base_np[block]))
        return codes

    def _viterbi(self, emit: torch.Tensor, base_t: torch.Tensor | None) -> np.ndarray:
        """The exact programme over positions with state (letter, edits used) on emission scores ``emit``
        (B, L, V) (-inf for letters not allowed), ``base_t`` (B, L) the edits' base."""
        batch, length, vocab = emit.shape
        edits = 1 if self.max_edits is None else min(self.max_edits, length) + 1
        # cost[b, l, v] = 1 when letter v at l is an edit from the base (only tracked under an edit limit)
        cost = None if self.max_edits is None else (torch.arange(vocab)[None, None, :] != base_t[:, :, None]).long()

        def add_letter(previous_best: torch.Tensor, position: int) -> torch.Tensor:
            """(B, V, E) best score ending in v with e edits, from the best over predecessors (B, V, E)."""
            scored = previous_best + emit[:, position, :, None]
            if cost is None:
                return scored
            shifted = torch.full_like(scored, float("-inf"))
            shifted[..., 1:] = scored[..., :-1]
            return torch.where(cost[:, position, :, None].bool(), shifted, scored)

        start = torch.full((batch, vocab, edits), float("-inf"), dtype=torch.float64)
        start[..., 0] = 0.0
        score = add_letter(start, 0)
        # penalty[l, v, u] = 0 when the pair (u at l, v at l + 1) is allowed, else -inf
        penalty = None if self.pairs is None else torch.where(
            torch.as_tensor(self.pairs).transpose(1, 2), 0.0, float("-inf")).to(torch.float64)
        rows = torch.arange(batch)
        back = []
        for position in range(1, length):
            previous = score.transpose(1, 2)  # (B, E, U)
            if penalty is None:
                best, argbest = previous.max(-1)  # every pair allowed: the same predecessor for every v
                best, argbest = best[:, None, :].expand(-1, vocab, -1), argbest[:, None, :].expand(-1, vocab, -1)
            else:
                candidates = previous[:, None, :, :] + penalty[position - 1][None, :, None, :]  # (B, V, E, U)
                if base_t is not None:  # each design's own base pair is allowed
                    u, v = base_t[:, position - 1], base_t[:, position]
                    candidates[rows, v, :, u] = previous[rows, :, u]
                best, argbest = candidates.max(-1)  # over the previous letter u
            back.append(argbest)
            score = add_letter(best, position)
        flat = score.permute(0, 2, 1).reshape(batch, -1)  # edits-major: the first maximum has the fewest edits
        top, index = flat.max(1)
        if not bool(torch.isfinite(top).all()):
            bad = int(torch.nonzero(~torch.isfinite(top))[0])
            raise ValueError(f"no sequence satisfies the support constraints for design {bad}")
        letter, used = index % vocab, index // vocab
        codes = torch.empty(batch, length, dtype=torch.long)
        for position in range(length - 1, -1, -1):
            codes[:, position] = letter
            if position == 0:
                break
            if cost is not None:
                used = used - cost[rows, position, letter]
            letter = back[position - 1][rows, letter, used]
        return codes.numpy()


DEFAULT_EDIT_DIVISOR = 3  # K = ceil(L / 3) edits from the start, unless a mutation radius is given


def default_max_edits(length: int, mutation_radius: int | None = None) -> int:
    """K when none is given: the mutation radius of a scan around a wild type when there is one, else
    ceil(L / DEFAULT_EDIT_DIVISOR) (measured against L/4 and L/2: docs/method.md)."""
    return int(mutation_radius) if mutation_radius is not None else math.ceil(length / DEFAULT_EDIT_DIVISOR)
