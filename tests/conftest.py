"""Shared fixtures.

``server`` is one real ``easytensor serve`` process for the whole session (a short predict
timeout and a small body limit, so the error paths are quick to reach); ``spawn_server`` starts
more when a test needs its own home, options, or to kill the server. Every server is stopped,
workers included, when its fixture ends. ``postgres_url`` is a real PostgreSQL started for the
session from Debian's package (tests that use it are skipped where none is installed), and
``postgres_db`` a fresh empty database on it for one test; ``tmpfs`` mounts a small one (root
only) to fill up. Helpers live in ``bundles.py``,
``servers.py`` and ``postgres.py``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bundles import Bundle, make_bundle
from postgres import PostgresUnavailable, create_database, drop_database, start_postgres
from servers import RunningServer, start_server

SESSION_SERVER_ARGS = ("--predict-timeout", "3", "--max-body-mb", "4", "--max-upload-mb", "4")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("home"), *SESSION_SERVER_ARGS)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def spawn_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start extra servers (own home by default); all are stopped after the test."""
    started: list[RunningServer] = []

    def spawn(*args: str, home: Path | None = None, **kwargs: Any) -> RunningServer:
        running = start_server(home or tmp_path / f"home{len(started)}", *args, **kwargs)
        started.append(running)
        return running

    try:
        yield spawn
    finally:
        for running in started:
            running.stop()


@pytest.fixture
def unique_name() -> str:
    return f"test model {uuid.uuid4().hex[:8]}"


@pytest.fixture
def bundle_factory(tmp_path: Path) -> Callable[..., Bundle]:
    """``bundle_factory(name=..., **make_bundle_options)`` writes a fresh bundle folder."""
    count = 0

    def build(**kwargs: Any) -> Bundle:
        nonlocal count
        count += 1
        return make_bundle(tmp_path / f"bundle{count}", **kwargs)

    return build


@pytest.fixture
def tiny_model(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> dict[str, Any]:
    """A freshly uploaded Tiny model on the session server: its upload answer."""
    response = server.upload(bundle_factory(name=unique_name))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def seed_api(server: RunningServer) -> Iterator[RunningServer]:
    """The session server, with the seed API (``easytensor.*``) pointed at it for the test."""
    import easytensor

    easytensor.set_base_url(server.url)
    easytensor.set_api_key(server.admin_key)
    try:
        yield server
    finally:
        easytensor.set_base_url(None)
        easytensor.set_api_key(None)


QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart"


@pytest.fixture(scope="session")
def news_model() -> Any:
    """The quickstart news classifier, trained once per session (seeded, so reproducible)."""
    sys.path.insert(0, str(QUICKSTART))
    try:
        from train import train

        return train()
    finally:
        sys.path.remove(str(QUICKSTART))


@pytest.fixture
def shell() -> Iterator[Any]:
    """A real in-process IPython shell with in-memory history, cleared after the test."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    instance = InteractiveShell.instance(config=config)
    yield instance
    instance.reset(new_session=False)
    InteractiveShell.clear_instance()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL for the session (skipped where none is installed): its admin URL."""
    try:
        running = start_postgres()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield running.url()
    finally:
        running.stop()


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL, dropped after the test: its URL."""
    url = create_database(postgres_url)
    try:
        yield url
    finally:
        drop_database(postgres_url, url)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount tmpfs folders of a given size (``tmpfs("3m")``); skipped where mounting is refused."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"tmpfs-{len(mounts)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(where)
        return where

    try:
        yield mount
    finally:
        for where in mounts:
            subprocess.run(["umount", "-l", str(where)], check=False)
