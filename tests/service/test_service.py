"""The Ray Serve scoring service: scores equal the in-process proxy, every bad input is a 4xx,
the API key guards /score and /info, and the client retries, splits and reports errors.

One Serve instance per module on a free 127.0.0.1 port, always shut down.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import requests

from bib_ray.backbones import BackboneSpec
from bib_ray.proxy.artifacts import load_proxy_artifact
from bib_ray.cli import main
from bib_ray.service.client import ProxyClient, ServiceError
from bib_ray.core.aux_ensemble import AuxiliarySettings
from bib_ray.errors import UserError
from bib_ray.distributed.cluster_utils import free_port
from bib_ray.proxy.fitting import ProxySettings, fit_and_save_proxy
from bib_ray.service import launch
from bib_ray.service.settings import DEFAULT_DEPLOYMENT, ServeDeployment, ServiceSettings, load_serve_yaml
from bib_ray.tasks import load_task
from tests.helpers import REPO_ROOT, ensure_local_ray

PER_REQUEST = 16


@pytest.fixture(scope="module")
def artifact(shared_data_dir, tmp_path_factory) -> Path:
    task = load_task("tfbind8", shared_data_dir)
    return fit_and_save_proxy(task, ProxySettings(BackboneSpec("tiny"), device="cpu"), tmp_path_factory.mktemp("artifact") / "proxy",
                              AuxiliarySettings(members=3, epochs=2, max_rows=2000))


@pytest.fixture(scope="module")
def deployment() -> ServeDeployment:
    return ServeDeployment(**dict(DEFAULT_DEPLOYMENT, port=free_port()))


@pytest.fixture(scope="module")
def service(artifact, deployment):
    ensure_local_ray()
    settings = ServiceSettings(artifact=str(artifact), device="cpu", max_batch_sequences=64,
                               max_sequences_per_request=PER_REQUEST, max_body_bytes=4096)
    try:
        yield launch.deploy(settings, deployment)
    finally:
        launch.shutdown()


@pytest.fixture(scope="module")
def offline_sequences(shared_data_dir) -> list[str]:
    task = load_task("tfbind8", shared_data_dir)
    rng = np.random.default_rng(0)
    return task.sequences(task.x[rng.choice(len(task.y), 40, replace=False)])


def test_scores_equal_in_process_proxy(service, artifact, offline_sequences):
    batch = offline_sequences[:PER_REQUEST]
    answer = requests.post(f"{service}/score", json={"sequences": batch}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = load_proxy_artifact(artifact).score(batch)
    served = {key: np.array([row[key] for row in body["scores"]]) for key in expected}
    for key, values in expected.items():
        np.testing.assert_allclose(served[key], values, rtol=1e-5, atol=1e-5, err_msg=key)
    assert [row["sequence"] for row in body["scores"]] == batch
    assert body["model"]["task"] == "tfbind8" and body["model"]["lm_id"] == "tiny"
    assert served["aux_std"].max() > 0  # three members that disagree somewhere


def test_lowercase_is_scored_as_uppercase_and_the_schema_says_so(service, offline_sequences):
    sequence = offline_sequences[0]
    answer = requests.post(f"{service}/score", json={"sequences": [sequence.lower()]}, timeout=30)
    reference = requests.post(f"{service}/score", json={"sequences": [sequence]}, timeout=30)
    assert answer.json()["scores"] == reference.json()["scores"]
    padded = requests.post(f"{service}/score", json={"sequences": [f" {sequence}\n"]}, timeout=30)
    assert padded.status_code == 422 and "has length" in padded.json()["detail"]
    schema = requests.get(f"{service}/openapi.json", timeout=30).json()["paths"]["/score"]["post"]["requestBody"]
    items = schema["content"]["application/json"]["schema"]["properties"]["sequences"]
    assert items["items"]["minLength"] == items["items"]["maxLength"] == len(sequence)
    assert items["items"]["pattern"] == f"^[ACGTacgt]{{{len(sequence)}}}$" and items["maxItems"] == PER_REQUEST


def test_concurrent_requests_are_batched_and_answered_in_order(service, offline_sequences):
    client = ProxyClient(service)
    chunks = [offline_sequences[i:i + 4] for i in range(0, 40, 4)]
    results: dict[int, list[dict]] = {}

    def send(index: int) -> None:
        results[index] = client.score_request(chunks[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(chunks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for index, chunk in enumerate(chunks):
        assert [row["sequence"] for row in results[index]] == chunk
    together = client.score(offline_sequences, per_request=PER_REQUEST)
    flat = [row for i in range(len(chunks)) for row in results[i]]
    np.testing.assert_allclose([r["proxy_score"] for r in flat], [r["proxy_score"] for r in together], rtol=1e-5)


BAD_REQUESTS = [
    ("unknown letters", {"json": {"sequences": ["ACGTACGZ"]}}, 422, "outside the alphabet"),
    ("wrong length", {"json": {"sequences": ["ACGTACGT", "ACG"]}}, 422, "sequence 1 has length 3"),
    ("empty list", {"json": {"sequences": []}}, 422, "at least 1 item"),
    ("too many", {"json": {"sequences": ["ACGTACGT"] * (PER_REQUEST + 1)}}, 413, f"at most {PER_REQUEST}"),
    ("oversized body", {"data": json.dumps({"sequences": ["A" * 5000]}),
                        "headers": {"content-type": "application/json"}}, 413, "4096"),
    ("malformed JSON", {"data": "{\"sequences\": [", "headers": {"content-type": "application/json"}}, 400,
     "not valid JSON"),
    ("wrong shape", {"json": {"seqs": ["ACGTACGT"]}}, 422, "sequences"),
    ("not strings", {"json": {"sequences": [12345678]}}, 422, "sequences.0"),
    ("deep nesting", {"data": "[" * 3000 + "]" * 1000, "headers": {"content-type": "application/json"}}, 400,
     "nests arrays/objects 3000 deep"),
    ("not UTF-8", {"data": b'{"sequences": ["\xff"]}', "headers": {"content-type": "application/json"}}, 400,
     "not UTF-8"),
]


@pytest.mark.parametrize("what,request_kwargs,status,message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_is_a_4xx_and_the_service_keeps_serving(service, what, request_kwargs, status, message):
    answer = requests.post(f"{service}/score", timeout=30, **request_kwargs)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert requests.get(f"{service}/healthz", timeout=10).json() == {"status": "ok"}
    again = requests.post(f"{service}/score", json={"sequences": ["ACGTACGT"]}, timeout=30)
    assert again.status_code == 200


def test_info_health_and_openapi(service, artifact):
    info = requests.get(f"{service}/info", timeout=10).json()
    loaded = load_proxy_artifact(artifact)
    assert info["task"] == "tfbind8" and info["alphabet"] == "ACGT" and info["length"] == 8
    assert info["lm_id"] == "tiny" and info["artifact_sha256"] == loaded.sha256
    assert info["aux_members"] == 3 and info["max_sequences_per_request"] == PER_REQUEST
    schema = requests.get(f"{service}/openapi.json", timeout=10).json()
    assert {"/score", "/info", "/healthz"} <= set(schema["paths"])
    assert "requestBody" in schema["paths"]["/score"]["post"]
    assert {"400", "413", "422"} <= set(schema["paths"]["/score"]["post"]["responses"])


def test_chunked_body_over_the_limit_is_a_413(service):
    chunks = (b'{"sequences": ["' + b"A" * 2000, b"A" * 2000, b"A" * 2000 + b'"]}')
    answer = requests.post(f"{service}/score", data=iter(chunks), timeout=30,
                           headers={"content-type": "application/json"})
    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert answer.status_code == 413 and "4096" in answer.json()["detail"]


def test_docs_are_served_without_a_cdn(service):
    page = requests.get(f"{service}/docs", timeout=10)
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls and all(url.startswith("/static-offline-docs/") for url in urls), urls
    for url in urls:
        assert requests.get(f"{service}{url}", timeout=10).status_code == 200, url


def test_api_key_guards_score_and_info(service, artifact, deployment, monkeypatch):
    monkeypatch.setenv("BIB_RAY_TEST_KEY", "s3cret")
    settings = ServiceSettings(artifact=str(artifact), device="cpu", api_key_env="BIB_RAY_TEST_KEY")
    secured = deployment.model_copy(update={"route_prefix": "/secure"})
    url = launch.deploy(settings, secured, check_port=False, name="secured")
    body = {"sequences": ["ACGTACGT"]}
    assert requests.post(f"{url}/score", json=body, timeout=30).status_code == 401
    wrong = requests.post(f"{url}/score", json=body, headers={"X-API-Key": "nope"}, timeout=30)
    assert wrong.status_code == 401 and "X-API-Key" in wrong.json()["detail"]
    assert requests.get(f"{url}/info", timeout=10).status_code == 401
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    rows = ProxyClient(url, api_key="s3cret").score(["ACGTACGT"])
    assert rows[0]["sequence"] == "ACGTACGT"
    docs = requests.get(f"{url}/docs", timeout=10)
    assert docs.status_code == 200 and 'src="/secure/static-offline-docs/swagger-ui-bundle.js"' in docs.text
    assert requests.get(f"{url}/static-offline-docs/swagger-ui-bundle.js", timeout=10).status_code == 200
    assert "401" in requests.get(f"{url}/openapi.json", timeout=10).json()["paths"]["/score"]["post"]["responses"]


def test_api_key_env_must_be_set(artifact, monkeypatch):
    monkeypatch.delenv("BIB_RAY_UNSET_KEY", raising=False)
    with pytest.raises(UserError, match="BIB_RAY_UNSET_KEY"):
        ServiceSettings(artifact=str(artifact), api_key_env="BIB_RAY_UNSET_KEY").resolve_api_key()


def test_score_command_writes_csv(service, offline_sequences, tmp_path, capsys):
    source = tmp_path / "candidates.fasta"
    source.write_text("".join(f">c{i}\n{s}\n" for i, s in enumerate(offline_sequences)))
    out = tmp_path / "scored.csv"
    assert main(["score", str(source), "--url", service, "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert table["sequence"].tolist() == offline_sequences
    direct = ProxyClient(service).score(offline_sequences)
    np.testing.assert_allclose(table["proxy_score"], [r["proxy_score"] for r in direct], rtol=1e-6)


def test_score_command_reports_service_errors(service, tmp_path, capsys):
    source = tmp_path / "bad.csv"
    source.write_text("sequence\nACGTACGT\nACGTNNGT\n")
    assert main(["score", str(source), "--url", service]) == 2
    assert "outside the alphabet" in capsys.readouterr().err


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` requests, then a valid /score body."""

    failures = 2
    seen = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        type(self).seen += 1
        length = int(self.headers.get("content-length", 0))
        sequences = json.loads(self.rfile.read(length))["sequences"]
        if type(self).seen <= type(self).failures:
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"scores": [{"sequence": s, "proxy_score": 1.0} for s in sequences]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_client_retries_transient_failures_and_counts_them():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = ProxyClient(f"http://127.0.0.1:{server.server_address[1]}", retries=3, backoff_s=0.01)
        assert client.score_request(["AC"])[0]["proxy_score"] == 1.0
        assert client.retries_used == 2 and FlakyHandler.seen == 3
    finally:
        server.shutdown()
        server.server_close()


