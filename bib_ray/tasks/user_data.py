"""User data: a CSV/TSV or FASTA file of sequences with measured scores (no oracle).

CSV/TSV: a sequence column (sequence, seq, mutated_sequence or variant) and a score column
(score, y, fitness, label, value or DMS_score); FASTA: the score is the last number of each
header (">name score=1.5", ">name|1.5" or ">name 1.5"). A ``mutant`` column (``A23G:K45R``,
ProteinGym's) comes with a wild type: the sequences' own (each mutant put back) or one given
(``UserDataOptions.wild_type``), which a file of mutants alone needs; the task then designs
around that wild type as a deep mutational scan does. Every problem is reported with the row
(CSV: 1-based data row and file line; FASTA: record number and name): mixed lengths, letters
outside the alphabet, missing or non-numeric scores, a mutant that disagrees with the wild type.
A sequence measured more than once (replicates) gets the mean, median or max of its scores, or
is refused (``duplicates``); how many were merged is in ``Task.details``.

Files must be UTF-8 text (a byte-order mark is fine); empty, binary (compressed, images, NUL
bytes) and otherwise-encoded files are refused with what to do about them. Without
``alphabet`` the letters are detected (``detect_alphabet``): DNA, RNA, or protein -- but data
that is nearly all nucleotides with a few odd rows is refused rather than read as protein.
``Task.details`` records the choice ("alphabet", "alphabet_source"); ``describe_alphabet``
words it in one line.
"""

from __future__ import annotations

import csv
import io
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.alphabets import (DNA, NAMED_ALPHABETS, NUCLEOTIDES, PROTEIN, RNA, alphabet_name, encode,
                              is_nucleotide, resolve_alphabet)
from bib_ray.errors import UserError
from bib_ray.tasks.base import Task
from bib_ray.tasks.mutations import apply_mutant, wild_type_of


@dataclass(frozen=True)
class UserDataOptions:
    """How a user's data file is read: its ``alphabet`` (None: detected), how ``duplicates`` (replicate
    measurements of one sequence) are merged -- mean, median, max, or error to refuse them -- and the
    ``wild_type`` its sequences are variants of (a sequence; None: from a ``mutant`` column, if any)."""

    alphabet: str | None = None
    duplicates: str = "mean"
    wild_type: str | None = None

    def __post_init__(self) -> None:
        if self.duplicates not in DUPLICATE_MODES:
            raise UserError(f"duplicates {self.duplicates!r}: choose one of {', '.join(DUPLICATE_MODES)}")

SEQUENCE_COLUMNS = ("sequence", "seq", "mutated_sequence", "variant")
SCORE_COLUMNS = ("score", "y", "fitness", "label", "value", "dms_score")
MUTANT_COLUMN = "mutant"
DUPLICATE_MODES = ("mean", "median", "max", "error")
FASTA_SUFFIXES = {".fasta", ".fa", ".fna", ".faa", ".fas"}
TABLE_SUFFIXES = {".csv", ".tsv", ".txt"}
_HEADER_SCORE = re.compile(r"(?:score=|\|)?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|NaN)\s*$")
TABLE_CONTENT = "a header row naming the columns (e.g. 'sequence,score') and one row per sequence"
FASTA_CONTENT = "records of a '>name score=1.5' header line followed by the sequence"
SAVE_AS_UTF8 = "save it as UTF-8 text"
# (leading bytes, what the file is, what to do): files that are not text, recognised by their first bytes
_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip)"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?)", "unzip it, or export the sheet as CSV (UTF-8)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-style Excel/Office file", "export the sheet as CSV (UTF-8)"),
    (b"BZh", "bzip2-compressed", "decompress it first (bunzip2)"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (unxz)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it first (unzstd)"),
    (b"\x89PNG", "a PNG image", "give the data file instead"),
    (b"\xff\xd8\xff", "a JPEG image", "give the data file instead"),
    (b"%PDF", "a PDF document", "give the data file instead"),
    (b"\xff\xfe\x00\x00", "UTF-32 text", SAVE_AS_UTF8),
    (b"\x00\x00\xfe\xff", "UTF-32 text", SAVE_AS_UTF8),
    (b"\xff\xfe", "UTF-16 text", SAVE_AS_UTF8),
    (b"\xfe\xff", "UTF-16 text", SAVE_AS_UTF8),
)


