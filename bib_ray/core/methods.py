"""The design methods a user can pick: one vocabulary for ``bib-ray design`` (``--method``), design
and sweep YAML (``method:``) and the benchmark suite (``--methods``).

Each name maps onto how it runs:

- gradient methods run ``BIBOptimiser`` with an internal ``Mode`` and an Adaptive-eta switch:
  ``bib`` (Adaptive-gamma), ``bib+eta`` (Adaptive-gamma with Adaptive-eta), ``bidirectional``
  (fixed gamma = ``gamma_init``), ``forward`` (gamma = 1), ``forward+eta``, ``backward`` (gamma = 0);
- ``evolution`` runs AdaLead-style mutate-and-select (``bib_ray.core.evolution``) on the proxy;
- ``bdi`` is ``bidirectional`` on the NTK proxy (``NTK_BACKBONE``): BDI's fixed gamma on the
  infinite-width ReLU NTK of one-hot inputs (``bib_ray.core.ntk_proxy``).

Every method runs on every backbone, ``NTK_BACKBONE`` included, except ``bdi``, which is tied to it:
``bib`` with backbone ``ntk`` is Adaptive-gamma on BDI's kernel.

References:
    Chen, Zhang, Liu, Coates. Bidirectional Learning for Offline Model-based Biological Sequence
    Design. ICML 2023, PMLR 202:5351-5366.
    Chen, Zhang, Fu, Liu, Coates. Bidirectional Learning for Offline Infinite-width Model-based
    Optimization (BDI). NeurIPS 2022.
"""

from __future__ import annotations

from enum import Enum

from bib_ray.core.optimizer import Mode

NTK_BACKBONE = "ntk"  # backbone spec: the NTK proxy on one-hot features instead of an LM's linear head


class Method(str, Enum):
    """A design method's user-facing name (see the module docstring for what each runs)."""

    BIB = "bib"
    BIB_ETA = "bib+eta"
    BIDIRECTIONAL = "bidirectional"
    FORWARD = "forward"
    FORWARD_ETA = "forward+eta"
    BACKWARD = "backward"
    EVOLUTION = "evolution"
    BDI = "bdi"

    @property
    def mode(self) -> Mode | None:
        """The optimiser's mode of a gradient method; None for ``evolution``."""
        return _GRADIENT[self][0] if self in _GRADIENT else None

    @property
    def adaptive_eta(self) -> bool:
        """Whether the gradient method adapts its step size (Adaptive-eta)."""
        return self in _GRADIENT and _GRADIENT[self][1]

    @property
    def is_gradient(self) -> bool:
        """True for the methods that run ``BIBOptimiser`` on the design logits."""
        return self in _GRADIENT

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_GRADIENT: dict[Method, tuple[Mode, bool]] = {
    Method.BIB: (Mode.ADAPTIVE_GAMMA, False),
    Method.BIB_ETA: (Mode.ADAPTIVE_GAMMA, True),
    Method.BIDIRECTIONAL: (Mode.BIDIRECTIONAL, False),
    Method.FORWARD: (Mode.FORWARD, False),
    Method.FORWARD_ETA: (Mode.FORWARD, True),
    Method.BACKWARD: (Mode.BACKWARD, False),
    Method.BDI: (Mode.BIDIRECTIONAL, False),
}

_DESCRIPTIONS: dict[Method, str] = {
    Method.BIB: "BIB: bidirectional learning with Adaptive-gamma (default)",
    Method.BIB_ETA: "BIB with Adaptive-gamma and Adaptive-eta",
    Method.BIDIRECTIONAL: "bidirectional learning with fixed gamma = gamma_init",
    Method.FORWARD: "gradient ascent on the proxy (gamma = 1)",
    Method.FORWARD_ETA: "gradient ascent with Adaptive-eta",
    Method.BACKWARD: "the backward mapping alone (gamma = 0)",
    Method.EVOLUTION: "AdaLead-style mutate-and-select on the proxy, within the support constraints",
    Method.BDI: f"BDI: fixed-gamma bidirectional learning on the NTK proxy (backbone {NTK_BACKBONE})",
}

METHOD_NAMES: tuple[str, ...] = tuple(method.value for method in Method)


def methods_help() -> str:
    """'bib, bib+eta, ...' for error messages and CLI help."""
    return ", ".join(METHOD_NAMES)
