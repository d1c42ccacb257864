"""Settings of the scoring service and the Serve YAML that carries them (deployments/*.yaml).

The YAML is a Ray Serve config file (``serve run`` / ``serve deploy`` read it as is); its one
application's ``args`` map one to one onto ``ServiceSettings``, its one deployment onto
Serve's own ``DeploymentSchema`` (replicas, ``ray_actor_options`` with CPUs/GPUs).
"""

from __future__ import annotations

import os
from pathlib import Path

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bib_ray.validation import load_yaml_mapping, parse_model
from bib_ray.errors import UserError
from bib_ray.service.schemas import API_KEY_HEADER

DEPLOYMENT_NAME = "ProxyScorer"
APPLICATION_NAME = "bib-ray-proxy"


def key_from_env(variable: str, where: str) -> str:
    """The API key held in environment variable ``variable``; UserError naming ``where`` if unset or empty."""
    key = os.environ.get(variable, "")
    if not key:
        raise UserError(f"{where} is {variable!r} but that environment variable is empty or unset")
    return key


class ServiceSettings(BaseModel):
    """What one scoring application serves and how it batches (the ``args`` of the Serve YAML)."""

    model_config = ConfigDict(extra="forbid")

    artifact: str = Field(description="proxy artifact (proxy.json + proxy.safetensors): a directory where the "
                                      "service is deployed from, or a storage URI such as s3://bucket/run/proxy")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N for the LM in each replica")
    max_batch_sequences: int = Field(128, ge=1, description="sequences per batched LM call (@serve.batch)")
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=1, description="seconds a batch waits to fill",
                                        json_schema_extra={"flag": "--batch-wait-timeout"})
    max_sequences_per_request: int = Field(128, ge=1, description="larger requests get HTTP 413")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get HTTP 413")
    api_key_env: str | None = Field(None, description=f"env var holding the key clients must send as "
                                    f"{API_KEY_HEADER}")

    @model_validator(mode="after")
    def _request_fits_a_batch(self) -> "ServiceSettings":
        if self.max_sequences_per_request > self.max_batch_sequences:
            raise ValueError(f"max_sequences_per_request ({self.max_sequences_per_request}) must not exceed "
                             f"max_batch_sequences ({self.max_batch_sequences}): one request is one batch item")
        return self

    def with_checked_artifact(self) -> "ServiceSettings":
        """A copy whose local artifact path is absolute, checked to exist (a storage URI is read as given).

        Only the process that deploys reads it; replicas get the files through Ray, on any node."""
        from bib_ray.proxy.artifacts import read_artifact_files

        if "://" in self.artifact:
            return self
        read_artifact_files(self.artifact)
        return self.model_copy(update={"artifact": str(Path(self.artifact).expanduser().resolve())})

    def resolve_api_key(self) -> str | None:
        """The key from ``api_key_env`` (None when the service is open); an unset variable is an error."""
        return None if self.api_key_env is None else key_from_env(self.api_key_env, "api_key_env")


def parse_service_settings(args: dict) -> ServiceSettings:
    return parse_model(ServiceSettings, args, "invalid service settings")


#: ``num_replicas: auto`` without an ``autoscaling_config``: Serve's autoscaler between 1 and 4 replicas, adding
#: one when replicas average more than 16 requests in flight (over 5 s) and removing one after 30 s below it
DEFAULT_AUTOSCALING = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16, "upscale_delay_s": 5.0,
                       "downscale_delay_s": 30.0}
#: beyond max_ongoing_requests per replica, this many more requests wait; the next are answered 503 + Retry-After
DEFAULT_MAX_QUEUED_REQUESTS = 256
RETRY_AFTER_S = 1.0
DEFAULT_DRAIN_TIMEOUT_S = 10.0


