"""What must be known of the catalog without importing SQLAlchemy (see
`lwdp.store.sqlite_db`): the SQLite file's name, its busy timeout and WAL mode, the schema
revision this lwdp writes, and how a cache directory that can't be used is reported."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CacheDirError

CATALOG_FILE = "catalog.sqlite"
BUSY_TIMEOUT_MS = 60_000
HEAD_REVISION = "0009"  # tests check this against the newest file in migrations/versions


def enable_wal(execute: Callable[[str], Any]) -> None:
    """Set the busy timeout, then WAL mode, with ``execute`` (a connection's or cursor's).

    Switching a new file to WAL takes it for a moment, and while another process switches
    it too (several making one catalog at once) SQLite answers "database is locked" at
    once, without waiting the busy timeout: so ask again, until the busy timeout.
    """
    execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # before journal_mode
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def is_corruption(exc: Exception) -> bool:
    """Whether SQLite's error says the file is not a database, or a damaged one."""
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


def cache_dir_error(cache_dir: Path, reason: object, errno: int | None) -> CacheDirError:
    return CacheDirError(
        f"cannot use cache directory {cache_dir} ({reason}); fix its permissions or choose "
        "another with lwdp.configure(cache_dir=...) or LWDP_CACHE_DIR",
        errno,
    )
