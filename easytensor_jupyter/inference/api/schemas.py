"""Request and response bodies of the HTTP API, as they appear in the OpenAPI description."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

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
    "ReplicaOut",
    "SampleOut",
    "ScalingIn",
    "StatsOut",
    "TokenCreated",
    "TokenIn",
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
    streaming: bool = Field(
        False, description="The model has predict_stream: it answers streams (?stream=true)"
    )
    provenance: dict[str, Any]
    init_args: list[Any]
    init_kwargs: dict[str, Any]
    files: dict[str, FileEntry]
    torch_version: str | None
    python_version: str | None
    requirements: list[str]
    environment: Literal["server", "ready", "building", "missing"] = Field(
        "server",
        description="Where the version runs: the server's own environment, or its own one "
        "(ready, or still building), or 'missing' when the server lacks its requirements",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="Python or torch here differ (major.minor) from the notebook's",
    )


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


ResourceName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")]
ResourceAmount = Annotated[float, Field(ge=0, le=1_000_000)]
_RESOURCE_FIELDS = ("num_cpus", "num_gpus", "resources")
_RAY_OWN = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "", "object_store_memory": ""}


class ScalingIn(BaseModel):
    """A fixed replica count or autoscaling bounds (Ray backend only), and what each replica
    needs from a node (Ray backend only). Parts left out of a PUT keep their current value;
    ``null`` resets a need to the server's default."""

    model_config = ConfigDict(extra="forbid")
    replicas: int | None = Field(default=None, ge=1, le=64, examples=[2])
    autoscaling: AutoscalingIn | None = None
    num_cpus: float | None = Field(
        default=None, ge=0, le=1024, description="CPUs per replica (default --ray-replica-cpus)"
    )
    num_gpus: float | None = Field(
        default=None,
        ge=0,
        le=64,
        description="GPUs per replica; above 0 its worker runs on cuda, 0 on the CPU",
    )
    resources: dict[ResourceName, ResourceAmount] | None = Field(
        default=None,
        max_length=16,
        description='Custom Ray resources per replica, e.g. {"accel": 1}',
        examples=[{"accel": 1}],
    )

    @model_validator(mode="after")
    def _one_of(self) -> ScalingIn:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("give replicas or autoscaling, not both")
        form = self.replicas is not None or self.autoscaling is not None
        if not form and not self.model_fields_set & set(_RESOURCE_FIELDS):
            raise ValueError(
                "give replicas or autoscaling, or what each replica needs "
                "(num_cpus, num_gpus, resources)"
            )
        for name in self.resources or {}:
            if name in _RAY_OWN:
                instead = _RAY_OWN[name]
                fix = f"use {instead}" if instead else "Ray sets it itself"
                raise ValueError(f"resources: {name!r} is not a custom resource; {fix}")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_needs(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        for name in _RESOURCE_FIELDS:
            if out.get(name) is None:
                out.pop(name, None)
        return out

    def needs(self) -> list[str]:
        """The per-replica needs this body sets (not null)."""
        return [name for name in _RESOURCE_FIELDS if getattr(self, name) is not None]

    def merged_into(self, current: dict[str, Any] | None) -> dict[str, Any]:
        """The model's new scaling: this body over ``current``, as stored in the registry."""
        out = dict(current or {"replicas": 1})
        if self.replicas is not None or self.autoscaling is not None:
            out.pop("replicas", None)
            out.pop("autoscaling", None)
            out.update(self.model_dump(include={"replicas", "autoscaling"}, exclude_none=True))
        for name in (n for n in _RESOURCE_FIELDS if n in self.model_fields_set):
            value = getattr(self, name)
            if value is None or value == {}:
                out.pop(name, None)
            else:
                out[name] = value
        if "replicas" not in out and "autoscaling" not in out:
            out["replicas"] = 1
        return out


class ReplicaOut(BaseModel):
    id: str = Field(description="Ray Serve's replica id, or worker-<pid> on the local backend")
    node: str = Field(description="Ray's node id, or this machine's host name")
    node_ip: str | None = Field(default=None, description="The node's address (Ray)")
    state: Literal["pending", "starting", "running", "stopping", "failed"] = Field(
        description="pending: no node has room yet; failed: its model did not load"
    )
    started_at: str | None = Field(default=None, description="When it started (UTC)")
    requests: int | None = Field(default=None, description="Requests it has answered")
    device: str | None = Field(default=None, description="Its worker's torch device")
    pid: int | None = None
    direct: bool = Field(
        default=False,
        description="Ray: this server sends it queries directly, not through Serve's handle",
    )


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
    replicas: list[ReplicaOut] = Field(
        default_factory=list, description="The default version's replicas or workers"
    )


class ModelList(BaseModel):
    models: list[ModelOut]


class RequirementsIn(BaseModel):
    requirements: list[str] = Field(max_length=1000)


class EnvironmentPlan(BaseModel):
    missing: list[str] = Field(description="Pinned packages the server's environment lacks")
    build: bool = Field(description="An environment will be built for them at upload")
    ready: bool = Field(description="The version can run here without building anything")
    environments: bool = Field(description="Whether this server builds per-model environments")


class UploadOut(BaseModel):
    id: str
    name: str
    version: int
    query_token: str | None = Field(description="A new query token, shown only this once")
    unchanged: bool = Field(description="True when the latest version had this exact content")
    received: list[str] = Field(description="Bundle files sent in this upload")
    reused: list[str] = Field(description="Bundle files the server already had")
    warnings: list[str] = Field(
        default_factory=list, description="Python or torch differ from the notebook's"
    )
    environment: dict[str, Any] | None = Field(
        None, description="The version's own environment, when it needs one"
    )


class BlobQuery(BaseModel):
    sha256: list[Sha256] = Field(max_length=10_000)


class BlobsMissing(BaseModel):
    missing: list[str]


class DefaultVersionIn(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION)


TokenLabel = Annotated[
    str | None,
    Field(
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="Where the token was made: a notebook and cell, the CLI, the lab panel",
    ),
]


class TokenIn(BaseModel):
    label: TokenLabel = None


class TokenCreated(BaseModel):
    id: str
    token: str = Field(description="The secret; shown only this once")
    label: TokenLabel = None
    created_at: str | None = None


class TokenOut(BaseModel):
    id: str
    created_at: str
    revoked: bool
    last_used_at: str | None
    label: TokenLabel = None


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
