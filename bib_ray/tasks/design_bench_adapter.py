"""Discrete design-bench tasks (``design-bench:TFBind8-Exact-v0``, ...) loaded through the real package.

design-bench 2.0.20 builds the dataset, the offline split and the oracle; this module only maps its
``Task`` onto ours. The package is installed with ``pip install --no-deps design-bench==2.0.20``
(it then needs only numpy, scikit-learn, scipy, pandas and requests), because its declared
dependencies (tensorflow, deepchem, torchvision) are not used by the sequence tasks. Three things
stand between that install and a working ``design_bench.make`` on today's stacks, and the first
import done here works around each of them:

* ``import design_bench`` registers the ChEMBL tasks, which imports deepchem and downloads a SMILES
  vocabulary at import time; deepchem 2.8's tokenizer also fails under transformers 5.
* ``design_bench.oracles.exact`` imports the MuJoCo robot oracles (gym, morphing-agents, robel,
  mujoco-py and MuJoCo binaries that no package index ships), even for TFBind8.
* its dataset code uses ``np.bool`` (absent in numpy 1.24-1.26) and ``np.NINF``/``np.PINF``
  (absent in numpy 2).

So, when design_bench is not yet imported, the four design-bench modules that serve only the
ChEMBL and MuJoCo tasks are replaced in ``sys.modules`` by placeholders that fail if used, and the
missing numpy names are defined with their standard meaning (``np.bool_``, -inf, +inf). Every
module a sequence task runs -- registry, datasets, exact and learned oracles -- is design-bench's
own. If the caller imported design_bench first, it is used as it is.

Data: design-bench reads ``<DATA_DIR>/<dataset folder>/*.npy`` (for TFBind8
``tf_bind_8-SIX6_REF_R1/tf_bind_8-{x,y}-0.npy``). ``data_dir`` (or $BIB_RAY_DESIGN_BENCH_DATA)
points DATA_DIR elsewhere while the task is built; otherwise design-bench's own folder next to the
package is used. A missing file is a UserError unless ``allow_download`` lets design-bench fetch it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bib_ray.errors import UserError
from bib_ray.tasks.base import DesignStatus, OracleKind, OracleResult, Task

PREFIX = "design-bench:"
DATA_ENV_VAR = "BIB_RAY_DESIGN_BENCH_DATA"
INSTALL_HINT = ("install it with `pip install --no-deps design-bench==2.0.20` "
                "(it also needs scikit-learn, scipy, pandas and requests)")

# Letters of design-bench's integer codes, by dataset (the task name's first part). DNA: its
# processing scripts code lower-case bases with sklearn's OrdinalEncoder, whose sorted categories
# make 0..3 = a, c, g, t. GFP: the fixed list in its processing script (the BLOSUM order of its
# ProteinKernel).
ALPHABETS = {"TFBind8": "ACGT", "TFBind10": "ACGT", "UTR": "ACGT", "GFP": "ARNDCQEGHILKMFPSTWYV"}

# design-bench modules that serve only tasks bib-ray does not map -> (class, what they need).
_PLACEHOLDERS = {
    "design_bench.oracles.feature_extractors.morgan_fingerprint_features":
        ("MorganFingerprintFeatures", "the ChEMBL tasks (deepchem, rdkit, a downloaded SMILES vocabulary)"),
    "design_bench.oracles.exact.hopper_controller_oracle": ("HopperControllerOracle", "gym with MuJoCo"),
    "design_bench.oracles.exact.ant_morphology_oracle": ("AntMorphologyOracle", "morphing-agents with MuJoCo"),
    "design_bench.oracles.exact.dkitty_morphology_oracle": ("DKittyMorphologyOracle", "morphing-agents, robel, MuJoCo"),
}


class _MissingDataFile(Exception):
    """A data file design-bench wanted to download while downloads were off."""


def _placeholder_module(module_name: str, class_name: str, needs: str) -> types.ModuleType:
    """A module whose class can be created (the registry builds one at import) but never used."""
    message = f"{class_name} is not available through bib-ray: it needs {needs}"

    def __getattr__(self: Any, attribute: str) -> Any:
        if attribute.startswith("__"):  # keep copy / pickle / hasattr probes ordinary
            raise AttributeError(attribute)
        raise NotImplementedError(message)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if class_name.endswith("Oracle"):
            raise NotImplementedError(message)

    module = types.ModuleType(module_name, f"bib-ray placeholder: {message}")
    setattr(module, class_name, type(class_name, (), {"__init__": __init__, "__getattr__": __getattr__}))
    return module


def _define_numpy_aliases() -> None:
    """Names design-bench 2.0.20 uses that this numpy lacks, with the meaning numpy gives them elsewhere."""
    for name, value in (("bool", np.bool_), ("NINF", -np.inf), ("PINF", np.inf)):
        if name not in vars(np):
            setattr(np, name, value)


def import_design_bench() -> types.ModuleType:
    """The design_bench module, imported with the placeholders above; UserError if unusable."""
    _define_numpy_aliases()
    if "design_bench" in sys.modules:
        return sys.modules["design_bench"]
    if importlib.util.find_spec("design_bench") is None:
        raise UserError(f"design-bench tasks need the design-bench package: {INSTALL_HINT}")
    for module_name, (class_name, needs) in _PLACEHOLDERS.items():
        sys.modules.setdefault(module_name, _placeholder_module(module_name, class_name, needs))
    try:
        return importlib.import_module("design_bench")
    except Exception as exc:  # a broken install: report it, do not crash the CLI
        raise UserError(f"design-bench is installed but cannot be imported "
                        f"({type(exc).__name__}: {exc}); {INSTALL_HINT}") from exc


def _refuse_download(download_target: str, disk_target: str) -> bool:
    raise _MissingDataFile(disk_target)


@contextlib.contextmanager
def _design_bench_context(disk_resource: Any, data_dir: Path | None,
                          allow_download: bool) -> Iterator[None]:
    """Point DATA_DIR at ``data_dir``, block downloads, keep numpy's global RNG state; undo afterwards."""
    saved = {name: getattr(disk_resource, name) for name in ("DATA_DIR", "direct_download", "google_drive_download")}
    rng_state = np.random.get_state()  # design-bench's subsample draws from the global RNG
    if data_dir is not None:
        disk_resource.DATA_DIR = str(data_dir)
    if not allow_download:
        disk_resource.direct_download = disk_resource.google_drive_download = _refuse_download
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(disk_resource, name, value)
        np.random.set_state(rng_state)


