"""The table of issue 21's new inputs, good and bad: exit status and the first words of what ``bib-ray
design`` says (the line about the input: an error, or the replicates / task line).

    .venv/bin/python scripts/bad_inputs.py          # prints a markdown table (about a minute, no Ray)
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

from bib_ray.cli import main

REPLICATES = "sequence,score\nACGTACGT,1\nCCCCACGT,2\nACGTACGT,3\nACGTACGT,8\nGGGGACGT,0\nTTTTACGT,4\n"
PROTEINGYM = ("mutant,mutated_sequence,DMS_score\nA1C,CKLMWQ,0.5\nK2R:L3A,ARAMWQ,1.0\nM4W,AKLWWQ,-0.2\n"
              "W5Y,AKLMYQ,0.3\n")
MUTANTS = "mutant,score\nA1C,0.5\nK2R:L3A,1.0\nM4W,-0.2\nW5Y,0.3\n"
WRONG_MUTANT = "mutant,score\nA1C,0.5\nA2R,1.0\nM4W,-0.2\n"
QUICK = ["--local", "--steps", "1", "--designs", "2", "--aux-epochs", "1", "--quiet"]


def said(argv: list[str]) -> tuple[int, str]:
    """(exit status, the first line that speaks about the input) of ``bib-ray design ARGV``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["design", *argv])
    lines = [line for line in (err.getvalue() + out.getvalue()).splitlines() if line.strip()]
    about = [line for line in lines if line.startswith(("bib-ray: error", "wild type ")) or "measured more than once" in line]
    return status, (about or lines or [""])[0]


def main_table() -> str:
    folder = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    files = {name: folder / name for name in ("replicates.csv", "proteingym.csv", "mutants.csv", "wrong.csv",
                                             "exclude.fasta")}
    files["replicates.csv"].write_text(REPLICATES)
    files["proteingym.csv"].write_text(PROTEINGYM)
    files["mutants.csv"].write_text(MUTANTS)
    files["wrong.csv"].write_text(WRONG_MUTANT)
    files["exclude.fasta"].write_text(">too short\nACGT\n")
    cases = [
        ("replicates, --duplicates mean (default)", [str(files["replicates.csv"])]),
        ("replicates, --duplicates median", [str(files["replicates.csv"]), "--duplicates", "median"]),
        ("replicates, --duplicates max", [str(files["replicates.csv"]), "--duplicates", "max"]),
        ("replicates, --duplicates error", [str(files["replicates.csv"]), "--duplicates", "error"]),
        ("replicates, --duplicates mode", [str(files["replicates.csv"]), "--duplicates", "mode"]),
        ("ProteinGym file (mutant, mutated_sequence, DMS_score)", [str(files["proteingym.csv"])]),
        ("mutants alone, no --wild-type", [str(files["mutants.csv"])]),
        ("mutants alone, --wild-type AKLMWQ", [str(files["mutants.csv"]), "--wild-type", "AKLMWQ"]),
        ("a mutation that disagrees with the wild type", [str(files["wrong.csv"]), "--wild-type", "AKLMWQ"]),
        ("--wild-type on a built-in task", ["--task", "ehrlich", "--wild-type", "AKLMWQ"]),
        ("--fixed 0-3", [str(files["replicates.csv"]), "--fixed", "0-3"]),
        ("--fixed 2-9 (length 8)", [str(files["replicates.csv"]), "--fixed", "2-9"]),
        ("--fixed 1-8 (nothing left)", [str(files["replicates.csv"]), "--fixed", "1-8"]),
        ("--mutable 3,x", [str(files["replicates.csv"]), "--mutable", "3,x"]),
        ("--fixed and --mutable", [str(files["replicates.csv"]), "--fixed", "1", "--mutable", "2"]),
        ("--exclude of the wrong length", [str(files["replicates.csv"]), "--exclude", str(files["exclude.fasta"])]),
    ]
    rows = ["| input | exit | what it says (first words) |", "|---|---|---|"]
    for number, (label, argv) in enumerate(cases):
        task = [] if "--task" in argv else ["--task"]
        status, line = said([*task, *argv, *QUICK, "--out", str(folder / f"run{number}")])
        shown = line.replace(str(folder) + "/", "").replace("|", "\\|")
        rows.append(f"| {label} | {status} | {shown[:150]}{'…' if len(shown) > 150 else ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(main_table())
    sys.exit(0)
