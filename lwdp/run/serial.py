"""A call computed in this process, stage after stage: order the pipeline, hash it, then
load or compute what is needed.

A cached stage whose artifact is valid is loaded and its ancestors are not touched; every
stage runs at most once per call (diamonds included); each consumer gets its own view of
an upstream result, so a stage that mutates its input changes nothing for its siblings.
"""

from __future__ import annotations

import copy
import time
from contextlib import ExitStack
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..formats import choose_format
from ..graph import dependency_order
from ..hashing.manifest import stage_manifest
from ..hashing.stage_hash import stage_hashes
from ..store.cache import Loadable, Miss
from ..store.records import LineageRow
from .context import RunContext
from .events import StageEvent, log_event
from .status import stage_status
from .steps import call_stage, hit_event, load_locked, save_in_background, view

if TYPE_CHECKING:
    from ..stage import Stage


class _Missed(NamedTuple):
    """A stage to compute: why (None: not cached at all), and its compute-once lock."""

    reason: str | None
    lock: ExitStack | None


def needed_upstreams(stage: Stage) -> list[Stage]:
    """The upstreams whose results ``stage``'s function takes."""
    return [inp.value for inp in stage.inputs if inp.kind == "stage" and inp.name in stage.passed_inputs]


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
        self.resolved: set[Stage] = set()  # loaded or computed

    def loadable(self, stage: Stage) -> bool:
        """Whether the stage's result would be loaded, not computed (the cache's probe)."""
        return stage.cache and isinstance(self.cache.probe(stage.name, self.hashes[stage], stage.format), Loadable)

    def log_not_needed(self) -> None:
        """One line for each stage that was neither loaded nor run (a descendant was cached)."""
        for stage in self.order:
            if stage not in self.resolved:
                log_event(StageEvent(stage.name, self.hashes[stage], "not-needed", 0.0, None))

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
                        self.resolved.add(stage)
                        stack.pop()
                        continue
                    waiting[stage] = found
                    stack += [up for up in reversed(needed_upstreams(stage)) if up not in self.results]
                    continue
                missed = waiting.pop(stage)
                with missed.lock or ExitStack():  # released here unless handed to the writer
                    self.results[stage] = self._compute(stage, missed.reason, missed.lock)
                self.resolved.add(stage)
                stack.pop()
        except BaseException:
            for missed in waiting.values():
                if missed.lock is not None:
                    missed.lock.close()
            raise
        return self.results[target]

    def _load(self, stage: Stage) -> Any:
        """The cached result, or a `_Missed` holding the compute-once lock of the stage."""
        if not stage.cache:
            return _Missed(None, None)
        stage_hash = self.hashes[stage]
        started = time.perf_counter()
        found = self.cache.load(stage.name, stage_hash, stage.format)
        if isinstance(found, Miss):
            found, lock = load_locked(self.cache, stage.name, stage_hash, stage.format)
            if isinstance(found, Miss):  # the lock is handed to the writer with the result
                return _Missed(self.miss_reason(stage, found), lock)
        log_event(hit_event(stage.name, stage_hash, found, time.perf_counter() - started))
        return found.value

    def miss_reason(self, stage: Stage, miss: Miss) -> str:
        """Why a cached stage must be computed, as its log line says it."""
        return "; ".join(stage_status(self.cache.catalog, stage, self.hashes[stage], self.inputs[stage], miss).reasons)

    def _compute(self, stage: Stage, miss_reason: str | None, lock: ExitStack | None = None) -> Any:
        """Run the stage; a cached stage's result goes to the writer with its compute-once
        ``lock``, and is logged once written."""
        stage_hash = self.hashes[stage]
        kwargs = self._inputs(stage)
        started = time.perf_counter()
        result = call_stage(stage, kwargs)
        seconds = time.perf_counter() - started
        if not stage.cache or lock is None:
            log_event(StageEvent(stage.name, stage_hash, "computed-uncached", seconds, None, miss_reason))
            return result
        choice = choose_format(stage.name, result, stage.format)
        manifest = stage_manifest(stage, self.inputs[stage])
        save_in_background(self.writer, lock, self.cache, stage, stage_hash, result, choice, seconds, manifest, miss_reason)
        return result

    def _inputs(self, stage: Stage) -> dict[str, Any]:
        """The keyword arguments of ``stage`` (its upstreams' results are in by now)."""
        return self.arguments(stage, lambda up: view(self.results[up]))

    @staticmethod
    def arguments(stage: Stage, upstream: Callable[[Stage], Any]) -> dict[str, Any]:
        """The keyword arguments of ``stage``: ``upstream(stage)`` for an upstream's result, a
        private copy of each parameter, and raw paths as written."""
        return {
            inp.name: upstream(inp.value) if inp.kind == "stage" else copy.deepcopy(inp.value) if inp.kind == "param" else inp.value
            for inp in stage.inputs
            if inp.name in stage.passed_inputs
        }
