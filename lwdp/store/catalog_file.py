"""What must be known of the catalog without importing SQLAlchemy (see
`lwdp.store.sqlite_db`): the SQLite file's name, its busy timeout, the schema revision
this lwdp writes, and how a cache directory that can't be used is reported."""

from __future__ import annotations

from pathlib import Path

from ..errors import CacheDirError

CATALOG_FILE = "catalog.sqlite"
BUSY_TIMEOUT_MS = 60_000
HEAD_REVISION = "0005"  # tests check this against the newest file in migrations/versions


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
