"""The scoring service's HTTP layer: a FastAPI app over any ``ScoringModel``, runnable without Ray.

``build_api`` answers ``POST /score``, ``GET /info`` and ``GET /healthz``, and serves ``/docs``
and ``/redoc`` with the Swagger UI / ReDoc assets that the ``fastapi-offline`` package ships (no
CDN, so the docs work on an offline machine). Every request that cannot be scored is a 4xx with
an ``ErrorResponse`` body, never a 5xx: the body is read up to ``max_body_bytes`` whatever its
``Content-Length`` says (chunked bodies too), checked to be UTF-8 nesting at most
``MAX_JSON_DEPTH`` arrays/objects deep before it is decoded, then validated against the artifact's
own request schema (``score_request_model``: exactly the proxy's length, its letters in either
case, at most ``max_sequences_per_request`` of them, no other keys), which ``/openapi.json``
publishes: a request the schema allows is scored, one it forbids is a 4xx. The Serve deployment
in ``bib_ray.service.app`` builds one app per replica; tests build one over a stand-in model.
"""

# No `from __future__ import annotations`: FastAPI must see the real Request/response types.
import hmac
import json
import re
import sys
from collections.abc import Callable
from typing import Annotated, Protocol

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model

from bib_ray.alphabets import encode
from bib_ray.errors import UserError
from bib_ray.service.schemas import (API_KEY_HEADER, ErrorResponse, Health, ModelIdentity, ScoreResponse,
                                     SequenceScore, ServiceInfo)
from bib_ray.service.settings import ServiceSettings

MAX_JSON_DEPTH = 32  # arrays/objects a request body may nest; a score request needs 2 ({"sequences": [...]})

TITLE = "bib-ray proxy scoring"
DESCRIPTION = ("Scores designed sequences with a fitted BIB proxy (closed-form LM head) and its auxiliary "
               "ensemble. Scores are in the original label units.")
ERROR_MEANINGS = {
    400: f"the body is not UTF-8 JSON (or holds an integer Python will not convert), or nests arrays/objects "
         f"more than {MAX_JSON_DEPTH} deep",
    401: f"missing or wrong {API_KEY_HEADER} header",
    413: "the body exceeds max_body_bytes, or holds more than max_sequences_per_request sequences",
    422: "JSON the request schema does not allow: another shape, other keys, an empty list, a sequence of the "
         "wrong length or with letters outside the alphabet",
    503: "the service is stopping, or more requests are waiting than it queues: retry after Retry-After seconds",
}
RETRY_AFTER_S = 1  # what a 503 tells the client to wait

_ESCAPE = re.compile(r"\\.", re.DOTALL)  # a backslash and the character it escapes
_STRING = re.compile(r'"[^"]*"?')  # a string once escapes are gone; an unterminated one runs to the end
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class ScoringModel(Protocol):
    """What the HTTP layer needs from a loaded proxy: the Serve replica, or a stand-in in tests."""

    alphabet: str
    length: int
    identity: ModelIdentity

    async def score_codes(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Codes (n, length) -> proxy_score and, with an aux ensemble, aux_mean and aux_std, each (n,)."""
        ...

    def info(self) -> ServiceInfo:
        """What GET /info answers."""
        ...


def error_responses(*codes: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` documenting ``codes`` with the ErrorResponse body."""
    return {code: {"model": ErrorResponse, "description": ERROR_MEANINGS[code]} for code in codes}


def json_nesting_depth(text: str) -> int:
    """How deep arrays/objects nest in JSON ``text``, not counting brackets inside strings.

    Exact for valid JSON. For invalid JSON it is never less than the depth a decoder reaches before
    it fails: up to that point the text is valid JSON, so escapes and strings are found as a decoder
    finds them. Linear time (regular expressions without backtracking, then one cumulative sum).
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text))).encode("ascii")
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max(initial=0))


def check_json_depth(text: str, limit: int) -> None:
    """HTTP 400 when JSON ``text`` nests arrays/objects more than ``limit`` deep (few brackets: no scan)."""
    if text.count("[") + text.count("{") <= limit:
        return
    depth = json_nesting_depth(text)
    if depth > limit:
        raise HTTPException(400, f"request body nests arrays/objects {depth} deep; this service accepts at most "
                                 f"{limit}")


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request body, or HTTP 413 as soon as it is known to exceed ``limit`` bytes (declared or read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > limit:
        raise HTTPException(413, f"request body is {declared} bytes; this service accepts at most {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(413, f"request body exceeds {limit} bytes")
    return bytes(body)


def score_request_model(alphabet: str, length: int, max_items: int) -> type[BaseModel]:
    """The ``POST /score`` body one artifact accepts: ``{"sequences": [...]}``, 1 to ``max_items`` strings of
    exactly ``length`` letters of ``alphabet`` (upper or lower case), and no other key. Its JSON schema is
    what ``/openapi.json`` states (minLength, maxLength, pattern, minItems, maxItems, additionalProperties)."""
    letters = "".join(dict.fromkeys(alphabet.upper() + alphabet.lower()))
    sequence = Annotated[str, StringConstraints(min_length=length, max_length=length,
                                                pattern=f"^[{re.escape(letters)}]{{{length}}}$")]
    return create_model("ScoreRequest", __config__=ConfigDict(extra="forbid"),
                        sequences=(list[sequence], Field(min_length=1, max_length=max_items, description=(
                            f"1 to {max_items} sequences of the {length} designed residues, letters of "
                            f"{alphabet!r} in either case"))))


def request_problem(error: dict, alphabet: str, length: int) -> str:
    """One of pydantic's errors of a score request as the service says it (naming the sequence)."""
    where = ".".join(map(str, error["loc"])) or "body"
    if len(error["loc"]) == 2 and error["loc"][0] == "sequences" and isinstance(error.get("input"), str):
        index, text = error["loc"][1], error["input"]
        if error["type"] in ("string_too_short", "string_too_long"):
            return f"sequence {index} has length {len(text)}; this proxy scores {length} designed residues"
        if error["type"] == "string_pattern_mismatch":
            bad = sorted(set(text) - set(alphabet.upper() + alphabet.lower()))
            return f"sequence {index} has letters outside the alphabet {alphabet!r}: {bad}"
    return f"{where}: {error['msg']}"


def parse_score_request(body: bytes, request_model: type[BaseModel], alphabet: str, length: int,
                        limit: int) -> list[str]:
    """The request's sequences; 400 unless ``body`` is UTF-8 JSON within MAX_JSON_DEPTH, 413 for more than
    ``limit`` sequences, 422 for anything else ``request_model`` (``score_request_model``) forbids."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise HTTPException(400, f"request body is not valid JSON: not UTF-8 ({error.reason} at byte "
                                 f"{error.start})") from None
    check_json_depth(text, MAX_JSON_DEPTH)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise HTTPException(400, f"request body is not valid JSON: {error}") from None
    except ValueError:  # the decoder's other refusal: an integer longer than Python converts
        raise HTTPException(400, f"request body holds an integer of more than {sys.get_int_max_str_digits()} "
                                 f"digits") from None
    if isinstance(payload, dict) and isinstance(payload.get("sequences"), list) and len(payload["sequences"]) > limit:
        raise HTTPException(413, f"request has {len(payload['sequences'])} sequences; this service takes at most "
                                 f"{limit} per request (split it; bib_ray.service.client does)")
    try:
        return request_model.model_validate(payload).sequences
    except ValidationError as error:
        problems = "; ".join(request_problem(e, alphabet, length) for e in error.errors()[:5])
        raise HTTPException(422, f"expected {{\"sequences\": [\"...\", ...]}}: {problems}") from None


def encode_request(sequences: list[str], alphabet: str) -> tuple[list[str], np.ndarray]:
    """(upper-cased sequences, their codes (n, length)) of sequences the request schema allowed."""
    cleaned = [s.upper() for s in sequences]
    return cleaned, encode(cleaned, alphabet)


def api_key_guard(api_key: str) -> Callable[[str | None], None]:
    """A FastAPI dependency that answers 401 unless the request's API key header equals ``api_key``."""
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="the service's API key")

    def check(given: Annotated[str | None, Security(header)]) -> None:
        if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, f"missing or wrong {API_KEY_HEADER} header")

    return check


