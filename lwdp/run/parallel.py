"""A call that computes independent stages at once (``jobs`` > 1, or an executor).

The run plans in its own process: it hashes the pipeline and asks the cache which stages
it must compute (`ResultCache.probe`: nothing is loaded), then sends each stage to the
workers once its upstreams are done, as many at a time as the workers take. Results stay
where they were made: a worker writes a cached stage's artifact and consumers read it;
only an uncached stage's value travels, to the run and on to its consumers, and the run
drops it once they are done. The log lines are those of a serial run, in the order the
stages end. A warm call never starts a worker: it is the serial path.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import sys
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from ..hashing.manifest import stage_manifest
from ..store.cache import Hit, Loadable
from .serial import PipelineRun, needed_upstreams
from .context import RunContext
from .events import StageEvent, log_event
from .executors import ProcessWorkers, Workers, workers_for
from .steps import view
from .worker import MEMORY, CachedInput, StageRef, StageTask, TaskOutcome, compute

if TYPE_CHECKING:
    from ..stage import Stage

logger = logging.getLogger("lwdp")
_warned_local: set[str] = set()  # stages said once per process to run here


class ParallelRun(PipelineRun):
    """One call whose stages compute on workers."""

    def __init__(self, target: Stage, context: RunContext) -> None:
        super().__init__(target, context)
        self.settings = dataclasses.replace(context.settings, executor=None, dask_scheduler=None, jobs=1)
        self.configured = context.settings
        self.run_id = uuid.uuid4().hex
        self.by_name = {stage.name: stage for stage in self.order}
        self.position = {stage: i for i, stage in enumerate(self.order)}
        self.reasons: dict[Stage, str | None] = {}  # the stages to compute, and why
        self.pending: set[Stage] = set()  # of those, the ones not sent yet
        self.blockers: dict[Stage, set[Stage]] = {}  # upstreams still to compute
        self.consumers: dict[Stage, set[Stage]] = {}  # consumers not done yet
        self.here: set[Stage] = set()  # stages workers can't get: computed by this process's threads
        self._threads: ThreadPoolExecutor | None = None

    def result(self, target: Stage) -> Any:
        if target.cache and isinstance(self.cache.probe(target.name, self.hashes[target], target.format), Loadable):
            return super().result(target)  # nothing to compute: no worker starts
        self._need(target)
        workers = workers_for(self.configured, sorted({s.func.__module__ for s in self.order} - {"__main__"}))
        try:
            self._run(workers, target)
        finally:
            MEMORY.forget(self.run_id)
            if self._threads is not None:
                self._threads.shutdown(wait=False, cancel_futures=True)
        if not target.cache:
            return self.results[target]
        found = self.cache.load(target.name, self.hashes[target], target.format)
        return found.value if isinstance(found, Hit) else super().result(target)

    def _need(self, stage: Stage, reason: str | None = None, forced: bool = False) -> None:
        """Plan to compute ``stage`` and whatever of its upstreams is not cached."""
        stack: list[tuple[Stage, Stage | None]] = [(stage, None)]
        while stack:
            stage, consumer = stack.pop()
            if consumer is not None:
                self.consumers.setdefault(stage, set()).add(consumer)
            if stage in self.blockers:
                if consumer is not None and stage not in self.resolved:
                    self.blockers[consumer].add(stage)
                continue
            if stage.cache and not forced:
                found = self.cache.probe(stage.name, self.hashes[stage], stage.format)
                if isinstance(found, Loadable):
                    continue  # its consumers read it
                self.cache.reported(found)
                reason = self.miss_reason(stage, found)
            forced = False
            self.reasons[stage] = reason
            self.pending.add(stage)
            self.blockers[stage] = set()
            if consumer is not None:
                self.blockers[consumer].add(stage)
            stack += [(up, stage) for up in reversed(needed_upstreams(stage))]
            reason = None

    def _run(self, workers: Workers, target: Stage) -> None:
        running: dict[Future[TaskOutcome], Stage] = {}
        failures: list[tuple[Stage, BaseException]] = []
        try:
            while target not in self.resolved and not failures or running:
                if not failures:
                    self._send_ready(workers, running)
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    stage = running.pop(future)
                    try:
                        self._finished(stage, future.result())
                    except BaseException as exc:
                        failures.append((stage, workers.died(exc, stage.name, self.hashes[stage]) or exc))
        except BaseException:
            workers.stop(list(running))
            raise
        if failures:
            raise _first_cause(workers, failures, self.hashes)

    def _send_ready(self, workers: Workers, running: dict[Future[TaskOutcome], Stage]) -> None:
        on_workers = sum(1 for stage in running.values() if stage not in self.here)
        for stage in sorted((s for s in self.pending if not self.blockers[s]), key=self.position.__getitem__):
            if stage in self.here:
                running[self._thread_pool(workers).submit(compute, self._task(stage, stage))] = stage
            elif on_workers < workers.capacity:
                reference = _reference(stage)
                if isinstance(reference, str):
                    self._run_here(stage, reference)
                    running[self._thread_pool(workers).submit(compute, self._task(stage, stage))] = stage
                else:
                    running[workers.submit(self._task(stage, reference))] = stage
                    on_workers += 1
            else:
                continue
            self.pending.discard(stage)
            log_event(StageEvent(stage.name, self.hashes[stage], "started", 0.0, None))

    def _thread_pool(self, workers: Workers) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(workers.capacity, thread_name_prefix="lwdp-stage")
        return self._threads

    def _run_here(self, stage: Stage, why: str) -> None:
        self.here.add(stage)
        if stage.name not in _warned_local:
            _warned_local.add(stage.name)
            logger.warning("stage %s: computed in this process, not by a worker: %s", stage.name, why)

    def _task(self, stage: Stage, where: StageRef | Stage) -> StageTask:
        inputs: dict[str, Any] = {}
        for inp in stage.inputs:
            if inp.name not in stage.passed_inputs:
                continue
            if inp.kind == "stage":
                up = inp.value
                inputs[inp.name] = view(self.results[up]) if not up.cache else CachedInput(
                    up.name, self.hashes[up], up.format.name if up.format else None
                )
            else:
                inputs[inp.name] = copy.deepcopy(inp.value) if inp.kind == "param" else inp.value
        keep = frozenset(self.hashes[s] for s, waiting in self.consumers.items() if waiting and s.cache)
        return StageTask(
            stage=where, hash=self.hashes[stage], inputs=inputs,
            raw_inputs=tuple(inp.name for inp in stage.inputs if inp.kind == "raw"),
            manifest=stage_manifest(stage, self.inputs[stage]) if stage.cache else None,
            reason=self.reasons[stage], settings=self.settings, cwd=os.getcwd(), keep=keep,
            log_level=logger.getEffectiveLevel(), run_id=self.run_id,
        )

    def _finished(self, stage: Stage, outcome: TaskOutcome) -> None:
        for record in outcome.records:
            self._emit(record)
        self.cache.used |= outcome.used
        if outcome.unavailable is not None:
            self._run_here(stage, outcome.unavailable)
            self.pending.add(stage)
            return
        if outcome.gone is not None:
            upstream = next(s for s in self.order if self.hashes[s] == outcome.gone)
            self.resolved.discard(upstream)
            self.pending.add(stage)
            self._need(upstream, "its artifact was removed during the run", forced=True)
            self.blockers[stage].add(upstream)
            return
        self.resolved.add(stage)
        if not stage.cache:
            self.results[stage] = outcome.value
        for consumer in self.consumers.get(stage, ()):
            self.blockers[consumer].discard(stage)
        for up in needed_upstreams(stage):
            waiting = self.consumers.get(up)
            if waiting is not None:
                waiting.discard(stage)
                if not waiting:
                    self.results.pop(up, None)  # every consumer has it

    def _emit(self, record: logging.LogRecord) -> None:
        """A worker's record, as if logged here; a stage read by several workers is logged once."""
        event = getattr(record, "lwdp_event", None)
        if event is not None and event.outcome == "hit":
            stage = self.by_name.get(event.stage)
            if stage in self.resolved:
                return
            if stage is not None:
                self.resolved.add(stage)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _reference(stage: Stage) -> StageRef | str:
    """How a worker process finds the stage's code, or why it can't."""
    module = stage.func.__module__
    if module == "__main__" and not getattr(sys.modules.get(module), "__file__", None):
        return "it is defined in a notebook cell or an interactive session, which worker processes cannot import"
    return StageRef(module, stage.name, stage.code_digest)


def _first_cause(workers: Workers, failures: list[tuple[Stage, BaseException]], hashes: dict[Any, str]) -> BaseException:
    """The error to raise: a stage's own exception, else the death of the worker that died
    first (not of those the pool stopped because of it)."""
    from ..errors import WorkerError

    own = [error for _, error in failures if not isinstance(error, WorkerError)]
    if own:
        return own[0]
    if isinstance(workers, ProcessWorkers):
        first = [error for stage, error in failures if not workers.was_killed_by_the_pool(hashes[stage])]
        if first:
            return first[0]
    return failures[0][1]
