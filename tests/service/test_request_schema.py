"""The served schema says exactly what the service accepts: requests generated from ``/openapi.json``
itself (hypothesis-jsonschema) are all scored, and of arbitrary and near-valid requests, exactly those
the schema forbids are refused with a 4xx (never a 5xx)."""

from __future__ import annotations

import json
from collections import Counter

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from starlette.testclient import TestClient

from bib_ray.service.http_api import build_api
from tests.service.test_http_api import LENGTH, PER_REQUEST, StandInModel, service_settings

CLIENT = TestClient(build_api(StandInModel(), service_settings(), None))
OPENAPI = CLIENT.get("/openapi.json").json()
SCHEMA = OPENAPI["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
ANSWERS: Counter = Counter()  # (allowed by the schema, status class) over every request sent here
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

letters = st.sampled_from(list("ACGTacgtNZ -é\u0131"))
sequences = st.one_of(st.text(letters, min_size=LENGTH, max_size=LENGTH), st.text(letters, max_size=LENGTH + 3))
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=12)
near_valid = st.one_of(
    st.fixed_dictionaries({"sequences": st.lists(sequences, max_size=PER_REQUEST + 3)}),
    st.fixed_dictionaries({"sequences": st.lists(sequences, min_size=1, max_size=3)},
                          optional={"extra": json_values}),
    st.fixed_dictionaries({"sequences": json_values}), json_values)


def send(body: object) -> int:
    answer = CLIENT.post("/score", content=json.dumps(body))
    ANSWERS[(VALIDATOR.is_valid(body), answer.status_code // 100)] += 1
    return answer.status_code


def test_the_schema_states_length_alphabet_and_list_size():
    items = SCHEMA["properties"]["sequences"]
    assert (items["minItems"], items["maxItems"]) == (1, PER_REQUEST)
    assert items["items"]["minLength"] == items["items"]["maxLength"] == LENGTH
    assert items["items"]["pattern"] == "^[ACGTacgt]{8}$" and SCHEMA["additionalProperties"] is False


@PROPERTY
@given(from_schema(SCHEMA))
def test_every_request_the_schema_allows_is_scored(body):
    assert send(body) == 200


@PROPERTY
@given(near_valid)
def test_every_request_the_schema_forbids_is_a_4xx_and_no_other(body):
    status = send(body)
    assert status == 200 if VALIDATOR.is_valid(body) else 400 <= status < 500


def test_counts():
    """Run last (file order): what the two properties sent; ``pytest -s`` prints it."""
    print(f"\nschema property test: {sum(ANSWERS.values())} requests; "
          + ", ".join(f"{'allowed' if allowed else 'forbidden'} -> {kind}xx: {count}"
                      for (allowed, kind), count in sorted(ANSWERS.items())))
    assert not any(kind == 5 for _, kind in ANSWERS)
    assert ANSWERS[(True, 2)] >= 300 and ANSWERS[(False, 4)] >= 100
    assert not ANSWERS[(True, 4)] and not ANSWERS[(False, 2)]