def _read_text(path: Path, table: bool) -> str:
    """The file as text: UTF-8 (an initial byte-order mark is dropped), not empty, not binary.

    ``table``: a CSV/TSV, else FASTA (for what the messages say the file should hold)."""
    content = TABLE_CONTENT if table else FASTA_CONTENT
    save = SAVE_AS_UTF8 + (" (in Excel: 'CSV UTF-8')" if table else "")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror or error}") from None
    if not data:
        raise UserError(f"{path}: the file is empty (0 bytes); it needs {content}")
    for signature, kind, action in _SIGNATURES:
        if data.startswith(signature) and (signature != b"BZh" or data[3:4].isdigit()):
            raise UserError(f"{path}: the file is {kind}, not UTF-8 text; "
                            f"{save if action == SAVE_AS_UTF8 else action}")
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise UserError(f"{path}: line {line} has a NUL byte: the file is binary (or UTF-16/UTF-32 text), "
                        f"not UTF-8 text; {save}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UserError(f"{path}: line {line}: byte 0x{data[error.start]:02x} is not UTF-8: the file is in another "
                        f"encoding (Latin-1 or Windows-1252?) or binary; {save}") from None
    if not text.strip():
        raise UserError(f"{path}: the file holds only whitespace; it needs {content}")
    return text


def _looks_like_data(cell: str) -> bool:
    """Whether a header cell is more likely a value than a column name: a number or a run of nucleotides."""
    cell = cell.strip()
    try:
        float(cell)
        return True
    except ValueError:
        return re.fullmatch(r"[ACGTUN]{4,}", cell) is not None


def _pick_column(columns: list[str], wanted: tuple[str, ...], given: str | None, what: str, path: Path) -> str:
    if given is not None:
        if given not in columns:
            raise UserError(f"{path}: no column {given!r} (columns: {columns})")
        return given
    lowered = {c.lower(): c for c in columns}
    for name in wanted:
        if name in lowered:
            return lowered[name]
    if any(_looks_like_data(column) for column in columns):
        raise UserError(f"{path}: no {what} column: the first line {columns} looks like data, not a header; "
                        f"the file needs a header row naming the columns, with the sequence column one of "
                        f"{list(SEQUENCE_COLUMNS)} and the score column one of {list(SCORE_COLUMNS)} "
                        f"(e.g. 'sequence,score')")
    raise UserError(f"{path}: no {what} column; expected one of {list(wanted)} (columns: {columns})")


def _read_table(path: Path, sequence_column: str | None, score_column: str | None,
                wild_type: str | None) -> tuple[list[tuple[str, str, object]], str | None]:
    """(label for messages, sequence, raw score) per data row, and the wild type: ``wild_type`` as given,
    or the one a ``mutant`` column and its sequences imply, or None."""
    frame = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    lowered = {c.lower(): c for c in columns}
    mutant_col = lowered.get(MUTANT_COLUMN)
    has_sequences = sequence_column is not None or any(name in lowered for name in SEQUENCE_COLUMNS)
    seq_col = _pick_column(columns, SEQUENCE_COLUMNS, sequence_column, "sequence", path) \
        if mutant_col is None or has_sequences else None
    score_col = _pick_column(columns, SCORE_COLUMNS, score_column, "score", path)
    if seq_col is None:
        if wild_type is None:
            raise UserError(f"{path}: the file has a {MUTANT_COLUMN!r} column but no sequence column: give the "
                            "wild type its mutants are written against (--wild-type SEQUENCE or a FASTA file)")
        _require_data_rows(frame, path)
        rows = []
        for i, (mutant, value) in enumerate(zip(frame[mutant_col], frame[score_col])):
            label = f"row {i + 1} (line {i + 2})"
            try:
                rows.append((label, apply_mutant(mutant, wild_type, string.ascii_uppercase), value))
            except ValueError as error:
                raise UserError(f"{path}: {label}: {error}") from None
        return rows, wild_type
    _require_data_rows(frame, path)
    rows = [(f"row {i + 1} (line {i + 2})", str(s), v) for i, (s, v) in enumerate(zip(frame[seq_col], frame[score_col]))]
    if mutant_col is not None:
        wild_type = _wild_type_of_mutants(path, rows, frame[mutant_col].tolist(), wild_type)
    return rows, wild_type


