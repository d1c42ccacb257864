"""What a design task is: alphabet, length, offline data, oracle and normalisation.

Every task -- benchmark, design-bench adapter or user file -- is a ``Task`` so that the
pipeline, evaluation and reports treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import numpy as np

from bib_ray.alphabets import decode


class OracleKind(str, Enum):
    """How much to trust an oracle's score."""

    EXACT = "exact"  # table lookup of the real measurement for every sequence
    NEAR_EXACT = "near-exact"  # lookup of real measurements; some sequences unmeasured ("unknown")
    CLOSED_FORM = "closed-form"  # synthetic function computed exactly
    APPROXIMATE = "approximate"  # a model trained on measurements
    NONE = "none"  # no ground truth: designs are proxy-scored only


class DesignStatus(str, Enum):
    """Per-design outcome of an oracle call."""

    OK = "ok"
    UNKNOWN = "unknown"  # the oracle has no value for this sequence (never scored as 0)
    INFEASIBLE = "infeasible"  # the sequence violates the task's constraints


@dataclass(frozen=True)
class OracleResult:
    """Scores (NaN unless status is OK) and per-design status, aligned with the input rows."""

    scores: np.ndarray
    status: np.ndarray  # array of DesignStatus values (str)

    def __post_init__(self) -> None:
        if self.scores.shape != self.status.shape:
            raise ValueError("scores and status must have the same shape")


class Oracle(Protocol):
    """Scores integer-coded sequences (B, L) of a task."""

    kind: OracleKind

    def __call__(self, codes: np.ndarray) -> OracleResult: ...