def test_client_gives_up_with_a_readable_error():
    client = ProxyClient(f"http://127.0.0.1:{free_port()}", retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(ServiceError, match="failed after retries"):
        client.health()


def test_serve_yaml_is_a_valid_serve_config_mapping_onto_settings(artifact, tmp_path):
    from ray.serve.schema import ServeDeploySchema

    from bib_ray.validation import load_yaml_mapping

    path = REPO_ROOT / "deployments" / "proxy_service.yaml"
    ServeDeploySchema.model_validate(load_yaml_mapping(path))
    parsed = load_serve_yaml(path)
    assert parsed.host == "127.0.0.1"
    settings = ServiceSettings(**dict(parsed.settings_args, artifact=str(artifact)))
    assert set(parsed.settings_args) == set(ServiceSettings.model_fields) and settings.device == "auto"
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text().replace("proxy_location: HeadOnly", "proxy_location: Nowhere"))
    with pytest.raises(UserError, match="not a valid Ray Serve config"):
        load_serve_yaml(broken)
    typo = tmp_path / "typo.yaml"
    typo.write_text(path.read_text().replace("max_body_bytes:", "max_body_byte:"))
    with pytest.raises(UserError, match="max_body_byte"):
        from bib_ray.service.app import build_app

        build_app(dict(load_serve_yaml(typo).settings_args, artifact=str(artifact)))


