"""A call that computes independent stages at once (``jobs`` > 1, or an executor).

The run plans in its own process: it hashes the pipeline and asks the cache which stages
it must compute (`ResultCache.probe`: nothing is loaded), then starts each stage once its
upstreams are done, as many at a time as there are slots. With ``jobs=N`` the run's own
process is one slot (a thread, computing as a serial run does: results in memory,
artifacts written in the background) and ``N - 1`` worker processes are the others; with
an executor, every slot is the executor's. A stage goes where its inputs are: to the
run's own slot when an upstream's result is in its memory, else to a worker.

Results stay where they were made: a worker writes a cached stage's artifact and
consumers elsewhere read it (a worker gets a stage only once its upstreams' artifacts
are written); only an uncached stage's value travels, to the run and on to its
consumers, and the run drops what it holds once they are done. The log lines are those
of a serial run, in the order the stages end. A warm call never starts a worker: it is
the serial path.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import sys
import uuid
import threading
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING, Any

from ..hashing.manifest import stage_manifest
from ..store.cache import Hit, Loadable, ResultCache
from ..errors import LwdpError, WorkerError
from ..graph import StageNode
from ..store.writer import ArtifactWriter
from .serial import PipelineRun, needed_upstreams
from .context import RunContext
from .events import StageEvent, log_event, note
from .executors import ProcessWorkers, Workers, workers_for
from .steps import view
from .worker import MEMORY, CachedInput, StageRef, StageTask, TaskOutcome, compute

if TYPE_CHECKING:
    from ..stage import Stage

logger = logging.getLogger("lwdp")
_warned_local: set[str] = set()  # stages said once per process to run here


class ParallelRun(PipelineRun):
    """One call whose stages compute on workers."""

    def __init__(self, planned: PipelineRun, context: RunContext) -> None:
        """Carry on from a serial run's hashing (``planned``), which found work to do."""
        self.__dict__.update(planned.__dict__)
        self.settings = dataclasses.replace(context.settings, executor=None, dask_scheduler=None, jobs=1)
        self.configured = context.settings
        self.run_id = uuid.uuid4().hex
        self.by_name = {stage.name: stage for stage in self.order}
        self.position = {stage: i for i, stage in enumerate(self.order)}
        self.reasons: dict[Stage, str | None] = {}  # the stages to compute, and why
        self.reused: set[Stage] = set()  # of those, the ones an earlier result was found for (`lwdp.run.cutoff`)
        self.pending: set[Stage] = set()  # of those, the ones not sent yet
        self.blockers: dict[Stage, set[Stage]] = {}  # upstreams still to compute
        self.consumers: dict[Stage, set[Stage]] = {}  # consumers not done yet
        self.here: set[Stage] = set()  # stages workers can't get: computed by this process's threads
        self.writing: dict[Future[None], Stage] = {}  # artifacts of this process's slot, being written
        self.own_slots = 1 if context.settings.executor is None and context.settings.dask_scheduler is None else 0
        self._workers: Workers | None = None  # lwdp's own: started when a stage first needs one
        self.stopped = threading.Event()  # Ctrl-C: the run's own slot writes nothing more
        self.write_failed = False  # a background write failed: start nothing more; the run's end raises it

    def result(self, target: Stage) -> Any:
        self._need(target)
        if target not in self.blockers:  # computed meanwhile by another process: load it as a serial run does
            return super().result(target)
        if not self.own_slots or not self._one_after_another():
            self.workers()  # now, before the run starts a thread: lwdp's own workers are forks of this process
        try:
            self._run(target)
        finally:
            MEMORY.forget(self.run_id)
        if target in self.results or self.write_failed:
            return self.results.get(target)  # a failed write is raised as the run ends, as in a serial run
        found = self.cache.load(target.name, self.hashes[target], target.format)
        if not isinstance(found, Hit):
            raise LwdpError(
                f"stage '{target.name}': its artifact {self.hashes[target][:12]} was computed by a worker, then "
                "could not be read back (removed meanwhile?); run again"
            )
        return found.value

    def workers(self) -> Workers:
        if self._workers is None:
            self._workers = workers_for(self.configured, sorted({s.module for s in self.order} - {"__main__"}))
        return self._workers

    def _one_after_another(self) -> bool:
        """Whether each stage to compute waits for the one before: nothing to overlap."""
        chain = sorted(self.pending, key=self.position.__getitem__)
        return all(before in self.blockers[after] for before, after in zip(chain, chain[1:]))

    def _worker_capacity(self) -> int:
        return self.configured.jobs - 1 if self.own_slots else self.workers().capacity

    def _need(self, stage: Stage, reason: str | None = None, forced: bool = False) -> None:
        """Plan to compute ``stage`` and whatever of its upstreams is not cached."""
        stack: list[tuple[Stage, Stage | None]] = [(stage, None)]
        while stack:
            stage, consumer = stack.pop()
            if consumer is not None:
                self.consumers.setdefault(stage, set()).add(consumer)
            if stage in self.blockers and not forced:
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

    def _run(self, target: Stage) -> None:
        running: dict[Future[TaskOutcome], tuple[Stage, bool]] = {}  # stage, and whether in this process
        failures: list[tuple[Stage, BaseException]] = []
        try:
            while target not in self.resolved and not failures and not self.write_failed or running or self.writing:
                if not failures and not self.write_failed:
                    self._start_ready(running, failures)
                if not running and not self.writing:
                    break
                watched: list[Future[Any]] = [*running, *self.writing]
                finished, _ = wait(watched, return_when=FIRST_COMPLETED)
                for future in finished:
                    if future in self.writing:
                        self.writing.pop(future)
                        self.write_failed |= future.exception() is not None
                        continue
                    stage, here = running.pop(future)
                    error = future.exception()
                    if error is None:
                        self._finished(stage, future.result(), here)
                        continue
                    for record in error.__dict__.pop("lwdp_records", ()):  # what was logged before it failed
                        self._emit(record)
                    died = self._workers.died(error, stage.name, self.hashes[stage]) if self._workers is not None else None
                    failures.append((stage, died or error))
        except BaseException:  # Ctrl-C, or lwdp failing here: stop what runs, write nothing more
            self.stopped.set()
            if self._workers is not None:
                self._workers.stop([future for future, (_, here) in running.items() if not here])
            raise
        if failures:
            raise _first_cause(self._workers, failures, self.hashes)
        if target not in self.resolved and not self.write_failed:
            raise LwdpError(
                f"stage '{target.name}': the run could not finish; "
                f"{', '.join(sorted(s.name for s in self.pending))} still wait for artifacts that disappeared "
                "during the run (a gc at the same time?); run again"
            )

    def _start_ready(self, running: dict[Future[TaskOutcome], tuple[Stage, bool]], failures: list[tuple[Stage, BaseException]]) -> None:
        on_workers = sum(1 for _, here in running.values() if not here)
        in_own_slot = sum(1 for stage, here in running.values() if here and stage not in self.here)
        ready = sorted((s for s in self.pending if not self.blockers[s]), key=self.position.__getitem__)
        for stage in ready:
            reference = stage if stage in self.here else _reference(stage)
            if isinstance(reference, str):
                self._run_here(stage, reference)
            own_free = in_own_slot < self.own_slots
            worker_free = on_workers < self._worker_capacity() and not any(self.writing_of(up) for up in needed_upstreams(stage))
            holds_an_input = any(up in self.results for up in needed_upstreams(stage))
            alone = len(ready) == 1 and not running  # nothing to overlap it with: no worker to start
            try:
                if stage in self.here or own_free and (holds_an_input or alone or not worker_free):
                    in_own_slot += stage not in self.here
                    running[_in_a_thread(self._task(stage, stage), self.writer, self.stopped, self.cache)] = (stage, True)
                elif worker_free and isinstance(reference, StageRef):
                    on_workers += 1
                    running[self.workers().submit(self._task(stage, reference))] = (stage, False)
                else:
                    continue
            except Exception as exc:  # its task could not be made or sent (an input that can't be copied)
                failures.append((stage, exc))
                return
            self.pending.discard(stage)
            log_event(StageEvent(stage.name, self.hashes[stage], "started", 0.0, None))

    def writing_of(self, stage: Stage) -> bool:
        """Whether this process is still writing ``stage``'s artifact."""
        return stage in self.writing.values()

    def _run_here(self, stage: Stage, why: str) -> None:
        self.here.add(stage)
        if stage.name not in _warned_local:
            _warned_local.add(stage.name)
            logger.warning("stage %s: computed in this process, not by a worker: %s", stage.name, why)

    def _task(self, stage: Stage, where: StageRef | Stage) -> StageTask:
        def upstream(up: Stage) -> Any:
            """An uncached one's result, which travels; a cached one's artifact, which a
            worker reads, and which a thread of this process takes from the run's memory."""
            if up in self.results and not up.cache:
                return view(self.results[up])
            held = (self.results[up],) if up in self.results and isinstance(where, StageNode) else ()
            return CachedInput(up.name, self.hashes[up], up.format.name if up.format else None, held)

        inputs = self.arguments(stage, upstream)
        keep = frozenset(self.hashes[s] for s, waiting in self.consumers.items() if waiting and s.cache)
        return StageTask(
            stage=where, hash=self.hashes[stage], inputs=inputs,
            raw_inputs=tuple(inp.name for inp in stage.inputs if inp.kind == "raw"),
            manifest=stage_manifest(stage, self.inputs[stage]) if stage.cache else None, rows=self.inputs[stage],
            uncached=frozenset(inp.name for inp in stage.inputs if inp.kind == "stage" and not inp.value.cache),
            contents={
                inp.name: self.content_of(inp.name, self.hashes[inp.value]) for inp in stage.inputs
                if stage.cache and inp.kind == "stage" and inp.value.partitions
            },
            reran={
                inp.name: self.reasons[inp.value] for inp in stage.inputs
                if inp.kind == "stage" and inp.value in self.reasons and inp.value not in self.reused
            },
            reason=self.reasons[stage], settings=self.settings, cwd=os.getcwd(), keep=keep,
            log_level=logger.getEffectiveLevel(), run_id=self.run_id, run_pid=os.getpid(),
        )

    def _finished(self, stage: Stage, outcome: TaskOutcome, here: bool) -> None:
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
        if outcome.reused:
            self.reused.add(stage)
        if here and not outcome.reused or not stage.cache:  # a worker sends only an uncached stage's value, pickled
            self.results[stage] = outcome.value if here else pickle.loads(outcome.value)
        if outcome.written is not None:
            self.writing[outcome.written] = stage
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
        if event is not None:
            note(event)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _in_a_thread(task: StageTask, writer: ArtifactWriter, stopped: threading.Event, cache: ResultCache) -> Future[TaskOutcome]:
    """Compute a task on a daemon thread of this process: Ctrl-C ends the run without
    waiting for a stage body to return (``stopped``: its result is then never written)."""
    future: Future[TaskOutcome] = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(compute(task, writer, stopped, cache))
            except BaseException as exc:
                future.set_exception(exc)

    threading.Thread(target=run, name=f"lwdp-stage-{task.hash[:12]}", daemon=True).start()
    return future


def _reference(stage: Stage) -> StageRef | str:
    """How a worker process finds the stage's code, or why it can't."""
    module = stage.module
    if module == "__main__" and not getattr(sys.modules.get(module), "__file__", None):
        return "it is defined in a notebook cell or an interactive session, which worker processes cannot import"
    return StageRef(module, stage.name, stage.code_digest)


def _first_cause(workers: Workers | None, failures: list[tuple[Stage, BaseException]], hashes: dict[Any, str]) -> BaseException:
    """The error to raise: a stage's own exception, else the death of the worker that died
    first (not of those the pool stopped because of it)."""
    own = [error for _, error in failures if not isinstance(error, WorkerError)]
    if own:
        return own[0]
    if isinstance(workers, ProcessWorkers):
        first = [error for stage, error in failures if not workers.was_killed_by_the_pool(hashes[stage])]
        if first:
            return first[0]
    return failures[0][1]
