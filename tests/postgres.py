"""A real, throwaway PostgreSQL for tests, from Debian's ``postgresql`` package.

``start_postgres()`` makes a cluster in a temporary folder, starts it on a free loopback port
with ``trust`` authentication, and gives back a ``PostgresServer`` that creates databases and
stops and removes everything afterwards. PostgreSQL refuses to run as root, so when the tests
run as root the cluster belongs to Debian's ``postgres`` user and every server-side command goes
through ``runuser``. Durability is switched off: nothing here has to survive a crash, and fsync
on every commit would make the store tests slow for no benefit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PostgresServer",
    "PostgresUnavailable",
    "create_database",
    "drop_database",
    "find_postgres_bin",
    "start_postgres",
]

_SUPERUSER = "postgres"
_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL can be started here; the message is the reason to skip with."""


def find_postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` that has the server binaries."""
    found = []
    for bin_dir in Path("/usr/lib/postgresql").glob("*/bin"):
        if all((bin_dir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            major = re.match(r"\d+", bin_dir.parent.name)
            found.append((int(major.group()) if major else 0, bin_dir))
    return max(found)[1] if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    bin_dir: Path
    folder: Path
    port: int
    run_as: str | None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log_path(self) -> Path:
        return self.folder / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def create_database(self) -> str:
        return create_database(self.url())

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A server-side tool, as the cluster's owner."""
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return subprocess.run(
            [*prefix, *args], cwd=self.folder, capture_output=True, text=True, check=check
        )

    def stop(self) -> None:
        if self.data.is_dir():
            self.run(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop",
                check=False,
            )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


def _admin_sql(admin_url: str, statement: str) -> None:
    """One statement outside a transaction, as CREATE and DROP DATABASE need."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement.encode())


def create_database(admin_url: str, prefix: str = "easytensor") -> str:
    """A new, empty database on the server of ``admin_url``; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_database(admin_url: str, url: str) -> None:
    """Drop it even with connections still open: threads' connections outlive their tests."""
    _admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _owner() -> str | None:
    """Who owns the cluster: ``postgres`` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SUPERUSER)
    except KeyError as exc:
        raise PostgresUnavailable(
            "running as root, but there is no 'postgres' user to run PostgreSQL as "
            "(Debian's postgresql package creates it)"
        ) from exc
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root, but there is no runuser to drop to 'postgres'")
    return _SUPERUSER


def start_postgres(attempts: int = 3) -> PostgresServer:
    """Start a fresh cluster; the caller must ``stop()`` it."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no initdb, pg_ctl and postgres under "
            "/usr/lib/postgresql/*/bin); install Debian's postgresql package to run these tests"
        )
    run_as = _owner()
    folder = Path(tempfile.mkdtemp(prefix="easytensor-pg-"))
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin_dir, folder, 0, run_as)
    try:
        made = server.run(
            str(bin_dir / "initdb"), "-D", str(server.data), "-U", _SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync", check=False,
        )  # fmt: skip
        if made.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {made.stderr.strip() or made.stdout}")
        for _ in range(attempts):
            server.port = _free_port()
            options = [f"-p {server.port}", f"-k {folder}"]
            options += [f"-c {key}={value}" for key, value in _SETTINGS.items()]
            started = server.run(
                str(bin_dir / "pg_ctl"), "-D", str(server.data), "-l", str(server.log_path),
                "-w", "-t", "60", "-o", " ".join(options), "start", check=False,
            )  # fmt: skip
            if started.returncode == 0:
                return server
        raise PostgresUnavailable(f"PostgreSQL did not start:\n{server.log()[-2000:]}")
    except BaseException:
        server.stop()
        raise
