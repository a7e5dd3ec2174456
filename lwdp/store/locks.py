"""Compute-once locks: one ``flock`` per stage hash, shared by every process on the machine.

The kernel releases a flock when its holder exits, however it exits, so a crash never
leaves a stale lock and no lock file ever has to be deleted by hand. Lock files are
never removed while in use: whoever deletes one first takes it, and a waiter that wins a
lock on a deleted file notices (the path no longer names its inode) and tries again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("lwdp")


class LockDir:
    """Lock files ``<root>/<hash>.lock``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, stage_hash: str) -> Path:
        return self.root / f"{stage_hash}.lock"

    @contextmanager
    def hold(self, stage_hash: str, stage_name: str) -> Iterator[None]:
        """Hold the lock of ``stage_hash``, waiting (and saying so) while another process has it."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(stage_hash)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                _lock_announcing_wait(fd, path, stage_name)
                if _still_names(path, fd):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # deleted while we waited: lock the new file instead
        try:
            yield
        finally:
            os.close(fd)

    @contextmanager
    def try_hold(self, stage_hash: str) -> Iterator[bool]:
        """Hold the lock if nobody does (yield True), else yield False at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(stage_hash)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield _still_names(path, fd)
        finally:
            os.close(fd)

    def remove_if_free(self, stage_hash: str) -> bool:
        """Delete a lock file nobody holds (for gc); False if it is held."""
        path = self.path_for(stage_hash)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            if _still_names(path, fd):
                path.unlink()
        finally:
            os.close(fd)
        return True


def _lock_announcing_wait(fd: int, path: Path, stage_name: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    logger.info("stage %s: another process is computing it; waiting for lock %s", stage_name, path)
    started = time.perf_counter()
    fcntl.flock(fd, fcntl.LOCK_EX)
    logger.info("stage %s: lock acquired after %.1f s", stage_name, time.perf_counter() - started)


def _still_names(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