@dataclass
class Task:
    """A design problem. ``x`` / ``y`` are the offline data the method may see; nothing else.

    Attributes:
        name: registry name (e.g. "tfbind8-r").
        alphabet: residue letters; ``x`` holds indices into it.
        x: int64 (N, L) offline sequences.  y: float64 (N,) their measured scores.
        oracle: ground truth for evaluation only, or None for user data.
        score_range: (min, max) of the ground truth used to normalise (y - min) / (max - min).
        infeasible_score: raw score reported for infeasible designs in percentiles (None: task has none).
        template: optional full-length int64 context (e.g. a wild-type domain); designs fill
            ``design_positions`` of it before the LM embeds them.
        reference: optional (L,) sequence that mutation counts are taken from (a DMS wild type);
            ``max_mutations`` limits designs relative to it, else relative to their starts.
        excluded: optional (E, L) sequences already ordered or measured elsewhere: never put in a batch.
    """

    name: str
    alphabet: str
    x: np.ndarray
    y: np.ndarray
    oracle: Oracle | None = None
    score_range: tuple[float, float] | None = None
    infeasible_score: float | None = None
    template: np.ndarray | None = None
    design_positions: np.ndarray | None = None
    reference: np.ndarray | None = None
    excluded: np.ndarray | None = None
    description: str = ""
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = np.ascontiguousarray(self.x, dtype=np.int64)
        self.y = np.ascontiguousarray(self.y, dtype=np.float64).reshape(-1)
        if self.x.ndim != 2 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x {self.x.shape} and y {self.y.shape} do not describe the same rows")
        if (self.template is None) != (self.design_positions is None):
            raise ValueError("template and design_positions go together")
        if self.design_positions is not None and len(self.design_positions) != self.length:
            raise ValueError("design_positions must have one entry per designed residue")

    @property
    def length(self) -> int:
        return int(self.x.shape[1])

    @property
    def read_length(self) -> int:
        """Length of what the LM reads: the template's when there is one, else the designs'."""
        return self.length if self.template is None else int(self.template.shape[0])

    @property
    def wild_type(self) -> np.ndarray | None:
        """(L,) the wild type designs are written relative to: the reference (a DMS wild type), else the
        template's letters at the designed positions (GB1's VDGV), else None."""
        if self.reference is not None:
            return self.reference
        return None if self.template is None else self.template[self.design_positions]

    @property
    def residue_numbers(self) -> np.ndarray:
        """(L,) the 1-based number of each designed residue: its position in the template when there is one."""
        if self.design_positions is not None:
            return np.asarray(self.design_positions) + 1
        return np.arange(1, self.length + 1)

    def mutations(self, codes: np.ndarray, starts: np.ndarray) -> list[str]:
        """Mutation notation of ``codes`` (B, L) (``A23G:K45R``): from the wild type when the task has one,
        else from each design's start ``starts`` (B, L)."""
        from bib_ray.tasks.mutations import mutation_strings

        base = self.wild_type if self.wild_type is not None else starts
        return mutation_strings(codes, base, self.alphabet, self.residue_numbers)

    @property
    def mutation_radius(self) -> int | None:
        """How far (in substitutions) from its reference the offline data reaches: set by a scan around a
        wild type (``details["mutation_radius"]``), None for other tasks."""
        radius = self.details.get("mutation_radius") if self.reference is not None else None
        return None if radius is None else int(radius)

    @property
    def oracle_kind(self) -> OracleKind:
        return OracleKind.NONE if self.oracle is None else self.oracle.kind

    def sequences(self, codes: np.ndarray | None = None) -> list[str]:
        """Decode ``codes`` (default: the offline x) to strings."""
        return decode(self.x if codes is None else codes, self.alphabet)

    def starting_designs(self, n: int) -> np.ndarray:
        """The n best offline sequences (ties by row order), cycling if the offline set is smaller."""
        order = np.argsort(-self.y, kind="stable")
        return self.x[order[np.arange(n) % len(order)]]

    def observed_letters(self) -> np.ndarray:
        """(L, V) bool: the letters the offline data shows at each designed position (and the
        reference's letters, if any). Designs restricted to them stay inside a scan's measured
        substitutions, which is where a DMS oracle can score them."""
        observed = np.zeros((self.length, len(self.alphabet)), dtype=bool)
        observed[np.arange(self.length)[None, :], self.x] = True
        if self.reference is not None:
            observed[np.arange(self.length), self.reference] = True
        return observed

    def normalise(self, scores: np.ndarray) -> np.ndarray:
        """(score - min) / (max - min) with the task's ground-truth range; NaN stays NaN."""
        if self.score_range is None:
            raise ValueError(f"task {self.name} has no ground-truth score range")
        low, high = self.score_range
        return (np.asarray(scores, dtype=np.float64) - low) / (high - low)

    def identity(self) -> dict:
        """JSON-serialisable description of what a design is for this task (no data, no oracle)."""
        return {
            "name": self.name, "alphabet": self.alphabet, "length": self.length,
            "oracle_kind": self.oracle_kind.value,
            "template": None if self.template is None else decode(self.template[None], self.alphabet)[0],
            "design_positions": None if self.design_positions is None else [int(p) for p in self.design_positions],
        }

    @classmethod
    def from_identity(cls, identity: dict) -> "Task":
        """A data-less task with the alphabet, length and template of ``identity()`` (for embedding only)."""
        from bib_ray.alphabets import encode

        alphabet = identity["alphabet"]
        template = None if identity["template"] is None else encode([identity["template"]], alphabet)[0]
        positions = None if identity["design_positions"] is None else np.array(identity["design_positions"])
        return cls(name=identity["name"], alphabet=alphabet, x=np.zeros((0, identity["length"]), dtype=np.int64),
                   y=np.zeros(0), template=template, design_positions=positions)

    def full_sequences(self, codes: np.ndarray) -> np.ndarray:
        """Designed residues (B, L) -> what the LM reads: the template with them filled in, or themselves."""
        if self.template is None:
            return codes
        full = np.broadcast_to(self.template, (codes.shape[0], self.template.shape[0])).copy()
        full[:, self.design_positions] = codes
        return full
