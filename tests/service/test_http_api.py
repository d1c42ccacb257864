"""The scoring service's HTTP layer in-process, without Ray: no request body is ever a 5xx (Hypothesis
fuzzing of arbitrary bytes, arbitrary and deeply nested JSON, near-valid requests), the parsing limits,
the OpenAPI 4xx documentation, /docs served without a CDN, and the batching/admission options."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
from fastapi import HTTPException
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bib_ray.service.http_api import (MAX_JSON_DEPTH, build_api, encode_request, json_nesting_depth,
                                      parse_score_request, score_request_model)
from bib_ray.service.schemas import ModelIdentity, ServiceInfo
from bib_ray.service.settings import ServiceSettings

LENGTH, PER_REQUEST, BODY_LIMIT = 8, 16, 16384
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HANDLED = {200, 400, 413, 422}
REQUEST = score_request_model("ACGT", LENGTH, PER_REQUEST)


def parse(body: bytes) -> list[str]:
    """The stand-in model's request parsing."""
    return parse_score_request(body, REQUEST, "ACGT", LENGTH, PER_REQUEST)


class StandInModel:
    """A ScoringModel over DNA 8-mers whose proxy score is the sum of the codes (no LM, no Ray)."""

    alphabet, length = "ACGT", LENGTH
    identity = ModelIdentity(task="stand-in", lm_id="none", artifact_sha256="0" * 64)

    async def score_codes(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        total = codes.sum(axis=1).astype(float)
        return {"proxy_score": total, "aux_mean": total / 2, "aux_std": np.ones(len(codes))}

    def info(self) -> ServiceInfo:
        return ServiceInfo(task="stand-in", alphabet=self.alphabet, length=LENGTH, lm_id="none", hidden_size=1,
                           offline_rows=0, aux_members=0, artifact_sha256="0" * 64,
                           max_sequences_per_request=PER_REQUEST)


def service_settings(**overrides) -> ServiceSettings:
    values = dict(artifact="unused", device="cpu", max_batch_sequences=64, max_sequences_per_request=PER_REQUEST,
                  max_body_bytes=BODY_LIMIT)
    return ServiceSettings(**dict(values, **overrides))


@pytest.fixture(scope="module")
def client():
    with TestClient(build_api(StandInModel(), service_settings(), None)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def secured_client():
    with TestClient(build_api(StandInModel(), service_settings(), "s3cret")) as test_client:
        yield test_client


def post_score(client: TestClient, body: bytes, chunked: bool = False):
    """POST ``body`` to /score (``chunked``: streamed without Content-Length); fails the test on a 5xx."""
    content = iter([body[i:i + 1000] for i in range(0, len(body), 1000)]) if chunked else body
    answer = client.post("/score", content=content, headers={"content-type": "application/json"})
    if currently_in_test_context():
        event(f"HTTP {answer.status_code}")  # the mix of answers, in --hypothesis-show-statistics
    assert answer.status_code in HANDLED, (answer.status_code, answer.text[:500], body[:200])
    if answer.status_code != 200:
        assert isinstance(answer.json()["detail"], str)
    return answer


# --- strategies ----------------------------------------------------------------------------------

json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=6)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=6), max_leaves=40)


@st.composite
def deeply_nested(draw: st.DrawFn) -> str:
    """Arrays/objects nested up to 3000 deep (past Python's recursion limit), balanced or cut short,
    bare or as the value of "sequences", with brackets inside strings now and then."""
    depth = draw(st.integers(1, 3000))
    pattern = draw(st.lists(st.sampled_from(["[", '{"a":', '{"sequences":', '["x",']), min_size=1, max_size=3))
    openers = [pattern[i % len(pattern)] for i in range(depth)]
    closers = "".join("]" if opener.startswith("[") else "}" for opener in reversed(openers))
    leaf = draw(st.sampled_from(['"ACGTACGT"', "1", "null", '"[[[{{"', "[]", "{}", '"\\"[["']))
    body = "".join(openers) + leaf + closers
    body = body[:draw(st.integers(0, len(body)))] if draw(st.booleans()) else body
    return '{"sequences": ' + body + "}" if draw(st.booleans()) else body


letters = st.sampled_from(list("ACGTacgt") * 4 + list(" \t\nNZ-*é\u0131\u00df\x00\ud800\U0001F600[\"\\"))
good_sequences = st.text(st.sampled_from("ACGT"), min_size=LENGTH, max_size=LENGTH)
padded_sequences = st.builds(lambda before, sequence, after: before + sequence + after,
                             st.sampled_from(["", " ", "\n"]),
                             st.text(st.sampled_from("ACGTacgt"), min_size=LENGTH, max_size=LENGTH),
                             st.sampled_from(["", "\t", " \r\n"]))
