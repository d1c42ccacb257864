"""The scoring service: a FastAPI ingress on a Ray Serve deployment that batches requests.

``POST /score`` validates the sequences, hands the request's codes to ``_score_batch``
(``@serve.batch``, batch size counted in sequences) and answers proxy score, aux mean and aux
spread in label units. The LM runs on the replica's event loop, blocking it: requests that
arrive meanwhile are parsed together right after and form the next batch. (Running it in a
worker thread was measured worse: the thread holds the GIL, so the loop admits requests one
at a time and batches stay at one request.) ``build_app`` is the Serve application builder
named in deployments/*.yaml; ``scorer_application`` is what it and ``bib-ray serve`` deploy.
"""

# No `from __future__ import annotations`: FastAPI must see the real Request/response types.
import hmac
import json

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from pydantic import ValidationError
from ray import serve
from ray.serve import Application

from bib_ray.alphabets import encode
from bib_ray.artifacts import ArtifactFiles, read_artifact_files
from bib_ray.errors import UserError
from bib_ray.scoring import score_codes
from bib_ray.service.schemas import (API_KEY_HEADER, Health, ModelIdentity, ScoreRequest, ScoreResponse,
                                     SequenceScore, ServiceInfo)
from bib_ray.service.settings import DEPLOYMENT_NAME, ServiceSettings, parse_service_settings

api = FastAPI(title="bib-ray proxy scoring",
              description="Scores designed sequences with a fitted BIB proxy (closed-form LM head) and its "
                          "auxiliary ensemble. Scores are in the original label units.")

SCORE_BODY_SCHEMA = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": ScoreRequest.model_json_schema()}}}}


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request body, or HTTP 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body is {declared} bytes; this service accepts at most {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(413, f"request body exceeds {limit} bytes")
    return bytes(body)


def parse_score_request(body: bytes) -> ScoreRequest:
    """400 for a body that is not JSON, 422 for JSON of the wrong shape."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HTTPException(400, f"request body is not valid JSON: {error}") from None
    try:
        return ScoreRequest.model_validate(payload)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
        raise HTTPException(422, f"expected {{\"sequences\": [\"...\", ...]}}: {problems}") from None


def encode_request(sequences: list[str], alphabet: str, length: int, limit: int) -> tuple[list[str], np.ndarray]:
    """(uppercased, stripped sequences, their codes (n, length)); 413 / 422 naming the offending entry."""
    if not sequences:
        raise HTTPException(422, "sequences is empty: send at least one sequence")
    if len(sequences) > limit:
        raise HTTPException(413, f"request has {len(sequences)} sequences; this service takes at most {limit} "
                                 f"per request (split it; bib_ray.client does)")
    cleaned = [s.strip().upper() for s in sequences]
    for index, sequence in enumerate(cleaned):
        if len(sequence) != length:
            raise HTTPException(422, f"sequence {index} has length {len(sequence)}; this proxy scores "
                                     f"{length} designed residues over {alphabet!r}")
    try:
        return cleaned, encode(cleaned, alphabet)
    except UserError as error:
        raise HTTPException(422, str(error)) from None


def sequences_in(items: list[np.ndarray]) -> int:
    return sum(len(item) for item in items)


@serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=64)
@serve.ingress(api)
class ProxyScorer:
    """One replica: the loaded artifact (LM, closed-form head, aux ensemble) on its device."""

    def __init__(self, settings: dict, api_key: str | None, artifact_files: ArtifactFiles) -> None:
        from bib_ray.artifacts import load_proxy_artifact
        from bib_ray.devices import granted_device

        self.settings = ServiceSettings(**settings)
        self.api_key = api_key
        self.loaded = load_proxy_artifact(artifact_files, granted_device(self.settings.device))
        self._score_batch.set_max_batch_size(self.settings.max_batch_sequences)
        self._score_batch.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)
        meta = self.loaded.meta
        self.identity = ModelIdentity(task=meta["task"]["name"], lm_id=meta["backbone"]["spec"],
                                      artifact_sha256=self.loaded.sha256)

    def _authorise(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get(API_KEY_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise HTTPException(401, f"missing or wrong {API_KEY_HEADER} header")

    @serve.batch(max_batch_size=128, batch_wait_timeout_s=0.005, batch_size_fn=sequences_in)
    async def _score_batch(self, items: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        loaded = self.loaded
        codes = np.concatenate(items)
        scores = score_codes(loaded.embedder, loaded.proxy, loaded.aux, codes, len(codes))
        bounds = np.cumsum([0] + [len(item) for item in items])
        return [{k: v[a:b] for k, v in scores.items()} for a, b in zip(bounds[:-1], bounds[1:])]

    @api.post("/score", response_model=ScoreResponse, openapi_extra=SCORE_BODY_SCHEMA,
              summary="proxy score, aux mean and aux spread of each sequence (label units)")
    async def score(self, request: Request) -> ScoreResponse:
        self._authorise(request)
        body = await read_limited_body(request, self.settings.max_body_bytes)
        parsed = parse_score_request(body)
        sequences, codes = encode_request(parsed.sequences, self.loaded.alphabet, self.loaded.length,
                                          self.settings.max_sequences_per_request)
        scores = await self._score_batch(codes)
        aux_mean, aux_std = scores.get("aux_mean"), scores.get("aux_std")
        rows = [SequenceScore(sequence=seq, proxy_score=float(scores["proxy_score"][i]),
                              aux_mean=None if aux_mean is None else float(aux_mean[i]),
                              aux_std=None if aux_std is None else float(aux_std[i]))
                for i, seq in enumerate(sequences)]
        return ScoreResponse(scores=rows, model=self.identity)

    @api.get("/healthz", response_model=Health, summary="liveness: the replica has its model loaded")
    async def healthz(self) -> Health:
        return Health()

    @api.get("/info", response_model=ServiceInfo, summary="task, alphabet, length, LM id and artifact hash")
    async def info(self, request: Request) -> ServiceInfo:
        self._authorise(request)
        meta = self.loaded.meta
        aux = meta.get("aux") or {}
        return ServiceInfo(task=meta["task"]["name"], alphabet=self.loaded.alphabet, length=self.loaded.length,
                           template=meta["task"].get("template"),
                           design_positions=meta["task"].get("design_positions"),
                           lm_id=meta["backbone"]["spec"], hidden_size=int(meta["backbone"]["hidden_size"]),
                           offline_rows=int(meta["offline_rows"]),
                           aux_members=int(aux.get("settings", {}).get("members", 0)),
                           artifact_sha256=self.loaded.sha256,
                           max_sequences_per_request=self.settings.max_sequences_per_request)


def scorer_application(settings: ServiceSettings, options: dict | None = None) -> Application:
    """The scoring application for ``settings``, with Serve deployment ``options``. The artifact is read
    here, by the deploying process, and its bytes travel in the application's arguments: replicas on
    nodes that cannot see the artifact's path load it all the same."""
    settings = settings.with_checked_artifact()
    files = read_artifact_files(settings.artifact)
    return ProxyScorer.options(**(options or {})).bind(settings.model_dump(), settings.resolve_api_key(), files)


def build_app(args: dict) -> Application:
    """Serve application builder (``import_path: bib_ray.service.app:build_app``); args -> ServiceSettings."""
    return scorer_application(parse_service_settings(args))
