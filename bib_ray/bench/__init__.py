"""Benchmarks: commands that print tables (run with ``python -m bib_ray.bench.<name>``)."""
