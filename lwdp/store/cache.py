"""Cached results: verified loads, atomic saves with a manifest, and compute-once locks.

This is where the catalog (rows) and the artifact store (files) meet: an artifact is
served only if its row, its file and its checksum agree; a file whose row was lost is
adopted again from its manifest after the same check (`adoption`); a shared store is read
and written through the local cache (`shared_copies`); anything else is a miss, with its
reason (`outcomes`), so the stage is recomputed and its artifact replaced.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any


from ..errors import ArtifactWriteError, LwdpError, ResultNotStorableError
from ..formats import FORMATS, Format, FormatChoice, stored_as, warn_falling_back
from ..version import __version__
from .adoption import adopt, adoptable
from .artifact_manifest import manifest_of
from .artifact_store import LocalArtifactStore, linked_suffix
from .locks import LockDir
from .outcomes import Hit, Loadable, Miss, MissReason, Source, damage, parsed, warn_once
from .placement import Placement
from .records import ArtifactRecord, utcnow
from .shared_columns import (
    LinkedFile, Piece, check_files, content, linked_files, linked_layout, own_file, plan, side_files,
)

if TYPE_CHECKING:
    from ..config import Settings
    from ..hashing.tracked import InputRow
    from .catalog import Catalog
    from .remote import RemoteArtifactStore
    from .shared_copies import SharedCopies

__all__ = ["Hit", "Loadable", "Miss", "MissReason", "ResultCache", "Source"]

logger = logging.getLogger("lwdp")


class ResultCache:
    """The cached results of one cache directory (and of the shared store, when set)."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.used: set[str] = set()  # local artifacts loaded: marked used when the run ends, in one write
        # What each result this process loaded or wrote was, by hash (`content`): a result in
        # memory links columns of its artifact only while the catalog still describes it.
        self.held: dict[str, str] = {}
        self.store = LocalArtifactStore(settings.cache_dir)
        self.locks = LockDir(settings.cache_dir / "locks")

    @functools.cached_property
    def shared(self) -> SharedCopies | None:
        """The shared store, read through the local one: made on first need, so a run of
        local hits neither touches nor imports it."""
        if not self.settings.store_url:
            return None
        from .remote import shared_store
        from .shared_copies import SharedCopies

        remote = shared_store(self.settings.store_url, self.settings.storage_options)
        return SharedCopies(remote, self.store, self.catalog, self.settings.trust_pickle)

    @property
    def remote(self) -> RemoteArtifactStore | None:
        return self.shared.remote if self.shared is not None else None

    @functools.cached_property
    def placement(self) -> Placement:
        """Where this cache's artifacts live (`lwdp.store.placement`)."""
        return Placement(self.remote, self.settings.catalog_url is not None)

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
        if isinstance(local, Loadable) or self.shared is None or local.reason is MissReason.FORMAT_CHANGED:
            return local
        shared = self.shared.probe(stage_name, stage_hash, wanted)
        return shared if isinstance(shared, Loadable) or local.reason is MissReason.NEVER_COMPUTED else local

    def _probe_local(self, stage_name: str, stage_hash: str, wanted: Format | None, keep_bytes: bool) -> Loadable | Miss:
        record = self.catalog.lookup_artifact(stage_hash)
        source = Source.LOCAL
        if record is None:
            record, source = adoptable(self.store, stage_hash), Source.UNLISTED
            if record is None:
                return Miss(MissReason.NEVER_COMPUTED)
        if record.format not in FORMATS:  # written by another version of lwdp
            return Miss(MissReason.FORMAT_CHANGED, f"{record.format} is not a format this lwdp {__version__} reads")
        if wanted is not None and not stored_as(record.format, wanted):
            return Miss(MissReason.FORMAT_CHANGED, f"{record.format} -> {wanted.name}")
        checked = check_files(self.store, record, keep_bytes)
        if checked.intact:
            return Loadable(record, source, checked.data, sides=checked.sides)
        found = damage(stage_name, f"artifact {checked.failed}", shared=False, missing=checked.intact is None)
        # A local copy that is optional (not downloaded yet) is nothing to warn of.
        return Miss(found.reason, warning=None) if checked.intact is None and self.placement.local_copy_optional else found

    def load(self, stage_name: str, stage_hash: str, wanted: Format | None, locked: bool = False) -> Hit | Miss:
        """The cached result, or why there is none: what `probe` answers, acted on (a
        lost row recorded again, a shared artifact downloaded, the use recorded).

        The artifact's lock is held shared while reading (so gc leaves it alone), unless
        the caller holds it already (``locked``: the re-check after waiting to compute,
        which also doesn't repeat the first check's warnings).
        """
        warn = not locked
        with nullcontext() if locked else self.locks.hold(stage_hash, stage_name, shared=True):
            found = self.probe(stage_name, stage_hash, wanted, keep_bytes=True)
            if isinstance(found, Loadable) and found.source is not Source.SHARED:
                loaded = self.reported(self._load_local(stage_name, found), warn)
                if isinstance(loaded, Hit) or self.shared is None:
                    return loaded
                found = self.shared.probe(stage_name, stage_hash, wanted)  # the shared copy may parse
                if isinstance(found, Miss):
                    return loaded
        if isinstance(found, Miss):
            return self.reported(found, warn)
        assert self.shared is not None
        return self.reported(self.shared.download(stage_name, found), warn)

    def peek(self, stage_name: str, stage_hash: str) -> Hit | Miss:
        """The cached result, read for a person looking at it (``lwdp show``): a local one
        is not marked used, so looking changes no eviction order; a shared one is
        downloaded as a run would."""
        found = self.probe(stage_name, stage_hash, None, keep_bytes=True)
        if isinstance(found, Miss):
            return found
        if found.source is Source.SHARED:
            assert self.shared is not None
            return self.reported(self.shared.download(stage_name, found), warn=True)
        return parsed(stage_name, found.record, found.data, self._local_where(found.record), shared=False, sides=found.sides)

    def _local_where(self, record: ArtifactRecord) -> str:
        return f"artifact {self.store.describe(record.hash, FORMATS[record.format].suffix)}"

    def reported(self, found: Hit | Miss, warn: bool = True) -> Hit | Miss:
        """``found``; a miss's warning logged first (when ``warn``)."""
        if isinstance(found, Miss) and warn and found.warning is not None:
            if found.reason is MissReason.SHARED_UNAVAILABLE:  # every request fails alike: once per process
                warn_once(f"read {self.settings.store_url}", found.warning)
            else:
                logger.warning("%s", found.warning)
        return found

    def _load_local(self, stage_name: str, found: Loadable) -> Hit | Miss:
        record = found.record
        loaded = parsed(stage_name, record, found.data, self._local_where(record), shared=False, sides=found.sides)
        if isinstance(loaded, Miss):
            return loaded
        if found.source is Source.UNLISTED:
            adopt(self.catalog, self.store, record)
            logger.info("stage %s: artifact %s adopted from its manifest (the catalog had no row)", stage_name, record.hash[:12])
        self.used.add(record.hash)
        self.held[record.hash] = content(record)
        return loaded

    def save(
        self, stage_name: str, stage_hash: str, result: Any, choice: FormatChoice, seconds: float,
        stage_manifest: dict[str, Any] | None = None, input_key: str | None = None, tracked: list[InputRow] | None = None,
        upstreams: Callable[[], list[tuple[ArtifactRecord, Any]]] | None = None,
    ) -> int:
        """Write and record ``result`` in the chosen format (`lwdp.formats.choose_format`), or
        its fallback if that format's writer refuses it, with what went into its hash,
        ``stage_manifest``, in the catalog and beside the file; return its size in bytes.
        ``input_key``: what early cutoff will find it by (`ArtifactRecord.input_key`);
        ``tracked``: what computing it read undeclared (`lwdp.hashing.tracked`), recorded
        in place of what its hash had (unwatched: an empty list clears them);
        ``upstreams``: the artifacts of its direct upstreams with their results in memory,
        whose columns it may link rather than write (`lwdp.store.shared_columns`).

        :raises ResultNotStorableError: the format's writer refused ``result`` (no fallback).
        :raises ArtifactWriteError: the disk refused (full, I/O error); nothing is published.
        """
        fmt = choice.format
        self.held.pop(stage_hash, None)  # no longer the result in memory, whatever the write does
        # Not into a shared store: object stores have no links.
        shared = plan(fmt, result, upstreams(), self.store) if upstreams is not None and self.shared is None else {}
        try:
            options, size, checksum = self._write(stage_name, stage_hash, fmt, result, shared)
        except ResultNotStorableError as exc:
            if choice.fallback is None:
                raise
            warn_falling_back(exc)
            fmt = choice.fallback
            options, size, checksum = self._write(stage_name, stage_hash, fmt, result)
        now = utcnow()
        record = ArtifactRecord(
            hash=stage_hash, stage=stage_name, format=fmt.name, size=size, checksum=checksum,
            read_options=options, created_at=now, last_access=now, compute_seconds=seconds,
            lwdp_version=__version__, pandas_version=_pandas_version(), input_key=input_key,
            watched=self.settings.undeclared_inputs != "ignore",
        )
        self._publish(record, stage_manifest, tracked)
        return size

    def reuse(self, stage_name: str, stage_hash: str, earlier: ArtifactRecord, stage_manifest: dict[str, Any]) -> ArtifactRecord | None:
        """Record ``earlier``'s result (the same stage, computed from the same inputs) as the
        result of ``stage_hash`` too: its files are hard-linked (copied where links can't be
        made), checked against their checksums, and recorded with its own manifest. None
        when ``earlier``'s files are not here intact, or it links files and the cache has a
        shared store (which holds whole artifacts only).

        :raises ArtifactWriteError: the disk refused; nothing is published.
        """
        suffix = FORMATS[earlier.format].suffix
        linked = linked_files(earlier, self.store)
        if linked and self.shared is not None:
            return None
        if not self._linked(stage_name, stage_hash, suffix, own_file(earlier, self.store), check=True):
            return None
        if not self._link(stage_name, stage_hash, suffix, linked, check=True):
            self.store.path_for(stage_hash, suffix).unlink(missing_ok=True)
            return None
        now = utcnow()
        record = dataclasses.replace(earlier, hash=stage_hash, created_at=now, last_access=now, hits=0)
        self._publish(record, stage_manifest)
        return record

    def _publish(self, record: ArtifactRecord, stage_manifest: dict[str, Any] | None, tracked: list[InputRow] | None = None) -> None:
        """The manifest beside the written file, the shared store's copy, then the catalog
        row (and the file of the hash's previous format, if any, removed)."""
        previous = self.catalog.lookup_artifact(record.hash)
        suffix = FORMATS[record.format].suffix
        manifest = manifest_of(record, stage_manifest)
        try:
            self.store.write_manifest(record.hash, manifest)
        except OSError as exc:
            self.store.delete(record.hash, suffix)
            raise _write_failed(record.stage, "manifest", exc) from exc
        if self.shared is not None:
            record = self.shared.publish(record, manifest)
        self.catalog.record_artifact(record, stage_manifest, tracked)
        self.held[record.hash] = content(record)
        self.store.delete_links(record.hash, suffix, start=len(side_files(record)))  # an earlier result's
        if previous is not None and FORMATS[previous.format].suffix != suffix:
            self.store.path_for(record.hash, FORMATS[previous.format].suffix).unlink(missing_ok=True)
            self.store.delete_links(record.hash, FORMATS[previous.format].suffix)
        if previous is not None and previous.format == record.format and content(previous) != content(record):
            self._drop_derived(record)

    def evict(
        self, stage_hash: str, suffix: str, selected_at: dt.datetime | None = None, dry_run: bool = False,
        shared: RemoteArtifactStore | None = None, copy_only: bool = False,
    ) -> bool:
        """Remove an artifact (its row, then its files; its object in ``shared`` too; only
        the local file when it is a ``copy_only`` of the shared store's), or in a
        ``dry_run`` only say it could be; False when it is busy: another process holds its
        lock (computing or reading it), or it was read since ``selected_at``."""
        with self.locks.try_hold(stage_hash, remove=not dry_run, create=not dry_run) as free:
            if not free:
                return False
            if selected_at is not None:
                last_access = self.catalog.last_access(stage_hash)
                if last_access is not None and last_access >= selected_at:
                    return False
            if not dry_run:
                if not copy_only:
                    self.catalog.delete_artifact(stage_hash)
                self.store.delete(stage_hash, suffix)
                if shared is not None:
                    shared.delete(stage_hash, suffix)
        return True

    def _drop_derived(self, changed: ArtifactRecord) -> None:
        """Remove the artifacts computed from an earlier result of ``changed``'s hash, at any
        depth: the hash now has another result (a forced recompute, or a stage that is not
        deterministic recomputed after its artifact was lost), so theirs are stale. Their
        stages compute again when next called (or reuse a result from inputs like the new
        ones). An artifact another process is reading or computing right now is left alone."""
        for stage_hash, stage_name, _ in self.catalog.descendants(self.catalog.consumers(changed.hash)):
            record = self.catalog.lookup_artifact(stage_hash)
            if record is None or not self.evict(stage_hash, FORMATS[record.format].suffix, shared=self.remote):
                continue
            logger.info(
                "stage %s: artifact %s removed: it was computed from the result of stage %s before that changed",
                stage_name, stage_hash[:12], changed.stage,
            )

    def _write(
        self, stage_name: str, stage_hash: str, fmt: Format, result: Any, shared: dict[str, Piece] | None = None,
    ) -> tuple[dict[str, Any], int, str]:
        """Write ``result``: its own file without its ``shared`` columns, then the files
        holding those linked beside it; every column in its own file where a link fails (an
        upstream's file gone meanwhile). The links come last, so that none is ever without
        its artifact's own file (gc sweeps those as strays), and so that rewriting a hash's
        artifact with the same result (a forced recompute, a repair) leaves its files, and
        what early cutoff compares, as they were."""
        files, layout = linked_layout(fmt, result, shared) if shared else ([], {})
        if files:
            columns = fmt.handler().columns
            assert columns is not None and shared
            options, size, checksum = self._write_file(stage_name, stage_hash, fmt, columns.without(result, list(shared)))
            try:
                linked = self._link(stage_name, stage_hash, fmt.suffix, files)
            except BaseException:
                self.store.path_for(stage_hash, fmt.suffix).unlink(missing_ok=True)
                self.store.delete_links(stage_hash, fmt.suffix)
                raise
            if linked:
                return {**options, **layout}, size + sum(file.size for file in files), checksum
        return self._write_file(stage_name, stage_hash, fmt, result)

    def _write_file(self, stage_name: str, stage_hash: str, fmt: Format, result: Any) -> tuple[dict[str, Any], int, str]:
        try:
            # The manifest, written next beside it, makes the directory durable for all.
            return self.store.write(stage_hash, fmt.suffix, lambda p: fmt.write(result, p), sync_directory=False)
        except LwdpError:
            raise
        except OSError as exc:
            raise _write_failed(stage_name, "artifact", exc) from exc
        except Exception as exc:  # the format's writer refused the result
            raise ResultNotStorableError(
                f"stage '{stage_name}': cache format {fmt.name!r} cannot store this {type(result).__qualname__} "
                f"({type(exc).__name__}: {exc}); choose another cache_format"
            ) from exc

    def _link(self, stage_name: str, stage_hash: str, suffix: str, files: list[LinkedFile], check: bool = False) -> bool:
        """Link ``files`` beside the artifact: all of them, or none (one gone or changed
        meanwhile: its columns are written). ``check``: read each one's bytes against its
        checksum (files this run did not just write or load)."""
        if all(self._linked(stage_name, stage_hash, linked_suffix(suffix, k), file, check) for k, file in enumerate(files)):
            return True
        self.store.delete_links(stage_hash, suffix)
        return False

    def _linked(self, stage_name: str, stage_hash: str, suffix: str, file: LinkedFile, check: bool) -> bool:
        """Whether ``file`` is now the artifact's file ``suffix``, hard-linked (copied where
        links can't be made) with its size, and its checksum when copied or ``check``ed.
        False when it was gone (a gc meanwhile) or damaged (nothing is left of it then).

        :raises ArtifactWriteError: the disk refused.
        """
        try:
            got_size, got_checksum = self.store.link(stage_hash, suffix, file.source)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _write_failed(stage_name, "artifact", exc) from exc
        if check and got_checksum is None:
            got_checksum = self.store.checksum(stage_hash, suffix)
        if got_size != file.size or got_checksum not in (None, file.checksum):
            self.store.path_for(stage_hash, suffix).unlink(missing_ok=True)
            return False
        return True


def _write_failed(stage_name: str, what: str, exc: OSError) -> ArtifactWriteError:
    detail = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return ArtifactWriteError(f"stage '{stage_name}': writing its {what} failed ({detail}); nothing was cached", exc.errno)


def _pandas_version() -> str | None:
    """The version of pandas in this process, recorded with each artifact: None where none
    was imported (a polars pipeline's), as no pandas object was then written."""
    return getattr(sys.modules.get("pandas"), "__version__", None)  # None too while another thread imports it
