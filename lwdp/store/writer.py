"""Artifacts written on background threads while the stages after them compute.

Writing a large result (encoding, fsync, checksum, publishing, the catalog row) costs about
as much as computing it; pyarrow, xxhash and file I/O release the GIL, so on another core
the write is off the run's critical path. Writes start in the order stages finish, on up
to one thread per core (at most 4): once the last stages compute, the big artifacts queued
behind one another are written side by side (an incremental run on 2 cores: 1.39x plain
pandas with one thread, 1.13x with two). Each job owns the stage's compute-once lock and
releases it only after the catalog row is committed, so a process waiting for the stage
finds its artifact. A failed write leaves no file and no row; `ArtifactWriter.finish`
raises it when the run ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

logger = logging.getLogger("lwdp")
_THREADS = max(1, min(4, os.cpu_count() or 1))


class ArtifactWriter:
    """The background writes of one run."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: list[Future[None]] = []
        self._of_hash: dict[str, Future[None]] = {}

    def submit(self, job: Callable[[], None], stage_hash: str) -> Future[None]:
        """Start writing the artifact of ``stage_hash`` (jobs start in the order submitted, so
        a job may wait for one submitted before it)."""
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor  # only runs that compute need it

            self._executor = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="lwdp-writer")
        self._jobs.append(future := self._executor.submit(job))
        self._of_hash[stage_hash] = future
        return future

    def pending(self, stage_hash: str) -> Future[None] | None:
        """The write of ``stage_hash`` this run submitted, if any (done or not)."""
        return self._of_hash.get(stage_hash)

    def finish(self, raising: bool = True) -> None:
        """Wait for every write; raise the first that failed (the others are logged).

        ``raising=False``: the run is failing already; failed writes are only logged.
        """
        if self._executor is None:
            return
        self._executor.shutdown(wait=True)
        self._executor = None
        failures = [error for job in self._jobs if (error := job.exception()) is not None]
        self._jobs.clear()
        self._of_hash.clear()
        for error in failures[1 if raising else 0 :]:
            logger.error("%s", error)
        if raising and failures:
            raise failures[0]
