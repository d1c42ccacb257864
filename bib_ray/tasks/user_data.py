"""User data: a CSV/TSV or FASTA file of sequences with measured scores (no oracle).

CSV/TSV: a sequence column (sequence, seq or variant) and a score column (score, y,
fitness, label or value); FASTA: the score is the last number of each header
(">name score=1.5", ">name|1.5" or ">name 1.5"). Every problem is reported with the row
(CSV: 1-based data row and file line; FASTA: record number and name): mixed lengths,
letters outside the alphabet, missing or non-numeric scores, and duplicate sequences with
conflicting scores. Exact duplicates (same sequence, same score) are merged and counted.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.alphabets import DNA, PROTEIN, encode, resolve_alphabet
from bib_ray.errors import UserError
from bib_ray.tasks.base import Task

SEQUENCE_COLUMNS = ("sequence", "seq", "variant")
SCORE_COLUMNS = ("score", "y", "fitness", "label", "value")
FASTA_SUFFIXES = {".fasta", ".fa", ".fna", ".faa", ".fas"}
TABLE_SUFFIXES = {".csv", ".tsv", ".txt"}
_HEADER_SCORE = re.compile(r"(?:score=|\|)?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|NaN)\s*$")


def _pick_column(columns: list[str], wanted: tuple[str, ...], given: str | None, what: str, path: Path) -> str:
    if given is not None:
        if given not in columns:
            raise UserError(f"{path}: no column {given!r} (columns: {columns})")
        return given
    lowered = {c.lower(): c for c in columns}
    for name in wanted:
        if name in lowered:
            return lowered[name]
    raise UserError(f"{path}: no {what} column; expected one of {list(wanted)} (columns: {columns})")


def _read_table(path: Path, sequence_column: str | None, score_column: str | None) -> list[tuple[str, str, object]]:
    """(label for messages, sequence, raw score) per data row."""
    frame = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    seq_col = _pick_column(columns, SEQUENCE_COLUMNS, sequence_column, "sequence", path)
    score_col = _pick_column(columns, SCORE_COLUMNS, score_column, "score", path)
    return [(f"row {i + 1} (line {i + 2})", str(s), v)
            for i, (s, v) in enumerate(zip(frame[seq_col], frame[score_col]))]


def _read_frame(path: Path) -> pd.DataFrame:
    """All cells as text; ',' for .csv, tab for .tsv, sniffed otherwise (sniffing misreads one-column files)."""
    separator = {".csv": ",", ".tsv": "\t"}.get(path.suffix.lower())
    try:
        return pd.read_csv(path, sep=separator, engine="python", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, csv_error()) as error:
        raise UserError(f"{path}: cannot parse as CSV/TSV: {error}") from None


def csv_error() -> type[Exception]:
    import csv

    return csv.Error


def _fasta_records(path: Path) -> list[tuple[str, str]]:
    """(header, sequence) per FASTA record; multi-line sequences are joined."""
    records: list[tuple[str, str]] = []
    header, chunks = None, []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if line.startswith(">"):
            if header is not None:
                records.append((header, "".join(chunks)))
            header, chunks = line[1:].strip(), []
        elif line:
            if header is None:
                raise UserError(f"{path}: line {line_number}: sequence before the first '>' header")
            chunks.append(line)
    if header is not None:
        records.append((header, "".join(chunks)))
    return records


def _read_fasta(path: Path) -> list[tuple[str, str, object]]:
    rows: list[tuple[str, str, object]] = []
    for number, (header, sequence) in enumerate(_fasta_records(path), start=1):
        label = f"record {number} ({header.split()[0] if header.split() else 'unnamed'})"
        match = _HEADER_SCORE.search(header)
        if match is None:
            raise UserError(f"{path}: {label}: no score in header {header!r} (use '>name score=1.5')")
        rows.append((label, sequence, match.group(1)))
    return rows


def read_sequences(path: str | Path, sequence_column: str | None = None) -> list[str]:
    """The sequences of a CSV/TSV (sequence column; scores not needed) or FASTA file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sequence file {path} does not exist")
    if path.suffix.lower() in FASTA_SUFFIXES:
        sequences = [sequence for _, sequence in _fasta_records(path)]
    else:
        frame = _read_frame(path)
        column = _pick_column([str(c) for c in frame.columns], SEQUENCE_COLUMNS, sequence_column, "sequence", path)
        sequences = frame[column].tolist()
    if not sequences:
        raise UserError(f"{path} holds no sequences")
    return sequences


def _parse_score(label: str, raw: object, path: Path) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise UserError(f"{path}: {label}: score {raw!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise UserError(f"{path}: {label}: score is {raw!r}; every sequence needs a finite score")
    return value


def _detect_alphabet(sequences: list[str]) -> str:
    """DNA when every letter is A/C/G/T, else the 20 amino acids (other letters are reported per row)."""
    return DNA if set("".join(sequences)) <= set(DNA) else PROTEIN


def load_user_task(path: str | Path, alphabet: str | None = None, sequence_column: str | None = None,
                   score_column: str | None = None) -> Task:
    """Validate and load a user's data file as a Task with no oracle."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in FASTA_SUFFIXES:
        rows = _read_fasta(path)
    elif suffix in TABLE_SUFFIXES:
        rows = _read_table(path, sequence_column, score_column)
    else:
        raise UserError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv or .fasta/.fa")
    if not rows:
        raise UserError(f"{path}: no sequences found")
    sequences = [seq.strip().upper() for _, seq, _ in rows]
    scores = [_parse_score(label, raw, path) for label, _, raw in rows]
    first_length = len(sequences[0])
    for (label, _, _), seq in zip(rows, sequences):
        if not seq:
            raise UserError(f"{path}: {label}: empty sequence")
        if len(seq) != first_length:
            raise UserError(f"{path}: {label}: length {len(seq)} differs from the first row's {first_length}; "
                            "all sequences must have one length")
    letters = resolve_alphabet(alphabet) if alphabet else _detect_alphabet(sequences)
    allowed = set(letters)
    for (label, _, _), seq in zip(rows, sequences):
        bad = sorted(set(seq) - allowed)
        if bad:
            hint = "" if alphabet else " (detected; pass --alphabet to choose the letters)"
            raise UserError(f"{path}: {label}: letter(s) {bad} not in alphabet {letters!r}{hint}")
    first_seen: dict[str, int] = {}
    keep: list[int] = []
    for index, seq in enumerate(sequences):
        if seq not in first_seen:
            first_seen[seq] = index
            keep.append(index)
        elif scores[first_seen[seq]] != scores[index]:
            earlier = first_seen[seq]
            raise UserError(f"{path}: {rows[earlier][0]} and {rows[index][0]} have the same sequence {seq} "
                            f"with different scores {scores[earlier]} and {scores[index]}")
    if len(keep) < 2:
        raise UserError(f"{path}: need at least 2 distinct sequences, found {len(keep)}")
    return Task(name=f"user:{path.name}", alphabet=letters, x=encode([sequences[i] for i in keep], letters),
                y=np.array([scores[i] for i in keep]),
                description=f"user data from {path} (no ground-truth oracle)",
                details={"path": str(path.resolve()), "rows": len(rows),
                         "merged_exact_duplicates": len(rows) - len(keep)})