class DesignBenchOracle:
    """Scores integer-coded designs (B, L) with design-bench's ``task.predict``."""

    def __init__(self, task: Any, kind: OracleKind) -> None:
        self.task = task
        self.kind = kind
        self.length = int(np.prod(task.input_shape))
        self.num_classes = int(task.num_classes)

    def __call__(self, codes: np.ndarray) -> OracleResult:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.length:
            raise ValueError(f"expected designs of shape (B, {self.length}), got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.num_classes):
            raise ValueError(f"design codes must lie in 0..{self.num_classes - 1}")
        if codes.shape[0] == 0:
            return OracleResult(scores=np.zeros(0), status=np.zeros(0, dtype="<U10"))
        scores = np.asarray(self.task.predict(codes.astype(self.task.input_dtype)), dtype=np.float64).reshape(-1)
        return OracleResult(scores=scores, status=np.full(scores.shape, DesignStatus.OK.value))


def load_design_bench_task(name: str, data_dir: str | os.PathLike[str] | None = None,
                           allow_download: bool = False) -> Task:
    """Build design-bench task ``name`` (e.g. "TFBind8-Exact-v0") with design_bench.make as our Task.

    The offline x / y are the task's visible split (TFBind8: y at or below the median, 32,898 rows);
    ``score_range`` is the min / max of the whole dataset, design-bench's normalisation.
    """
    name = name.removeprefix(PREFIX)
    alphabet = ALPHABETS.get(name.split("-", 1)[0])
    if alphabet is None:
        raise UserError(f"design-bench task {name!r} is not supported: bib-ray maps the discrete sequence "
                        f"tasks of {sorted(ALPHABETS)} (e.g. TFBind8-Exact-v0)")
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_ENV_VAR) or None
    folder = None if chosen is None else Path(chosen).expanduser()
    if folder is not None and not folder.is_dir():
        raise UserError(f"design-bench data directory {str(folder)!r} does not exist")

    design_bench = import_design_bench()
    disk_resource = importlib.import_module("design_bench.disk_resource")
    try:
        design_bench.registry.spec(name)
    except ValueError as exc:
        raise UserError(f"unknown design-bench task {name!r}: {exc}") from exc
    try:
        with _design_bench_context(disk_resource, folder, allow_download):
            db_task = design_bench.make(name)
    except _MissingDataFile as exc:
        raise UserError(f"design-bench task {name}: data file {exc.args[0]} is missing (downloads are off); "
                        f"place design-bench's files there, or point {DATA_ENV_VAR} / data_dir at a copy "
                        f"of its data folder") from exc
    except Exception as exc:  # network, disk or dependency failures inside design-bench
        raise UserError(f"design-bench could not build {name} ({type(exc).__name__}: {exc})") from exc

    if not db_task.is_discrete:
        raise UserError(f"design-bench task {name} is continuous; bib-ray designs discrete sequences")
    if db_task.num_classes != len(alphabet):
        raise UserError(f"design-bench task {name} has {db_task.num_classes} classes, expected {len(alphabet)}")
    x = db_task.to_integers(db_task.x) if db_task.is_logits else db_task.x
    dataset = db_task.dataset
    all_y = np.concatenate([np.asarray(dataset.get_shard_y(i)).reshape(-1) for i in range(dataset.get_num_shards())])
    kind = OracleKind.EXACT if "-Exact-" in name else OracleKind.APPROXIMATE
    return Task(
        name=PREFIX + name, alphabet=alphabet, x=x, y=db_task.y,
        oracle=DesignBenchOracle(db_task, kind),
        score_range=(float(all_y.min()), float(all_y.max())),
        description=f"design-bench {name}: {db_task.dataset_name}, oracle {db_task.oracle_name}",
        details={"source": "design-bench", "dataset_rows": int(all_y.shape[0]),
                 "offline_rows": int(db_task.dataset_size),
                 "max_percentile": float(db_task.dataset_max_percentile),
                 "min_percentile": float(db_task.dataset_min_percentile)},
    )
