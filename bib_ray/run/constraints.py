"""A task's support constraints: what the final decode and evolution's children must obey.

The constraints themselves and the exact decode are in ``bib_ray.core.support`` (arrays only);
here they are learned from a task's offline rows (and its reference sequence), with the edit
limit K counted from the task's reference (a DMS wild type) or else from each design's start.
"""

from __future__ import annotations

import numpy as np

from bib_ray.core.support import SupportConstraints, SupportLevel, default_max_edits
from bib_ray.tasks.base import Task


def task_support(task: Task, level: SupportLevel, max_edits: int | None) -> SupportConstraints:
    """The constraints of ``task`` learned from its offline rows (and its reference sequence, if any).

    K is ``max_edits``; when that is None, ``default_max_edits`` of the task (its mutation radius, else
    ceil(L / 3)) unless ``level`` is NONE (then no limit: the reference code's plain argmax decode)."""
    rows = task.x if task.reference is None else np.concatenate([task.x, task.reference[None]])
    if max_edits is None and level is not SupportLevel.NONE:
        max_edits = default_max_edits(task.length, task.mutation_radius)
    return SupportConstraints.from_sequences(rows, len(task.alphabet), level, max_edits)


def beyond_radius_note(task: Task, max_edits: list[int | None]) -> str | None:
    """A note when an edit limit K in ``max_edits`` exceeds ``task.mutation_radius`` (the substitutions from its
    reference its offline rows reach): designs past the radius are extrapolation no offline row supports (the
    proxy scores them anyway; a sweep's one-hot selection metrics count them as unknown). None when every K is
    within it, or no radius."""
    radius = task.mutation_radius
    over = [] if radius is None else sorted({k for k in max_edits if k is not None and k > radius})
    if not over:
        return None
    return (f"note: max_mutations {', '.join(map(str, over))} exceeds the {radius} substitution(s) from the wild type "
            f"that the offline rows of {task.name} reach: designs past that are extrapolation no measurement "
            f"supports; a sweep's selection metric scores them as the lowest offline label (docs/selection.md)")


def edit_base(task: Task, start_codes: np.ndarray) -> np.ndarray:
    """(B, L) sequences that edits are counted from: the task's reference (a DMS wild type), else each start."""
    start_codes = np.asarray(start_codes)
    return start_codes if task.reference is None else np.broadcast_to(task.reference, start_codes.shape)


def kept_letters(start_codes: np.ndarray, vocab_size: int, fixed: np.ndarray | None) -> np.ndarray | None:
    """(B, L, V) bool: every letter, but at the ``fixed`` (L,) positions only each design's own starting
    letter; None without fixed positions."""
    if fixed is None:
        return None
    start_codes = np.asarray(start_codes)
    allowed = np.ones((*start_codes.shape, vocab_size), dtype=bool)
    allowed[:, fixed, :] = np.eye(vocab_size, dtype=bool)[start_codes[:, fixed]]
    return allowed


def decode_designs(task: Task, start_codes: np.ndarray, final_logits: np.ndarray, level: SupportLevel,
                   max_edits: int | None, fixed: np.ndarray | None = None) -> np.ndarray:
    """Designs (B, L): the exact constrained decode of ``final_logits`` (B, L, V) under
    ``task_support(task, level, max_edits)``, each design keeping its start's letters at the ``fixed``
    (L,) positions; plain argmax when that leaves nothing to enforce."""
    constraints = task_support(task, level, max_edits)
    allowed = kept_letters(start_codes, len(task.alphabet), fixed)
    if level is SupportLevel.NONE and constraints.max_edits is None:
        logits = np.asarray(final_logits)
        return (logits if allowed is None else np.where(allowed, logits, -np.inf)).argmax(-1)
    return constraints.decode(final_logits, edit_base(task, start_codes), allowed)


def evolution_support(task: Task, level: SupportLevel, max_edits: int | None,
                      observed_letters_only: bool) -> SupportConstraints:
    """The constraints ``evolution``'s children obey: those of the gradient methods' final decode; with
    ``observed_letters_only`` at least the letters."""
    if observed_letters_only and level is SupportLevel.NONE:
        level = SupportLevel.LETTERS
    return task_support(task, level, max_edits)
