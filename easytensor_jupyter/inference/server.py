"""Start the server: admin key, store, socket, uvicorn; and, when embedded, the info file.

We bind the socket ourselves so ``--port 0`` can report the real port, and print the
"listening" line only once uvicorn accepts connections: notebooks and tests wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import os
import signal
import socket
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from easytensor_jupyter import config, servers
from easytensor_jupyter.inference.api.fastpath import PredictFastPath
from easytensor_jupyter.inference.api.hosts import HostCheck, HostRule
from easytensor_jupyter.inference.app import create_app, worker_settings
from easytensor_jupyter.inference.backends.base import ServingBackend
from easytensor_jupyter.inference.backends.local.pool import WorkerPool
from easytensor_jupyter.inference.backends.local.protections import describe, startup_lines
from easytensor_jupyter.inference.backends.local.sandbox import sandbox_options, validate
from easytensor_jupyter.inference.options import ServeOptions
from easytensor_jupyter.inference.store import ConflictError, RegistryError, Store
from easytensor_jupyter.inference.store.blobs import StoreFull

__all__ = ["run"]

log = logging.getLogger("easytensor.server")
_OWNER_POLL_S = 0.25


def _private(path: Path) -> None:
    """Owner-only: a worker dropped to another uid must not read the store or the key."""
    try:
        if path.is_dir() and path.stat().st_uid == os.geteuid():
            path.chmod(0o700)
    except OSError as exc:
        log.warning("cannot make %s private: %s", path, exc.strerror)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after shutting down; we want a clean exit code instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _say(line: str) -> None:
    print(line, flush=True)


def _announce_key(embedded: bool) -> str:
    """Show a new key once, except when embedded: then our output is a log file, and local
    clients read the key file anyway."""
    if os.environ.get("EASYTENSOR_API_KEY"):
        _say("Admin key: taken from EASYTENSOR_API_KEY")
        return os.environ["EASYTENSOR_API_KEY"]
    key, created = config.ensure_admin_key()
    path = config.admin_key_path()
    if created and embedded:
        _say(f"Admin key created and saved to {path}")
    elif created:
        _say(f"Admin key (shown once, saved to {path}): {key}")
    else:
        _say(f"Admin key: saved in {path}")
    return key


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def _url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


async def _watch_owner(server: uvicorn.Server, owner_pid: int) -> None:
    while not server.should_exit:
        if not config.pid_alive(owner_pid):
            log.warning("owner process %d is gone; stopping", owner_pid)
            server.should_exit = True
            return
        await asyncio.sleep(_OWNER_POLL_S)


async def _serve(server: uvicorn.Server, sock: socket.socket, options: ServeOptions) -> None:
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if not server.started:
        await serving
        return
    port = sock.getsockname()[1]
    url = _url(options.host, port)
    watcher = None
    store = str(options.store or config.default_store())
    record = servers.register(
        url, store=store, embedded=options.embedded, owner_pid=options.owner_pid
    )
    try:
        if options.embedded:
            info = config.ServerInfo(
                url=url, pid=os.getpid(), store=store, owner_pid=options.owner_pid
            )
            config.write_server_info(info)
        if options.owner_pid is not None:
            watcher = asyncio.create_task(_watch_owner(server, options.owner_pid))
        _say(f"EasyTensor server listening on {url}")
        await serving
    finally:
        if watcher is not None:
            watcher.cancel()
        servers.unregister(record)
        if options.embedded:
            config.remove_server_info(os.getpid())


def _connect_ray(backend: ServingBackend, options: ServeOptions) -> bool:
    from easytensor_jupyter.inference.backends.ray import RayBackend

    assert isinstance(backend, RayBackend)
    where = options.ray_address or "a new local Ray instance"
    _say(f"Backend: Ray Serve at {where}")
    try:
        backend.connect()
    except Exception as exc:
        print(f"cannot use the Ray cluster at {where}: {exc}".splitlines()[0], file=sys.stderr)
        return False
    return True


def _http_stack(app: FastAPI, options: ServeOptions) -> tuple[ASGIApp, Any]:
    """The ASGI entry (Host check, then the predict fast path, then FastAPI) and the HTTP
    protocol that enforces the connection limits."""
    # Predictions go round FastAPI's whole stack (see fastpath's docstring for why).
    fast = PredictFastPath(app, app.state.easytensor, app.state.bodies)
    rule = HostRule(options.host, options.allowed_hosts)
    if rule.open:
        log.warning(
            "--allowed-host '*': any Host is answered, so a web page open in a browser on "
            "this machine can read this server through DNS rebinding"
        )
    entry = HostCheck(fast, rule)
    if importlib.util.find_spec("httptools") is None:
        log.warning("httptools is missing: no header or body timeouts and no connection cap")
        return entry, "h11"
    from easytensor_jupyter.inference.connections import (
        ConnectionLimits,
        fit_open_files,
        guarded_protocol,
    )

    limits = dataclasses.replace(
        ConnectionLimits.of(options), max_connections=fit_open_files(options.max_connections)
    )
    return entry, guarded_protocol(limits)


def _report_sandbox(backend: ServingBackend, options: ServeOptions) -> None:
    """Say at start which worker protections hold here, and why any does not."""
    if not isinstance(backend, WorkerPool):
        _say("Sandbox: each Ray replica confines its worker as its node allows (see its log)")
        return
    box = backend.sandbox
    resolved = box.options if box is not None else sandbox_options(worker_settings(options))
    for line in startup_lines(describe(box, resolved)):
        _say(line)


def run(options: ServeOptions) -> int:
    logging.basicConfig(
        level=options.log_level.upper(), format="easytensor %(levelname)s: %(message)s"
    )
    if options.owner_pid is not None and not config.pid_alive(options.owner_pid):
        print(f"owner process {options.owner_pid} is not running", file=sys.stderr)
        return 1
    store_path = (options.store or config.default_store()).expanduser().resolve()
    admin_key = _announce_key(options.embedded)
    problem = validate(worker_settings(options))
    if problem:
        print(problem, file=sys.stderr)
        return 1
    try:
        store = Store(store_path, options.db)
        store.open()
    except (ValueError, RegistryError, ConflictError, StoreFull) as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 1
    _say(f"Registry: {store.describe()}")
    _private(store_path)
    _private(config.home())
    settings = dataclasses.replace(options, store=store_path)
    try:
        sock = _bind(options.host, options.port)
    except OSError as exc:
        print(f"cannot listen on {options.host}:{options.port}: {exc.strerror}", file=sys.stderr)
        return 1
    if options.backend == "ray" and importlib.util.find_spec("ray") is None:
        print(
            "the Ray backend needs Ray Serve: pip install 'easytensor-jupyter[ray]'",
            file=sys.stderr,
        )
        sock.close()
        return 1
    app = create_app(settings, store, admin_key)
    if options.backend == "ray" and not _connect_ray(app.state.easytensor.pool, options):
        sock.close()
        return 1
    _report_sandbox(app.state.easytensor.pool, settings)
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    entry, http = _http_stack(app, settings)
    uv_config = uvicorn.Config(
        entry,
        loop="uvloop" if has_uvloop else "asyncio",
        http=http,
        ws="none",
        lifespan="on",
        log_level=options.log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=3,
        timeout_keep_alive=max(1, round(options.idle_timeout)),
    )
    server = _Server(uv_config)
    loop_factory = uv_config.get_loop_factory()
    try:
        if sys.version_info >= (3, 11):
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(_serve(server, sock, options))
        else:
            loop = (loop_factory or asyncio.new_event_loop)()
            try:
                loop.run_until_complete(_serve(server, sock, options))
            finally:
                loop.close()
    finally:
        sock.close()
        store.close()
    _say("EasyTensor server stopped")
    return 0
