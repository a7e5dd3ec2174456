"""Running a stage: order its ancestors, hash them, then load or compute what is needed.

A cached stage whose artifact is valid is loaded and its ancestors are not touched; every
stage runs at most once per call (diamonds included); each consumer gets its own view of
an upstream result, so a stage that mutates its input changes nothing for its siblings.
"""

from __future__ import annotations

import copy
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd

from ..errors import CatalogDamagedError
from ..formats import PANDAS_MAJOR, choose_format
from ..graph import dependency_order
from ..hashing.manifest import stage_manifest
from ..hashing.stage_hash import stage_hashes
from ..store.cache import Miss, MissReason
from ..store.records import LineageRow
from .context import RunContext
from .status import stage_status

if TYPE_CHECKING:
    from ..stage import Stage

logger = logging.getLogger("lwdp")

_COPY_ON_WRITE = PANDAS_MAJOR >= 3
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, frozenset)


class _Missed(NamedTuple):
    """A stage to compute: why (None: not cached at all), and its compute-once lock."""

    reason: str | None
    lock: ExitStack | None


@dataclass(frozen=True)
class StageEvent:
    """What happened to one stage in one call; attached to its log record as ``lwdp_event``."""

    stage: str
    hash: str
    outcome: str  # "hit" | "computed" | "computed-uncached" | "not-needed"
    seconds: float
    bytes: int | None
    reason: str | None = None  # why a cached stage was computed; where a hit came from


def current_hashes(target: Stage) -> dict[Stage, str]:
    """The stage hash of ``target`` and each of its ancestors, without running anything."""
    with RunContext() as context:
        hashes, _ = stage_hashes(dependency_order(target), context.catalog, context.settings)
    return hashes


def run_stage(target: Stage) -> Any:
    """Compute or load ``target``'s result.

    A catalog found damaged mid-run is moved aside; the run then starts again on a new
    one, where what was already computed is adopted from its manifests.
    """
    try:
        return _run_once(target)
    except CatalogDamagedError:
        return _run_once(target)


def _run_once(target: Stage) -> Any:
    with RunContext() as context:
        run = PipelineRun(target, context)
        result = run.result(target)
    run.log_not_needed()
    return result


def _view(value: Any) -> Any:
    """A copy a consumer may mutate freely (cheap under pandas copy-on-write).

    pandas never copies the Python objects inside object columns, so cells holding lists,
    dicts or other mutable objects are deep-copied one by one.
    """
    if isinstance(value, pd.DataFrame):
        frame = value.copy(deep=not _COPY_ON_WRITE)
        for position, dtype in enumerate(frame.dtypes):
            if dtype == object and _holds_mutable_objects(column := frame.iloc[:, position]):
                frame.isetitem(position, column.map(copy.deepcopy).to_numpy())
        return frame
    if isinstance(value, pd.Series):
        series = value.copy(deep=not _COPY_ON_WRITE)
        return series.map(copy.deepcopy) if _holds_mutable_objects(series) else series
    if isinstance(value, (pd.Index, *_IMMUTABLE)):
        return value
    return copy.deepcopy(value)


_IMMUTABLE_KINDS = frozenset(
    {"string", "bytes", "empty", "integer", "floating", "mixed-integer-float", "decimal", "boolean", "date", "datetime", "time", "timedelta"}
)


def _holds_mutable_objects(values: pd.Series) -> bool:
    return values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) not in _IMMUTABLE_KINDS


