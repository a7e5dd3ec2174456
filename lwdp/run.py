"""Running a stage: order its ancestors, hash them, then load or compute what is needed.

A cached stage whose artifact is valid is loaded and its ancestors are not touched; every
stage runs at most once per call (diamonds included); each consumer gets its own view of
an upstream result, so a stage that mutates its input changes nothing for its siblings.
"""

from __future__ import annotations

import copy
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy.exc
import xxhash

from . import __version__, config
from .errors import ArtifactWriteError, CacheDirError, LwdpError, ResultNotStorableError, StageNameCollisionError
from .formats import DEFAULT_FRAME_FORMAT, FORMATS, PANDAS_MAJOR, Format, default_format_for
from .hashing import stage_hashes
from .stage import Stage
from .store.artifacts import LocalArtifactStore
from .store.catalog import ArtifactRecord, Catalog, LineageRow, open_catalog, utcnow

logger = logging.getLogger("lwdp")

_COPY_ON_WRITE = PANDAS_MAJOR >= 3
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, frozenset)


@dataclass(frozen=True)
class StageEvent:
    """What happened to one stage in one call; attached to its log record as ``lwdp_event``."""

    stage: str
    hash: str
    outcome: str  # "hit" | "computed" | "computed-uncached" | "not-needed"
    seconds: float
    bytes: int | None
    reason: str | None = None  # why a cached stage was computed


def dependency_order(target: Stage) -> list[Stage]:
    """``target`` and its ancestors, each after its upstreams.

    :raises StageNameCollisionError: two different stages share a qualified name.
    """
    order: list[Stage] = []
    seen: set[Stage] = set()
    by_name: dict[str, Stage] = {}

    def visit(stage: Stage) -> None:
        if stage in seen:
            return
        seen.add(stage)
        other = by_name.setdefault(stage.name, stage)
        if other is not stage:
            raise StageNameCollisionError(
                f"two different stages are named '{stage.name}' in the pipeline of "
                f"'{target.name}'; rename one of the functions (a stage factory: set each "
                "function's __qualname__ before applying @stage)"
            )
        for upstream in stage.upstreams:
            visit(upstream)
        order.append(stage)

    visit(target)
    return order