sequence_like = (good_sequences | st.text(letters, max_size=12) | st.integers() | st.floats() | st.none()
                 | st.booleans() | st.lists(good_sequences, max_size=3) | st.dictionaries(st.text(max_size=3),
                                                                                           good_sequences, max_size=2))
sequences_field = (st.lists(good_sequences, min_size=1, max_size=PER_REQUEST)
                   | st.lists(sequence_like, max_size=20)
                   | st.lists(good_sequences, min_size=PER_REQUEST - 1, max_size=3 * PER_REQUEST)
                   | st.integers(0, 2000).map(lambda n: ["ACGTACGT"] * n)
                   | st.just([]) | good_sequences | st.text(max_size=20) | json_values)
near_valid = st.one_of(
    st.fixed_dictionaries({"sequences": st.lists(padded_sequences, min_size=1, max_size=PER_REQUEST)}),
    st.fixed_dictionaries({"sequences": sequences_field}, optional={"extra": json_values, "seqs": sequences_field}),
    st.fixed_dictionaries({"seqs": sequences_field}),
    st.lists(st.fixed_dictionaries({"sequences": sequences_field}), max_size=2),
)


# --- fuzzing: no body is a 5xx --------------------------------------------------------------------

@FUZZ
@given(body=st.binary(max_size=3000), chunked=st.booleans())
def test_arbitrary_bytes_are_never_a_server_error(client, body, chunked):
    post_score(client, body, chunked)


@FUZZ
@given(text=json_values.map(json.dumps) | deeply_nested(), chunked=st.booleans())
def test_arbitrary_and_deeply_nested_json_is_never_a_server_error(client, text, chunked):
    answer = post_score(client, text.encode(), chunked)
    if json_nesting_depth(text) > MAX_JSON_DEPTH and len(text.encode()) <= BODY_LIMIT:
        assert answer.status_code == 400 and "nests" in answer.json()["detail"]