class PipelineRun:
    """One call of a stage: the hashes of its DAG and the results computed so far."""

    def __init__(self, target: Stage, context: RunContext) -> None:
        self.order = dependency_order(target)
        self.cache = context.cache
        self.writer = context.writer
        self.hashes, self.inputs = stage_hashes(self.order, context.catalog, context.settings)
        context.record_lineage(
            LineageRow(self.hashes[stage], stage.name, name, kind, digest, path)
            for stage in self.order
            for name, kind, digest, path in self.inputs[stage]
        )
        self.results: dict[Stage, Any] = {}

    def log_not_needed(self) -> None:
        """One line for each stage that was neither loaded nor run (a descendant was cached)."""
        for stage in self.order:
            if stage not in self.results:
                self._log(StageEvent(stage.name, self.hashes[stage], "not-needed", 0.0, None))

    def result(self, target: Stage) -> Any:
        """``target``'s result: loaded if cached, else computed after its inputs' results.

        A loop over a stack of stages, not recursion, so a chain of any length fits Python's
        stack. A stage whose result must be computed holds its compute-once lock from the
        miss until its result is handed to the writer (its inputs are resolved meanwhile).
        """
        waiting: dict[Stage, _Missed] = {}  # missed, their inputs pending
        stack = [target]
        try:
            while stack:
                stage = stack[-1]
                if stage in self.results:
                    stack.pop()
                    continue
                if stage not in waiting:
                    found = self._load(stage)
                    if not isinstance(found, _Missed):
                        self.results[stage] = found
                        stack.pop()
                        continue
                    waiting[stage] = found
                    stack += [up for up in reversed(self._needed_upstreams(stage)) if up not in self.results]
                    continue
                missed = waiting.pop(stage)
                with missed.lock or ExitStack():  # released here unless handed to the writer
                    self.results[stage] = self._compute(stage, missed.reason, missed.lock)
                stack.pop()
        except BaseException:
            for missed in waiting.values():
                if missed.lock is not None:
                    missed.lock.close()
            raise
        return self.results[target]

    @staticmethod
    def _needed_upstreams(stage: Stage) -> list[Stage]:
        return [inp.value for inp in stage.inputs if inp.kind == "stage" and inp.name in stage.passed_inputs]

    def _load(self, stage: Stage) -> Any:
        """The cached result, or a `_Missed` holding the compute-once lock of the stage."""
        if not stage.cache:
            return _Missed(None, None)
        stage_hash = self.hashes[stage]
        started = time.perf_counter()
        found = self.cache.load(stage.name, stage_hash, stage.format)
        if isinstance(found, Miss):
            lock = ExitStack()  # handed to the writer with the result, if computed here
            try:
                lock.enter_context(self.cache.computing(stage_hash, stage.name))
                # Another process may have computed it while this one waited for the lock.
                found = self.cache.load(stage.name, stage_hash, stage.format, locked=True)
                if isinstance(found, Miss):
                    why = stage_status(self.cache.catalog, stage, stage_hash, self.inputs[stage], found)
                    return _Missed("; ".join(why.reasons), lock)
            except BaseException:
                lock.close()
                raise
            lock.close()
        source = f"downloaded from {found.source}" if found.source else None
        self._log(StageEvent(stage.name, stage_hash, "hit", time.perf_counter() - started, found.size, source))
        return found.value

    def _compute(self, stage: Stage, miss_reason: str | None, lock: ExitStack | None = None) -> Any:
        """Run the stage; a cached stage's result goes to the writer with its compute-once
        ``lock``, and is logged once written."""
        stage_hash = self.hashes[stage]
        kwargs = self._inputs(stage)
        started = time.perf_counter()
        result = self._call(stage, kwargs)
        seconds = time.perf_counter() - started
        if not stage.cache or lock is None:
            self._log(StageEvent(stage.name, stage_hash, "computed-uncached", seconds, None, miss_reason))
            return result
        choice = choose_format(stage.name, result, stage.format)
        manifest = stage_manifest(stage, self.inputs[stage])
        held = lock.pop_all()

        def write() -> None:
            with held:
                written = time.perf_counter()
                size = self.cache.save(stage.name, stage_hash, result, choice, seconds, manifest)
                total = seconds + time.perf_counter() - written
                self._log(StageEvent(stage.name, stage_hash, "computed", total, size, miss_reason))

        self.writer.submit(write)
        return result

    def _inputs(self, stage: Stage) -> dict[str, Any]:
        """The keyword arguments of ``stage`` (its upstreams' results are in by now)."""
        kwargs = {}
        for inp in stage.inputs:
            if inp.name not in stage.passed_inputs:
                continue
            if inp.kind == "stage":
                kwargs[inp.name] = _view(self.results[inp.value])
            elif inp.kind == "param":
                kwargs[inp.name] = copy.deepcopy(inp.value)
            else:
                kwargs[inp.name] = inp.value
        return kwargs

    @staticmethod
    def _call(stage: Stage, kwargs: dict[str, Any]) -> Any:
        try:
            return stage.func(**kwargs)
        except Exception as exc:
            note = f"raised in lwdp stage '{stage.name}'"
            if hasattr(exc, "add_note"):
                exc.add_note(note)
            else:  # Python 3.10: the same attribute PEP 678 defines, without the display
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
            raise

    @staticmethod
    def _log(event: StageEvent) -> None:
        short = event.hash[:12]
        if event.outcome == "hit":
            text = f"cache hit {short}, read {event.bytes:,} bytes in {event.seconds:.3f} s"
        elif event.outcome == "computed":
            text = f"computed {short} in {event.seconds:.3f} s, cached {event.bytes:,} bytes"
        elif event.outcome == "computed-uncached":
            text = f"computed {short} in {event.seconds:.3f} s (not cached)"
        else:
            text = f"{short} not loaded: a later stage's cached result covers it"
        if event.reason and event.reason != MissReason.NEVER_COMPUTED.value:
            text += f" ({event.reason})"
        logger.info("stage %s: %s", event.stage, text, extra={"lwdp_event": event})
