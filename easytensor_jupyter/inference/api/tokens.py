"""Admin routes for a model's query tokens; a token's secret is shown once, at creation.

Each token carries a label saying where it was made (a notebook and cell, the CLI, the lab
panel), so a list of tokens can be read, and the stale ones revoked, without guessing.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Body, Depends, Path, Request
from starlette.responses import Response

from easytensor_jupyter.inference.api.auth import hash_token, new_query_token
from easytensor_jupyter.inference.api.errors import error_responses, json_response
from easytensor_jupyter.inference.api.schemas import TokenCreated, TokenIn, TokenList, TokenOut
from easytensor_jupyter.inference.state import get_state, require_admin

__all__ = ["router"]

router = APIRouter(tags=["tokens"], dependencies=[Depends(require_admin)])

ModelId = Path(max_length=200)
LabelBody = Body(None, description='Optional: where the token is made, as {"label": "..."}')


@router.post(
    "/v1/models/{model_id}/tokens",
    status_code=201,
    response_model=TokenCreated,
    responses=error_responses(400, 401, 403, 404, 413, 422),
    summary="Create a query token for a model (the secret is shown only in this answer)",
)
async def create_token(
    request: Request, model_id: str = ModelId, body: TokenIn | None = LabelBody
) -> Response:
    state = get_state(request)
    token = new_query_token()
    given = body.label.strip() if body is not None and body.label else ""
    label = given or None
    record = await asyncio.to_thread(state.store.add_token, model_id, hash_token(token), label)
    created = TokenCreated(id=record.id, token=token, label=label, created_at=record.created_at)
    return json_response(created, 201)


@router.get(
    "/v1/models/{model_id}/tokens",
    response_model=TokenList,
    responses=error_responses(401, 403, 404),
    summary="List a model's query tokens (no secrets), with where each was made",
)
async def list_tokens(request: Request, model_id: str = ModelId) -> Response:
    state = get_state(request)
    recent = state.auth.last_used
    tokens = [
        TokenOut(
            id=t.id,
            created_at=t.created_at,
            revoked=t.revoked,
            last_used_at=recent.get(t.id, t.last_used_at),
            label=t.label,
        )
        for t in state.store.list_tokens(model_id)
    ]
    return json_response(TokenList(tokens=tokens))


@router.delete(
    "/v1/models/{model_id}/tokens/{token_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404),
    summary="Revoke a query token; it stops working at once",
)
async def revoke_token(
    request: Request, model_id: str = ModelId, token_id: str = Path(max_length=100)
) -> Response:
    state = get_state(request)
    await asyncio.to_thread(state.store.revoke_token, model_id, token_id)
    return Response(status_code=204)
