"""Sweeps: the sweep YAML and its search space (``config``), offline selection metrics that rank
trials without the oracle (``selection``) and the Ray Tune driver (``driver``)."""
