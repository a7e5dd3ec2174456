"""The local artifact store: result files named by stage hash, published atomically.

A payload is written to a temporary name in its final directory, fsynced, checksummed and
``os.replace``d onto ``<root>/<hash[:2]>/<hash>.<suffix>``: a reader sees the whole file or
none. Temporary names start with ``.tmp-`` so a sweep can tell them apart; nothing here
knows about SQL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import xxhash

from ..digest import file_digest

T = TypeVar("T")
TEMP_PREFIX = ".tmp-"


class LocalArtifactStore:
    """Artifacts under ``<cache_dir>/artifacts``."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "artifacts"

    def path_for(self, stage_hash: str, suffix: str) -> Path:
        return self.root / stage_hash[:2] / f"{stage_hash}.{suffix}"

    def write(self, stage_hash: str, suffix: str, write_to: Callable[[str], T]) -> tuple[T, int, str]:
        """Publish what ``write_to(temp_path)`` writes; return its result, size and checksum.

        On any failure the temporary file is removed and nothing is published.
        """
        final = self.path_for(stage_hash, suffix)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f"{TEMP_PREFIX}{stage_hash}-{os.getpid()}-{secrets.token_hex(4)}.{suffix}")
        try:
            written = write_to(str(temp))
            with open(temp, "rb+") as f:
                os.fsync(f.fileno())
            size = temp.stat().st_size
            checksum = file_digest(str(temp))
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return written, size, checksum

    def read_bytes(self, stage_hash: str, suffix: str) -> bytes | None:
        """The artifact's bytes, or None when its file is gone."""
        try:
            return self.path_for(stage_hash, suffix).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, stage_hash: str, suffix: str) -> None:
        self.path_for(stage_hash, suffix).unlink(missing_ok=True)


def checksum_bytes(data: bytes) -> str:
    """The artifact checksum of in-memory bytes (same as `file_digest` of the file)."""
    return xxhash.xxh3_128_hexdigest(data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
