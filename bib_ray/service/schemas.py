"""HTTP schemas of the scoring service (pydantic models; FastAPI derives the OpenAPI docs from them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

API_KEY_HEADER = "X-API-Key"  # the header a protected service expects its key in


class SequenceScore(BaseModel):
    sequence: str
    proxy_score: float = Field(description="closed-form proxy prediction, in the original label units")
    aux_mean: float | None = Field(None, description="mean of the auxiliary ensemble (label units)")
    aux_std: float | None = Field(None, description="spread (std) of the auxiliary ensemble members")


class ModelIdentity(BaseModel):
    task: str
    lm_id: str = Field(description="the LM backbone spec, or ntk for the NTK proxy on one-hot features")
    artifact_sha256: str


class ScoreResponse(BaseModel):
    scores: list[SequenceScore]
    model: ModelIdentity


class ServiceInfo(BaseModel):
    task: str
    alphabet: str
    length: int = Field(description="number of designed residues per sequence")
    template: str | None = Field(None, description="full sequence the designed residues are placed into, if any")
    design_positions: list[int] | None = Field(None, description="0-based template positions of the residues")
    lm_id: str = Field(description="the LM backbone spec, or ntk for the NTK proxy on one-hot features")
    proxy: str = Field("linear-head", description="linear-head (an LM's closed-form head) or ntk (kernel ridge "
                       "regression with the NTK)")
    hidden_size: int
    offline_rows: int
    aux_members: int
    artifact_sha256: str
    max_sequences_per_request: int


class Health(BaseModel):
    status: str = "ok"


class ErrorResponse(BaseModel):
    """Body of every 4xx answer: one message naming the problem."""

    detail: str = Field(description="what was wrong with the request, e.g. which sequence and why")
