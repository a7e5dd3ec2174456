"""Calling a stage: the entry points of `lwdp.stage.Stage` into a run, serial
(`lwdp.run.serial`) or parallel (`lwdp.run.parallel`) as the settings say."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..errors import CatalogDamagedError, WorkerError
from ..graph import dependency_order
from ..hashing.stage_hash import stage_hashes
from .context import RunContext
from .serial import PipelineRun

if TYPE_CHECKING:
    from ..stage import Stage


def current_hashes(target: Stage) -> dict[Stage, str]:
    """The stage hash of ``target`` and each of its ancestors, without running anything."""
    with RunContext() as context:
        hashes, _ = stage_hashes(dependency_order(target), context.catalog, context.settings)
    return hashes


def run_stage(target: Stage, forced: frozenset[Stage] = frozenset()) -> Any:
    """Compute or load ``target``'s result; ``forced`` stages are computed even if cached,
    their artifacts replaced (a run with some is serial).

    A catalog found damaged mid-run is moved aside; the run then starts again on a new
    one, where what was already computed is adopted from its manifests.
    """
    _refuse_while_a_worker_starts(target)
    try:
        return _run_once(target, forced)
    except CatalogDamagedError:
        return _run_once(target, forced)


def _refuse_while_a_worker_starts(target: Stage) -> None:
    """A worker process starting imports the main script again: a call of a pipeline at
    its top level would run the whole pipeline in every worker.

    :raises WorkerError: this process is a worker importing the script.
    """
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is not None and getattr(multiprocessing.current_process(), "_inheriting", False):
        raise WorkerError(
            f"stage '{target.name}' was called while a worker process was importing the main script "
            f"{getattr(sys.modules.get('__mp_main__'), '__file__', '')}: put the pipeline's call under "
            "`if __name__ == \"__main__\":`, as every program that starts worker processes must"
        )


def _run_once(target: Stage, forced: frozenset[Stage]) -> Any:
    with RunContext(target.name) as context:
        run = PipelineRun(target, context, forced)
        context.hashes = {stage.name: stage_hash for stage, stage_hash in run.hashes.items()}
        if context.settings.parallel and not forced and not run.loadable(target):
            from .parallel import ParallelRun  # only runs that compute: a warm one never starts a worker

            run = ParallelRun(run, context)
        result = run.result(target)
        if run.reasons:  # it computed: the cache's budget is kept when the run ends, with its results
            context.kept = frozenset(run.hashes[stage] for stage in run.resolved)
    run.log_not_needed()
    return result


