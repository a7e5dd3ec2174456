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

from ..errors import LwdpError
from ..formats import choose_format
from ..graph import NodeT, dependency_order
from ..hashing.manifest import stage_manifest
from ..hashing.tracked import WATCHED
from ..hashing.stage_hash import stage_hashes
from ..store.cache import Hit, Loadable, Miss
from ..store.records import LineageRow
from .context import RunContext
from .cutoff import artifact_content, combined_content, input_key, reuse, value_content
from .events import StageEvent, log_event
from .status import stage_status
from .steps import call_stage, check_raw_inputs, computed_uncached, hit_event, load_locked, save_in_background, upstream_artifacts, view
from .undeclared import saved_with

if TYPE_CHECKING:
    from ..stage import Stage


class _Missed(NamedTuple):
    """A stage to compute: why (None: not cached at all), and its compute-once lock."""

    reason: str | None
    lock: ExitStack | None


class _Step:
    """A stage on the run's stack: whether its value is wanted or only its result's
    content (early cutoff), and how far it got: looked up, then (when an earlier result
    may match) its upstreams' contents, then their values and its computation."""

    __slots__ = ("stage", "value", "missed", "keyed")

    def __init__(self, stage: Stage, value: bool) -> None:
        self.stage = stage
        self.value = value
        self.missed: _Missed | None = None
        self.keyed = False  # its upstreams' contents are known: the input key was looked up


RECOMPUTE_ASKED = "recompute asked"
UPSTREAM_RECOMPUTED = "an upstream recomputed on request returned another result"


def needed_upstreams(stage: Stage) -> list[Stage]:
    """The upstreams whose results ``stage``'s function takes."""
    return [inp.value for inp in stage.inputs if inp.kind == "stage" and inp.name in stage.passed_inputs]


