"""Ray wrappers around the core: proxy-shard actors, parallel trajectories, Tune sweeps.

Nothing under ``bib_ray.core`` imports Ray; this package is the only place that does.
"""
