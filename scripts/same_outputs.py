"""Check that two versions of bib-ray give the same designs: a refactor must not change a number.

    python scripts/same_outputs.py --base f74e3ba                 # that commit against this checkout
    python scripts/same_outputs.py run --tree /path/to/checkout --out runs/outputs-a
    python scripts/same_outputs.py compare runs/outputs-a runs/outputs-b

Each case is a ``bib-ray`` command run with the code of one tree (``PYTHONPATH``; the same
virtual environment): the default main job, tfbind8 with ``bib``, ``forward``, ``evolution``
and ``bdi``, and a user CSV, each with ``--local`` and on an embedded Ray, and a sweep over a
seeded grid. Two runs agree when every ``designs.csv`` column of the older run is there,
byte for byte, in the newer one (new columns may be added), the summaries' scores and per-seed
results (timings aside) are equal, and the sweeps' tables agree (trial ids aside).

One allowance, for the Ray cases only: their proxy scores and aux columns may differ by 1e-9
relative (their per-seed means and the final gamma / eta means in the summary: in the sixth
significant digit). A Ray run is not repeatable below that even with the same code (1e-14 seen on proxy
scores): each shard sums the statistics of whichever row chunks it happened to embed, so the
order of the float64 additions, and the last bits of the proxy's weights, depend on timing. The
sequences, the oracle scores and the summaries must still be identical.
Needs ``../shared/data`` (or ``--data-dir``). Takes about 10 minutes per tree on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--designs", "48", "--steps", "20", "--seeds", "0,1"]
CASES: dict[str, list[str]] = {
    "main-local": ["design", "--local"],
    "main-ray": ["design"],
    **{f"tfbind8-{method}-{where}": ["design", "--task", "tfbind8", "--method", method, *SMALL,
                                     *(["--local"] if where == "local" else [])]
       for method in ("bib", "forward", "evolution", "bdi") for where in ("local", "ray")},
    "user-csv-local": ["design", "--task", "user:{user_csv}", *SMALL, "--local"],
    "user-csv-ray": ["design", "--task", "user:{user_csv}", *SMALL],
    "sweep": ["sweep", "--config", "{sweep_yaml}"],
}
SWEEP_YAML = """name: same-outputs
base: {task: tfbind8-r, steps: 20, designs: 16, seeds: [0]}
space:
  lr: {grid: [0.05, 0.1]}
  method: {grid: [bib, forward]}
