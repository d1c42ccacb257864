"""Benchmarks: commands that print tables (run with ``python -m bib_ray.bench.<name>``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from bib_ray.errors import UserError


def module_main(module: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                run: Callable[[argparse.Namespace, str], int], argv: list[str] | None = None) -> int:
    """``python -m MODULE ARGS``: parse ``argv`` with ``add_arguments`` and call ``run(args, command)``,
    ``command`` being the line that reproduces the call."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    add_arguments(parser)
    return run(parser.parse_args(argv), shlex.join(["python", "-m", module, *argv]))


def exit_with(main: Callable[[], int], name: str) -> None:
    """Exit with ``main()``'s status; a ``UserError`` is one line on stderr and status 2."""
    try:
        sys.exit(main())
    except UserError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(2)


def collect_rows(calls: dict, frames: list, csv_path: Path) -> None:
    """Wait for the Ray ``calls`` (object ref -> label) that return lists of rows; as each finishes, add its
    rows to ``frames`` (DataFrames) and write all of them to ``csv_path``, so a cut-off run keeps what
    finished (``--resume``); a line on stderr says what is left."""
    import time

    import pandas as pd
    import ray

    pending, started = dict(calls), time.perf_counter()
    while pending:
        finished, _ = ray.wait(list(pending), num_returns=1)
        label = pending.pop(finished[0])
        frames.append(pd.DataFrame(ray.get(finished[0])))
        pd.concat(frames, ignore_index=True).to_csv(csv_path, index=False)
        print(f"{label}: done ({len(pending)} left, {time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
