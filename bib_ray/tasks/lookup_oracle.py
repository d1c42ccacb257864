"""Oracles that look a sequence's score up in a table indexed by its base-V number."""

from __future__ import annotations

import numpy as np

from bib_ray.tasks.base import DesignStatus, OracleKind, OracleResult


def sequence_index(codes: np.ndarray, vocab_size: int) -> np.ndarray:
    """Row (a_1..a_L) -> sum_i a_i V^(L - i): the row's position in a table of all V^L sequences."""
    codes = np.asarray(codes, dtype=np.int64)
    powers = vocab_size ** np.arange(codes.shape[1] - 1, -1, -1, dtype=np.int64)
    return codes @ powers


def build_table(x: np.ndarray, y: np.ndarray, vocab_size: int) -> np.ndarray:
    """Dense table of V^L scores; later rows overwrite earlier copies (design-bench's rule); NaN = unmeasured."""
    table = np.full(vocab_size ** x.shape[1], np.nan, dtype=np.float64)
    table[sequence_index(x, vocab_size)] = np.asarray(y, dtype=np.float64).reshape(-1)
    return table


class LookupOracle:
    """Ground truth from a dense table; NaN entries are reported as UNKNOWN, never as a score."""

    def __init__(self, table: np.ndarray, vocab_size: int, kind: OracleKind) -> None:
        self.table = np.asarray(table, dtype=np.float64)
        self.vocab_size = vocab_size
        self.kind = kind

    def __call__(self, codes: np.ndarray) -> OracleResult:
        scores = self.table[sequence_index(codes, self.vocab_size)]
        status = np.where(np.isnan(scores), DesignStatus.UNKNOWN.value, DesignStatus.OK.value)
        return OracleResult(scores=scores, status=status)

    @property
    def coverage(self) -> float:
        """Fraction of all V^L sequences with a measurement."""
        return float(np.mean(~np.isnan(self.table)))
