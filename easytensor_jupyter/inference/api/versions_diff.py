"""Admin routes that compare versions: the diff between two, and chosen weight tensors of one
(a kernel fetches the deployed values of the tensors whose hashes differ from its own, to say
by how much they moved)."""

from __future__ import annotations

import asyncio
from pathlib import Path as FilePath

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from easytensor_jupyter.bundle import WEIGHTS_FILE
from easytensor_jupyter.inference.api.errors import APIError, error_responses, json_response
from easytensor_jupyter.inference.api.schemas import MAX_VERSION
from easytensor_jupyter.inference.state import AppState, get_state, require_admin
from easytensor_jupyter.inference.store import VersionRecord
from easytensor_jupyter.version_diff import diff_versions

__all__ = ["MAX_TENSOR_BYTES", "TensorsIn", "router"]

router = APIRouter(tags=["models"], dependencies=[Depends(require_admin)])
MAX_TENSOR_BYTES = 256 << 20
ModelId = Path(max_length=200, description="The model id, e.g. news-classifier-3fa2b1")


class TensorsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    names: list[str] = Field(max_length=100_000, description="weight tensor names")


def _version(state: AppState, model_id: str, number: int) -> VersionRecord:
    record = state.store.get_model(model_id)
    found = record.version(number)
    if found is None:
        have = ", ".join(f"v{v.version}" for v in record.versions)
        raise APIError(404, "not_found", f"{model_id} has no version {number} (it has {have})")
    return found


@router.get(
    "/v1/models/{model_id}/diff",
    responses=error_responses(400, 401, 403, 404, 422),
    summary="What changed from one version to another: files as unified diffs, manifest "
    "fields, weights",
)
async def version_diff(
    request: Request,
    model_id: str = ModelId,
    a: int = Query(ge=1, le=MAX_VERSION, alias="from", description="the older version"),
    b: int = Query(ge=1, le=MAX_VERSION, alias="to", description="the newer version"),
) -> Response:
    state = get_state(request)
    va, vb = _version(state, model_id, a), _version(state, model_id, b)
    diff = await asyncio.to_thread(
        diff_versions, va.manifest, a, vb.manifest, b, state.store.blobs.path
    )
    return json_response(diff)


@router.get(
    "/v1/models/{model_id}/versions/{version}/fingerprint",
    responses=error_responses(401, 403, 404),
    summary="A version's recorded hashes (per method, helper, tensor, data file); null for "
    "versions uploaded before they were recorded",
)
async def version_fingerprint(
    request: Request, model_id: str = ModelId, version: int = Path(ge=1, le=MAX_VERSION)
) -> Response:
    record = _version(get_state(request), model_id, version)
    m = record.manifest
    return json_response(
        {
            "version": version,
            "fingerprint": m.fingerprint,
            "provenance": m.provenance,
            "requirements": m.requirements,
        }
    )


@router.post(
    "/v1/models/{model_id}/versions/{version}/tensors",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "a safetensors file"},
        **error_responses(400, 401, 403, 404, 413, 422),
    },
    summary="Chosen weight tensors of a version, as one safetensors file",
)
async def version_tensors(
    request: Request,
    body: TensorsIn,
    model_id: str = ModelId,
    version: int = Path(ge=1, le=MAX_VERSION),
) -> Response:
    state = get_state(request)
    record = _version(state, model_id, version)
    path = state.store.blobs.path(record.manifest.files[WEIGHTS_FILE].sha256)
    raw = await asyncio.to_thread(_pick, path, body.names)
    return Response(raw, media_type="application/octet-stream")


def _pick(path: FilePath, names: list[str]) -> bytes:
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path), "pt") as fh:
        present = [n for n in dict.fromkeys(names) if n in set(fh.keys())]
        total = 0
        tensors = {}
        for name in present:
            tensor = fh.get_tensor(name)
            total += tensor.numel() * tensor.element_size()
            if total > MAX_TENSOR_BYTES:
                raise APIError(
                    413,
                    "too_large",
                    f"the tensors asked for hold more than {MAX_TENSOR_BYTES >> 20} MiB; "
                    "ask for fewer at a time",
                )
            tensors[name] = tensor.contiguous()
    return save(tensors)
