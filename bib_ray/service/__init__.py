"""Ray Serve: a fitted proxy artifact as an HTTP scoring service.

``schemas`` (HTTP request/response models), ``settings`` (the service's validated settings and
the Serve YAML in deployments/), ``app`` (the FastAPI ingress and the batched Serve
deployment), ``launch`` (``bib-ray serve``: start Serve locally or on a cluster).
"""