class ServeDeployment(BaseModel):
    """What ``bib-ray serve`` takes from a Serve YAML: HTTP address, one application, its deployment.

    ``num_replicas``: a count, or ``auto`` for Serve's autoscaler with ``autoscaling_config`` (default
    ``DEFAULT_AUTOSCALING``). Requests past ``max_ongoing_requests`` per replica queue up to
    ``max_queued_requests``; beyond that they are answered 503 with ``Retry-After`` (never queued
    without bound). ``graceful_shutdown_timeout_s``: how long a stopping replica finishes the requests
    it has (``bib-ray serve --drain-timeout``)."""

    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = Field(ge=1, le=65535)
    route_prefix: str
    settings_args: dict
    num_replicas: int | Literal["auto"] = 1
    autoscaling_config: dict | None = None
    max_ongoing_requests: int = Field(128, ge=1)
    max_queued_requests: int = Field(DEFAULT_MAX_QUEUED_REQUESTS, ge=1)
    graceful_shutdown_timeout_s: float = Field(DEFAULT_DRAIN_TIMEOUT_S, ge=0)
    ray_actor_options: dict

    @field_validator("num_replicas", mode="before")
    @classmethod
    def _count_or_auto(cls, value: Any) -> Any:
        """'3' (a flag's text) is 3; 'auto' stays."""
        return int(value) if isinstance(value, str) and value.isdigit() else value

    @model_validator(mode="after")
    def _autoscaling_only_when_auto(self) -> "ServeDeployment":
        if isinstance(self.num_replicas, int) and self.num_replicas < 1:
            raise ValueError("num_replicas must be at least 1, or auto")
        if self.autoscaling_config is not None and self.num_replicas != "auto":
            raise ValueError("autoscaling_config needs num_replicas: auto")
        if self.num_replicas == "auto":
            from ray.serve.config import AutoscalingConfig

            AutoscalingConfig(**self.autoscaling())  # Serve's own checks (min <= max, ...)
        return self

    def autoscaling(self) -> dict:
        """The autoscaling config of ``num_replicas: auto`` (the YAML's, else ``DEFAULT_AUTOSCALING``)."""
        return dict(self.autoscaling_config or DEFAULT_AUTOSCALING)

    def describe_replicas(self) -> str:
        if self.num_replicas != "auto":
            return f"{self.num_replicas} replica(s)"
        scaling = self.autoscaling()
        return (f"{scaling.get('min_replicas', 1)}-{scaling['max_replicas']} replicas (autoscaled, target "
                f"{scaling.get('target_ongoing_requests', 'Serve default')} requests in flight each)")

    def with_overrides(self, **overrides) -> "ServeDeployment":
        """A validated copy with the non-None ``overrides`` applied (CLI flags over the YAML)."""
        values = self.model_dump()
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["num_replicas"] != "auto":
            values["autoscaling_config"] = None
        return parse_model(ServeDeployment, values, "invalid serve settings")

    def deployment_options(self) -> dict:
        """Serve's deployment options: replicas (or autoscaling), admission, backpressure, drain, resources."""
        from ray.serve.config import BackpressureConfig

        replicas = {"autoscaling_config": self.autoscaling()} if self.num_replicas == "auto" else \
            {"num_replicas": self.num_replicas}
        return {**replicas, "max_ongoing_requests": self.max_ongoing_requests,
                "max_queued_requests": self.max_queued_requests,
                "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S),
                "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
                "ray_actor_options": self.ray_actor_options}


# max_ongoing_requests: at least the default max_batch_sequences, so single-sequence requests can fill a batch
DEFAULT_DEPLOYMENT = {"host": "127.0.0.1", "port": 8000, "route_prefix": "/", "settings_args": {},
                      "num_replicas": 1, "max_ongoing_requests": 128, "ray_actor_options": {"num_cpus": 1}}


def load_serve_yaml(path: str | Path) -> ServeDeployment:
    """Validate a Serve config file with Ray's own schema and pick out the bib-ray application."""
    from ray.serve.schema import ServeDeploySchema

    schema = parse_model(ServeDeploySchema, load_yaml_mapping(path), f"{path}: not a valid Ray Serve config")
    if len(schema.applications) != 1:
        raise UserError(f"{path}: expected exactly one application, found {len(schema.applications)}")
    application = schema.applications[0]
    deployments = [d for d in application.deployments if d.name == DEPLOYMENT_NAME]
    values = dict(DEFAULT_DEPLOYMENT, host=schema.http_options.host, port=schema.http_options.port,
                  route_prefix=application.route_prefix or "/", settings_args=dict(application.args or {}))
    if deployments:
        chosen = deployments[0].model_dump(exclude_unset=True)
        for key in ("num_replicas", "autoscaling_config", "max_ongoing_requests", "max_queued_requests",
                    "graceful_shutdown_timeout_s", "ray_actor_options"):
            if chosen.get(key) is not None:
                values[key] = chosen[key]
    return parse_model(ServeDeployment, values, f"{path}: unsupported deployment settings for bib-ray serve")
