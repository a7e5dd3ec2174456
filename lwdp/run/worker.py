"""Computing one stage where a parallel run sends it: a worker process, a Dask worker, or a
thread of the run's own process for a stage whose code workers can't get.

The run sends a `StageTask`: where the stage's code is (its module and qualified name,
with the code digest the run hashed), where its inputs are (a cached upstream by its
hash, the value of an uncached one), and the run's settings. The task takes the stage's
compute-once lock, looks in the cache again (another process may have computed it
meanwhile), computes, and writes the artifact itself, so that the result crosses no
process boundary: consumers read the artifact. It sends back what happened (the lwdp log
records it made, the artifacts it read) and a value only for an uncached stage. A
process keeps the results it computed while later stages of the run still need them, so
a consumer that lands in the same process gets them from memory.
"""

from __future__ import annotations

import functools
import glob
import importlib
import logging
import os
import pickle
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..errors import LwdpError, RawInputNotFoundError, ResultNotSendableError, StageErrorNotSendable
from ..formats import FORMATS, choose_format
from ..graph import StageNode, registered
from ..store.cache import Hit, ResultCache
from ..store.catalog import open_catalog
from ..store.writer import ArtifactWriter
from ..hashing.stage_hash import InputRow
from .cutoff import artifact_content, input_key, reuse, value_content
from .events import log_event
from .steps import call_stage, check_raw_inputs, computed_uncached, hit_event, load_locked, save, save_in_background, upstream_artifacts, view
from .undeclared import saved_with

logger = logging.getLogger("lwdp")

_MISSING = object()


@dataclass(frozen=True)
class StageRef:
    """How a worker finds a stage: import ``module``, which makes the stage ``name``;
    ``code_digest`` is what the run hashed, so a worker whose copy differs won't run it."""

    module: str
    name: str
    code_digest: str


@dataclass(frozen=True)
class CachedInput:
    """An upstream whose result is an artifact (or in the worker's memory; ``held``: the
    run's own result, for a thread of the run's process)."""

    stage: str
    hash: str
    format: str | None
    held: tuple[Any, ...] = ()


@dataclass
class StageTask:
    """One stage to compute, as a parallel run sends it."""

    stage: StageRef | StageNode  # a node itself only for the run's own threads
    hash: str
    inputs: dict[str, Any]  # keyword -> CachedInput, or the value itself
    raw_inputs: tuple[str, ...]  # keywords naming raw paths, checked before the call
    manifest: dict[str, Any] | None  # None: an uncached stage
    rows: list[InputRow]  # what its hash covers (`lwdp.hashing.stage_hash`): its input key's parts
    uncached: frozenset[str]  # the inputs naming uncached upstreams: they count by value, not artifact
    reran: dict[str, str | None]  # the inputs naming upstreams computed in this call: why they were
    contents: dict[str, str | None]  # contents the run knows of uncached inputs (a partitioned stage's)
    reason: str | None
    settings: Settings
    cwd: str
    keep: frozenset[str]  # hashes later stages still need: the memory a process may keep
    log_level: int
    run_id: str
    run_pid: int  # the run's process: a task there logs and raises as the run does


@dataclass
class TaskOutcome:
    """What a task did: its log records (the run emits them), the artifacts it read, and
    the value of an uncached stage. ``unavailable`` says why this process could not get
    the stage's code; ``gone`` is the hash of an upstream whose artifact disappeared."""

    worker: str
    records: list[logging.LogRecord] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    value: Any = None  # an uncached stage's result; from a worker, pickled there (`_sent`)
    unavailable: str | None = None
    gone: str | None = None
    written: Future[None] | None = None  # in the run's process: the background write of the artifact
    reused: bool = False  # an earlier result is its result (`lwdp.run.cutoff`): consumers read the artifact


