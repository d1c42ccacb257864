"""Residue alphabets and conversions between sequences (str), integer codes and one-hot arrays."""

from __future__ import annotations

import numpy as np

from bib_ray.errors import UserError

DNA = "ACGT"
RNA = "ACGU"
PROTEIN = "ACDEFGHIKLMNPQRSTVWY"

NAMED_ALPHABETS = {"dna": DNA, "rna": RNA, "protein": PROTEIN}
NUCLEOTIDES = frozenset(DNA) | frozenset(RNA)


def is_nucleotide(letters: str) -> bool:
    """Whether every letter of ``letters`` is a nucleotide (A, C, G, T, U)."""
    return set(letters) <= NUCLEOTIDES


def resolve_alphabet(name_or_letters: str) -> str:
    """Map 'dna' / 'rna' / 'protein' to their letters; otherwise take the string as the letters themselves."""
    letters = NAMED_ALPHABETS.get(name_or_letters.lower(), name_or_letters)
    if len(set(letters)) != len(letters) or len(letters) < 2:
        raise UserError(f"alphabet {name_or_letters!r} must be 'dna', 'rna', 'protein' or >= 2 distinct letters")
    return letters


def alphabet_name(letters: str) -> str:
    """'dna', 'rna' or 'protein' for those alphabets' letters (in their order), else the letters themselves."""
    return next((name for name, named in NAMED_ALPHABETS.items() if named == letters), letters)


def encode(sequences: list[str], alphabet: str) -> np.ndarray:
    """Sequences of equal length -> int64 array (N, L) of indices into `alphabet`."""
    lookup = {letter: i for i, letter in enumerate(alphabet)}
    if not sequences:
        return np.zeros((0, 0), dtype=np.int64)
    length = len(sequences[0])
    out = np.empty((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        if len(seq) != length:
            raise UserError(f"sequence {row} has length {len(seq)}, expected {length}")
        try:
            out[row] = [lookup[c] for c in seq]
        except KeyError as exc:
            raise UserError(f"sequence {row} has letter {exc.args[0]!r} outside alphabet {alphabet!r}") from None
    return out


def decode(codes: np.ndarray, alphabet: str) -> list[str]:
    """int array (N, L) -> list of N strings over `alphabet`."""
    letters = np.array(list(alphabet))
    return ["".join(row) for row in letters[np.asarray(codes)]]
