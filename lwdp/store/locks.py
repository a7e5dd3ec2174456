"""Per-artifact locks: one ``flock`` file per stage hash, shared by every process on the machine.

A computing process holds the lock exclusively; a reader holds it shared while it reads
the bytes; gc deletes an artifact only if it can take the lock at once. The kernel
releases a flock when its holder exits, however it exits, so a crash never leaves a stale
lock and no lock file has to be deleted by hand. Whoever deletes a lock file holds it
while doing so; a waiter that then wins a lock on the deleted file notices (the path no
longer names its inode) and locks the new file instead.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CacheDirError

logger = logging.getLogger("lwdp")


class LockDir:
    """Lock files ``<root>/<hash>.lock``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, stage_hash: str) -> Path:
        return self.root / f"{stage_hash}.lock"

    @contextmanager
    def hold(self, stage_hash: str, stage_name: str, shared: bool = False) -> Iterator[None]:
        """Hold the lock, waiting (and saying so in the log) while another process has it."""
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        fd = self._open(stage_hash)
        while True:
            try:
                _lock_announcing_wait(fd, mode, self.path_for(stage_hash), stage_name)
                if _still_names(self.path_for(stage_hash), fd):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the file was deleted while we waited: lock the new one
            fd = self._open(stage_hash)
        try:
            yield
        finally:
            os.close(fd)

    @contextmanager
    def try_hold(self, stage_hash: str, remove: bool = False, create: bool = True) -> Iterator[bool]:
        """Hold the lock exclusively if nobody holds it (yield True), else yield False at once.

        ``remove``: delete the lock file too (while holding it), for an artifact being deleted.
        ``create=False``: where no lock file exists nobody holds the lock; yield True without
        creating one (for a dry run, which must leave the cache as it was).
        """
        path = self.path_for(stage_hash)
        if not create and not path.exists():
            yield True
            return
        fd = self._open(stage_hash)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            free = _still_names(path, fd)
            yield free
            if free and remove:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def _open(self, stage_hash: str) -> int:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            return os.open(self.path_for(stage_hash), os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise CacheDirError(
                f"cannot create lock file {self.path_for(stage_hash)} ({exc.strerror}); fix the "
                "permissions of the cache directory or choose another with LWDP_CACHE_DIR",
                exc.errno,
            ) from exc


def _lock_announcing_wait(fd: int, mode: int, path: Path, stage_name: str) -> None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    doing = "computing or reading" if mode == fcntl.LOCK_EX else "computing or writing"
    logger.info("stage %s: another process is %s it; waiting for lock %s", stage_name, doing, path)
    started = time.perf_counter()
    fcntl.flock(fd, mode)
    logger.info("stage %s: lock acquired after %.1f s", stage_name, time.perf_counter() - started)


def _still_names(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
