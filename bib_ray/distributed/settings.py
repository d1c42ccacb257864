"""Where and how the Ray layer runs a design (the core and the run ignore it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RaySettings(BaseModel):
    """The cluster to join and the shard actors' resources and restart policy."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="Ray cluster to use (default $RAY_ADDRESS, else an embedded "
                                "local Ray)")
    shards: int | None = Field(None, ge=1, description="LM replicas (Ray actors); default one per GPU, else per "
                               "CPU (max 8)")
    cpus_per_shard: float = Field(1.0, gt=0, description="CPUs per shard actor")
    gpus_per_shard: float | None = Field(None, ge=0, description="GPUs per shard actor: a fraction shares a GPU, "
                                         "K > 1 (whole) splits one LM over K GPUs (default 1 when the cluster "
                                         "has GPUs, else 0)")
    max_restarts: int = Field(3, ge=0, description="actor restarts and task retries after a failure")
    placement_timeout_s: float = Field(300.0, gt=0, description="seconds the shards may wait for the cluster's "
                                       "resources (an autoscaler is asked for them) before the run fails",
                                       json_schema_extra={"flag": "--placement-timeout"})

    @field_validator("gpus_per_shard")
    @classmethod
    def _whole_gpus_to_split(cls, gpus: float | None) -> float | None:
        if gpus is not None and gpus > 1 and gpus != int(gpus):
            raise ValueError(f"{gpus} GPUs: a shard shares one GPU (a fraction <= 1) or splits its LM over whole GPUs")
        return gpus
