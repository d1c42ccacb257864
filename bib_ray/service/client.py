"""Python client of the scoring service: retries with back-off, timeouts, request splitting.

    client = ProxyClient("http://127.0.0.1:8000")
    rows = client.score(["ACGTACGT", ...])   # list of dicts: sequence, proxy_score, aux_mean, aux_std

Connection failures and 429/500/502/503/504 answers are retried (scoring is idempotent);
4xx answers raise ``ServiceError`` with the server's message at once.
"""

from __future__ import annotations

import threading

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bib_ray.errors import UserError
from bib_ray.service.schemas import API_KEY_HEADER

RETRY_STATUSES = (429, 500, 502, 503, 504)


class ServiceError(UserError):
    """The service refused a request or could not be reached after the retries."""


class ProxyClient:
    """Thread-safe: each thread gets its own HTTP session. ``retries_used`` counts retried attempts."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 30.0, retries: int = 5,
                 backoff_s: float = 0.2) -> None:
        self.url = url.rstrip("/")
        self.headers = {API_KEY_HEADER: api_key} if api_key else {}
        self.timeout_s = timeout_s
        self.retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff_s,
                           status_forcelist=RETRY_STATUSES, allowed_methods={"GET", "POST"},
                           raise_on_status=False)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.retries_used = 0
        self._max_per_request: int | None = None

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.mount("http://", HTTPAdapter(max_retries=self.retry))
            session.mount("https://", HTTPAdapter(max_retries=self.retry))
            self._local.session = session
        return session

    def _request(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self._session().request(method, f"{self.url}{path}", headers=self.headers,
                                               timeout=self.timeout_s, **kwargs)
        except requests.RequestException as error:
            raise ServiceError(f"{method} {self.url}{path} failed after retries: {error}") from None
        history = getattr(getattr(response.raw, "retries", None), "history", ())
        if history:
            with self._lock:
                self.retries_used += len(history)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServiceError(f"{method} {path}: HTTP {response.status_code}: {detail}")
        return response.json()

    def health(self) -> dict:
        return self._request("GET", "/healthz")

    def info(self) -> dict:
        return self._request("GET", "/info")

    def score_request(self, sequences: list[str]) -> list[dict]:
        """One POST /score (at most the service's per-request limit)."""
        return self._request("POST", "/score", json={"sequences": list(sequences)})["scores"]

    def score(self, sequences: list[str], per_request: int | None = None) -> list[dict]:
        """Score any number of sequences, split into requests the service accepts, in order."""
        if per_request is None:
            if self._max_per_request is None:
                self._max_per_request = int(self.info()["max_sequences_per_request"])
            per_request = self._max_per_request
        rows: list[dict] = []
        for start in range(0, len(sequences), per_request):
            rows.extend(self.score_request(sequences[start:start + per_request]))
        return rows