def _wild_type_of_mutants(path: Path, rows: list[tuple[str, str, object]], mutants: list[str],
                          given: str | None) -> str:
    """The one wild type that every row's mutant and sequence imply (or ``given``, checked against them)."""
    wild_type, source = given, "the wild type given (--wild-type)"
    for (label, sequence, _), mutant in zip(rows, mutants):
        try:
            implied = wild_type_of(mutant, sequence.strip().upper(), string.ascii_uppercase)
        except ValueError as error:
            raise UserError(f"{path}: {label}: {error}") from None
        if wild_type is None:
            wild_type, source = implied, f"the wild type of {label}"
            continue
        if len(implied) != len(wild_type):
            raise UserError(f"{path}: {label}: length {len(implied)} differs from {source}'s {len(wild_type)}")
        differ = [i for i, (a, b) in enumerate(zip(implied, wild_type)) if a != b]
        if differ:
            i = differ[0]
            raise UserError(f"{path}: {label}: mutant {str(mutant).strip() or 'WT'!r} does not account for its "
                            f"sequence: position {i + 1} is {sequence.strip().upper()[i]}, {source} has "
                            f"{wild_type[i]} there")
    return wild_type


def _require_data_rows(frame: pd.DataFrame, path: Path) -> None:
    if frame.empty:
        raise UserError(f"{path}: no sequences found: the header row ({','.join(map(str, frame.columns))}) "
                        "has no data rows under it; add one row per sequence")


