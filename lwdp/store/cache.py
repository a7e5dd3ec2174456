"""Cached results: verified loads, atomic saves with a manifest, and compute-once locks.

This is where the catalog (rows) and the artifact store (files) meet: an artifact is
served only if its row, its file and its checksum agree; a file whose row was lost is
adopted again from its manifest after the same check; anything else is a miss, with the
reason, so the stage is recomputed and its artifact replaced.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pandas as pd

from .. import __version__, config
from ..errors import ArtifactWriteError, LwdpError, ResultNotStorableError, StoreUnavailableError
from ..formats import DEFAULT_FRAME_FORMAT, FORMATS, Format, default_format_for
from .artifacts import MANIFEST_SUFFIX, LocalArtifactStore, bytes_match
from .connections import on_close
from .locks import LockDir
from .quick_catalog import RunCatalog
from .records import ArtifactRecord, utcnow

if TYPE_CHECKING:
    from .catalog import Catalog
    from .remote import RemoteArtifactStore

logger = logging.getLogger("lwdp")
_HASH = re.compile("[0-9a-f]{32}")
# A run's catalog (fast reads, deferred marks of use) or the full one (upkeep: gc, verify).
CatalogT = TypeVar("CatalogT", "Catalog", RunCatalog)


@dataclass(frozen=True)
class Hit:
    value: Any
    size: int
    source: str | None = None  # the shared store's URL when downloaded from it


class MissReason(Enum):
    """Why a call would not load a cached result (its value is what the log says)."""

    NEVER_COMPUTED = "never computed"
    FORMAT_CHANGED = "cache format changed"
    ARTIFACT_MISSING = "artifact missing"
    ARTIFACT_CORRUPT = "artifact corrupt (size or checksum mismatch)"
    ARTIFACT_UNREADABLE = "artifact unreadable"
    SHARED_MISSING = "shared artifact missing"
    SHARED_CORRUPT = "shared artifact corrupt (size or checksum mismatch)"
    SHARED_UNREADABLE = "shared artifact unreadable"
    SHARED_MANIFEST_INVALID = "shared artifact's manifest invalid"
    SHARED_UNAVAILABLE = "shared store unavailable"
    PICKLE_NOT_TRUSTED = "pickle in the shared store not trusted"


@dataclass(frozen=True)
class Miss:
    """No cached result: why, the change that caused it where there is one ("parquet ->
    csv"), and the warning a run logs about it (None where a miss is nothing to warn of)."""

    reason: MissReason
    change: str = ""
    warning: str | None = None

    def __str__(self) -> str:
        return f"{self.reason.value} {self.change}" if self.change else self.reason.value


class Source(Enum):
    """Where a loadable result is."""

    LOCAL = "the local cache"
    UNLISTED = "the local cache (a file whose catalog row was lost, adopted again on load)"
    SHARED = "the shared store"


@dataclass(frozen=True)
class Loadable:
    """A result a call would load: its record, where it is, the local file's verified
    bytes when the probe was asked to keep them, and a shared artifact's manifest."""

    record: ArtifactRecord
    source: Source
    data: bytes | None = None
    manifest: dict[str, Any] | None = None


class ResultCache(Generic[CatalogT]):
    """The cached results of one cache directory."""

    def __init__(self, cache_dir: Path, catalog: CatalogT) -> None:
        self.catalog: CatalogT = catalog
        self.store = LocalArtifactStore(cache_dir)
        self.locks = LockDir(cache_dir / "locks")
        self.store_url = config.store_url()

    @functools.cached_property
    def remote(self) -> RemoteArtifactStore | None:
        """The shared store, read through the local one: made on first need, so a run of
        local hits neither touches nor imports it."""
        from .remote import shared_store

        return shared_store(self.store_url) if self.store_url else None

    @contextmanager
    def computing(self, stage_hash: str, stage_name: str) -> Iterator[None]:
        """Hold the compute-once lock of ``stage_hash`` (other processes wait, then hit)."""
        with self.locks.hold(stage_hash, stage_name):
            yield

    def probe(self, stage_name: str, stage_hash: str, wanted: Format | None, keep_bytes: bool = False) -> Loadable | Miss:
        """Would a call load the result of ``stage_hash``, and from where; if not, why.

        The one answer to "is it cached?": the run acts on it (`load`), and `explain()`,
        ``lwdp status`` report it. It changes nothing (no catalog write, no download, no
        log line). A local artifact's bytes are checked against its size and checksum; a
        shared one by its manifest, not downloaded (its bytes are checked when a run
        downloads them). ``keep_bytes``: return the local file's verified bytes, so that a
        run reads them once.
        """
        local = self._probe_local(stage_name, stage_hash, wanted, keep_bytes)
        if isinstance(local, Loadable) or not self.store_url or local.reason is MissReason.FORMAT_CHANGED:
            return local
        shared = self._probe_shared(stage_name, stage_hash, wanted)
        return shared if isinstance(shared, Loadable) or local.reason is MissReason.NEVER_COMPUTED else local

    def _probe_local(self, stage_name: str, stage_hash: str, wanted: Format | None, keep_bytes: bool) -> Loadable | Miss:
        record = self.catalog.lookup_artifact(stage_hash)
        source = Source.LOCAL
        if record is None:
            record, source = self.adoptable(stage_hash), Source.UNLISTED
            if record is None:
                return Miss(MissReason.NEVER_COMPUTED)
        if wanted is not None and record.format != wanted.name:
            return Miss(MissReason.FORMAT_CHANGED, f"{record.format} -> {wanted.name}")
        suffix = FORMATS[record.format].suffix
        data = self.store.get(stage_hash, suffix) if keep_bytes else None
        intact = bytes_match(data, record.size, record.checksum) if keep_bytes else self.store.is_intact(stage_hash, suffix, record.size, record.checksum)
        if intact:
            return Loadable(record, source, data)
        damage = _damage(stage_name, self._local_where(record), shared=False, missing=intact is None)
        # With a shared store, a local copy not downloaded yet is nothing to warn of.
        return Miss(damage.reason, warning=None) if intact is None and self.store_url else damage

    def _probe_shared(self, stage_name: str, stage_hash: str, wanted: Format | None) -> Loadable | Miss:
        """The shared store's answer: its manifest is read and checked (keys come only from
        the hash, so a manifest can never name a path); pickles count only when trusted."""
        assert self.remote is not None
        try:
            manifest = self.remote.read_manifest(stage_hash)
        except StoreUnavailableError as exc:
            return _unavailable(exc)
        if manifest is None:
            return Miss(MissReason.NEVER_COMPUTED)
        try:
            record = record_from_manifest(manifest, stage_hash)
        except ValueError as exc:
            where = self.remote.describe(stage_hash, MANIFEST_SUFFIX)
            return Miss(MissReason.SHARED_MANIFEST_INVALID, warning=f"stage '{stage_name}': ignoring {where} ({exc}); recomputing")
        if wanted is not None and record.format != wanted.name:
            return Miss(MissReason.FORMAT_CHANGED, f"{record.format} -> {wanted.name}")
        if record.format == "pickle" and not config.trust_pickle():
            return Miss(MissReason.PICKLE_NOT_TRUSTED, warning=(
                f"stage '{stage_name}': {self.remote.describe(stage_hash, FORMATS['pickle'].suffix)} is a pickle, "
                "and loading a pickle runs code: recomputing instead; lwdp.configure(trust_pickle=True) or "
                "LWDP_TRUST_PICKLE=1 loads pickles from the shared store"
            ))
        return Loadable(record, Source.SHARED, manifest=manifest)

    def load(self, stage_name: str, stage_hash: str, wanted: Format | None, locked: bool = False) -> Hit | Miss:
        """The cached result, or why there is none: what `probe` answers, acted on (a
        lost row recorded again, a shared artifact downloaded, the use recorded).

        The artifact's lock is held shared while reading (so gc leaves it alone), unless
        the caller holds it already (``locked``: the re-check after waiting to compute,
        which also doesn't repeat the first check's warnings).
        """
        with nullcontext() if locked else self.locks.hold(stage_hash, stage_name, shared=True):
            found = self.probe(stage_name, stage_hash, wanted, keep_bytes=True)
            if isinstance(found, Loadable) and found.source is not Source.SHARED:
                loaded = self._load_local(stage_name, found, warn=not locked)
                if isinstance(loaded, Hit) or not self.store_url:
                    return loaded
                found = self._probe_shared(stage_name, stage_hash, wanted)  # the shared copy may parse
                if isinstance(found, Miss):
                    return loaded
        if isinstance(found, Miss):
            return self._missed(found, warn=not locked)
        return self._download(stage_name, found, warn=not locked)

    def peek(self, stage_name: str, stage_hash: str) -> Hit | Miss:
        """The cached result, read for a person looking at it (``lwdp show``): a local one
        is not marked used, so looking changes no eviction order; a shared one is
        downloaded as a run would."""
        found = self.probe(stage_name, stage_hash, None, keep_bytes=True)
        if isinstance(found, Miss):
            return found
        if found.source is Source.SHARED:
            return self._download(stage_name, found, warn=True)
        return _parsed(stage_name, found.record, found.data, self._local_where(found.record), shared=False)

    def _local_where(self, record: ArtifactRecord) -> str:
        return f"artifact {self.store.describe(record.hash, FORMATS[record.format].suffix)}"

    def _missed(self, miss: Miss, warn: bool) -> Miss:
        if warn and miss.warning is not None:
            if miss.reason is MissReason.SHARED_UNAVAILABLE:  # every request fails alike: once per process
                _warn_once(f"read {self.store_url}", miss.warning)
            else:
                logger.warning("%s", miss.warning)
        return miss

    def _load_local(self, stage_name: str, found: Loadable, warn: bool) -> Hit | Miss:
        record = found.record
        loaded = _parsed(stage_name, record, found.data, self._local_where(record), shared=False)
        if isinstance(loaded, Miss):
            return self._missed(loaded, warn)
        if found.source is Source.UNLISTED:
            self.record_adopted(record)
            logger.info("stage %s: artifact %s adopted from its manifest (the catalog had no row)", stage_name, record.hash[:12])
        self.catalog.touch_artifact(record.hash)
        return loaded

    def _download(self, stage_name: str, found: Loadable, warn: bool) -> Hit | Miss:
        """The shared artifact `probe` found, verified, kept as a local copy and recorded."""
        assert self.remote is not None and found.manifest is not None
        record = found.record
        self.catalog.mark_used([record.hash], [], utcnow())  # now, not at the end: a shared gc keeps what is being read
        suffix = FORMATS[record.format].suffix
        try:
            data = self.remote.get(record.hash, suffix)
        except StoreUnavailableError as exc:
            return self._missed(_unavailable(exc), warn)
        where = self.remote.describe(record.hash, suffix)
        if data is None or not bytes_match(data, record.size, record.checksum):
            return self._missed(_damage(stage_name, where, shared=True, missing=data is None), warn)
        loaded = _parsed(stage_name, record, data, where, shared=True)
        if isinstance(loaded, Miss):
            return self._missed(loaded, warn)
        self.store.put(record.hash, suffix, data)
        self.store.write_manifest(record.hash, found.manifest)
        self.catalog.record_artifact(record, _stage_manifest_in(found.manifest))
        return Hit(loaded.value, record.size, self.remote.url)

    def adoptable(self, stage_hash: str) -> ArtifactRecord | None:
        """The record an unlisted artifact file would get, if its manifest and bytes agree."""
        manifest = self.store.read_manifest(stage_hash)
        try:
            record = record_from_manifest(manifest) if manifest is not None else None
        except (KeyError, TypeError, ValueError):
            return None
        if record is None or record.format not in FORMATS:
            return None
        intact = self.store.is_intact(stage_hash, FORMATS[record.format].suffix, record.size, record.checksum)
        return record if intact else None

    def record_adopted(self, record: ArtifactRecord) -> None:
        """List an adoptable artifact in the catalog again, with its stage manifest if the
        file beside it has one (so explanations survive a lost catalog)."""
        self.catalog.record_artifact(record, self.local_stage_manifest(record.hash))

    def local_stage_manifest(self, stage_hash: str) -> dict[str, Any] | None:
        """The stage manifest in the manifest file beside a local artifact, if any."""
        return _stage_manifest_in(self.store.read_manifest(stage_hash) or {})

    def storable_format(self, stage_name: str, result: Any, wanted: Format | None) -> Format:
        """The format to cache ``result`` in: ``wanted``, else the default for its type;
        pickle where the default format's checks refuse it (with a warning).

        :raises ResultNotStorableError: ``wanted`` would not give ``result`` back unchanged.
        """
        fmt = wanted or default_format_for(result)
        why_not = fmt.why_cannot_store(result)
        if why_not is None:
            return fmt
        refusal = _not_storable(stage_name, fmt, result, why_not)
        if wanted is not None or fmt.name != DEFAULT_FRAME_FORMAT:
            raise refusal
        logger.warning("%s; caching it as pickle instead (the default for such results)", refusal)
        return FORMATS["pickle"]

    def save(
        self, stage_name: str, stage_hash: str, result: Any, fmt: Format, may_fall_back: bool, seconds: float,
        stage_manifest: dict[str, Any] | None = None,
    ) -> int:
        """Write and record ``result`` in ``fmt`` (from `storable_format`), with what went into
        its hash, ``stage_manifest``, in the catalog and beside the file; return its size in
        bytes. ``may_fall_back``: the format was lwdp's choice, so if its writer refuses the
        result, pickle is tried.

        :raises ResultNotStorableError: the format's writer refused ``result``.
        :raises ArtifactWriteError: the disk refused (full, I/O error); nothing is published.
        """
        try:
            options, size, checksum = self._write(stage_name, stage_hash, fmt, result)
        except ResultNotStorableError as exc:
            if not may_fall_back or fmt.name != DEFAULT_FRAME_FORMAT:
                raise
            logger.warning("%s; caching it as pickle instead (the default for such results)", exc)
            fmt = FORMATS["pickle"]
            options, size, checksum = self._write(stage_name, stage_hash, fmt, result)
        previous = self.catalog.lookup_artifact(stage_hash)
        now = utcnow()
        record = ArtifactRecord(
            hash=stage_hash, stage=stage_name, format=fmt.name, size=size, checksum=checksum,
            read_options=options, created_at=now, last_access=now, compute_seconds=seconds,
            lwdp_version=__version__, pandas_version=pd.__version__,
        )
        manifest = manifest_of(record, stage_manifest)
        try:
            self.store.write_manifest(stage_hash, manifest)
        except OSError as exc:
            self.store.delete(stage_hash, fmt.suffix)
            raise _write_failed(stage_name, "manifest", exc) from exc
        if self.store_url:
            record = self._publish(stage_name, record, manifest)
        self.catalog.record_artifact(record, stage_manifest)
        if previous is not None and FORMATS[previous.format].suffix != fmt.suffix:
            self.store.path_for(stage_hash, FORMATS[previous.format].suffix).unlink(missing_ok=True)
        return size

    def _publish(self, stage_name: str, record: ArtifactRecord, manifest: dict[str, Any]) -> ArtifactRecord:
        """Share a new artifact; the record in force is the first publisher's (equivalent
        content, maybe other bytes: then the local copy goes, to be fetched when needed),
        unless what the first publisher left is damaged: this result then replaces it."""
        assert self.remote is not None
        suffix = FORMATS[record.format].suffix
        payload = self.store.get(record.hash, suffix) or b""
        try:
            in_force = self.remote.publish(record.hash, suffix, payload, manifest)
            if in_force is manifest:
                return record
            try:
                shared: ArtifactRecord | None = record_from_manifest(in_force, record.hash)
            except ValueError:
                shared = None
            if shared is None or not self.remote.is_intact(record.hash, FORMATS[shared.format].suffix, shared.size, shared.checksum):
                # Payload first: a reader in between finds a checksum mismatch, and recomputes.
                self.remote.put(record.hash, suffix, payload)
                self.remote.write_manifest(record.hash, manifest)
                return record
        except StoreUnavailableError as exc:
            _warn_once(f"write {self.remote.url}", "cached locally but not shared: %s", exc)
            return record
        if shared.checksum != record.checksum:
            self.store.delete(record.hash, suffix)
        return shared

    def _write(self, stage_name: str, stage_hash: str, fmt: Format, result: Any) -> tuple[dict[str, Any], int, str]:
        where = f"stage '{stage_name}'"
        try:
            return self.store.write(stage_hash, fmt.suffix, lambda p: fmt.write(result, p))
        except LwdpError:
            raise
        except OSError as exc:
            raise _write_failed(stage_name, "artifact", exc) from exc
        except Exception as exc:  # the format's writer refused the result
            raise ResultNotStorableError(
                f"{where}: cache format {fmt.name!r} cannot store this {type(result).__qualname__} "
                f"({type(exc).__name__}: {exc}); choose another cache_format"
            ) from exc


def _unavailable(exc: StoreUnavailableError) -> Miss:
    return Miss(MissReason.SHARED_UNAVAILABLE, warning=f"{exc}; computing what isn't cached locally")


def _damage(stage_name: str, where: str, shared: bool, missing: bool) -> Miss:
    """The miss of an artifact file or object that is gone or not what its record says."""
    if missing:
        reason = MissReason.SHARED_MISSING if shared else MissReason.ARTIFACT_MISSING
    else:
        reason = MissReason.SHARED_CORRUPT if shared else MissReason.ARTIFACT_CORRUPT
    what = "missing" if missing else "corrupt (size or checksum mismatch)"
    return Miss(reason, warning=f"stage '{stage_name}': {where} is {what}; recomputing")


def _parsed(stage_name: str, record: ArtifactRecord, data: bytes | None, where: str, shared: bool) -> Hit | Miss:
    """The result ``record`` describes, from its verified bytes."""
    try:
        value = FORMATS[record.format].read(io.BytesIO(data or b""), record.read_options)
    except Exception as exc:  # a checksum-valid file that no longer parses: recompute
        reason = MissReason.SHARED_UNREADABLE if shared else MissReason.ARTIFACT_UNREADABLE
        return Miss(reason, warning=f"stage '{stage_name}': {where} cannot be read ({exc}); recomputing")
    return Hit(value, record.size)


def _not_storable(stage_name: str, fmt: Format, result: Any, why_not: str) -> ResultNotStorableError:
    return ResultNotStorableError(
        f"stage '{stage_name}': cache format {fmt.name!r} cannot store the {type(result).__qualname__} "
        f"it returned: {why_not}; use cache_format='pickle'"
    )


def _stage_manifest_in(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The stage manifest an artifact's manifest carries (`lwdp.manifest`), if any."""
    stage_manifest = manifest.get("stage_manifest")
    return stage_manifest if isinstance(stage_manifest, dict) else None


_WARNED: set[str] = set()
on_close(_WARNED.clear)


def _warn_once(key: str, message: str, *args: Any) -> None:
    """A shared store that is down fails every request alike: say so once per process."""
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message, *args)


def _write_failed(stage_name: str, what: str, exc: OSError) -> ArtifactWriteError:
    detail = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return ArtifactWriteError(f"stage '{stage_name}': writing its {what} failed ({detail}); nothing was cached", exc.errno)


def manifest_of(record: ArtifactRecord, stage_manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the file beside an artifact says about it (times as ISO 8601 UTC), with what
    went into its hash when known."""
    manifest = asdict(record)
    manifest.pop("last_access")
    manifest["created_at"] = record.created_at.isoformat()
    if stage_manifest is not None:
        manifest["stage_manifest"] = stage_manifest
    return manifest


def record_from_manifest(manifest: dict[str, Any], stage_hash: str | None = None) -> ArtifactRecord:
    """The catalog record a manifest describes, checked field by field, since a manifest
    may come from a shared store that anyone can write to.

    :raises ValueError: a field is missing or not what lwdp writes, or the manifest is of
        another hash than ``stage_hash``.
    """
    def field_of(name: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
        value = manifest.get(name)
        if (value is None and optional) or (isinstance(value, kind) and not isinstance(value, bool)):
            return value
        raise ValueError(f"manifest field {name!r} is {value!r}")

    found_hash = field_of("hash", str)
    if not _HASH.fullmatch(found_hash) or (stage_hash is not None and found_hash != stage_hash):
        raise ValueError(f"manifest of hash {found_hash!r}, expected {stage_hash!r}")
    if field_of("format", str) not in FORMATS:
        raise ValueError(f"unknown format {manifest['format']!r}")
    if field_of("size", int) < 0 or not _HASH.fullmatch(field_of("checksum", str)):
        raise ValueError("bad size or checksum")
    return ArtifactRecord(
        hash=found_hash, stage=field_of("stage", str), format=manifest["format"], size=manifest["size"],
        checksum=manifest["checksum"], read_options=field_of("read_options", dict),
        created_at=dt.datetime.fromisoformat(field_of("created_at", str)), last_access=utcnow(),
        compute_seconds=field_of("compute_seconds", (int, float), optional=True),
        lwdp_version=field_of("lwdp_version", str, optional=True),
        pandas_version=field_of("pandas_version", str, optional=True),
    )
