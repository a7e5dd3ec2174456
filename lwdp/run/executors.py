"""Where a parallel run's stages compute: worker processes of this machine (``jobs``), an
executor the user gives (any ``concurrent.futures.Executor``), or a Dask cluster.

Worker processes, not threads: a stage whose body is pure Python holds the GIL, and
threads would take turns on it (benchmarks/parallel.py measures both). They are made once
and kept for the next call. Where this process runs no other Python thread (a script, as
it usually is), they are forks of it, made before the run starts any thread: a fork
starts in milliseconds with every module imported (the C libraries' own thread pools,
BLAS's and Arrow's, reset themselves in a forked child). Otherwise (a notebook's kernel
threads, fsspec's loop) a fork could inherit a lock some thread holds, so they come from
a fork server that imports pandas, lwdp and the pipeline's modules once, ~0.5 s; it
imports a pipeline script as ``__mp_main__``, so the script's call must sit under
``if __name__ == "__main__":``, as for any multiprocessing program.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
import warnings
from multiprocessing.context import BaseContext
import os
import signal
import time
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor
from typing import Any

from ..config import Settings
from ..errors import WorkerError
from . import worker
from .steps import use_the_system_allocator_for_arrow

_DASK_CONNECT_TIMEOUT = "10s"


class Workers:
    """An executor as a run uses it: how many stages it computes at once, and what to say
    when one of its workers dies."""

    def __init__(self, executor: Executor, capacity: int, description: str) -> None:
        self.executor = executor
        self.capacity = max(1, capacity)
        self.description = description

    def submit(self, task: worker.StageTask) -> Future[worker.TaskOutcome]:
        return self.executor.submit(worker.compute, task)

    def died(self, error: BaseException, stage_name: str, stage_hash: str) -> WorkerError | None:
        """The error to raise when ``error`` says the worker computing the stage died."""
        if isinstance(error, BrokenExecutor) or type(error).__name__ == "KilledWorker":
            return WorkerError(
                f"stage '{stage_name}': the worker computing it ended abruptly ({error}); nothing was "
                f"cached for it. Workers: {self.description}"
            )
        return None

    def stop(self, running: list[Future[worker.TaskOutcome]]) -> None:
        """Stop the run's tasks (Ctrl-C): cancel those that have not started."""
        for future in running:
            future.cancel()


class ProcessWorkers(Workers):
    """lwdp's own worker processes; each says which stage it starts, so that the one that
    died can be named with how it ended."""

    def __init__(self, processes: int, modules: list[str]) -> None:
        use_the_system_allocator_for_arrow()  # before forking: the workers inherit it
        methods = multiprocessing.get_all_start_methods()
        context: BaseContext
        if "fork" in methods and threading.active_count() == 1:
            context = multiprocessing.get_context("fork")
        else:
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if context.get_start_method() == "forkserver":
                context.set_forkserver_preload(["__main__", "lwdp.run.worker", *modules])
        self._started = context.SimpleQueue()
        executor = ProcessPoolExecutor(processes, mp_context=context, initializer=worker.report_starts, initargs=(self._started,))
        super().__init__(executor, processes, f"{processes} worker processes on this machine")
        self._pid_of: dict[str, int] = {}
        self._known: dict[int, Any] = {}  # every worker process the pool started: it forgets them when it breaks
        self.broken = False
        if context.get_start_method() == "fork":
            with warnings.catch_warnings():  # Python 3.12+ warns of any thread, C libraries' pools too
                warnings.simplefilter("ignore", DeprecationWarning)
                executor.submit(int).result()  # every worker forks now, before this process starts a thread

    def submit(self, task: worker.StageTask) -> Future[worker.TaskOutcome]:
        self._read_starts()
        future = super().submit(task)
        self._known.update(self._pool_processes())
        return future

    def _pool_processes(self) -> dict[int, Any]:
        return dict(getattr(self.executor, "_processes", None) or {})

    def _process(self, pid: int | None) -> Any:
        """The worker process of that pid, also once the broken pool has dropped it."""
        return None if pid is None else {**self._known, **self._pool_processes()}.get(pid)

    def _read_starts(self) -> None:
        while not self._started.empty():
            pid, stage_hash = self._started.get()
            self._pid_of[stage_hash] = pid

    def died(self, error: BaseException, stage_name: str, stage_hash: str) -> WorkerError | None:
        if not isinstance(error, BrokenExecutor):
            return None
        self.broken = True
        self._read_starts()
        pid = self._pid_of.get(stage_hash)
        process = self._process(pid)
        if process is not None:
            _wait_for_exit(process)
        if pid is None:
            return WorkerError(
                f"stage '{stage_name}': the worker processes ended before starting it. A worker first imports "
                "the main script: is the pipeline's call under `if __name__ == \"__main__\":`? (See the error "
                "the worker printed above.)"
            )
        how = _how_it_ended(process.exitcode if process is not None else None)
        return WorkerError(f"stage '{stage_name}': worker process {pid} {how} while computing it; nothing was cached for it")

    def was_killed_by_the_pool(self, stage_hash: str) -> bool:
        """Whether the worker of this stage was stopped because another one died."""
        process = self._process(self._pid_of.get(stage_hash))
        return process is not None and process.exitcode == -signal.SIGTERM

    def stop(self, running: list[Future[worker.TaskOutcome]]) -> None:
        """Kill the workers (Ctrl-C): a stage half computed is of no use, and their
        unfinished writes leave only temporary files, never an artifact."""
        self.broken = True
        kill = getattr(self.executor, "kill_workers", None)  # Python 3.14
        if kill is not None:
            kill()
        else:
            for process in list((getattr(self.executor, "_processes", None) or {}).values()):
                process.kill()
        self.executor.shutdown(wait=True, cancel_futures=True)


