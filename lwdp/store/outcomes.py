"""What looking for a cached result finds: a `Loadable` result (and where), a `Hit` once
read, or a `Miss` with its reason as a typed value, which the run logs, ``explain()`` and
``lwdp status`` report, and nothing matches by its text.

Named tuples, not dataclasses: a warm run imports this module in every fresh process, and
a frozen dataclass costs ten times a named tuple to create (0.5 ms against 0.04 ms)."""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any, NamedTuple

from ..errors import StoreUnavailableError
from .connections import on_close
from .records import ArtifactRecord
from .shared_columns import read_artifact

logger = logging.getLogger("lwdp")


class Hit(NamedTuple):
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


class Miss(NamedTuple):
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


class Loadable(NamedTuple):
    """A result a call would load: its record, where it is, the local file's verified
    bytes when the probe was asked to keep them, and a shared artifact's manifest."""

    record: ArtifactRecord
    source: Source
    data: bytes | None = None
    manifest: dict[str, Any] | None = None
    sides: tuple[bytes, ...] = ()  # the verified bytes of the files it links (`shared_columns`)


def unavailable(exc: StoreUnavailableError) -> Miss:
    return Miss(MissReason.SHARED_UNAVAILABLE, warning=f"{exc}; computing what isn't cached locally")


def damage(stage_name: str, where: str, shared: bool, missing: bool) -> Miss:
    """The miss of an artifact file or object that is gone or not what its record says."""
    if missing:
        reason = MissReason.SHARED_MISSING if shared else MissReason.ARTIFACT_MISSING
    else:
        reason = MissReason.SHARED_CORRUPT if shared else MissReason.ARTIFACT_CORRUPT
    what = "missing" if missing else "corrupt (size or checksum mismatch)"
    return Miss(reason, warning=f"stage '{stage_name}': {where} is {what}; recomputing")


def parsed(
    stage_name: str, record: ArtifactRecord, data: bytes | None, where: str, shared: bool, sides: tuple[bytes, ...] = (),
) -> Hit | Miss:
    """The result ``record`` describes, from its verified bytes (and its linked files')."""
    try:
        value = read_artifact(record, data, sides)
    except Exception as exc:  # a checksum-valid file that no longer parses: recompute
        reason = MissReason.SHARED_UNREADABLE if shared else MissReason.ARTIFACT_UNREADABLE
        return Miss(reason, warning=f"stage '{stage_name}': {where} cannot be read ({exc}); recomputing")
    return Hit(value, record.size)


_WARNED: set[str] = set()
on_close(_WARNED.clear)


def warn_once(key: str, message: str, *args: Any) -> None:
    """A shared store that is down fails every request alike: say so once per process."""
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message, *args)
