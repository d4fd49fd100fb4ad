"""Admin routes for models and versions: upload, list, describe, delete, choose the default."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from easytensor_jupyter.bundle import Manifest
from easytensor_jupyter.inference.api.auth import hash_token, new_query_token
from easytensor_jupyter.inference.api.errors import APIError, error_responses, json_response
from easytensor_jupyter.inference.api.schemas import (
    MAX_VERSION,
    BlobQuery,
    BlobsMissing,
    DefaultVersionIn,
    EnvironmentPlan,
    ModelList,
    ModelOut,
    ReplicaOut,
    RequirementsIn,
    SampleOut,
    ScalingIn,
    StatsOut,
    UploadOut,
    VersionOut,
)
from easytensor_jupyter.inference.api.upload import receive_bundle
from easytensor_jupyter.inference.backends.base import Loaded, WorkerSpec
from easytensor_jupyter.inference.backends.errors import WorkerLoadError
from easytensor_jupyter.inference.environments import Prepared, prune_environments
from easytensor_jupyter.inference.state import AppState, ModelStats, get_state, require_admin
from easytensor_jupyter.inference.store import CreateResult, ModelRecord, VersionRecord
from easytensor_jupyter.inference.warmup import warm_later
from easytensor_jupyter.requirements import runtime_warnings

__all__ = ["model_view", "router"]

router = APIRouter(tags=["models"], dependencies=[Depends(require_admin)])

ModelId = Path(max_length=200, description="The model id, e.g. news-classifier-3fa2b1")
_TAR_TYPES = {"", "application/x-tar", "application/tar", "application/octet-stream"}
_TAR_BODY = {
    "requestBody": {
        "required": True,
        "description": "The bundle as a tar stream: manifest.json first, then its files",
        "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _version_view(state: AppState, v: VersionRecord) -> VersionOut:
    m = v.manifest
    return VersionOut(
        version=v.version,
        created_at=v.created_at,
        size_bytes=v.size_bytes,
        class_name=m.class_name,
        input_kind=m.input_kind,
        status=state.pool.status((v.model_id, v.version)),
        sample=SampleOut(input=m.sample.input, output=m.sample.output) if m.sample else None,
        batching=m.batching,
        streaming=m.streaming,
        provenance=m.provenance,
        init_args=m.init_args,
        init_kwargs=m.init_kwargs,
        files=m.files,
        torch_version=m.torch_version,
        python_version=m.python_version,
        requirements=m.requirements,
        environment=state.envs.status(m)["environment"],
        warnings=runtime_warnings(m.python_version, m.torch_version),
    )


def model_view(state: AppState, record: ModelRecord, base_url: str) -> ModelOut:
    stats = state.stats.get(record.id) or ModelStats()
    return ModelOut(
        id=record.id,
        name=record.name,
        default_version=record.default_version,
        created_at=record.created_at,
        status=state.pool.status((record.id, record.default_version)),
        size_bytes=record.size_bytes,
        endpoint=f"{base_url.rstrip('/')}/v1/models/{record.id}/predict",
        stats=StatsOut(**stats.__dict__),
        versions=[_version_view(state, v) for v in record.versions],
        scaling=ScalingIn.model_validate(record.scaling or {"replicas": 1}),
        backend="ray" if state.pool.name == "ray" else "local",
        replicas_running=state.pool.replicas((record.id, record.default_version)),
        replicas=[
            ReplicaOut(**r) for r in state.pool.replica_list((record.id, record.default_version))
        ],
    )


async def _load_check(state: AppState, manifest: Manifest, env: Prepared) -> Loaded:
    files = {name: state.store.blobs.path(e.sha256) for name, e in manifest.files.items()}
    spec = WorkerSpec(manifest.name, 0, files, manifest.to_json_bytes(), env.path)
    try:
        return await state.pool.launch(spec)
    except WorkerLoadError as exc:
        err = exc.error
        stage = err.get("stage", "worker")
        raise APIError(
            422,
            "load_error",
            f"the model failed to load ({stage}): {err.get('message', exc)}",
            {"stage": stage, "message": err.get("message"), "detail": err.get("detail")},
        ) from None


async def _publish(
    state: AppState, manifest: Manifest, force: bool, env: Prepared, candidate: bool = False
) -> CreateResult:
    """Load-check the bundle in a worker, then create the version; the worker stays warm."""
    if not force:
        same = state.store.find_unchanged(manifest)
        if same is not None:
            warm_later(state, same.model_id, same.version)
            return same
    worker = await _load_check(state, manifest, env)
    try:
        result = await asyncio.to_thread(state.store.create_version, manifest, force, candidate)
    except BaseException:
        await worker.stop()
        raise
    if result.unchanged:
        await worker.stop()
    else:
        state.pool.adopt(worker, (result.model_id, result.version))
    return result


@router.post(
    "/v1/models",
    status_code=201,
    response_model=UploadOut,
    responses={
        200: {"model": UploadOut, "description": "Same content as the latest version"},
        201: {"model": UploadOut, "description": "A new model or version was created"},
        **error_responses(400, 401, 403, 413, 415, 422, 507),
    },
    openapi_extra=_TAR_BODY,
    summary="Upload a model bundle (a new model, or version N+1 of an existing name)",
)
async def upload_model(
    request: Request,
    create_token: bool = Query(True, description="Also create a query token"),
    force: bool = Query(False, description="Make a new version even if nothing changed"),
    candidate: bool = Query(
        False, description="Keep the default version where it is: the new one takes no traffic"
    ),
) -> Response:
    state = get_state(request)
    mime = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if mime not in _TAR_TYPES:
        raise APIError(
            415, "unsupported_media_type", f"send the bundle as application/x-tar, not {mime}"
        )
    try:
        received, sink = await receive_bundle(request, state.store, state.limits)
    except APIError:
        state.metrics.uploads.labels("rejected").inc()
        raise
    state.metrics.bytes_received.inc(received.bytes_received)
    env: Prepared | None = None
    try:
        env = await state.envs.prepare(received.manifest)
        result = await _publish(state, received.manifest, force, env, candidate)
    except BaseException:
        state.metrics.uploads.labels("rejected").inc()
        sink.release()
        await asyncio.to_thread(state.store.collect, sink.written)
        raise
    finally:
        if env is not None:
            state.envs.release(env)
    sink.release()
    state.metrics.uploads.labels("unchanged" if result.unchanged else "created").inc()
    token = None
    if create_token:
        token = new_query_token()
        label = f"upload of v{result.version}"
        await asyncio.to_thread(state.store.add_token, result.model_id, hash_token(token), label)
    body = UploadOut(
        id=result.model_id,
        name=result.name,
        version=result.version,
        query_token=token,
        unchanged=result.unchanged,
        received=received.received,
        reused=received.reused,
        warnings=env.warnings,
        environment=env.environment,
    )
    return json_response(body, 200 if result.unchanged else 201)


@router.post(
    "/v1/environments/check",
    response_model=EnvironmentPlan,
    responses=error_responses(400, 401, 403, 413, 422),
    summary="What a version with these pinned requirements would need on this server",
)
async def check_environment(request: Request, body: RequirementsIn) -> Response:
    state = get_state(request)
    plan = await asyncio.to_thread(state.envs.plan, body.requirements)
    return json_response(EnvironmentPlan(**plan))


@router.post(
    "/v1/blobs/missing",
    response_model=BlobsMissing,
    responses=error_responses(400, 401, 403, 413),
    summary="Which of these file hashes the server lacks (so the client sends only those)",
)
async def blobs_missing(request: Request, query: BlobQuery) -> Response:
    state = get_state(request)
    return json_response(BlobsMissing(missing=state.store.missing(query.sha256)))


@router.get(
    "/v1/models",
    response_model=ModelList,
    responses=error_responses(401, 403),
    summary="List models",
)
async def list_models(request: Request) -> Response:
    state = get_state(request)
    base = str(request.base_url)
    await state.pool.refresh()
    models = [model_view(state, r, base) for r in state.store.list_models()]
    return json_response(ModelList(models=models))


@router.get(
    "/v1/models/{model_id}",
    response_model=ModelOut,
    responses=error_responses(401, 403, 404),
    summary="Describe a model and its versions",
)
async def get_model(request: Request, model_id: str = ModelId) -> Response:
    state = get_state(request)
    record = state.store.get_model(model_id)
    await state.pool.refresh()
    return json_response(model_view(state, record, str(request.base_url)))


@router.delete(
    "/v1/models/{model_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404),
    summary="Delete a model, its versions, tokens and files no other version uses",
)
async def delete_model(request: Request, model_id: str = ModelId) -> Response:
    state = get_state(request)
    await asyncio.to_thread(state.store.delete_model, model_id)
    await state.pool.stop_model(model_id)
    state.stats.pop(model_id, None)
    await asyncio.to_thread(prune_environments, state)
    return Response(status_code=204)


@router.delete(
    "/v1/models/{model_id}/versions/{version}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404, 409),
    summary="Delete a version (409 for the default one, unless it is the only one: "
    "then the whole model goes)",
)
async def delete_version(
    request: Request, model_id: str = ModelId, version: int = Path(ge=1, le=MAX_VERSION)
) -> Response:
    state = get_state(request)
    what = await asyncio.to_thread(state.store.delete_version, model_id, version)
    await state.pool.stop_model(model_id, None if what == "model" else version)
    if what == "model":
        state.stats.pop(model_id, None)
    await asyncio.to_thread(prune_environments, state)
    return Response(status_code=204)


@router.put(
    "/v1/models/{model_id}/default",
    response_model=ModelOut,
    responses=error_responses(400, 401, 403, 404, 413),
    summary="Choose the default version (rollback)",
)
async def set_default(
    request: Request, body: DefaultVersionIn, model_id: str = ModelId
) -> Response:
    state = get_state(request)
    await asyncio.to_thread(state.store.set_default, model_id, body.version)
    record = state.store.get_model(model_id)
    return json_response(model_view(state, record, str(request.base_url)))


@router.put(
    "/v1/models/{model_id}/scaling",
    response_model=ModelOut,
    responses=error_responses(400, 401, 403, 404, 422),
    summary="Set the model's replicas: a fixed count, or autoscaling bounds, and what each "
    "replica needs (CPUs, GPUs, custom resources; Ray backend)",
)
async def set_scaling(request: Request, body: ScalingIn, model_id: str = ModelId) -> Response:
    state = get_state(request)
    if body.autoscaling is not None and state.pool.name != "ray":
        raise APIError(
            422,
            "scaling_unsupported",
            "autoscaling needs the Ray backend (easytensor serve --backend ray); "
            "the local backend takes a fixed number of replicas",
        )
    if body.needs() and state.pool.name != "ray":
        raise APIError(
            422,
            "scaling_unsupported",
            f"{', '.join(body.needs())} per replica need the Ray backend "
            "(easytensor serve --backend ray); the local backend runs workers on --device",
        )
    current = await asyncio.to_thread(state.store.get_model, model_id)
    scaling = body.merged_into(current.scaling)
    problem = await state.pool.check_scaling(scaling)
    if problem:
        raise APIError(422, "no_matching_node", problem)
    await asyncio.to_thread(state.store.set_scaling, model_id, scaling)
    await state.pool.apply_scaling(model_id, scaling)
    record = state.store.get_model(model_id)
    return json_response(model_view(state, record, str(request.base_url)))