class _Memory:
    """Results computed in this process that stages of the same run still need."""

    def __init__(self) -> None:
        self.run_id = ""
        self.values: dict[str, Any] = {}
        self.lock = threading.Lock()

    def get(self, task: StageTask, stage_hash: str) -> Any:
        with self.lock:
            if self.run_id != task.run_id:
                self.run_id, self.values = task.run_id, {}
            for gone in [h for h in self.values if h not in task.keep]:
                del self.values[gone]
            return self.values.get(stage_hash, _MISSING)

    def put(self, task: StageTask, stage_hash: str, value: Any) -> None:
        with self.lock:
            if self.run_id == task.run_id and stage_hash in task.keep:
                self.values[stage_hash] = value

    def forget(self, run_id: str) -> None:
        with self.lock:
            if self.run_id == run_id:
                self.values = {}


MEMORY = _Memory()
_starts: Any = None  # lwdp's own worker processes: a queue to say which stage each starts


def report_starts(queue: Any) -> None:
    """Initializer of lwdp's worker processes: say on ``queue`` which stage each task
    starts, and end as soon as the run's process ends (killed, it could not stop its
    workers), rather than wait forever for work."""
    import multiprocessing

    global _starts
    _starts = queue
    run_process = multiprocessing.parent_process()  # the run's process, whatever forked this one
    if run_process is not None:

        def exit_when_orphaned() -> None:
            run_process.join()
            os._exit(1)

        threading.Thread(target=exit_when_orphaned, name="lwdp-orphan-watch", daemon=True).start()
_caches: dict[int, tuple[Settings, ResultCache]] = {}  # per thread: a cache made for these settings


