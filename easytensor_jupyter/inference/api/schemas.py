"""Request and response bodies of the HTTP API, as they appear in the OpenAPI description."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from easytensor_jupyter.bundle import Batching, FileEntry

__all__ = [
    "MAX_VERSION",
    "AutoscalingIn",
    "BlobQuery",
    "BlobsMissing",
    "DefaultVersionIn",
    "HealthOut",
    "ModelList",
    "ModelOut",
    "PredictIn",
    "PredictOut",
    "SampleOut",
    "ScalingIn",
    "StatsOut",
    "TokenCreated",
    "TokenList",
    "TokenOut",
    "UploadOut",
    "VersionOut",
]

MAX_VERSION = 2**31 - 1
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
VersionStatus = Literal["ready", "loading", "idle", "failed"]


class StatsOut(BaseModel):
    requests: int = Field(description="Predictions since the server started")
    errors: int
    last_latency_ms: float | None


class SampleOut(BaseModel):
    input: Any = Field(description='Sample input as JSON; bytes are {"b64": "..."}')
    output: Any = None


class VersionOut(BaseModel):
    version: int
    created_at: str
    size_bytes: int
    class_name: str
    input_kind: str
    status: VersionStatus
    sample: SampleOut | None
    batching: Batching | None
    provenance: dict[str, Any]
    init_args: list[Any]
    init_kwargs: dict[str, Any]
    files: dict[str, FileEntry]
    torch_version: str | None
    python_version: str | None
    requirements: list[str]


class AutoscalingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_replicas: int = Field(default=1, ge=0, le=64)
    max_replicas: int = Field(ge=1, le=64)
    target_ongoing_requests: float = Field(
        default=2.0, gt=0, le=10_000, description="Requests in flight per replica to aim for"
    )

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingIn:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be at least min_replicas")
        return self


class ScalingIn(BaseModel):
    """Exactly one of a fixed replica count or autoscaling bounds (Ray backend only)."""

    model_config = ConfigDict(extra="forbid")
    replicas: int | None = Field(default=None, ge=1, le=64, examples=[2])
    autoscaling: AutoscalingIn | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ScalingIn:
        if (self.replicas is None) == (self.autoscaling is None):
            raise ValueError("give exactly one of replicas or autoscaling")
        return self


class ModelOut(BaseModel):
    id: str = Field(examples=["news-classifier-3fa2b1"])
    name: str
    default_version: int
    created_at: str
    status: VersionStatus = Field(description="The default version's status")
    size_bytes: int = Field(description="Bytes on disk for all versions, shared files once")
    endpoint: str = Field(description="Absolute URL of the predict route")
    stats: StatsOut
    versions: list[VersionOut]
    scaling: ScalingIn = Field(description="Replicas for the model's versions")
    backend: Literal["local", "ray"] = Field(description="What serves the model")
    replicas_running: int = Field(description="Live replicas or workers of the default version")


class ModelList(BaseModel):
    models: list[ModelOut]


class UploadOut(BaseModel):
    id: str
    name: str
    version: int
    query_token: str | None = Field(description="A new query token, shown only this once")
    unchanged: bool = Field(description="True when the latest version had this exact content")
    received: list[str] = Field(description="Bundle files sent in this upload")
    reused: list[str] = Field(description="Bundle files the server already had")


class BlobQuery(BaseModel):
    sha256: list[Sha256] = Field(max_length=10_000)


class BlobsMissing(BaseModel):
    missing: list[str]


class DefaultVersionIn(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION)


class TokenCreated(BaseModel):
    id: str
    token: str = Field(description="The secret; shown only this once")


class TokenOut(BaseModel):
    id: str
    created_at: str
    revoked: bool
    last_used_at: str | None


class TokenList(BaseModel):
    tokens: list[TokenOut]


class PredictIn(BaseModel):
    instances: list[Any] = Field(
        min_length=1,
        description='Inputs, one per prediction; {"b64": "..."} objects are passed as bytes',
    )


class PredictOut(BaseModel):
    predictions: list[Any]
    model_id: str
    version: int
    latency_ms: float


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    models: int
    workers: int