def build_api(model: ScoringModel, settings: ServiceSettings, api_key: str | None,
              draining: Callable[[], bool] = lambda: False) -> FastAPI:
    """The service's FastAPI app scoring with ``model`` under ``settings``' limits; ``api_key`` guards
    /score and /info (None: open, and the OpenAPI schema lists no 401). While ``draining()`` says the
    service is stopping, new score requests are answered 503 with ``Retry-After`` (those already in
    flight finish)."""
    api = FastAPIOffline(title=TITLE, description=DESCRIPTION)
    guard = [] if api_key is None else [Security(api_key_guard(api_key))]
    auth = () if api_key is None else (401,)
    limit = settings.max_sequences_per_request
    largest = len(json.dumps({"sequences": ["A" * model.length] * limit}))
    if largest > settings.max_body_bytes:
        raise UserError(f"max_body_bytes {settings.max_body_bytes} is smaller than the largest request the schema "
                        f"allows ({limit} sequences of length {model.length}: {largest} bytes); raise it or lower "
                        "max_sequences_per_request")
    request_model = score_request_model(model.alphabet, model.length, limit)
    body_schema = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": request_model.model_json_schema()}}}}

    @api.post("/score", response_model=ScoreResponse, openapi_extra=body_schema, dependencies=guard,
              responses=error_responses(400, *auth, 413, 422, 503),
              summary="proxy score, aux mean and aux spread of each sequence (label units)")
    async def score(request: Request) -> ScoreResponse:
        if draining():
            raise HTTPException(503, "the service is stopping; retry, or use another replica or service",
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        body = await read_limited_body(request, settings.max_body_bytes)
        given = parse_score_request(body, request_model, model.alphabet, model.length, limit)
        sequences, codes = encode_request(given, model.alphabet)
        scores = await model.score_codes(codes)
        aux_mean, aux_std = scores.get("aux_mean"), scores.get("aux_std")
        rows = [SequenceScore(sequence=seq, proxy_score=float(scores["proxy_score"][i]),
                              aux_mean=None if aux_mean is None else float(aux_mean[i]),
                              aux_std=None if aux_std is None else float(aux_std[i]))
                for i, seq in enumerate(sequences)]
        return ScoreResponse(scores=rows, model=model.identity)

    @api.get("/healthz", response_model=Health, summary="liveness: the replica has its model loaded")
    async def healthz() -> Health:
        return Health()

    @api.get("/info", response_model=ServiceInfo, dependencies=guard, responses=error_responses(*auth),
             summary="task, alphabet, length, LM id and artifact hash")
    async def info() -> ServiceInfo:
        return model.info()

    return api
