"""The rows the catalog stores and returns, and how it keeps time.

Times are naive UTC in the database on every engine, so both compare and sort them the
same way: ``timestamp without time zone`` on PostgreSQL, and on SQLite (which has no time
type) text as SQLAlchemy's ``DateTime`` writes it, microseconds always present, so text
order is time order. Python sees aware UTC values.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, fields
from typing import Any, NamedTuple


def utcnow() -> dt.datetime:
    """Naive UTC, as stored; aware values are made on the way out."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc)


def naive_utc(value: dt.datetime) -> dt.datetime:
    """As stored: a naive value is taken to be UTC already (never local time)."""
    return value if value.tzinfo is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def sqlite_time(value: dt.datetime) -> str:
    """A time as a SQLite catalog stores it."""
    return naive_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")


def stored_naive(value: str | dt.datetime) -> dt.datetime:
    """A stored time (SQLite's text or PostgreSQL's value) as the naive UTC it stands for."""
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


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
    input_key: str | None = None  # code and inputs, upstreams by content: what early cutoff finds it by
    watched: bool = False  # its computation was watched for undeclared inputs (`lwdp.hashing.tracked`)
    hits: int = 0  # how many times it was loaded (`lwdp.store.eviction` weighs it)


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
    input_kind: str  # "stage" | "raw" | "param" | "package" | "env" | "tracked" | "listing"
    input_hash: str
    input_path: str | None


class RunStage(NamedTuple):
    """What happened to one stage in one run (``run_stages``)."""

    stage: str
    hash: str
    outcome: str  # a StageEvent's outcome, or "failed"
    seconds: float | None
    bytes: int | None
    reason: str | None


@dataclass(frozen=True)
class RunRecord:
    """One run of a pipeline (``runs``), with its stages."""

    id: str
    target: str
    started_at: dt.datetime
    ended_at: dt.datetime
    outcome: str  # "succeeded" | "failed" | "interrupted"
    error: str | None
    host: str | None
    user_name: str | None
    lwdp_version: str | None
    stages: tuple[RunStage, ...] = ()


ARTIFACT_COLUMNS = tuple(field.name for field in fields(ArtifactRecord))
RUN_COLUMNS = tuple(field.name for field in fields(RunRecord) if field.name != "stages")
LINEAGE_COLUMNS = tuple(field.name for field in fields(LineageRow))  # and recorded_at


def record_from_row(row: tuple[Any, ...]) -> ArtifactRecord:
    """The record of an ``artifacts`` row selected as `ARTIFACT_COLUMNS`."""
    values = dict(zip(ARTIFACT_COLUMNS, row))
    values["read_options"] = json.loads(values["read_options"] or "{}")
    values["created_at"] = aware(stored_naive(values["created_at"]))
    values["last_access"] = aware(stored_naive(values["last_access"]))
    values["watched"] = bool(values["watched"])
    return ArtifactRecord(**values)


def artifact_values(record: ArtifactRecord) -> dict[str, Any]:
    """The ``artifacts`` row of a record, times naive UTC."""
    return {
        **record.__dict__,
        "read_options": json.dumps(record.read_options),
        "created_at": naive_utc(record.created_at),
        "last_access": naive_utc(record.last_access),
    }


def run_from_row(row: tuple[Any, ...], stages: tuple[RunStage, ...]) -> RunRecord:
    """The record of a ``runs`` row selected as `RUN_COLUMNS`."""
    values = dict(zip(RUN_COLUMNS, row))
    values["started_at"] = aware(stored_naive(values["started_at"]))
    values["ended_at"] = aware(stored_naive(values["ended_at"]))
    return RunRecord(**values, stages=stages)
