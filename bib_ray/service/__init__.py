"""Ray Serve: a fitted proxy artifact as an HTTP scoring service.

``schemas`` (HTTP request/response models), ``settings`` (the service's validated settings and
the Serve YAML in deployments/), ``http_api`` (the FastAPI app: routes, request limits, offline
docs; runs without Ray), ``app`` (the batched Serve deployment that serves it), ``launch``
(``bib-ray serve``: start Serve locally or on a cluster).
"""
