"""The shared store as a run uses it, through the local cache: what it holds (by manifest,
without downloading), downloads kept as local copies, and publishing new artifacts.

Keys come only from the stage hash, so a manifest can never name a path; a manifest is
checked field by field, and a pickle is loaded only when the user trusts the store's pickles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import StoreUnavailableError
from ..formats import FORMATS, Format, stored_as
from .artifact_manifest import record_from_manifest, stage_manifest_in
from .artifact_store import MANIFEST_SUFFIX, LocalArtifactStore, bytes_match
from .outcomes import Hit, Loadable, Miss, MissReason, Source, damage, parsed, unavailable, warn_once
from .records import ArtifactRecord, utcnow

if TYPE_CHECKING:
    from .catalog import Catalog
    from .remote import RemoteArtifactStore


class SharedCopies:
    """A shared store and the local cache that keeps copies of what is downloaded."""

    def __init__(self, remote: RemoteArtifactStore, local: LocalArtifactStore, catalog: Catalog, trust_pickle: bool) -> None:
        self.remote = remote
        self.local = local
        self.catalog = catalog
        self.trust_pickle = trust_pickle

    def probe(self, stage_name: str, stage_hash: str, wanted: Format | None) -> Loadable | Miss:
        """What the shared store holds for ``stage_hash``, by its manifest (not downloaded)."""
        try:
            manifest = self.remote.read_manifest(stage_hash)
        except StoreUnavailableError as exc:
            return unavailable(exc)
        if manifest is None:
            return Miss(MissReason.NEVER_COMPUTED)
        try:
            record = record_from_manifest(manifest, stage_hash)
        except ValueError as exc:
            where = self.remote.describe(stage_hash, MANIFEST_SUFFIX)
            return Miss(MissReason.SHARED_MANIFEST_INVALID, warning=f"stage '{stage_name}': ignoring {where} ({exc}); recomputing")
        if wanted is not None and not stored_as(record.format, wanted):
            return Miss(MissReason.FORMAT_CHANGED, f"{record.format} -> {wanted.name}")
        if record.format == "pickle" and not self.trust_pickle:
            return Miss(MissReason.PICKLE_NOT_TRUSTED, warning=(
                f"stage '{stage_name}': {self.remote.describe(stage_hash, FORMATS['pickle'].suffix)} is a pickle, "
                "and loading a pickle runs code: recomputing instead; lwdp.configure(trust_pickle=True) or "
                "LWDP_TRUST_PICKLE=1 loads pickles from the shared store"
            ))
        return Loadable(record, Source.SHARED, manifest=manifest)

    def download(self, stage_name: str, found: Loadable) -> Hit | Miss:
        """The shared artifact `probe` found, verified, kept as a local copy and recorded."""
        assert found.manifest is not None
        record = found.record
        self.catalog.mark_used([record.hash], [], utcnow())  # now, not at the end: a shared gc keeps what is being read
        suffix = FORMATS[record.format].suffix
        try:
            data = self.remote.get(record.hash, suffix)
        except StoreUnavailableError as exc:
            return unavailable(exc)
        where = self.remote.describe(record.hash, suffix)
        if data is None or not bytes_match(data, record.size, record.checksum):
            return damage(stage_name, where, shared=True, missing=data is None)
        loaded = parsed(stage_name, record, data, where, shared=True)
        if isinstance(loaded, Miss):
            return loaded
        self.local.put(record.hash, suffix, data)
        self.local.write_manifest(record.hash, found.manifest)
        self.catalog.record_artifact(record, stage_manifest_in(found.manifest))
        return Hit(loaded.value, record.size, self.remote.url)

    def publish(self, record: ArtifactRecord, manifest: dict[str, Any]) -> ArtifactRecord:
        """Share a new artifact; the record in force is the first publisher's (equivalent
        content, maybe other bytes: then the local copy goes, to be fetched when needed),
        unless what the first publisher left is damaged: this result then replaces it."""
        suffix = FORMATS[record.format].suffix
        payload = self.local.get(record.hash, suffix) or b""
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
            warn_once(f"write {self.remote.url}", "cached locally but not shared: %s", exc)
            return record
        if shared.checksum != record.checksum:
            self.local.delete(record.hash, suffix)
        return shared
