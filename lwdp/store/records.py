"""The rows the catalog stores and returns, and how it keeps time.

Times are naive UTC in the database on every engine (SQLite has no time zones, and the
``DateTime`` columns are ``timestamp without time zone`` on PostgreSQL), so both compare
and sort them the same way; Python sees aware UTC values.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, NamedTuple


def utcnow() -> dt.datetime:
    """Naive UTC, as stored; aware values are made on the way out."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc)


def naive_utc(value: dt.datetime) -> dt.datetime:
    """As stored: a naive value is taken to be UTC already (never local time)."""
    return value if value.tzinfo is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class ArtifactRecord:
    """One catalog row of ``artifacts``."""

    hash: str
    stage: str
    format: str
    size: int
    checksum: str
    read_options: dict[str, Any]
    created_at: dt.datetime
    last_access: dt.datetime
    compute_seconds: float | None = None
    lwdp_version: str | None = None
    pandas_version: str | None = None


class UsageRow(NamedTuple):
    """What gc needs to know about an artifact (a tuple: gc may list a million)."""

    hash: str
    stage: str
    format: str
    size: int


@dataclass(frozen=True)
class LineageRow:
    """One input of one evaluated stage."""

    hash: str
    stage: str
    input_name: str
    input_kind: str  # "stage" | "raw" | "param" | "package"
    input_hash: str
    input_path: str | None


def lineage_row(row: Any) -> LineageRow:
    return LineageRow(row["hash"], row["stage"], row["input_name"], row["input_kind"], row["input_hash"], row["input_path"])


def record_from_row(row: Any) -> ArtifactRecord:
    values = dict(row)
    values["read_options"] = json.loads(values["read_options"] or "{}")
    values["created_at"] = aware(values["created_at"])
    values["last_access"] = aware(values["last_access"])
    return ArtifactRecord(**values)


def artifact_values(record: ArtifactRecord) -> dict[str, Any]:
    """The ``artifacts`` row of a record, times naive UTC."""
    return {
        **record.__dict__,
        "read_options": json.dumps(record.read_options),
        "created_at": naive_utc(record.created_at),
        "last_access": naive_utc(record.last_access),
    }