def _wait_for_exit(process: Any, seconds: float = 5.0) -> None:
    """Wait until the process's exit status is known. The pool's own thread reaps its dead
    workers at the same moment: a join that loses that race sees no status for an instant
    (waitpid finds no child), so ask again until the other thread has recorded it."""
    deadline = time.monotonic() + seconds
    while process.exitcode is None and time.monotonic() < deadline:
        process.join(timeout=0.05)
        time.sleep(0.005)


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "ended abruptly"
    if exitcode < 0:
        try:
            return f"was killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


_pools: dict[int, ProcessWorkers] = {}
_dask_clients: dict[str, Any] = {}


def workers_for(settings: Settings, modules: list[str]) -> Workers:
    """The workers these settings name: the configured executor, else the Dask scheduler
    of ``LWDP_DASK_SCHEDULER``, else ``jobs`` processes of this machine (made once and
    kept; ``modules``: the pipeline's, imported once by the fork server)."""
    if settings.executor is not None:
        return _given(settings.executor)
    if settings.dask_scheduler is not None:
        return _given(dask_client(settings.dask_scheduler))
    processes = settings.jobs - 1  # the run's own process computes too
    pool = _pools.get(processes)
    if pool is None or pool.broken:
        pool = _pools[processes] = ProcessWorkers(processes, modules)
    return pool


def _given(executor: Any) -> Workers:
    if hasattr(executor, "get_executor") and hasattr(executor, "nthreads"):  # a distributed.Client
        client = executor
        return Workers(client.get_executor(pure=False), sum(client.nthreads().values()), f"Dask cluster {client.scheduler.address}")
    if not isinstance(executor, Executor):
        raise WorkerError(
            f"lwdp.configure(executor=...) takes a concurrent.futures.Executor or a distributed.Client, not {type(executor).__qualname__}"
        )
    client = getattr(executor, "_client", None)  # a Dask ClientExecutor
    if client is not None:
        return Workers(executor, sum(client.nthreads().values()), f"Dask cluster {client.scheduler.address}")
    capacity = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
    return Workers(executor, capacity, f"{type(executor).__qualname__} given to lwdp.configure(executor=...)")


def dask_client(address: str) -> Any:
    """A client of the Dask scheduler at ``address``, connected once per process.

    :raises MissingExtraError: Dask is not installed.
    :raises WorkerError: the scheduler can't be reached within 10 s.
    """
    client = _dask_clients.get(address)
    if client is not None and client.status == "running":
        return client
    try:
        from distributed import Client
    except ImportError:
        from ..errors import MissingExtraError

        raise MissingExtraError(f"running stages on the Dask scheduler {address} needs Dask: pip install \"lwdp[dask]\"") from None
    try:
        client = _dask_clients[address] = Client(address, timeout=_DASK_CONNECT_TIMEOUT, set_as_default=False)
    except OSError as exc:
        raise WorkerError(f"cannot reach the Dask scheduler at {address} ({exc}); is it running, and is the address right?") from exc
    return client


@atexit.register
def _close() -> None:
    for client in _dask_clients.values():
        client.close()
    _dask_clients.clear()
