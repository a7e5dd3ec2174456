"""What one call of a stage, one `.hash` and one ``explain()`` work with, and how they end.

Settings are read once, when the context starts, so a `configure` from another thread
mid-run changes nothing in it. Marks of use (the last access of the artifacts a run read,
the recency of the lineage of the hashes it evaluated) are written once, when it ends, in
one transaction; background writes of artifacts are waited for then too.
"""

from __future__ import annotations

import getpass
import logging
import socket
import uuid
from collections.abc import Iterable
from contextlib import ExitStack
from types import TracebackType

from .. import config
from ..store.cache import ResultCache
from ..store.catalog import open_catalog
from ..store.quota import keep_budgets
from ..store.records import LineageRow, RunRecord, RunStage, utcnow
from ..store.writer import ArtifactWriter
from ..version import __version__
from .events import StageEvent, raising_stage, recording
from .watch import resume_watching, suspend_watching

logger = logging.getLogger("lwdp")


class RunContext:
    """The settings, catalog, result cache and artifact writer of one run (a context manager).

    On leaving: the writes are waited for and the marks of use written. When the block
    failed, what fails then is only logged and the block's exception goes on; when a write
    fails, the marks are still written and the write's error is raised.
    """

    def __init__(self, target: str | None = None) -> None:
        """``target``: the stage a run was called for, which the run history records (none
        for work that only hashes or explains)."""
        self.settings = config.settings()
        self._watched = suspend_watching()  # a stage called inside a stage: lwdp's reads are not the outer one's
        try:
            self.catalog = open_catalog(self.settings)
        except BaseException:
            resume_watching(self._watched)
            raise
        self.cache = ResultCache(self.settings, self.catalog)
        self.writer = ArtifactWriter()
        self._evaluated: set[str] = set()
        self.kept: frozenset[str] | None = None  # the run's results, once it has them: the budget keeps them
        self._target, self._started = target, utcnow()
        self.hashes: dict[str, str] = {}  # each stage's hash, by name, once the run has them
        self._recorder = ExitStack()
        self._events = self._recorder.enter_context(recording()) if target is not None else None

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        failing = kind is not None
        try:
            self.writer.finish(raising=not failing)
        except BaseException as write_error:
            self._mark_used(raising=False, error=error or write_error)
            raise
        else:
            self._mark_used(raising=not failing, error=error)
            if self.kept is not None and not failing:
                keep_budgets(self.cache, self.kept)
        finally:
            self._recorder.close()
            resume_watching(self._watched)

    def record_lineage(self, rows: Iterable[LineageRow]) -> None:
        """Record the lineage of hashes the catalog has not seen; the others' lineage only
        becomes the most recent of their stages, when the run ends."""
        by_hash: dict[str, list[LineageRow]] = {}
        for row in rows:
            by_hash.setdefault(row.hash, []).append(row)
        known = self.catalog.hashes_with_lineage(list(by_hash))
        new = [row for h, hash_rows in by_hash.items() if h not in known for row in hash_rows]
        if new:
            self.catalog.record_lineage(new)
        self._evaluated.update(known)

    def _mark_used(self, raising: bool, error: BaseException | None) -> None:
        used, evaluated = self.cache.used, self._evaluated
        run = self._run_record(error)
        if not self.catalog.is_current():  # found damaged and moved aside: its rows are gone
            used.clear()
            evaluated.clear()
            run = None
        if not (used or evaluated or run):
            return
        try:
            self.catalog.mark_used(used, evaluated, utcnow(), run)
        except Exception as exc:
            if raising:
                raise
            logger.error("%s", exc)
        finally:
            used.clear()
            evaluated.clear()

    def _run_record(self, error: BaseException | None) -> RunRecord | None:
        """The run for the history: how it ended, and each stage's outcome (the stage whose
        function raised, "failed")."""
        if self._events is None:
            return None
        events: dict[str, StageEvent] = dict(self._events)
        failed = raising_stage(error) if error is not None else None
        stages = [RunStage(e.stage, e.hash, e.outcome, e.seconds, e.bytes, e.reason) for e in events.values() if e.stage != failed]
        if failed is not None:
            stages.append(RunStage(failed, self.hashes.get(failed, ""), "failed", None, None, _described(error)))
        outcome = "succeeded" if error is None else "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        return RunRecord(
            uuid.uuid4().hex, self._target or "", self._started, utcnow(), outcome,
            _described(error) if error is not None else None, socket.gethostname(), _user(), __version__, tuple(stages),
        )


def _described(error: BaseException | None) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return None