@settings(FUZZ, max_examples=200)
@given(request=near_valid, ascii_only=st.booleans(), chunked=st.booleans())
def test_near_valid_requests_are_scored_or_refused_with_a_4xx(client, request, ascii_only, chunked):
    answer = post_score(client, json.dumps(request, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"),
                        chunked)
    if answer.status_code == 200:
        assert len(answer.json()["scores"]) == len(request["sequences"])


@FUZZ
@given(value=json_values, ascii_only=st.booleans())
def test_nesting_depth_is_exact_for_valid_json(value, ascii_only):
    def depth(item) -> int:
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        return 1 + max(map(depth, children), default=0) if isinstance(item, (dict, list)) else 0

    assert json_nesting_depth(json.dumps(value, ensure_ascii=ascii_only)) == depth(value)


# --- the limits, one by one -----------------------------------------------------------------------

def test_deep_nesting_is_refused_before_decoding(client):
    for body in ("[" * 100_000, "[" * 5000 + "]" * 5000, '{"sequences": ' + "[" * 2000 + "]" * 2000 + "}"):
        with pytest.raises(HTTPException) as refused:
            parse(body.encode())
        assert refused.value.status_code == 400 and "deep" in refused.value.detail
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    with pytest.raises(HTTPException) as wrong_shape:
        parse(nested.encode())
    assert wrong_shape.value.status_code == 422  # at the limit it decodes, then fails validation
    assert json_nesting_depth('{"s": ["[[[", "\\"[{", "\\\\"], "t": [[1]]}') == 3


@pytest.mark.parametrize("body,message", [
    (b"1" * (sys.get_int_max_str_digits() + 1), "digits"),
    ('{"sequences": ["ACGTACGT"]}'.encode("utf-16"), "not UTF-8"),
    (b'{"sequences": ["ACGT\xff"]}', "not UTF-8"),
    (b'{"sequences": ["ACGT', "not valid JSON"),
])
def test_undecodable_bodies_are_a_400(body, message):
    with pytest.raises(HTTPException) as refused:
        parse(body)
    assert refused.value.status_code == 400 and message in refused.value.detail


def test_utf8_byte_order_mark_is_accepted():
    assert parse(b'\xef\xbb\xbf{"sequences": ["ACGTACGT"]}') == ["ACGTACGT"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_limit_holds_with_and_without_content_length(client, chunked):
    body = json.dumps({"sequences": ["A" * (BODY_LIMIT + 10)]}).encode()
    answer = post_score(client, body, chunked)
    assert answer.status_code == 413 and str(BODY_LIMIT) in answer.json()["detail"]
    assert ("transfer-encoding" in answer.request.headers) == chunked
    assert post_score(client, b'{"sequences": ["ACGTACGT"]}', chunked).status_code == 200


def test_requests_are_checked_against_the_schema_naming_the_offending_sequence():
    assert parse(b'{"sequences": ["acgtACGT", "TTTTAAAA"]}') == ["acgtACGT", "TTTTAAAA"]
    cleaned, codes = encode_request(["acgtACGT", "TTTTAAAA"], "ACGT")
    assert cleaned == ["ACGTACGT", "TTTTAAAA"] and codes.shape == (2, LENGTH)
    for sequences, status, message in (
            (["ACGTACGZ"], 422, "sequence 0 has letters outside the alphabet 'ACGT': ['Z']"),
            (["ACGTACGT", "ACG"], 422, "sequence 1 has length 3; this proxy scores 8"),
            ([" ACGTACGT"], 422, "sequence 0 has length 9"), ([], 422, "at least 1 item"),
            (["ACGTACGT"] * (PER_REQUEST + 1), 413, "at most")):
        with pytest.raises(HTTPException) as refused:
            parse(json.dumps({"sequences": sequences}).encode())
        assert refused.value.status_code == status and message in refused.value.detail
    with pytest.raises(HTTPException, match="Extra inputs"):
        parse(b'{"sequences": ["ACGTACGT"], "other": 1}')


def test_scores_come_back_in_request_order(client):
    answer = post_score(client, json.dumps({"sequences": ["AAAAAAAA", "TTTTTTTT", "acgtacgt"]}).encode())
    rows = answer.json()["scores"]
    assert [r["sequence"] for r in rows] == ["AAAAAAAA", "TTTTTTTT", "ACGTACGT"]
    assert [r["proxy_score"] for r in rows] == [0.0, 24.0, 12.0]


def test_api_key_guards_score_and_info_before_the_body_is_read(secured_client):
    assert secured_client.post("/score", content=b"[" * 100).status_code == 401
    assert secured_client.post("/score", json={"sequences": ["ACGTACGT"]},
                               headers={"X-API-Key": "nope"}).status_code == 401
    assert secured_client.get("/info").status_code == 401
    assert secured_client.get("/healthz").status_code == 200
    granted = secured_client.post("/score", json={"sequences": ["ACGTACGT"]}, headers={"X-API-Key": "s3cret"})
    assert granted.status_code == 200
    assert secured_client.get("/info", headers={"X-API-Key": "s3cret"}).json()["length"] == LENGTH


# --- OpenAPI and the offline docs -------------------------------------------------------------------

def test_openapi_lists_the_4xx_answers(client, secured_client):
    schema = client.get("/openapi.json").json()
    score = schema["paths"]["/score"]["post"]["responses"]
    assert {"200", "400", "413", "422"} <= set(score) and "401" not in score
    for code in ("400", "413", "422"):
        assert score[code]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert schema["components"]["schemas"]["ErrorResponse"]["required"] == ["detail"]
    secured = secured_client.get("/openapi.json").json()
    assert {"400", "401", "413", "422"} <= set(secured["paths"]["/score"]["post"]["responses"])
    assert "401" in secured["paths"]["/info"]["get"]["responses"]
    assert "X-API-Key" in json.dumps(secured["components"]["securitySchemes"])


def local_asset_urls(html: str) -> list[str]:
    """The src/href URLs of a docs page; fails the test on any URL that leaves the service."""
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    return urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_their_assets_from_the_service(client, page):
    answer = client.get(page)
    assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
    assert "cdn" not in answer.text.lower() and "fonts.googleapis" not in answer.text
    for url in local_asset_urls(answer.text):
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert "/openapi.json" in answer.text


# --- Serve options ---------------------------------------------------------------------------------

def test_replicas_admit_enough_requests_to_fill_a_batch():
    from bib_ray.service.app import scorer_options
    from bib_ray.service.settings import DEFAULT_DEPLOYMENT

    assert DEFAULT_DEPLOYMENT["max_ongoing_requests"] >= ServiceSettings.model_fields["max_batch_sequences"].default
    wide = service_settings(max_batch_sequences=256)
    options = {"num_replicas": 2, "max_ongoing_requests": 64}
    assert scorer_options(wide, options) == {"num_replicas": 2, "max_ongoing_requests": 256}
    assert scorer_options(service_settings(), {"max_ongoing_requests": 500})["max_ongoing_requests"] == 500
    default = DEFAULT_DEPLOYMENT["max_ongoing_requests"]
    assert scorer_options(service_settings(), None)["max_ongoing_requests"] == default
