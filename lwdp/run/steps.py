"""The steps of computing one stage, the same wherever it runs (this process or a worker):
its inputs' private views, the call, the re-check under the compute-once lock, and the save.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from contextlib import ExitStack
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..formats import Format, FormatChoice
from ..formats.native import is_immutable, is_pandas
from ..errors import RawInputChangedError
from ..hashing.stage_hash import raw_inputs_changed
from ..hashing.tracked import TRACKED_KINDS, InputRow
from ..store.cache import Hit, Miss, ResultCache
from ..store.shared_columns import content
from .events import StageEvent, log_event, stage_note
from .undeclared import Undeclared, judge, saved_with, undeclared
from .watch import Watch

if TYPE_CHECKING:
    from concurrent.futures import Future

    import pandas as pd

    from ..config import Settings
    from ..graph import StageNode
    from ..hashing.stage_hash import InputRow
    from ..store.records import ArtifactRecord
    from ..store.writer import ArtifactWriter

_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, frozenset)
_IMMUTABLE_KINDS = frozenset(
    {"string", "bytes", "empty", "integer", "floating", "mixed-integer-float", "decimal", "boolean", "date", "datetime", "time", "timedelta"}
)


def view(value: Any) -> Any:
    """A copy a consumer may mutate freely (cheap under pandas copy-on-write).

    pandas never copies the Python objects inside object columns, so cells holding lists,
    dicts or other mutable objects are deep-copied one by one.
    """
    if isinstance(value, _IMMUTABLE) or is_immutable(value):  # polars and Arrow objects are
        return value
    if is_pandas(value, "DataFrame"):
        frame = value.copy(deep=not _copy_on_write())
        for position, dtype in enumerate(frame.dtypes):
            if dtype == object and _holds_mutable_objects(column := frame.iloc[:, position]):
                frame.isetitem(position, column.map(copy.deepcopy).to_numpy())
        return frame
    if is_pandas(value, "Series"):
        series = value.copy(deep=not _copy_on_write())
        return series.map(copy.deepcopy) if _holds_mutable_objects(series) else series
    if is_pandas(value, "Index"):
        return value
    return copy.deepcopy(value)


def _copy_on_write() -> bool:
    return int(sys.modules["pandas"].__version__.split(".")[0]) >= 3


def _holds_mutable_objects(values: pd.Series) -> bool:
    return values.dtype == object and sys.modules["pandas"].api.types.infer_dtype(values, skipna=True) not in _IMMUTABLE_KINDS


def call_stage(stage: StageNode, kwargs: dict[str, Any], settings: Settings) -> tuple[Any, Undeclared]:
    """Run the stage's function, watching what it reads undeclared (`lwdp.run.undeclared`);
    an exception it raises gets a note naming the stage.

    :raises UndeclaredInputError: it read undeclared files with ``undeclared_inputs="error"``.
    """
    use_the_system_allocator_for_arrow()
    try:
        with Watch(settings.undeclared_inputs != "ignore") as reads:
            result = stage.func(**kwargs)
    except Exception as exc:
        note = stage_note(stage.name)
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        else:  # Python 3.10: the same attribute PEP 678 defines, without the display
            exc.__notes__ = [*getattr(exc, "__notes__", []), note]
        raise
    found = undeclared(stage, reads, settings) if reads is not None else Undeclared()
    judge(stage, found, settings)
    return result, found


def check_raw_inputs(stage: StageNode, rows: list[InputRow], cache: ResultCache) -> None:
    """After the call: the stage's raw files must be those its hash covered, or its result
    would be stored (or feed results stored) under a hash that describes other files.

    :raises RawInputChangedError: one changed since the run hashed it; nothing is stored.
    """
    changed = raw_inputs_changed(stage, rows, cache.catalog, cache.settings)
    if changed:
        raise RawInputChangedError(
            f"stage '{stage.name}': raw input {', '.join(changed)} changed during the run, after lwdp hashed it; "
            "nothing was cached from it. Rerun once whatever writes it has finished"
        )


def use_the_system_allocator_for_arrow() -> None:
    """Once per process that computes with Arrow loaded, unless the user chose with
    ARROW_DEFAULT_MEMORY_POOL.

    Arrow's default allocator (mimalloc) gives freed memory back to the kernel and faults
    it in again, zeroing whole huge pages for small allocations: measured on the cold
    30-stage DAG, most runs with ``jobs=2`` spent 2 s more in the kernel (3.6 s against
    2.4 s wall) and one in six with ``jobs=1`` 0.6 s more. The C library's allocator,
    which pandas' own arrays use, never did (benchmarks/RESULTS.md, "Parallel runs").
    pandas imports Arrow; a polars pipeline may never, and then is not made to."""
    global _ALLOCATOR_CHOSEN
    pyarrow = sys.modules.get("pyarrow")
    if _ALLOCATOR_CHOSEN or pyarrow is None:
        return
    _ALLOCATOR_CHOSEN = True
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())


_ALLOCATOR_CHOSEN = False


def load_locked(cache: ResultCache, stage_name: str, stage_hash: str, wanted: Format | None) -> tuple[Hit | Miss, ExitStack]:
    """Take the compute-once lock of ``stage_hash`` and look in the cache again (another
    process may have computed it while this one waited). On a hit the lock is released;
    on a miss it is returned held, to be released once the result is saved."""
    lock = ExitStack()
    try:
        lock.enter_context(cache.computing(stage_hash, stage_name))
        found = cache.load(stage_name, stage_hash, wanted, locked=True)
    except BaseException:
        lock.close()
        raise
    if isinstance(found, Hit):
        lock.close()
    return found, lock


def hit_event(stage_name: str, stage_hash: str, found: Hit, seconds: float) -> StageEvent:
    source = f"downloaded from {found.source}" if found.source else None
    return StageEvent(stage_name, stage_hash, "hit", seconds, found.size, source)


def computed_uncached(
    cache: ResultCache, stage: StageNode, stage_hash: str, rows: list[InputRow], found: Undeclared, seconds: float,
    miss_reason: str | None,
) -> StageEvent:
    """The event of an uncached stage computed; in "track" mode what it read is recorded
    with its hash, which its consumers' hashes cover (`lwdp.hashing.tracked`)."""
    _, _, tracked = saved_with(stage, rows, {}, found, cache.settings, cache.catalog)
    if tracked or any(kind in TRACKED_KINDS for _, kind, _, _ in rows):  # else nothing to record or clear
        cache.catalog.record_tracked(stage_hash, stage.name, tracked)
    return StageEvent(stage.name, stage_hash, "computed-uncached", seconds, None, miss_reason)


