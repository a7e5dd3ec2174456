"""Adoption: an artifact file whose catalog row was lost (a deleted or damaged catalog, a
copied cache directory) is listed again, from its manifest, once its bytes match it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..formats import FORMATS
from .artifact_manifest import record_from_manifest, stage_manifest_in
from .artifact_store import LocalArtifactStore
from .records import ArtifactRecord
from .shared_columns import check_files

if TYPE_CHECKING:
    from .catalog import Catalog


def adoptable(store: LocalArtifactStore, stage_hash: str) -> ArtifactRecord | None:
    """The record an unlisted artifact file would get, if its manifest and bytes agree."""
    manifest = store.read_manifest(stage_hash)
    try:
        record = record_from_manifest(manifest) if manifest is not None else None
    except (KeyError, TypeError, ValueError):
        return None
    if record is None or record.format not in FORMATS:
        return None
    return record if check_files(store, record, keep_bytes=False).intact else None


def local_stage_manifest(store: LocalArtifactStore, stage_hash: str) -> dict[str, Any] | None:
    """The stage manifest in the manifest file beside a local artifact, if any."""
    return stage_manifest_in(store.read_manifest(stage_hash) or {})


def adopt(catalog: Catalog, store: LocalArtifactStore, record: ArtifactRecord) -> None:
    """List an adoptable artifact in the catalog again, with its stage manifest if the
    file beside it has one (so explanations survive a lost catalog)."""
    catalog.record_artifact(record, local_stage_manifest(store, record.hash))
