"""The scoring service: the HTTP layer of ``http_api`` on a Ray Serve deployment that batches requests.

Each replica loads the artifact and builds its FastAPI app (``__serve_build_asgi_app__``, the
late-bound form of ``@serve.ingress``) over itself; ``POST /score`` hands the request's codes to
``_score_batch`` (``@serve.batch``, batch size counted in sequences) and answers proxy score, aux
mean and aux spread in label units. The LM runs on the replica's event loop, blocking it: requests
that arrive meanwhile are parsed together right after and form the next batch. (Running it in a
worker thread was measured worse: the thread holds the GIL, so the loop admits requests one at a
time and batches stay at one request.) ``build_app`` is the Serve application builder named in
deployments/*.yaml; ``scorer_application`` is what it and ``bib-ray serve`` deploy.
"""

from __future__ import annotations

import time

import numpy as np
from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from bib_ray.proxy.artifacts import ArtifactFiles, read_artifact_files
from bib_ray.proxy.scoring import score_codes
from bib_ray.service.http_api import build_api
from bib_ray.service.schemas import ModelIdentity, ServiceInfo
from bib_ray.service.settings import (DEFAULT_DEPLOYMENT, DEPLOYMENT_NAME, ServiceSettings,
                                      parse_service_settings)


DRAIN_CHECK_S = 0.1  # how stale a replica's view of "the service is stopping" may be


def drain_key(application: str) -> bytes:
    """The key in Ray's key-value store whose presence tells an application's replicas it is stopping."""
    return f"bib-ray:draining:{application}".encode()


def sequences_in(items: list[np.ndarray]) -> int:
    """Size of a batch of requests' codes, counted in sequences (what ``max_batch_sequences`` bounds)."""
    return sum(len(item) for item in items)


@serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=DEFAULT_DEPLOYMENT["max_ongoing_requests"])
@serve.ingress()
class ProxyScorer:
    """One replica: the loaded artifact (LM or one-hot features, closed-form proxy, aux ensemble) on its device, as
    a ScoringModel."""

    def __init__(self, settings: dict, api_key: str | None, artifact_files: ArtifactFiles) -> None:
        from bib_ray.proxy.artifacts import load_proxy_artifact
        from bib_ray.devices import granted_device

        self.settings = ServiceSettings(**settings)
        self.api_key = api_key
        self.loaded = load_proxy_artifact(artifact_files, granted_device(self.settings.device))
        self._score_batch.set_max_batch_size(self.settings.max_batch_sequences)
        self._score_batch.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)
        meta = self.loaded.meta
        self.alphabet, self.length = self.loaded.alphabet, self.loaded.length
        self.identity = ModelIdentity(task=meta["task"]["name"], lm_id=self.loaded.model_id,
                                      artifact_sha256=self.loaded.sha256)
        self._draining, self._drain_checked = False, float("-inf")

    def __serve_build_asgi_app__(self) -> FastAPI:
        """This replica's HTTP app (Serve calls it once, after ``__init__``)."""
        return build_api(self, self.settings, self.api_key, self.draining)

    def draining(self) -> bool:
        """Whether ``bib-ray serve`` is stopping this application (``launch.begin_draining``): read from Ray's
        key-value store at most every ``DRAIN_CHECK_S``."""
        now = time.monotonic()
        if now - self._drain_checked >= DRAIN_CHECK_S:
            from ray.experimental.internal_kv import _internal_kv_get

            self._draining = _internal_kv_get(drain_key(serve.get_replica_context().app_name)) is not None
            self._drain_checked = now
        return self._draining

    @serve.batch(max_batch_size=128, batch_wait_timeout_s=0.005, batch_size_fn=sequences_in)
    async def _score_batch(self, items: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        loaded = self.loaded
        codes = np.concatenate(items)
        scores = score_codes(loaded.embedder, loaded.proxy, loaded.aux, codes, len(codes))
        bounds = np.cumsum([0] + [len(item) for item in items])
        return [{k: v[a:b] for k, v in scores.items()} for a, b in zip(bounds[:-1], bounds[1:])]

    async def score_codes(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Scores of one request's codes (n, length), computed in a batch with the requests beside it."""
        return await self._score_batch(codes)

    def info(self) -> ServiceInfo:
        """What GET /info answers."""
        meta = self.loaded.meta
        aux = meta.get("aux") or {}
        return ServiceInfo(task=meta["task"]["name"], alphabet=self.loaded.alphabet, length=self.loaded.length,
                           template=meta["task"].get("template"),
                           design_positions=meta["task"].get("design_positions"),
                           lm_id=self.loaded.model_id, proxy=self.loaded.kind,
                           hidden_size=int(meta["backbone"]["hidden_size"]),
                           offline_rows=int(meta["offline_rows"]),
                           aux_members=int(aux.get("settings", {}).get("members", 0)),
                           artifact_sha256=self.loaded.sha256,
                           max_sequences_per_request=self.settings.max_sequences_per_request)


def scorer_options(settings: ServiceSettings, options: dict | None) -> dict:
    """Serve deployment ``options`` with ``max_ongoing_requests`` raised to at least ``max_batch_sequences``.

    A batch is counted in sequences and a request carries at least one, so a replica admitting fewer
    requests than a batch holds could never fill one from single-sequence requests (Serve's batching
    warns about exactly that when it starts).
    """
    chosen = dict(options or {})
    ongoing = chosen.get("max_ongoing_requests", DEFAULT_DEPLOYMENT["max_ongoing_requests"])
    chosen["max_ongoing_requests"] = max(ongoing, settings.max_batch_sequences)
    return chosen


def scorer_application(settings: ServiceSettings, options: dict | None = None) -> Application:
    """The scoring application for ``settings``, with Serve deployment ``options`` (see ``scorer_options``).
    The artifact is read here, by the deploying process, and its bytes travel in the application's
    arguments: replicas on nodes that cannot see the artifact's path load it all the same."""
    settings = settings.with_checked_artifact()
    files = read_artifact_files(settings.artifact)
    return ProxyScorer.options(**scorer_options(settings, options)).bind(
        settings.model_dump(), settings.resolve_api_key(), files)


def build_app(args: dict) -> Application:
    """Serve application builder (``import_path: bib_ray.service.app:build_app``); args -> ServiceSettings."""
    return scorer_application(parse_service_settings(args))