@pytest.mark.parametrize("argv,message", [
    (["serve", "/nonexistent/proxy"], "is not a proxy artifact"),
    (["serve", "/nonexistent/proxy", "--replicas", "0"], "num_replicas"),
    (["serve", "/nonexistent/proxy", "--port", "70000"], "port"),
    (["serve", "/nonexistent/proxy", "--gpus-per-replica", "-1"], "gpus-per-replica must be >= 0"),
    (["serve", "/nonexistent/proxy", "--max-batch-sequences", "4"], "must not exceed"),
    (["score", "/nonexistent.csv", "--url", "http://127.0.0.1:9"], "does not exist"),
])
def test_cli_errors_are_readable(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_serve_settings_reject_request_larger_than_batch(artifact):
    with pytest.raises(ValueError, match="must not exceed"):
        ServiceSettings(artifact=str(artifact), max_batch_sequences=8, max_sequences_per_request=16)


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_serve_command_scores_and_stops_cleanly_under_load(artifact, tmp_path, signame):
    """`bib-ray serve` in its own process (its own embedded Ray): scored through the client, then stopped by
    SIGINT or SIGTERM while 8 clients keep it busy. No request is broken: each one unanswered when the signal
    came is either answered (the replica had taken it) or refused whole with 503 and Retry-After (it was still
    waiting behind a running batch when the replicas stopped taking requests); later ones get 503, then a
    refused connection. The process prints two lines, exits 0 within the drain time plus 5 s, and leaves no
    Ray process behind."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import threading
    import time

    import requests

    port, drain_s = free_port(), 10
    ray_tmp = tempfile.mkdtemp(prefix="br-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = dict(os.environ, RAY_TMPDIR=ray_tmp)
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "bib_ray.cli", "serve", str(artifact), "--port", str(port),
               "--config", str(REPO_ROOT / "deployments" / "proxy_service.yaml"), "--device", "cpu",
               "--drain-timeout", str(drain_s)]
    # SIGINT's default action in the child even when pytest runs as a background job (`cmd &`), which starts
    # with SIGINT ignored; Python inherits that and then never raises KeyboardInterrupt.
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    records, stop = [], threading.Event()
    try:
        deadline = time.monotonic() + 240
        line, seen = "", []
        while time.monotonic() < deadline and "serving" not in line:
            line = process.stdout.readline()
            seen.append(line)
            assert line or process.poll() is None, "bib-ray serve exited early:\n" + "".join(seen)
        assert f"http://127.0.0.1:{port}" in line
        rows = ProxyClient(f"http://127.0.0.1:{port}").score(["ACGTACGT", "TTTTAAAA"])
        expected = load_proxy_artifact(artifact).score(["ACGTACGT", "TTTTAAAA"])["proxy_score"]
        np.testing.assert_allclose([r["proxy_score"] for r in rows], expected, rtol=1e-5, atol=1e-5)

        def client() -> None:
            session = requests.Session()
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    answer = session.post(f"http://127.0.0.1:{port}/score", json={"sequences": ["ACGTACGT"] * 64},
                                          timeout=60)
                    refused_well = answer.status_code == 503 and answer.headers.get("Retry-After") == "1"
                    records.append((sent, time.monotonic(), "503+Retry-After" if refused_well else answer.status_code))
                except requests.RequestException as error:
                    records.append((sent, time.monotonic(), type(error).__name__))
                    time.sleep(0.05)

        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        time.sleep(4)
        signalled = time.monotonic()
        process.send_signal(getattr(signal, signame))
        _, err = process.communicate(timeout=drain_s + 60)
        exited = time.monotonic() - signalled
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    for thread in clients:
        thread.join(timeout=60)
    in_flight = [status for sent, done, status in records if sent < signalled < done]
    later = {status for sent, _, status in records if sent > signalled}
    lines = [line for line in err.splitlines() if line.strip()]
    left = subprocess.run(["pgrep", "-f", ray_tmp], capture_output=True, text=True).stdout.split()
    import shutil

    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert process.returncode == 0, err[-3000:]
    assert lines == [f"bib-ray serve: {signame} received: taking no new requests, finishing those in flight "
                     f"(at most {drain_s} s)", "bib-ray serve: stopped"], err[-3000:]
    assert 200 in in_flight and set(in_flight) <= {200, "503+Retry-After"}, f"unanswered at the signal: {in_flight}"
    # sent after the signal: answered (a few get in before the replicas see it), refused with 503, refused at
    # the closed port, or cut off while the HTTP proxy stops (ChunkedEncodingError); never a wrong answer,
    # and ProxyClient retries each of these refusals
    assert later <= {200, "503+Retry-After", "ConnectionError", "ChunkedEncodingError"}, later
    assert exited <= drain_s + 5, f"{exited:.1f} s from {signame} to exit"
    assert not left, f"Ray processes left: {left}"


def test_stopping_the_local_service_gives_up_on_a_hung_shutdown(monkeypatch):
    import threading
    import time

    from bib_ray.distributed import runtime
    from bib_ray.service import launch

    released, disconnected = threading.Event(), threading.Event()

    def hung_disconnect() -> None:  # Ray's shutdown hangs until released; never the tests' shared Ray
        released.wait(30)
        disconnected.set()

    monkeypatch.setattr(runtime, "disconnect", hung_disconnect)
    monkeypatch.setattr(launch, "drain", lambda *_: 0)  # never the tests' shared service
    started = time.monotonic()
    try:
        assert launch.stop_local_service(0, timeout_s=0.5) is False
        assert time.monotonic() - started < 5 and not disconnected.is_set()
    finally:
        released.set()
        assert disconnected.wait(5)  # the abandoned stop finishes before the patches are undone
    disconnected.clear()
    monkeypatch.setattr(runtime, "disconnect", disconnected.set)
    assert launch.stop_local_service(0, timeout_s=5) is True and disconnected.is_set()


def test_replicas_auto_maps_to_serves_autoscaler_and_queues_are_bounded(tmp_path):
    from bib_ray.service.settings import DEFAULT_AUTOSCALING, DEFAULT_MAX_QUEUED_REQUESTS

    auto = ServeDeployment(**DEFAULT_DEPLOYMENT).with_overrides(num_replicas="auto")
    options = auto.deployment_options()
    assert options["autoscaling_config"] == DEFAULT_AUTOSCALING and "num_replicas" not in options
    assert options["max_queued_requests"] == DEFAULT_MAX_QUEUED_REQUESTS
    assert options["backpressure_config"].status_code == 503 and options["backpressure_config"].retry_after_s == 1
    assert ServeDeployment(**DEFAULT_DEPLOYMENT).with_overrides(num_replicas="3").deployment_options()["num_replicas"] == 3
    yaml_text = (REPO_ROOT / "deployments" / "proxy_service.yaml").read_text().replace(
        "num_replicas: 1", "num_replicas: auto\n        autoscaling_config: {min_replicas: 1, max_replicas: 2}")
    path = tmp_path / "auto.yaml"
    path.write_text(yaml_text)
    loaded = load_serve_yaml(path)
    assert loaded.num_replicas == "auto" and loaded.autoscaling()["max_replicas"] == 2
    assert "1-2 replicas (autoscaled" in loaded.describe_replicas()
    for bad, message in [({"num_replicas": "many"}, "num_replicas"), ({"num_replicas": 0}, "at least 1")]:
        with pytest.raises(UserError, match=message):
            ServeDeployment(**DEFAULT_DEPLOYMENT).with_overrides(**bad)
    with pytest.raises(ValueError, match="needs num_replicas: auto"):
        ServeDeployment(**dict(DEFAULT_DEPLOYMENT, autoscaling_config={"max_replicas": 2}))
    with pytest.raises(ValueError, match="min_replicas"):
        ServeDeployment(**dict(DEFAULT_DEPLOYMENT, num_replicas="auto",
                               autoscaling_config={"min_replicas": 3, "max_replicas": 2}))


def test_requests_beyond_the_queue_get_503_with_retry_after(service, artifact, deployment):
    """One request at a time per replica, one waiting: the rest of a burst are refused, not queued without bound."""
    import threading

    settings = ServiceSettings(artifact=str(artifact), device="cpu", max_batch_sequences=1,
                               max_sequences_per_request=1)
    tight = deployment.model_copy(update={"route_prefix": "/tight", "max_ongoing_requests": 1,
                                          "max_queued_requests": 1})
    url = launch.deploy(settings, tight, check_port=False, name="tight")
    answers, lock = [], threading.Lock()

    def burst() -> None:
        session = requests.Session()
        for _ in range(20):
            answer = session.post(f"{url}/score", json={"sequences": ["ACGTACGT"]}, timeout=60)
            with lock:
                answers.append((answer.status_code, answer.headers.get("Retry-After")))

    threads = [threading.Thread(target=burst) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    statuses = {status for status, _ in answers}
    assert statuses <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    assert all(after == "1" for status, after in answers if status == 503)


def test_the_client_waits_as_retry_after_says():
    """ProxyClient (and `bib-ray score`) retries a 503 after the seconds its Retry-After names."""
    import http.server
    import threading
    import time

    calls = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            calls.append(time.monotonic())
            self.rfile.read(int(self.headers["Content-Length"]))
            busy = len(calls) == 1
            body = b'{"detail": "busy"}' if busy else b'{"scores": [], "model": {}}'
            self.send_response(503 if busy else 200)
            if busy:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = ProxyClient(f"http://127.0.0.1:{server.server_address[1]}", retries=3, backoff_s=0.01)
        assert client.score_request(["ACGTACGT"]) == []
        assert len(calls) == 2 and calls[1] - calls[0] >= 0.95 and client.retries_used == 1
    finally:
        server.shutdown()
