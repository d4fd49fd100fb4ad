"""Load the default versions when the server starts, so a restart leaves no cold first query.

Versions are loaded one at a time, newest deployment first, up to ``warm_start`` and the
worker cap: two loads at once on a small machine make both slower. A query that arrives
while its version warms waits for that load (the backends share one load per version), and a
query for a version not reached yet starts its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from easytensor_jupyter.inference.backends.base import Key
from easytensor_jupyter.inference.backends.errors import WorkerError
from easytensor_jupyter.inference.state import AppState
from easytensor_jupyter.inference.store import RegistryError
from easytensor_jupyter.inference.store.records import ModelRecord

__all__ = ["warm_defaults", "warm_later"]

log = logging.getLogger("easytensor.server")
_later: set[asyncio.Task[None]] = set()


def _newest_first(models: list[ModelRecord]) -> list[ModelRecord]:
    def deployed(model: ModelRecord) -> str:
        return max((v.created_at for v in model.versions), default=model.created_at)

    return sorted(models, key=deployed, reverse=True)


def _wanted(state: AppState, models: list[ModelRecord]) -> list[tuple[Key, ModelRecord]]:
    limit = min(state.settings.warm_start, state.settings.max_workers)
    picked: list[tuple[Key, ModelRecord]] = []
    for model in _newest_first(models):
        if len(picked) >= limit:
            break
        record = model.version(model.default_version)
        if record is None:
            continue
        # A version whose environment is still to be built loads when it is asked for.
        if state.envs.status(record.manifest)["environment"] not in ("server", "ready"):
            continue
        picked.append(((model.id, record.version), model))
    return picked


async def warm_defaults(state: AppState) -> list[Key]:
    """Load what ``_wanted`` picks; returns the keys that loaded. Never raises: a version
    that fails to load here fails the same way, with its error, when it is queried."""
    state.pool.start_standby()
    if state.settings.warm_start <= 0:
        return []
    try:
        # On the event loop, not in a thread: a registry connection that an executor thread
        # opened while the first workers spawned was found closed under it (PostgreSQL).
        models = state.store.list_models()
    except RegistryError as exc:
        log.warning("cannot list models to warm them: %s", exc)
        return []
    loaded: list[Key] = []
    for key, model in _wanted(state, models):
        record = model.version(key[1])
        assert record is not None
        started = time.perf_counter()
        spec = partial(state.spec, record.model_id, record.version, record.manifest)
        try:
            await state.pool.warm(key, spec)
        except WorkerError as exc:
            log.warning("%s v%d did not load at start: %s", key[0], key[1], exc)
            continue
        except Exception:
            log.exception("%s v%d did not load at start", key[0], key[1])
            continue
        loaded.append(key)
        log.info("%s v%d warm in %.0f ms", key[0], key[1], (time.perf_counter() - started) * 1e3)
    return loaded


async def _warm_one(state: AppState, model_id: str, version: int) -> None:
    try:
        record = await asyncio.to_thread(state.store.resolve_version, model_id, version)
        await state.pool.warm(
            (model_id, version), partial(state.spec, model_id, version, record.manifest)
        )
    except (WorkerError, RegistryError) as exc:
        log.warning("%s v%d did not load: %s", model_id, version, exc)
    except Exception:
        log.exception("%s v%d did not load", model_id, version)


def warm_later(state: AppState, model_id: str, version: int) -> None:
    """Start loading a version without waiting: an upload found "unchanged" answers at once,
    and the query that follows it finds the load under way."""
    if state.pool.status((model_id, version)) in ("ready", "loading"):
        return
    task = asyncio.get_running_loop().create_task(_warm_one(state, model_id, version))
    _later.add(task)
    task.add_done_callback(_later.discard)