class PipelineRun:
    """One call of a stage: the hashes of its DAG and the results computed so far."""

    def __init__(self, target: Stage, context: RunContext, forced: frozenset[Stage] = frozenset()) -> None:
        """``forced``: stages to compute even if cached (`Stage.recompute`, ``lwdp run --force``)."""
        self.order = dependency_order(target)
        self.forced = forced | {partition for stage in forced for partition in stage.partitions}
        # Below a forced stage, a result found by hash may be stale: each is checked by its
        # input key once the forced stage's new result is known.
        self.suspect: set[Stage] = set()
        for stage in self.order:
            if any(up in self.forced or up in self.suspect for up in stage.upstreams):
                self.suspect.add(stage)
        self.cache = context.cache
        self.writer = context.writer
        self.hashes, self.inputs = stage_hashes(self.order, context.catalog, context.settings)
        context.record_lineage(
            LineageRow(self.hashes[stage], stage.name, name, kind, digest, path)
            for stage in self.order
            for name, kind, digest, path in self.inputs[stage]
            if kind != WATCHED  # a mark for early cutoff, not an input
        )
        self.results: dict[Stage, Any] = {}
        self.resolved: set[Stage] = set()  # loaded, computed or reused
        self.contents: dict[Stage, str | None] = {}  # of results, as early cutoff compares them
        self.reasons: dict[Stage, str | None] = {}  # why each stage computed in this call was
        self._by_hash = {self.hashes[stage]: stage for stage in self.order}

    def loadable(self, stage: Stage) -> bool:
        """Whether the stage's result would be loaded, not computed (the cache's probe)."""
        if stage in self.forced or stage in self.suspect:
            return False
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
        A missed stage with earlier results first asks its upstreams only for their results'
        contents (an upstream that loads is not read for that): when they match an earlier
        result's, that result is reused (`lwdp.run.cutoff`) and its inputs are not loaded.
        """
        stack = [_Step(target, value=True)]
        locks: list[ExitStack] = []
        try:
            while stack:
                step = stack[-1]
                stage = step.stage
                if stage in self.results or (not step.value and stage in self.contents):
                    stack.pop()
                elif step.missed is None:
                    self._look_up(step, stack, locks)
                elif step.missed.lock is not None and not step.keyed:
                    step.keyed = True
                    if not self._reuse(step):
                        stack += [_Step(up, value=True) for up in reversed(needed_upstreams(stage)) if up not in self.results]
                else:
                    with step.missed.lock or ExitStack():  # released here unless handed to the writer
                        self.results[stage] = self._compute(stage, step.missed.reason, step.missed.lock)
                    self.resolved.add(stage)
                    stack.pop()
        finally:
            for lock in locks:
                lock.close()  # those of stages that failed or were reused (a handed-over one is empty)
        return self.results[target]

    def _look_up(self, step: _Step, stack: list[_Step], locks: list[ExitStack]) -> None:
        """The stage's result or content if cached (popped), else its miss, and what to
        resolve before it: its upstreams' contents, when it has earlier results to match,
        or their values."""
        stage = step.stage
        if stage.cache and (stage in self.forced or stage in self.suspect):
            lock = ExitStack()
            lock.enter_context(self.cache.computing(self.hashes[stage], stage.name))
            locks.append(lock)
            step.missed = _Missed(RECOMPUTE_ASKED if stage in self.forced else None, lock)
            step.keyed = stage in self.forced
            wanted = needed_upstreams(stage) if step.keyed else stage.upstreams
            stack += [_Step(up, value=step.keyed) for up in reversed(wanted) if up not in self.results]
            return
        if not step.value and stage.cache:
            content = artifact_content(self.cache, self.hashes[stage])
            if content is not None:  # recorded: its content is known without reading it
                self.contents[stage] = content
                stack.pop()
                return
        found = self._load(stage)
        if not isinstance(found, _Missed):
            self.results[stage] = found
            self.resolved.add(stage)
            stack.pop()
            return
        step.missed = found
        if found.lock is not None:
            locks.append(found.lock)
            if self.cache.catalog.keyed_by_inputs(stage.name):
                stack += [_Step(up, value=False) for up in reversed(stage.upstreams) if up not in self.contents]
                return
        step.keyed = True
        stack += [_Step(up, value=True) for up in reversed(needed_upstreams(stage)) if up not in self.results]

    def _reuse(self, step: _Step) -> bool:
        """Whether an earlier result of the stage, computed from inputs of the same content,
        was recorded as its result (its lock is released then)."""
        stage = step.stage
        assert step.missed is not None and step.missed.lock is not None
        stage_hash = self.hashes[stage]
        key = input_key(stage, self.inputs[stage], self.content_of)
        if stage in self.suspect:
            own = self.cache.catalog.lookup_artifact(stage_hash)
            if key is not None and own is not None and own.input_key == key:  # still computed from these inputs
                return self._resolved(step, None)
            step.missed = _Missed(UPSTREAM_RECOMPUTED, step.missed.lock)
        if key is None:
            return False
        manifest = stage_manifest(stage, self.inputs[stage])
        upstreams = {inp.name: inp.value for inp in stage.inputs}
        event = reuse(self.cache, stage, stage_hash, self.inputs[stage], key, manifest, lambda name: self.reasons.get(upstreams[name]))
        return event is not None and self._resolved(step, event)

    def _resolved(self, step: _Step, event: StageEvent | None) -> bool:
        """A missed stage whose result is an artifact after all: reused (``event``), or
        its own, found valid again below a forced recompute (logged as the hit it is)."""
        stage, stage_hash = step.stage, self.hashes[step.stage]
        assert step.missed is not None and step.missed.lock is not None
        started = time.perf_counter()
        if step.value or event is None:
            found = self.cache.load(stage.name, stage_hash, stage.format, locked=True)
            if not isinstance(found, Hit):
                if event is None:
                    return False  # its own artifact is damaged: compute it again
                raise LwdpError(f"stage '{stage.name}': the result it reused is gone already ({found}); run again")
            self.results[stage] = found.value
            event = event or hit_event(stage.name, stage_hash, found, time.perf_counter() - started)
        step.missed.lock.close()
        log_event(event)
        self.resolved.add(stage)
        self.contents[stage] = artifact_content(self.cache, stage_hash)
        return True

    def content_of(self, input_name: str, upstream_hash: str) -> str | None:
        """The content of an upstream's result, by the hash this run gave it: its artifact's
        checksum (once this run's write of it is done), or a digest of an uncached value."""
        upstream = self._by_hash[upstream_hash]
        if upstream not in self.contents:
            if upstream.cache:
                self.contents[upstream] = artifact_content(self.cache, upstream_hash, self.writer.pending(upstream_hash))
            elif upstream.partitions and all(partition.cache for partition in upstream.partitions):
                rows = self.inputs[upstream]  # one per partition: (its path, "stage", its hash, None); packages, env
                self.contents[upstream] = combined_content({path: self.content_of(path, h) for path, kind, h, _ in rows if kind == "stage"})
            else:
                self.contents[upstream] = value_content(self.results[upstream]) if upstream in self.results else None
        return self.contents[upstream]

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
        result, found = call_stage(stage, kwargs, self.cache.settings)
        seconds = time.perf_counter() - started
        check_raw_inputs(stage, self.inputs[stage], self.cache)
        self.reasons[stage] = miss_reason
        if not stage.cache or lock is None:
            log_event(computed_uncached(self.cache, stage, stage_hash, self.inputs[stage], found, seconds, miss_reason))
            return result
        choice = choose_format(stage.name, result, stage.format)
        rows, manifest, tracked = saved_with(
            stage, self.inputs[stage], stage_manifest(stage, self.inputs[stage]), found, self.cache.settings, self.cache.catalog
        )
        save_in_background(
            self.writer, lock, self.cache, stage, stage_hash, result, choice, seconds, manifest, miss_reason,
            lambda: input_key(stage, rows, self.content_of), tracked,
            upstream_artifacts(self.cache, self._cached_upstreams(stage), self.writer),
        )
        return result

    def _cached_upstreams(self, stage: Stage) -> list[tuple[str, Any]]:
        """(hash, result) of the cached upstreams ``stage`` takes, whose columns its result
        may link (`lwdp.store.shared_columns`)."""
        return [
            (self.hashes[inp.value], self.results[inp.value]) for inp in stage.inputs
            if inp.kind == "stage" and inp.value.cache and inp.name in stage.passed_inputs
        ]

    def _inputs(self, stage: Stage) -> dict[str, Any]:
        """The keyword arguments of ``stage`` (its upstreams' results are in by now)."""
        return self.arguments(stage, lambda up: view(self.results[up]))

    @staticmethod
    def arguments(stage: NodeT, upstream: Callable[[NodeT], Any]) -> dict[str, Any]:
        """The keyword arguments of ``stage``: ``upstream(stage)`` for an upstream's result, a
        private copy of each parameter, and raw paths as written."""
        return {
            inp.name: upstream(inp.value) if inp.kind == "stage" else copy.deepcopy(inp.value) if inp.kind == "param" else inp.value
            for inp in stage.inputs
            if inp.name in stage.passed_inputs
        }