def _read_frame(path: Path) -> pd.DataFrame:
    """All cells as text; ',' for .csv, tab for .tsv, sniffed otherwise (sniffing misreads one-column files)."""
    separator = {".csv": ",", ".tsv": "\t"}.get(path.suffix.lower())
    text = _read_text(path, table=True)
    try:
        return pd.read_csv(io.StringIO(text), sep=separator, engine="python", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as error:
        raise UserError(f"{path}: cannot parse as CSV/TSV: {error}") from None


def _fasta_records(path: Path) -> list[tuple[str, str]]:
    """(header, sequence) per FASTA record; multi-line sequences are joined."""
    records: list[tuple[str, str]] = []
    header, chunks = None, []
    for line_number, line in enumerate(_read_text(path, table=False).splitlines(), start=1):
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
        labelled = [(f"record {number} ({header.split()[0] if header.split() else 'unnamed'})", sequence)
                    for number, (header, sequence) in enumerate(_fasta_records(path), start=1)]
    else:
        frame = _read_frame(path)
        column = _pick_column([str(c) for c in frame.columns], SEQUENCE_COLUMNS, sequence_column, "sequence", path)
        _require_data_rows(frame, path)
        labelled = [(f"row {i + 1} (line {i + 2})", sequence) for i, sequence in enumerate(frame[column].tolist())]
    if not labelled:
        raise UserError(f"{path} holds no sequences")
    for label, sequence in labelled:
        if not sequence.strip():
            raise UserError(f"{path}: {label}: empty sequence")
    return [sequence for _, sequence in labelled]


def _parse_score(label: str, raw: object, path: Path) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise UserError(f"{path}: {label}: score {raw!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise UserError(f"{path}: {label}: score is {raw!r}; every sequence needs a finite score")
    return value


NEAR_NUCLEOTIDE_LETTERS = 0.95  # share of all letters in ACGTU from which odd rows are refused ...
NEAR_NUCLEOTIDE_ROWS = 0.90  # ... or share of rows that are all ACGTU
_ROWS_NAMED = 5  # rows a refusal names


def detect_alphabet(sequences: list[str], labels: list[str], path: Path) -> str:
    """The letters of upper-case ``sequences``: DNA when every letter is A/C/G/T, RNA when every letter is
    A/C/G/U, else the 20 amino acids, whose stray letters ``load_user_task`` reports per row.

    Nearly-nucleotide data -- at least ``NEAR_NUCLEOTIDE_LETTERS`` of all letters, or at least
    ``NEAR_NUCLEOTIDE_ROWS`` of the rows wholly, in A/C/G/T/U -- with other letters somewhere is a
    UserError naming those rows (``labels``): a typo or an N would otherwise make a DNA file a
    20-letter protein task. Real protein is ~22% A/C/G/T and almost never has such rows.
    """
    letters = set("".join(sequences))
    if letters <= set(DNA):
        return DNA
    if letters <= set(RNA):
        return RNA
    nucleotide_letters = sum(sum(seq.count(n) for n in NUCLEOTIDES) for seq in sequences)
    total_letters = sum(len(seq) for seq in sequences)
    nucleotide_rows = sum(is_nucleotide(seq) for seq in sequences)
    if nucleotide_letters < NEAR_NUCLEOTIDE_LETTERS * total_letters \
            and nucleotide_rows < NEAR_NUCLEOTIDE_ROWS * len(sequences):
        return PROTEIN
    counts = {n: sum(seq.count(n) for seq in sequences) for n in "TU"}
    target, name = (RNA, "RNA") if counts["U"] > counts["T"] else (DNA, "DNA")
    odd = [(label, sorted(set(seq) - set(target))) for label, seq in zip(labels, sequences)
           if not set(seq) <= set(target)]
    named = "; ".join(f"{label} has {bad}" for label, bad in odd[:_ROWS_NAMED])
    more = f" and {len(odd) - _ROWS_NAMED} more" if len(odd) > _ROWS_NAMED else ""
    extra = "".join(sorted(letters - set(target)))
    choices = f"--alphabet {target}{extra} ({name} plus {', '.join(extra)})"
    if letters <= set(PROTEIN):
        choices = f"--alphabet protein if the file really is protein, or {choices}"
    verb = "has" if len(odd) == 1 else "have"
    raise UserError(f"{path}: the data looks like {name} ({nucleotide_letters / total_letters:.1%} of the letters "
                    f"are nucleotides) but {len(odd)} of {len(sequences)} rows {verb} other letters: {named}{more}; "
                    f"fix those rows, or choose the alphabet: {choices}")


def describe_alphabet(task: Task | Mapping) -> str:
    """One line on a task's alphabet and how it was chosen, e.g.
    "alphabet dna (ACGT), detected from the data"; ``task`` is a Task or its ``details``."""
    details = task.details if isinstance(task, Task) else task
    letters = task.alphabet if isinstance(task, Task) else None
    name = details.get("alphabet") or (alphabet_name(letters) if letters else "unknown")
    letters = letters or NAMED_ALPHABETS.get(name, name)
    shown = f"{name} ({letters})" if name != letters else letters
    source = {"detected": "detected from the data", "given": "given (--alphabet)"}.get(
        details.get("alphabet_source"), "set by the task")
    return f"alphabet {shown}, {source}"


def load_user_task(path: str | Path, options: UserDataOptions = UserDataOptions(),
                   sequence_column: str | None = None, score_column: str | None = None) -> Task:
    """Validate and load a user's data file as a Task with no oracle (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"data file {str(path)!r} does not exist")
    given_wild_type = None if options.wild_type is None else options.wild_type.strip().upper()
    suffix = path.suffix.lower()
    if suffix in FASTA_SUFFIXES:
        rows, wild_type = _read_fasta(path), given_wild_type
    elif suffix in TABLE_SUFFIXES:
        rows, wild_type = _read_table(path, sequence_column, score_column, given_wild_type)
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
    labels = [label for label, _, _ in rows]
    letters = resolve_alphabet(options.alphabet) if options.alphabet else detect_alphabet(sequences, labels, path)
    allowed = set(letters)
    for (label, _, _), seq in zip(rows, sequences):
        bad = sorted(set(seq) - allowed)
        if bad:
            hint = "" if options.alphabet else " (detected; pass --alphabet to choose the letters)"
            raise UserError(f"{path}: {label}: letter(s) {bad} not in alphabet {letters!r}{hint}")
    unique, y, replicated = _merge_replicates(path, rows, sequences, scores, options.duplicates)
    if len(unique) < 2:
        raise UserError(f"{path}: need at least 2 distinct sequences, found {len(unique)}")
    x = encode(unique, letters)
    details = {"path": str(path.resolve()), "rows": len(rows), "merged_rows": len(rows) - len(unique),
               "replicated_sequences": replicated, "duplicates": options.duplicates,
               "alphabet": alphabet_name(letters), "alphabet_source": "given" if options.alphabet else "detected"}
    reference = None
    if wild_type is not None:
        reference = _checked_wild_type(path, wild_type, letters, first_length)
        counts = (x != reference[None, :]).sum(1)
        details.update(wild_type="".join(letters[i] for i in reference), mutation_radius=int(max(counts.max(), 1)),
                       wild_type_source="--wild-type" if given_wild_type is not None else "the mutant column")
    return Task(name=f"user:{path.name}", alphabet=letters, x=x, y=y, reference=reference,
                description=f"user data from {path} (no ground-truth oracle)", details=details)


def _merge_replicates(path: Path, rows: list[tuple[str, str, object]], sequences: list[str], scores: list[float],
                      mode: str) -> tuple[list[str], np.ndarray, int]:
    """Distinct sequences (in first-seen order), one score each, and how many were measured more than once.
    ``mode`` error refuses different scores of one sequence (equal ones merge); else their mean, median
    or max."""
    groups: dict[str, list[int]] = {}
    for index, seq in enumerate(sequences):
        groups.setdefault(seq, []).append(index)
    merged = []
    for seq, members in groups.items():
        values = [scores[i] for i in members]
        if mode == "error" and len(set(values)) > 1:
            first, other = members[0], next(i for i in members if scores[i] != scores[members[0]])
            raise UserError(f"{path}: {rows[first][0]} and {rows[other][0]} have the same sequence {seq} with "
                            f"different scores {scores[first]} and {scores[other]}; to merge replicate measurements "
                            "pass --duplicates mean, median or max")
        merged.append({"mean": np.mean, "median": np.median, "max": np.max, "error": np.mean}[mode](values))
    return list(groups), np.array(merged, dtype=np.float64), sum(len(m) > 1 for m in groups.values())


def _checked_wild_type(path: Path, wild_type: str, letters: str, length: int) -> np.ndarray:
    """The wild type's codes; UserError when its length or letters do not fit the data."""
    if len(wild_type) != length:
        raise UserError(f"{path}: the wild type has length {len(wild_type)}, the sequences {length}")
    bad = sorted(set(wild_type) - set(letters))
    if bad:
        raise UserError(f"{path}: the wild type has letter(s) {bad} outside the alphabet {letters!r}")
    return encode([wild_type], letters)[0]


def describe_replicates(task: Task) -> str | None:
    """One line on the replicate measurements merged when the file was read (None when there were none)."""
    count = task.details.get("replicated_sequences", 0)
    if not count:
        return None
    rows = task.details["merged_rows"] + count
    mode = task.details["duplicates"]
    how = "equal scores merged" if mode == "error" else f"merged by the {mode} of their scores"
    return (f"{count} sequence{'s were' if count > 1 else ' was'} measured more than once ({rows} rows): {how} "
            f"(--duplicates mean|median|max|error)")


def read_exclusions(path: str | Path, task: Task) -> np.ndarray:
    """(E, L) codes of the sequences in a CSV/TSV (a sequence column, or a ``mutant`` column for a task with
    a wild type) or FASTA file: sequences already ordered or measured elsewhere, never to be designed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--exclude {path}: no such file")
    if path.suffix.lower() not in FASTA_SUFFIXES:
        frame = _read_frame(path)
        lowered = {str(c).lower(): str(c) for c in frame.columns}
        if MUTANT_COLUMN in lowered and not any(name in lowered for name in SEQUENCE_COLUMNS) \
                and task.wild_type is not None:
            wild_type = "".join(task.alphabet[i] for i in task.wild_type)
            labelled = []
            for i, mutant in enumerate(frame[lowered[MUTANT_COLUMN]]):
                try:
                    labelled.append((f"row {i + 1} (line {i + 2})", apply_mutant(mutant, wild_type, task.alphabet)))
                except ValueError as error:
                    raise UserError(f"--exclude {path}: row {i + 1} (line {i + 2}): {error}") from None
            return _encoded_exclusions(path, labelled, task)
    sequences = read_sequences(path)
    return _encoded_exclusions(path, [(f"entry {i + 1}", s) for i, s in enumerate(sequences)], task)


def _encoded_exclusions(path: Path, labelled: list[tuple[str, str]], task: Task) -> np.ndarray:
    for label, sequence in labelled:
        sequence = sequence.strip().upper()
        if len(sequence) != task.length:
            raise UserError(f"--exclude {path}: {label}: length {len(sequence)}, the task designs length {task.length}")
        bad = sorted(set(sequence) - set(task.alphabet))
        if bad:
            raise UserError(f"--exclude {path}: {label}: letter(s) {bad} not in the task's alphabet {task.alphabet!r}")
    return encode([sequence.strip().upper() for _, sequence in labelled], task.alphabet)