def _open_catalog(cache_dir: Path) -> Catalog:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        return open_catalog(cache_dir)
    except (OSError, sqlalchemy.exc.OperationalError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc.orig
        raise CacheDirError(
            getattr(exc, "errno", None),
            f"cannot use cache directory {cache_dir} ({reason}); fix it or choose another "
            "with lwdp.configure(cache_dir=...) or LWDP_CACHE_DIR",
        ) from exc


def current_hashes(target: Stage) -> dict[Stage, str]:
    """The stage hash of ``target`` and each of its ancestors, without running anything."""
    catalog = _open_catalog(config.cache_dir())
    hashes, _ = stage_hashes(dependency_order(target), catalog)
    return hashes


def run_stage(target: Stage) -> Any:
    """Compute or load ``target``'s result."""
    run = PipelineRun(target)
    result = run.result(target)
    run.log_not_needed()
    return result


def _view(value: Any) -> Any:
    """A copy a consumer may mutate freely (cheap under pandas copy-on-write)."""
    if isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
        return value.copy(deep=not _COPY_ON_WRITE)
    if isinstance(value, _IMMUTABLE):
        return value
    return copy.deepcopy(value)


class PipelineRun:
    """One call of a stage: the hashes of its DAG and the results computed so far."""

    def __init__(self, target: Stage) -> None:
        cache_dir = config.cache_dir()
        self.catalog = _open_catalog(cache_dir)
        self.store = LocalArtifactStore(cache_dir)
        order = dependency_order(target)
        self.hashes, inputs = stage_hashes(order, self.catalog)
        self.catalog.record_lineage(
            LineageRow(self.hashes[stage], stage.name, name, kind, digest, path)
            for stage in order
            for name, kind, digest, path in inputs[stage]
        )
        self.order = order
        self.results: dict[Stage, Any] = {}

    def log_not_needed(self) -> None:
        """One line for each stage that was neither loaded nor run (a descendant was cached)."""
        for stage in self.order:
            if stage not in self.results:
                self._log(StageEvent(stage.name, self.hashes[stage], "not-needed", 0.0, None))

    def result(self, stage: Stage) -> Any:
        if stage not in self.results:
            self.results[stage] = self._load_or_compute(stage)
        return self.results[stage]

    def _load_or_compute(self, stage: Stage) -> Any:
        stage_hash = self.hashes[stage]
        reason = None
        if stage.cache:
            started = time.perf_counter()
            loaded, size, reason = self._load(stage, stage_hash)
            if reason is None:
                self._log(StageEvent(stage.name, stage_hash, "hit", time.perf_counter() - started, size))
                return loaded
        kwargs = self._gather_inputs(stage)
        started = time.perf_counter()
        result = self._call(stage, kwargs)
        seconds = time.perf_counter() - started
        size = self._save(stage, stage_hash, result, seconds) if stage.cache else None
        outcome = "computed" if stage.cache else "computed-uncached"
        self._log(StageEvent(stage.name, stage_hash, outcome, time.perf_counter() - started, size, reason))
        return result

    def _gather_inputs(self, stage: Stage) -> dict[str, Any]:
        kwargs = {}
        for inp in stage.inputs:
            if inp.name not in stage.passed_inputs:
                continue
            if inp.kind == "stage":
                kwargs[inp.name] = _view(self.result(inp.value))
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
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(f"raised in lwdp stage '{stage.name}'")
            raise

    def _load(self, stage: Stage, stage_hash: str) -> tuple[Any, int | None, str | None]:
        """(result, size, None) on a valid artifact, else (None, None, why it is a miss)."""
        record = self.catalog.lookup_artifact(stage_hash)
        if record is None:
            return None, None, "never computed"
        if stage.format is not None and record.format != stage.format.name:
            return None, None, f"cache format changed {record.format} -> {stage.format.name}"
        fmt = FORMATS[record.format]
        path = self.store.path_for(stage_hash, fmt.suffix)
        data = self.store.read_bytes(stage_hash, fmt.suffix)
        if data is None or len(data) != record.size or xxhash.xxh3_128_hexdigest(data) != record.checksum:
            what = "missing" if data is None else "corrupt (size or checksum mismatch)"
            logger.warning("stage '%s': artifact %s is %s; recomputing", stage.name, path, what)
            return None, None, f"artifact {what}"
        try:
            loaded = fmt.read(io.BytesIO(data), record.read_options)
        except Exception as exc:  # a checksum-valid file that no longer parses: recompute
            logger.warning("stage '%s': artifact %s cannot be read (%s); recomputing", stage.name, path, exc)
            return None, None, "artifact unreadable"
        self.catalog.touch_artifact(stage_hash)
        return loaded, record.size, None

    def _save(self, stage: Stage, stage_hash: str, result: Any, seconds: float) -> int:
        fmt = stage.format or default_format_for(result)
        try:
            options, size = self._write(stage, stage_hash, fmt, result)
        except ResultNotStorableError as exc:
            if stage.format is not None or fmt.name != DEFAULT_FRAME_FORMAT:
                raise
            logger.warning("%s; caching it as pickle instead (the default for such results)", exc)
            fmt = FORMATS["pickle"]
            options, size = self._write(stage, stage_hash, fmt, result)
        previous = self.catalog.lookup_artifact(stage_hash)
        now = utcnow()
        self.catalog.record_artifact(
            ArtifactRecord(
                hash=stage_hash, stage=stage.name, format=fmt.name, size=size, checksum=options[1],
                read_options=options[0], created_at=now, last_access=now, compute_seconds=seconds,
                lwdp_version=__version__, pandas_version=pd.__version__,
            )
        )
        if previous is not None and FORMATS[previous.format].suffix != fmt.suffix:
            self.store.delete(stage_hash, FORMATS[previous.format].suffix)
        return size

    def _write(self, stage: Stage, stage_hash: str, fmt: Format, result: Any) -> tuple[tuple[dict[str, Any], str], int]:
        """Write the artifact; ((read options, checksum), size)."""
        where = f"stage '{stage.name}'"
        why_not = fmt.why_cannot_store(result)
        if why_not is not None:
            raise ResultNotStorableError(
                f"{where}: cache format {fmt.name!r} cannot store the {type(result).__qualname__} "
                f"it returned: {why_not}; use cache_format='pickle'"
            )
        try:
            options, size, checksum = self.store.write(stage_hash, fmt.suffix, lambda p: fmt.write(result, p))
        except LwdpError:
            raise
        except OSError as exc:
            raise ArtifactWriteError(exc.errno, f"{where}: writing its artifact failed ({exc.strerror or exc}); nothing was cached") from exc
        except Exception as exc:  # the format's writer refused the result
            raise ResultNotStorableError(
                f"{where}: cache format {fmt.name!r} cannot store this {type(result).__qualname__} "
                f"({type(exc).__name__}: {exc}); choose another cache_format"
            ) from exc
        return (options, checksum), size

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
        if event.reason and event.reason != "never computed":
            text += f" ({event.reason})"
        logger.info("stage %s: %s", event.stage, text, extra={"lwdp_event": event})
