"""Task registry: one ``load_task(spec)`` for benchmarks, design-bench tasks and user files.

Specs:
    tfbind8, tfbind8-r, tfbind10, tfbind10-r, gb1     need a data directory (--data-dir / $BIB_RAY_DATA)
    avgfp, e4b, pab1                                  protein DMS scans (data directory), approximate oracles
    ehrlich, ehrlich:states=20,length=32,...          closed form, no data needed
    design-bench:TFBind8-Exact-v0                     through the design-bench package (--data-dir: its data folder)
    user:PATH  (or a bare PATH ending .csv/.tsv/.fasta/.fa)   your own data, no oracle
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from bib_ray.errors import UserError
from bib_ray.specs import parse_int_options
from bib_ray.tasks.base import DesignStatus, OracleKind, OracleResult, Task
from bib_ray.tasks.data_dir import resolve_data_dir
from bib_ray.tasks.user_data import FASTA_SUFFIXES, TABLE_SUFFIXES, UserDataOptions


@dataclass(frozen=True)
class TaskInfo:
    name: str
    description: str
    needs_data: bool


TASKS = [
    TaskInfo("tfbind8", "DNA 8-mers, SIX6 binding, exact oracle; offline = y <= median (design-bench)", True),
    TaskInfo("tfbind8-r", "TFBind8 with BIB's split: offline = the 5,000 lowest rows", True),
    TaskInfo("tfbind10", "DNA 10-mers, PHO4 binding, exact oracle; offline = y <= median", True),
    TaskInfo("tfbind10-r", "TFBind10 with BIB's split: offline = the 5,000 lowest rows", True),
    TaskInfo("gb1", "GB1 protein, 4 sites in the 56-aa domain, near-exact oracle (unmeasured = unknown)", True),
    TaskInfo("avgfp", "avGFP brightness DMS, 237 aa; offline = lower half; approximate oracle within 9 "
             "substitutions of wild type", True),
    TaskInfo("e4b", "Ube4b U-box DMS, 102 aa; offline = lower half; approximate oracle within 5 substitutions", True),
    TaskInfo("pab1", "Pab1 RRM DMS, 75 aa; offline = lower half; approximate oracle within 2 substitutions", True),
    TaskInfo("ehrlich", "Ehrlich closed-form function (pytorch-holo); options ehrlich:states=,length=,"
             "motifs=,motif_length=,quantization=,seed=,offline=", False),
    TaskInfo("design-bench:<name>", "a discrete design-bench task through the design-bench package", False),
    TaskInfo("user:<path>", "your CSV/TSV/FASTA of sequences and scores (no oracle)", False),
]


def load_task(spec: str, data_dir: str | Path | None = None, user: UserDataOptions | None = None) -> Task:
    """Build the task named by ``spec``; ``user`` (alphabet, replicates, wild type) applies to user files only."""
    from bib_ray.tasks.dms import SCANS, load_dms
    from bib_ray.tasks.ehrlich import load_ehrlich
    from bib_ray.tasks.gb1 import load_gb1
    from bib_ray.tasks.tfbind import load_tfbind8, load_tfbind10
    from bib_ray.tasks.user_data import load_user_task

    name, _, argument = spec.partition(":")
    if name == "user" and argument:
        return load_user_task(argument, user or UserDataOptions())
    if Path(spec).suffix.lower() in FASTA_SUFFIXES | TABLE_SUFFIXES and not argument:
        return load_user_task(spec, user or UserDataOptions())
    if user is not None and user.wild_type is not None:
        raise UserError(f"--wild-type is for user data files; task {spec!r} has its own reference, if any")
    if name == "design-bench" and argument:
        from bib_ray.tasks.design_bench_adapter import load_design_bench_task

        return load_design_bench_task(argument, data_dir=data_dir)  # a design-bench data folder, if given
    if name == "ehrlich":
        return load_ehrlich(**parse_int_options(argument, "ehrlich"))
    loaders = {
        "tfbind8": lambda d: load_tfbind8(d, "standard"),
        "tfbind8-r": lambda d: load_tfbind8(d, "r"),
        "tfbind10": lambda d: load_tfbind10(d, "standard"),
        "tfbind10-r": lambda d: load_tfbind10(d, "r"),
        "gb1": load_gb1,
        **{name: functools.partial(load_dms, name) for name in SCANS},
    }
    if spec not in loaders:
        raise UserError(f"unknown task {spec!r}; run `bib-ray tasks` to list the choices")
    return loaders[spec](resolve_data_dir(data_dir))


__all__ = ["DesignStatus", "OracleKind", "OracleResult", "Task", "TaskInfo", "TASKS", "UserDataOptions", "load_task"]
