"""The manifest beside each artifact (``<hash>.manifest.json``): what its catalog row says,
and what went into its hash, so a lost catalog row or a teammate's artifact can be
recorded again. A manifest may come from a shared store anyone can write to, so reading
one checks it field by field."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..formats import FORMATS
from .artifact_store import HASH
from .records import ArtifactRecord, utcnow



def manifest_of(record: ArtifactRecord, stage_manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the file beside an artifact says about it (times as ISO 8601 UTC), with what
    went into its hash when known."""
    manifest = dict(record.__dict__)
    manifest.pop("last_access")
    manifest.pop("hits")  # use, not content: it starts again at 0 wherever the file is adopted
    manifest["created_at"] = record.created_at.isoformat()
    if stage_manifest is not None:
        manifest["stage_manifest"] = stage_manifest
    return manifest


def stage_manifest_in(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The stage manifest an artifact's manifest carries (`lwdp.hashing.manifest`), if any."""
    stage_manifest = manifest.get("stage_manifest")
    return stage_manifest if isinstance(stage_manifest, dict) else None


def record_from_manifest(manifest: dict[str, Any], stage_hash: str | None = None) -> ArtifactRecord:
    """The catalog record a manifest describes, checked field by field.

    :raises ValueError: a field is missing or not what lwdp writes, or the manifest is of
        another hash than ``stage_hash``.
    """
    def field_of(name: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
        value = manifest.get(name)
        if (value is None and optional) or (isinstance(value, kind) and not isinstance(value, bool)):
            return value
        raise ValueError(f"manifest field {name!r} is {value!r}")

    found_hash = field_of("hash", str)
    if not HASH.fullmatch(found_hash) or (stage_hash is not None and found_hash != stage_hash):
        raise ValueError(f"manifest of hash {found_hash!r}, expected {stage_hash!r}")
    if field_of("format", str) not in FORMATS:
        raise ValueError(f"unknown format {manifest['format']!r}")
    if field_of("size", int) < 0 or not HASH.fullmatch(field_of("checksum", str)):
        raise ValueError("bad size or checksum")
    return ArtifactRecord(
        hash=found_hash, stage=field_of("stage", str), format=manifest["format"], size=manifest["size"],
        checksum=manifest["checksum"], read_options=field_of("read_options", dict),
        created_at=dt.datetime.fromisoformat(field_of("created_at", str)), last_access=utcnow(),
        compute_seconds=field_of("compute_seconds", (int, float), optional=True),
        lwdp_version=field_of("lwdp_version", str, optional=True),
        pandas_version=field_of("pandas_version", str, optional=True),
        input_key=_input_key(field_of("input_key", str, optional=True)),
        watched=manifest.get("watched") is True,
    )


def _input_key(value: str | None) -> str | None:
    if value is not None and not HASH.fullmatch(value):
        raise ValueError(f"manifest field 'input_key' is {value!r}")
    return value
