"""Ehrlich closed-form functions (Stanton et al. 2024) from the pytorch-holo package.

A sequence over ``states`` letters is feasible iff every transition is allowed by a banded
Markov process; its value is the product over ``motifs`` spaced motifs of the quantised
fraction present (1.0 = optimum). Infeasible designs are reported as INFEASIBLE and count
as 0 in percentiles, as the benchmark defines f = 0 outside the feasible set.
Offline set: ``offline`` distinct feasible samples of the Markov process, minus any optimum.
"""

from __future__ import annotations

import string

import numpy as np
import torch

from bib_ray.alphabets import PROTEIN
from bib_ray.errors import UserError
from bib_ray.tasks.base import DesignStatus, OracleKind, OracleResult, Task

EHRLICH_DEFAULTS = {"states": 20, "length": 32, "motifs": 2, "motif_length": 4, "quantization": 4,
                    "seed": 0, "offline": 2000}
_LETTERS = PROTEIN + "".join(c for c in string.ascii_uppercase if c not in PROTEIN)


class EhrlichOracle:
    kind = OracleKind.CLOSED_FORM

    def __init__(self, function) -> None:
        self.function = function

    def __call__(self, codes: np.ndarray) -> OracleResult:
        with torch.no_grad():
            values = self.function(torch.as_tensor(np.asarray(codes), dtype=torch.long), noise=False)
        values = values.double().numpy()
        feasible = np.isfinite(values)
        return OracleResult(scores=np.where(feasible, values, np.nan),
                            status=np.where(feasible, DesignStatus.OK.value, DesignStatus.INFEASIBLE.value))


def load_ehrlich(**options: int) -> Task:
    unknown = set(options) - set(EHRLICH_DEFAULTS)
    if unknown:
        raise UserError(f"unknown ehrlich option(s) {sorted(unknown)}; choose from {sorted(EHRLICH_DEFAULTS)}")
    o = {**EHRLICH_DEFAULTS, **options}
    if not 2 <= o["states"] <= len(_LETTERS):
        raise UserError(f"ehrlich states must be between 2 and {len(_LETTERS)}")
    if o["offline"] < 2:
        raise UserError("ehrlich offline must be at least 2")
    try:
        from holo.test_functions.closed_form import Ehrlich
    except ImportError:
        raise UserError("the ehrlich task needs pytorch-holo: pip install pytorch-holo") from None
    try:
        function = Ehrlich(num_states=o["states"], dim=o["length"], num_motifs=o["motifs"],
                           motif_length=o["motif_length"], quantization=o["quantization"], random_seed=o["seed"])
    except (ValueError, RuntimeError) as error:
        raise UserError(f"invalid ehrlich settings {o}: {error}") from None
    oracle = EhrlichOracle(function)
    samples = np.unique(function.initial_solution(o["offline"]).numpy().astype(np.int64), axis=0)
    scores = oracle(samples).scores
    keep = scores < 1.0
    name = "ehrlich" if o == EHRLICH_DEFAULTS else "ehrlich:" + ",".join(f"{k}={v}" for k, v in o.items())
    return Task(name=name, alphabet=_LETTERS[: o["states"]], x=samples[keep], y=scores[keep], oracle=oracle,
                score_range=(0.0, 1.0), infeasible_score=0.0,
                description=f"Ehrlich closed-form function ({o['motifs']} motifs of length {o['motif_length']}, "
                            f"{o['states']} states, length {o['length']})",
                details={**o, "offline_rows": int(keep.sum())})
