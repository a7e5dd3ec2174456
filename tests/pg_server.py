"""A real PostgreSQL server for the tests: a throwaway cluster started once per session
(or the server at ``LWDP_TEST_PG_URL``), and a fresh database for each test.

Without the server binaries (``apt-get install postgresql``) or psycopg, and without
``LWDP_TEST_PG_URL``, the tests that need it skip, unless ``LWDP_REQUIRE_SERVICES=1``
(CI) makes that an error.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy
from services import free_port, service_missing

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _bin_dir() -> Path | None:
    """The newest installed server's binaries, or those on PATH."""
    versions = [Path(p) for p in glob.glob(PG_BIN_GLOB) if Path(p).parent.name.isdigit() and Path(p, "initdb").is_file()]
    if versions:
        return max(versions, key=lambda p: int(p.parent.name))
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _as_server_user(args: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server as ``postgres`` then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass(frozen=True)
class PgServer:
    """A running server, reached as its superuser through ``admin_url``."""

    admin_url: str

    def create_database(self) -> str:
        """A new, empty database: its URL."""
        name = f"lwdp_test_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return sqlalchemy.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{sqlalchemy.make_url(url).database}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        engine = sqlalchemy.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(sql)
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The PostgreSQL server of this test session."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        service_missing("psycopg is not installed (pip install 'lwdp[postgres]')")
    given = os.environ.get("LWDP_TEST_PG_URL")
    if given:
        yield PgServer(given)
        return
    bin_dir = _bin_dir()
    if bin_dir is None:
        service_missing("no PostgreSQL server binaries (apt-get install postgresql) and LWDP_TEST_PG_URL is unset")
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="lwdp-pg-"))  # short: the socket path must fit 107 bytes
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)
    port = free_port()
    data, log = root / "data", root / "log"
    subprocess.run(
        _as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]),
        check=True, capture_output=True, timeout=120,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    started = subprocess.run(
        _as_server_user([*pg_ctl, "-l", str(log), "-w", "-o", options, "start"]), capture_output=True, text=True, timeout=120,
    )
    if started.returncode != 0:
        raise RuntimeError(f"PostgreSQL did not start:\n{started.stderr}\n{log.read_text() if log.exists() else ''}")
    try:
        yield PgServer(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres")
    finally:
        subprocess.run(_as_server_user([*pg_ctl, "-m", "fast", "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A new, empty database of this test's own: its URL."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