def worker_name() -> str:
    """This process as an error message names it: the Dask worker's address, else host and pid."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            return f"Dask worker {distributed.get_worker().address}"
        except ValueError:  # not in a Dask worker
            pass
    return f"worker {socket.gethostname()} pid {os.getpid()}"


def compute(
    task: StageTask, writer: ArtifactWriter | None = None, stopped: threading.Event | None = None, cache: ResultCache | None = None,
) -> TaskOutcome:
    """Compute the task's stage (the function a parallel run submits).

    In the run's own process (``writer`` and the run's ``cache`` given), the result comes
    back in memory, and its artifact is written in the background, as a serial run does,
    unless the run was ``stopped`` (Ctrl-C) meanwhile; elsewhere the artifact is written
    before the task returns, so that consumers can read it.

    :raises LwdpError: lwdp failed here (the message names this worker); the stage's own
        exception propagates as raised, with a note naming the stage, or as a
        `StageErrorNotSendable` when it could not travel back to the run. Either way it
        carries the records logged before it (``lwdp_records``).
    """
    if _starts is not None:
        _starts.put((os.getpid(), task.hash))
    outcome = TaskOutcome(worker_name())
    in_run_process = os.getpid() == task.run_pid
    if not in_run_process and logger.level != task.log_level:
        logger.setLevel(task.log_level)  # a worker logs what the run's process would
    try:
        with _captured_logs(outcome.records):
            _compute(task, outcome, writer, stopped, cache)
    except Exception as exc:
        if in_run_process:
            exc.lwdp_records = outcome.records  # type: ignore[attr-defined]
            raise
        if isinstance(exc, LwdpError) and exc.args and isinstance(exc.args[0], str):
            exc.args = (f"{outcome.worker}: {exc.args[0]}", *exc.args[1:])
        raise _sendable(exc, [_made_portable(record) for record in outcome.records]) from None
    if not in_run_process:
        outcome.records = [_made_portable(record) for record in outcome.records]
    return outcome


def _sendable(error: Exception, records: list[logging.LogRecord]) -> Exception:
    """``error`` with the records logged before it, as the run's process will get it: itself
    when it survives pickling, else a `StageErrorNotSendable` telling what it was."""
    error.lwdp_records = records  # type: ignore[attr-defined]
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        module = type(error).__module__.replace("__mp_main__", "__main__")  # a script, as the run names it
        stand_in = StageErrorNotSendable(
            f"{module}.{type(error).__qualname__}: {error} (it could not be sent back from "
            f"{worker_name()}; its traceback there:\n{text})"
        )
        stand_in.__notes__ = list(getattr(error, "__notes__", []))
        stand_in.lwdp_records = records  # type: ignore[attr-defined]
        return stand_in


def _compute(
    task: StageTask, outcome: TaskOutcome, writer: ArtifactWriter | None, stopped: threading.Event | None, run_cache: ResultCache | None,
) -> None:
    if os.getcwd() != task.cwd and os.path.isdir(task.cwd):
        os.chdir(task.cwd)  # raw paths are relative to the run's working directory (a partition's too)
    stage = _resolve(task.stage)
    if isinstance(stage, str):
        outcome.unavailable = stage
        return
    cache = run_cache or _cache_for(task.settings)  # the run's own: what it loaded and wrote is known to all
    name = stage.name
    locked = None
    contents = dict(task.contents)

    def content_of(input_name: str, upstream_hash: str) -> str | None:
        """An upstream's content (`lwdp.run.cutoff`): its artifact's, or the value the run
        sent, as it came (taken before the call, which may change it)."""
        if input_name in task.uncached and input_name not in contents:
            contents[input_name] = value_content(task.inputs[input_name]) if input_name in task.inputs else None
        if input_name in contents:
            return contents[input_name]
        return artifact_content(cache, upstream_hash, writer.pending(upstream_hash) if writer is not None else None)

    try:
        if task.manifest is not None:
            started = time.perf_counter()
            found, locked = load_locked(cache, name, task.hash, stage.format)
            if isinstance(found, Hit):  # computed meanwhile by another process
                log_event(hit_event(name, task.hash, found, time.perf_counter() - started))
                MEMORY.put(task, task.hash, found.value)
                if writer is not None:
                    outcome.value = found.value
                return
            if cache.catalog.keyed_by_inputs(name):
                key = input_key(stage, task.rows, content_of)
                event = key and reuse(cache, stage, task.hash, task.rows, key, task.manifest, task.reran.get)
                if event:
                    log_event(event)
                    outcome.reused = True
                    return
        upstreams: list[tuple[str, Any]] = []  # (hash, result as loaded) of its cached upstreams
        kwargs = _arguments(task, stage, cache, outcome, upstreams)
        if kwargs is None:
            return
        for input_name in task.uncached if task.manifest is not None else ():
            content_of(input_name, "")
        started = time.perf_counter()
        result, read = call_stage(stage, kwargs, task.settings)
        seconds = time.perf_counter() - started
        check_raw_inputs(stage, task.rows, cache)
        if stopped is not None and stopped.is_set():
            return  # the run was stopped meanwhile: nothing of it is written
        if task.manifest is None:
            log_event(computed_uncached(cache, stage, task.hash, task.rows, read, seconds, task.reason))
            outcome.value = result if writer is not None else _sent(name, result)  # a worker's is pickled
            return
        choice = choose_format(name, result, stage.format)
        rows, manifest, tracked = saved_with(stage, task.rows, task.manifest, read, task.settings, cache.catalog)
        keyed = functools.partial(input_key, stage, rows, content_of)
        shareable = upstream_artifacts(cache, upstreams, writer)
        if writer is None:
            log_event(save(cache, stage, task.hash, result, choice, seconds, manifest, task.reason, keyed, tracked, shareable))
            MEMORY.put(task, task.hash, result)
            return
        assert locked is not None
        outcome.value = result
        outcome.written = save_in_background(
            writer, locked, cache, stage, task.hash, result, choice, seconds, manifest, task.reason, keyed, tracked, shareable
        )
    finally:
        if locked is not None:
            locked.close()
        if run_cache is None:  # the run marks what its workers read used
            outcome.used |= cache.used
            cache.used.clear()


def _arguments(
    task: StageTask, stage: StageNode, cache: ResultCache, outcome: TaskOutcome, upstreams: list[tuple[str, Any]],
) -> dict[str, Any] | None:
    """The stage's keyword arguments (values the run sent are private copies already);
    None when an upstream's artifact is gone. Each cached upstream's result, as loaded, is
    added to ``upstreams``."""
    kwargs = {}
    for keyword, value in task.inputs.items():
        if isinstance(value, CachedInput):
            upstream, value = value, value.held[0] if value.held else MEMORY.get(task, value.hash)
            if value is _MISSING:
                started = time.perf_counter()
                found = cache.load(upstream.stage, upstream.hash, FORMATS[upstream.format] if upstream.format else None)
                if not isinstance(found, Hit):
                    outcome.gone = upstream.hash
                    return None
                log_event(hit_event(upstream.stage, upstream.hash, found, time.perf_counter() - started))
                MEMORY.put(task, upstream.hash, found.value)
                value = found.value
            upstreams.append((upstream.hash, value))
            value = view(value)
        elif keyword in task.raw_inputs and os.getpid() != task.run_pid:
            _check_reachable(stage.name, keyword, value)
        kwargs[keyword] = value
    return kwargs


def _sent(stage_name: str, value: Any) -> bytes:
    """An uncached result as a worker sends it back: pickled here, so that a value pickle
    refuses is an error naming the stage rather than the executor's bare one.

    :raises ResultNotSendableError: it doesn't pickle.
    """
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ResultNotSendableError(
            f"stage '{stage_name}': its result, a {type(value).__qualname__}, can't be sent from the worker that "
            f"computed it to the run ({type(exc).__name__}: {exc}); cache it (cache=True), return a value pickle "
            "can send, or run it with jobs=1"
        ) from exc


def _check_reachable(stage_name: str, keyword: str, path: Any) -> None:
    """A raw input the run hashed must be here too: workers need the same files."""
    text = os.fspath(path)
    if "://" in text or os.path.exists(text) or glob.glob(text):
        return
    raise RawInputNotFoundError(
        f"stage '{stage_name}': raw input {keyword!r} = {text!r} is not there (working directory "
        f"{os.getcwd()}); workers must see the run's files: the same paths on a shared volume, "
        "or URLs every worker can read"
    )


def _resolve(ref: StageRef | StageNode) -> StageNode | str:
    """The stage, or why this process can't get its code (the run then computes it itself)."""
    if isinstance(ref, StageNode):
        return ref
    try:
        sys.modules.get(ref.module) or importlib.import_module(ref.module)
    except Exception as exc:
        return f"worker processes cannot import its module {ref.module!r} ({type(exc).__name__}: {exc})"
    found = registered(ref.name)
    if found is None:
        return f"importing module {ref.module!r} does not make it (it is made later, by a call)"
    if found.code_digest != ref.code_digest:
        return f"worker processes import other code for it (module {ref.module!r} changed since this process imported it)"
    return found


def _cache_for(settings: Settings) -> ResultCache:
    """This thread's cache for the run's settings (kept while they stay the same)."""
    thread = threading.get_ident()
    known = _caches.get(thread)
    if known is None or known[0] != settings:
        known = _caches[thread] = (settings, ResultCache(settings, open_catalog(settings)))
    return known[1]


class _Capture(logging.Filter):
    """Takes the lwdp records of the threads running tasks away from this process's
    handlers: the run emits them where the user watches."""

    def __init__(self) -> None:
        super().__init__()
        self.by_thread: dict[int, list[logging.LogRecord]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        records = self.by_thread.get(threading.get_ident())
        if records is None:
            return True
        records.append(record)
        return False


_CAPTURE = _Capture()
logger.addFilter(_CAPTURE)


@contextmanager
def _captured_logs(records: list[logging.LogRecord]) -> Iterator[None]:
    thread = threading.get_ident()
    _CAPTURE.by_thread[thread] = records
    try:
        yield
    finally:
        del _CAPTURE.by_thread[thread]


def _made_portable(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message made (its arguments may not pickle), sendable to the run."""
    record.msg = record.getMessage()
    record.args = None
    if record.exc_info:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
    return record