search: {algorithm: grid, num_samples: 1, max_concurrent: 2, seed: 0}
scheduler: {kind: fifo}
report_every: 10
"""
SWEEP_IGNORED = ("trial",)


def write_inputs(folder: Path, data_dir: Path) -> dict[str, str]:
    """The user CSV (2,000 TFBind8 rows as letters) and the sweep YAML the cases read."""
    folder.mkdir(parents=True, exist_ok=True)
    x = np.load(data_dir / "tfbind8" / "tf_bind_8-x-0.npy")[:2000]
    y = np.load(data_dir / "tfbind8" / "tf_bind_8-y-0.npy")[:2000, 0]
    user_csv = folder / "user.csv"
    pd.DataFrame({"sequence": ["".join("ACGT"[i] for i in row) for row in x], "score": y}).to_csv(user_csv,
                                                                                                index=False)
    sweep_yaml = folder / "sweep.yaml"
    sweep_yaml.write_text(SWEEP_YAML)
    return {"user_csv": str(user_csv), "sweep_yaml": str(sweep_yaml)}


def run_cases(tree: Path, out: Path, data_dir: Path, names: list[str]) -> None:
    """Every case in ``names`` with the code of ``tree``, outputs under ``out``/<case>."""
    inputs = write_inputs(out / "inputs", data_dir)
    temp = Path(tempfile.mkdtemp(prefix="same-outputs-ray-"))
    env = {**os.environ, "PYTHONPATH": str(tree), "BIB_RAY_DATA": str(data_dir), "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": str(temp), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    for name in names:
        command = [part.format(**inputs) for part in CASES[name]]
        place = out / name
        command += ["--out", str(place), "--quiet"]
        print(f"{tree.name}: {name}", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, "-m", "bib_ray.cli", *command], env=env, cwd=out,
                              capture_output=True, text=True)
        (out / f"{name}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed with status {done.returncode}:\n{done.stderr[-2000:]}")


RAY_FLOAT_COLUMNS = ("proxy_score", "aux_mean", "aux_std")  # summed over shards in a timing-dependent order
RAY_RTOL = 1e-9


def designs_differ(old: Path, new: Path, tolerant: bool = False) -> str | None:
    """None when every column of ``old``'s designs.csv is in ``new``'s with the same text (``tolerant``:
    ``RAY_FLOAT_COLUMNS`` to within ``RAY_RTOL``)."""
    a, b = (pd.read_csv(p / "designs.csv", dtype=str, keep_default_na=False) for p in (old, new))
    missing = [c for c in a.columns if c not in b.columns]
    if missing:
        return f"designs.csv lost columns {missing}"
    if len(a) != len(b):
        return f"designs.csv has {len(b)} rows, was {len(a)}"
    changed = []
    for column in a.columns:
        if tolerant and column in RAY_FLOAT_COLUMNS:
            same = np.allclose(a[column].astype(float), b[column].astype(float), rtol=RAY_RTOL, atol=0)
        else:
            same = a[column].equals(b[column])
        if not same:
            changed.append(column)
    return f"designs.csv columns differ: {changed}" if changed else None


RAY_FLOAT_SUMMARIES = ("proxy_score_mean", "proxy_score_max", "final_gamma_mean", "final_eta_mean")
RAY_SUMMARY_DIGITS = 6  # gamma follows the proxy's gradients through Adam: its last bits move more


def summary_results(path: Path, tolerant: bool = False) -> dict:
    """A run summary's scores and per-seed results without timings (``tolerant``: the proxy-score and
    gamma / eta summaries to ``RAY_SUMMARY_DIGITS`` significant digits)."""
    summary = json.loads((path / "summary.json").read_text())
    per_seed = [{k: (float(f"{v:.{RAY_SUMMARY_DIGITS}g}") if tolerant and k in RAY_FLOAT_SUMMARIES and v is not None
                     else v) for k, v in seed.items() if k != "timings"} for seed in summary["per_seed"]]
    return {"scores": summary["scores"], "per_seed": per_seed}


def sweep_table(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path / "same-outputs" / "sweep_results.csv", dtype=str, keep_default_na=False)
    return table.drop(columns=[c for c in SWEEP_IGNORED if c in table.columns])


def compare(old: Path, new: Path) -> list[str]:
    """One line per case: 'same' or what differs."""
    lines = []
    for name in CASES:
        a, b = old / name, new / name
        if not a.exists() or not b.exists():
            lines.append(f"{name}: missing in {'the old' if not a.exists() else 'the new'} outputs")
            continue
        if name == "sweep":
            ta, tb = sweep_table(a), sweep_table(b)
            sort = [c for c in ("lr", "method") if c in ta.columns]
            same = ta.sort_values(sort).reset_index(drop=True).equals(
                tb[ta.columns].sort_values(sort).reset_index(drop=True)) if set(ta.columns) <= set(tb.columns) else False
            lines.append(f"{name}: {'same' if same else 'sweep_results.csv differs'}")
            continue
        tolerant = name.endswith("-ray")
        problem = designs_differ(a, b, tolerant)
        if problem is None and summary_results(a, tolerant) != summary_results(b, tolerant):
            problem = "summary.json scores or per-seed results differ"
        lines.append(f"{name}: {problem or 'same'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", choices=("run", "compare", "both"), default="both")
    parser.add_argument("dirs", nargs="*", help="compare: the old and the new outputs")
    parser.add_argument("--base", help="both: the commit to compare this checkout with")
    parser.add_argument("--tree", type=Path, default=REPO, help="run: the checkout whose code runs")
    parser.add_argument("--out", type=Path, help="run/both: where outputs go (default a temporary folder)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BIB_RAY_DATA", REPO.parent / "shared" /
                                                                             "data")))
    parser.add_argument("--cases", default=",".join(CASES), help="comma list of cases")
    args = parser.parse_args(argv)
    names = args.cases.split(",")
    data_dir = args.data_dir.resolve()
    if args.action == "run":
        run_cases(args.tree.resolve(), (args.out or Path(tempfile.mkdtemp())).resolve(), data_dir, names)
        return 0
    if args.action == "compare":
        old, new = map(Path, args.dirs)
    else:
        if not args.base:
            parser.error("both needs --base COMMIT")
        out = (args.out or Path(tempfile.mkdtemp(prefix="same-outputs-"))).resolve()
        base_tree = out / "base-tree"
        if not base_tree.exists():
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree), args.base],
                           check=True, capture_output=True)
        old, new = out / "base", out / "head"
        run_cases(base_tree, old, data_dir, names)
        run_cases(REPO, new, data_dir, names)
    lines = compare(old, new)
    print("\n".join(lines))
    return 0 if all(line.endswith(": same") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
