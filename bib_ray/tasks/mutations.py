"""Mutation notation: ``A23G:K45R`` -- the wild-type letter, the 1-based position, the new letter, and
':' between substitutions (',' is read too); ``WT`` for none. ProteinGym's ``mutant`` column and lab
orders write variants this way.

Positions count from 1 over the designed residues, or over the template for a task that designs a few
sites of a longer sequence (GB1: V39, D40, G41, V54).
"""

from __future__ import annotations

import re

import numpy as np

from bib_ray.errors import UserError

WILD_TYPE_LABEL = "WT"
_NO_MUTATION = {"", "wt", "_wt", "wildtype", "wild_type", "wild-type"}
_SUBSTITUTION = re.compile(r"^([A-Za-z])(\d+)([A-Za-z])$")


def mutation_strings(codes: np.ndarray, base: np.ndarray, alphabet: str,
                     numbers: np.ndarray | None = None) -> list[str]:
    """One string per row of ``codes`` (B, L): its substitutions from ``base`` ((L,) or (B, L)), numbered
    by ``numbers`` (L,) (default 1..L); ``WT`` for a row equal to its base."""
    codes = np.asarray(codes)
    base = np.broadcast_to(np.asarray(base), codes.shape)
    numbers = np.arange(1, codes.shape[1] + 1) if numbers is None else np.asarray(numbers)
    out = []
    for row, reference in zip(codes, base):
        changed = np.flatnonzero(row != reference)
        out.append(":".join(f"{alphabet[reference[i]]}{numbers[i]}{alphabet[row[i]]}" for i in changed)
                   or WILD_TYPE_LABEL)
    return out


def parse_mutant(text: str, wild_type: str, alphabet: str) -> list[tuple[int, str]]:
    """'A23G:K45R' -> [(22, 'G'), (44, 'R')] (0-based positions), checked against ``wild_type``: a
    ValueError saying what is wrong with a substitution that cannot be read, whose position lies outside
    the wild type, whose first letter is not the wild type's there, or whose new letter is not in
    ``alphabet``."""
    text = str(text).strip()
    if text.lower() in _NO_MUTATION:
        return []
    out: list[tuple[int, str]] = []
    for token in filter(None, (part.strip() for part in re.split(r"[:,]", text))):
        match = _SUBSTITUTION.match(token)
        if match is None:
            raise ValueError(f"mutation {token!r} is not like A23G (wild-type letter, 1-based position, new letter)")
        original, number, new = match.group(1).upper(), int(match.group(2)), match.group(3).upper()
        if not 1 <= number <= len(wild_type):
            raise ValueError(f"mutation {token}: position {number} is outside the wild type (positions 1 to "
                             f"{len(wild_type)})")
        if wild_type[number - 1] != original:
            raise ValueError(f"mutation {token}: position {number} of the wild type is {wild_type[number - 1]}, "
                             f"not {original}")
        if new not in alphabet:
            raise ValueError(f"mutation {token}: {new!r} is not in the alphabet {alphabet!r}")
        out.append((number - 1, new))
    return out


def apply_mutant(text: str, wild_type: str, alphabet: str) -> str:
    """The sequence that mutant ``text`` makes of ``wild_type`` (``parse_mutant``'s errors)."""
    letters = list(wild_type)
    for position, new in parse_mutant(text, wild_type, alphabet):
        letters[position] = new
    return "".join(letters)


def wild_type_of(mutant: str, sequence: str, alphabet: str) -> str:
    """The wild type implied by a mutant and its mutated sequence (each substitution's first letter put
    back); ValueError when the sequence does not carry the mutant's new letters."""
    letters = list(sequence)
    for token in filter(None, (part.strip() for part in re.split(r"[:,]", str(mutant).strip()))):
        if token.lower() in _NO_MUTATION:
            continue
        match = _SUBSTITUTION.match(token)
        if match is None:
            raise ValueError(f"mutation {token!r} is not like A23G (wild-type letter, 1-based position, new letter)")
        original, number, new = match.group(1).upper(), int(match.group(2)), match.group(3).upper()
        if not 1 <= number <= len(sequence):
            raise ValueError(f"mutation {token}: position {number} is outside the sequence (length {len(sequence)})")
        if sequence[number - 1] != new:
            raise ValueError(f"mutation {token}: the mutated sequence has {sequence[number - 1]} at position {number}, "
                             f"not {new}")
        if original not in alphabet:
            raise ValueError(f"mutation {token}: {original!r} is not in the alphabet {alphabet!r}")
        letters[number - 1] = original
    return "".join(letters)


def read_wild_type(text: str) -> str:
    """``--wild-type``: a sequence, or a FASTA file whose first record is the wild type."""
    from pathlib import Path

    candidate = Path(text).expanduser()
    if not candidate.is_file():
        sequence = text.strip().upper()
        if not sequence.isalpha():
            raise UserError(f"--wild-type {text!r} is neither a file nor a sequence of letters")
        return sequence
    records, current = [], None
    for line in candidate.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith(">"):
            current = []
            records.append(current)
        elif line and current is not None:
            current.append(line)
    if not records or not records[0]:
        raise UserError(f"--wild-type {candidate}: no FASTA record with a sequence (>name, then the sequence)")
    return "".join(records[0]).upper()