def save(
    cache: ResultCache, stage: StageNode, stage_hash: str, result: Any, choice: FormatChoice, seconds: float,
    manifest: dict[str, Any], miss_reason: str | None, input_key: Callable[[], str | None],
    tracked: list[InputRow] | None = None, upstreams: Callable[[], list[tuple[ArtifactRecord, Any]]] | None = None,
) -> StageEvent:
    """Store a computed result in its chosen format (`lwdp.formats.choose_format`) with its
    input key (`lwdp.run.cutoff`) and, when given, the reads tracked with it
    (`lwdp.hashing.tracked`) and the upstream artifacts whose columns it may link
    (`upstream_artifacts`); the event says how long computing and writing took, and how
    many bytes were cached."""
    written = time.perf_counter()
    size = cache.save(stage.name, stage_hash, result, choice, seconds, manifest, input_key(), tracked, upstreams)
    return StageEvent(stage.name, stage_hash, "computed", seconds + time.perf_counter() - written, size, miss_reason)


def save_in_background(
    writer: ArtifactWriter, lock: ExitStack, cache: ResultCache, stage: StageNode, stage_hash: str, result: Any,
    choice: FormatChoice, seconds: float, manifest: dict[str, Any], miss_reason: str | None,
    input_key: Callable[[], str | None], tracked: list[InputRow] | None = None,
    upstreams: Callable[[], list[tuple[ArtifactRecord, Any]]] | None = None,
) -> Future[None]:
    """`save` on the writer's threads, the compute-once ``lock`` going with the write (it is
    released once the artifact is recorded); the stage's line is logged then. The input key
    is computed there too: it may wait for the upstreams' writes."""
    held = lock.pop_all()

    def write() -> None:
        with held:
            log_event(save(cache, stage, stage_hash, result, choice, seconds, manifest, miss_reason, input_key, tracked, upstreams))

    return writer.submit(write, stage_hash)


def upstream_artifacts(
    cache: ResultCache, values: list[tuple[str, Any]], writer: ArtifactWriter | None,
) -> Callable[[], list[tuple[ArtifactRecord, Any]]]:
    """The artifacts of a stage's cached upstreams, by their hashes, each with the result
    the run holds (as returned or loaded, never a consumer's copy): called on the writer's
    thread, once this run's writes of them are done. An upstream whose artifact is not the
    one this process wrote or loaded (its write failed; another process recomputed it
    since) is left out: its columns are not those in memory."""

    def found() -> list[tuple[ArtifactRecord, Any]]:
        artifacts = []
        for upstream_hash, value in values:
            pending = writer.pending(upstream_hash) if writer is not None else None
            if pending is not None:
                pending.exception()  # waits
            record = cache.catalog.lookup_artifact(upstream_hash)
            if record is not None and cache.held.get(upstream_hash) == content(record):
                artifacts.append((record, value))
        return artifacts

    return found
