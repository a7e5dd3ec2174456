"""The catalog: every SQL statement lwdp runs, written once for SQLite and PostgreSQL.

Each statement is SQL text with named parameters that both engines accept (upserts are
``INSERT ... ON CONFLICT (...) DO UPDATE SET col = excluded.col``), run by the catalog's
`Database`: the cache directory's SQLite file through the standard library, so a run
never imports SQLAlchemy, or a team's PostgreSQL (``catalog_url``) through SQLAlchemy.
The migrations in ``migrations/`` own the schema (Alembic); `lwdp.store.records` names
the columns and keeps time. Each transaction is short: none is open while a stage
computes or a file is written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..config import Settings
from ..hashing.raw_files import DigestMemo, FileState
from ..hashing.tracked import TRACKED_KINDS, InputRow, TrackedReads
from .connections import on_close, on_fork
from .database import Database, Session, chunks, in_list
from .eviction import Candidate, Policy, eviction_order, recompute_seconds
from .sqlite_db import open_sqlite
from .records import (
    ARTIFACT_COLUMNS, LINEAGE_COLUMNS, RUN_COLUMNS, ArtifactRecord, LineageRow, RunRecord, RunStage, UsageRow,
    artifact_values, aware, naive_utc, record_from_row, run_from_row, stored_naive, utcnow,
)

__all__ = ["ArtifactRecord", "Catalog", "LineageRow", "UsageRow", "open_catalog", "utcnow"]

_MEMO_COLUMNS = (*FileState._fields, "digest", "digested_at_ns")
_USAGE = "hash, stage, format, size"


def _upsert(table: str, columns: Sequence[str], keys: Sequence[str], updated: Sequence[str] | None = None) -> str:
    """INSERT, or on a primary-key conflict UPDATE ``updated`` (all other columns by
    default) to the new row's values."""
    updated = updated if updated is not None else [c for c in columns if c not in keys]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in updated)}"
    )


_UPSERT_ARTIFACT = _upsert("artifacts", ARTIFACT_COLUMNS, ["hash"])
_UPSERT_MANIFEST = _upsert("stage_manifests", ["hash", "stage", "manifest", "recorded_at"], ["hash"], ["manifest", "recorded_at"])
_UPSERT_LINEAGE = _upsert("lineage", [*LINEAGE_COLUMNS, "recorded_at"], ["hash", "input_name"], ["recorded_at"])
_UPSERT_MEMO = _upsert("raw_files", _MEMO_COLUMNS, ["path"])
_INSERT_RUN = f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join(':' + c for c in RUN_COLUMNS)})"
_INSERT_RUN_STAGE = (
    f"INSERT INTO run_stages (run_id, position, {', '.join(RunStage._fields)}) "
    f"VALUES (:run_id, :position, {', '.join(':' + c for c in RunStage._fields)})"
)
_SELECT_RUNS = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
_SELECT_ARTIFACTS = f"SELECT {', '.join(ARTIFACT_COLUMNS)} FROM artifacts"
_SELECT_LINEAGE = f"SELECT {', '.join(LINEAGE_COLUMNS)} FROM lineage"
_TRACKED_KINDS = "('" + "', '".join(TRACKED_KINDS) + "')"
# Of the stage's other hashes, the one whose artifact was used last, else the one computed last.
_PREVIOUS_MANIFEST = (
    "SELECT m.manifest FROM stage_manifests AS m LEFT OUTER JOIN artifacts AS a ON a.hash = m.hash "
    "WHERE m.stage = :stage AND m.hash != :current "
    "ORDER BY a.last_access IS NULL, a.last_access DESC, m.recorded_at DESC LIMIT 1"
)


class Catalog:
    """The artifacts, lineage and digest memo of one cache directory (or a team's)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.path = db.path  # for messages

    def is_current(self) -> bool:
        """False once the catalog was replaced under this process (a SQLite file deleted)."""
        return self.db.is_current()

    # artifacts

    def lookup_artifact(self, stage_hash: str) -> ArtifactRecord | None:
        with self.db.read() as s:
            row = _first(s, f"{_SELECT_ARTIFACTS} WHERE hash = :hash", {"hash": stage_hash})
        return None if row is None else record_from_row(row)

    def all_artifacts(self, stage: str | None = None) -> list[ArtifactRecord]:
        """Every artifact row (of one stage), newest first."""
        where = "" if stage is None else " WHERE stage = :stage"
        with self.db.read() as s:
            rows = list(s.rows(f"{_SELECT_ARTIFACTS}{where} ORDER BY created_at DESC", {"stage": stage} if stage else None))
        return [record_from_row(row) for row in rows]

    def keyed_by_inputs(self, stage: str) -> bool:
        """Whether any artifact of ``stage`` has an input key: early cutoff has something
        to find (a stage computed only before cutoff existed, or never, has not)."""
        with self.db.read() as s:
            found = _first(s, "SELECT 1 FROM artifacts WHERE stage = :stage AND input_key IS NOT NULL LIMIT 1", {"stage": stage})
        return found is not None

    def with_input_key(self, stage: str, input_key: str) -> list[ArtifactRecord]:
        """The artifacts of ``stage`` computed from these inputs (`ArtifactRecord.input_key`),
        newest first."""
        with self.db.read() as s:
            rows = list(s.rows(
                f"{_SELECT_ARTIFACTS} WHERE stage = :stage AND input_key = :key ORDER BY created_at DESC",
                {"stage": stage, "key": input_key},
            ))
        return [record_from_row(row) for row in rows]

    def listed_formats(self) -> dict[str, str]:
        """{hash: format} of every artifact row: what gc compares with the files."""
        with self.db.read() as s:
            return {h: fmt for h, fmt in s.rows("SELECT hash, format FROM artifacts")}

    def total_size(self, excluding: Iterable[str] = ()) -> int:
        """The bytes of every artifact row but those of ``excluding``."""
        with self.db.read() as s:
            return _total_size(s, "1 = 1", {}, excluding)

    def usage_rows(self, hashes: Iterable[str]) -> list[UsageRow]:
        """The rows of these hashes, as gc reports them."""
        rows: list[UsageRow] = []
        with self.db.read() as s:
            for chunk in chunks(sorted(hashes)):
                params: dict[str, Any] = {}
                rows.extend(UsageRow._make(row) for row in s.rows(f"SELECT {_USAGE} FROM artifacts WHERE hash IN {in_list(chunk, params)}", params))
        return rows

    def eviction_victims(
        self, expired_before: dt.datetime | None, budget: int | None, ignore: set[str],
        policy: Policy = "lru", keep: frozenset[str] = frozenset(),
    ) -> list[tuple[UsageRow, str]]:
        """The rows gc evicts, and why: "expired" (last used before ``expired_before``), then,
        while the others exceed ``budget`` bytes, those the ``policy`` gives up first
        (`lwdp.store.eviction`), the reason naming it. Rows in ``ignore`` neither go nor
        count; rows in ``keep`` count and never go.

        With "lru" the cost grows with the victims, not with the catalog: one SUM over the
        recency index, then a walk of it from the oldest row (it covers every column read)
        that stops once enough bytes are freed (listing all million rows took 9 s). "cost"
        weighs every row, so it reads them all, and the lineage of their stages.
        """
        cutoff = {"cutoff": naive_utc(expired_before)} if expired_before is not None else {}
        kept = "last_access >= :cutoff" if cutoff else "1 = 1"
        victims: list[tuple[UsageRow, str]] = []
        with self.db.read() as s:
            if cutoff:
                expired = s.rows(f"SELECT {_USAGE} FROM artifacts WHERE last_access < :cutoff", cutoff)
                victims += [(UsageRow._make(row), "expired") for row in expired if row[0] not in ignore | keep]
            if budget is None:
                return victims
            excess = _total_size(s, kept, cutoff, ignore) - budget
            if excess <= 0:
                return victims
            if policy == "lru":
                order: Iterable[UsageRow] = (
                    UsageRow._make(row)
                    for row in s.rows(f"SELECT {_USAGE} FROM artifacts WHERE {kept} ORDER BY last_access ASC", cutoff, stream=True)
                )
            else:
                order = (
                    UsageRow(c.hash, c.stage, c.format, c.size)
                    for c in eviction_order(self._candidates(s, kept, cutoff), policy, naive_utc(utcnow()))
                )
            for row in order:
                if row.hash in ignore or row.hash in keep:
                    continue
                victims.append((row, policy))
                excess -= row.size
                if excess <= 0:
                    break
        return victims

    def _candidates(self, s: Session, kept: str, params: dict[str, Any]) -> list[Candidate]:
        """Every artifact row, weighed as the cost policy weighs it: its compute seconds and
        those of the ancestors that would have to run again (lineage), each stage's typical
        time standing in for an ancestor that has no artifact."""
        rows = list(s.rows(f"SELECT hash, stage, format, size, hits, last_access, compute_seconds FROM artifacts WHERE {kept}", params))
        own = {row[0]: row[6] for row in rows}
        inputs: dict[str, list[str]] = {}
        stage_of: dict[str, str] = {}
        for stage_hash, stage, upstream in s.rows("SELECT hash, stage, input_hash FROM lineage WHERE input_kind = 'stage'"):
            inputs.setdefault(stage_hash, []).append(upstream)
            stage_of[stage_hash] = stage
        typical = {stage: float(seconds) for stage, seconds in s.rows(
            "SELECT stage, AVG(compute_seconds) FROM artifacts WHERE compute_seconds IS NOT NULL GROUP BY stage"
        )}
        costs = recompute_seconds(own, inputs, stage_of, typical)
        return [
            Candidate(stage_hash, stage, fmt, int(size), int(hits), stored_naive(last_access), costs[stage_hash])
            for stage_hash, stage, fmt, size, hits, last_access, _ in rows
        ]

    def record_artifact(
        self, record: ArtifactRecord, stage_manifest: dict[str, Any] | None = None, tracked: list[InputRow] | None = None,
    ) -> None:
        """Insert or replace an artifact's row and, when given, its stage hash's manifest
        (`lwdp.hashing.manifest`) and what its computation read (`record_tracked`), in one
        transaction."""
        self.record_artifacts(
            [record], {record.hash: stage_manifest} if stage_manifest else None,
            {record.hash: (record.stage, tracked)} if tracked is not None else None,
        )

    def record_artifacts(
        self, records: Iterable[ArtifactRecord], stage_manifests_by_hash: dict[str, dict[str, Any]] | None = None,
        tracked: dict[str, tuple[str, list[InputRow]]] | None = None,
    ) -> None:
        """Insert or replace artifact rows, stage manifests and tracked reads, in one transaction."""
        values = _in_key_order([artifact_values(record) for record in records], "hash")
        if not values:
            return
        stages = {row["hash"]: row["stage"] for row in values}
        now = utcnow()
        manifests = _in_key_order([
            {"hash": h, "stage": stages[h], "manifest": json.dumps(m, sort_keys=True, ensure_ascii=False), "recorded_at": now}
            for h, m in (stage_manifests_by_hash or {}).items()
        ], "hash")
        with self.db.write() as s:
            s.run_many(_UPSERT_ARTIFACT, values)
            if manifests:
                s.run_many(_UPSERT_MANIFEST, manifests)
            if tracked:
                _replace_tracked(s, tracked)

    def last_access(self, stage_hash: str) -> dt.datetime | None:
        """When the artifact was last used (naive UTC), or None without a row."""
        with self.db.read() as s:
            found = _first(s, "SELECT last_access FROM artifacts WHERE hash = :hash", {"hash": stage_hash})
        return None if found is None else stored_naive(found[0])

    def mark_used(self, used: Iterable[str], evaluated: Iterable[str], now: dt.datetime, run: RunRecord | None = None) -> None:
        """One write transaction: the artifacts read get ``now`` as last access and one more
        hit, the lineage of the stage hashes evaluated becomes the most recent of their
        stages, and the run goes into the history."""
        now = naive_utc(now)
        with self.db.write() as s:
            if run is not None:
                values = {c: getattr(run, c) for c in RUN_COLUMNS}
                s.run(_INSERT_RUN, {**values, "started_at": naive_utc(run.started_at), "ended_at": naive_utc(run.ended_at)})
                if run.stages:
                    s.run_many(_INSERT_RUN_STAGE, [
                        {"run_id": run.id, "position": position, **stage._asdict()} for position, stage in enumerate(run.stages)
                    ])
            for table, moved, hashes in (
                ("artifacts", "last_access = :now, hits = hits + 1", used), ("lineage", "recorded_at = :now", evaluated),
            ):
                for chunk in chunks(sorted(hashes)):
                    params: dict[str, Any] = {"now": now}
                    s.run(f"UPDATE {table} SET {moved} WHERE hash IN {in_list(chunk, params)}", params)

    def runs(self, limit: int, stage: str | None = None) -> list[RunRecord]:
        """The newest ``limit`` runs, newest first, with their stages; those in which
        ``stage`` was loaded or computed (and only its row), if given."""
        params: dict[str, Any] = {"limit": limit}
        query = _SELECT_RUNS
        if stage is not None:
            params["stage"] = stage
            query += " WHERE id IN (SELECT run_id FROM run_stages WHERE stage = :stage)"
        with self.db.read() as s:
            found = list(s.rows(f"{query} ORDER BY started_at DESC, id LIMIT :limit", params))
        columns = ", ".join(f"s.{field}" for field in RunStage._fields)
        stages: dict[str, list[RunStage]] = {}
        for run_id, *values in self._run_stages(f"s.run_id, {columns}", "run_id", [row[0] for row in found], "s.run_id, s.position"):
            if stage is None or values[0] == stage:
                stages.setdefault(run_id, []).append(RunStage(*values))
        return [run_from_row(row, tuple(stages.get(row[0], ()))) for row in found]

    def computations(self, stages: Sequence[str]) -> dict[str, list[tuple[float | None, int | None]]]:
        """(seconds, bytes) of each time these stages were computed and cached, newest first."""
        found: dict[str, list[tuple[float | None, int | None]]] = {}
        for stage, seconds, size in self._run_stages("s.stage, s.seconds, s.bytes", "stage", stages, "r.started_at DESC",
                                                     "s.outcome = 'computed'"):
            found.setdefault(stage, []).append((seconds, size))
        return found

    def evaluations(self, hashes: Sequence[str]) -> dict[str, tuple[str, str | None, dt.datetime]]:
        """The outcome, reason and end of the newest run that loaded or computed each hash."""
        return {
            stage_hash: (outcome, reason, aware(stored_naive(ended_at)))
            for stage_hash, outcome, reason, ended_at in self._run_stages("s.hash, s.outcome, s.reason, r.ended_at", "hash",
                                                                          hashes, "r.ended_at")
        }

    def _run_stages(self, columns: str, key: str, values: Sequence[str], order: str, where: str = "1 = 1") -> list[tuple[Any, ...]]:
        """``columns`` of the run stages (``s``, with their run ``r``) whose ``key`` is one of ``values``."""
        found: list[tuple[Any, ...]] = []
        with self.db.read() as s:
            for chunk in chunks(sorted(set(values))):
                params: dict[str, Any] = {}
                found += s.rows(
                    f"SELECT {columns} FROM run_stages AS s JOIN runs AS r ON r.id = s.run_id "
                    f"WHERE {where} AND s.{key} IN {in_list(chunk, params)} ORDER BY {order}", params,
                )
        return found

    def forget_runs(self, keep: int, dry_run: bool = False) -> int:
        """Forget all but the newest ``keep`` runs; how many were (or would be) forgotten."""
        older = "started_at <= (SELECT started_at FROM runs ORDER BY started_at DESC LIMIT 1 OFFSET :keep)"
        with self.db.write() as s:
            [(count,)] = s.rows(f"SELECT count(*) FROM runs WHERE {older}", {"keep": keep})
            if count and not dry_run:
                s.run(f"DELETE FROM run_stages WHERE run_id IN (SELECT id FROM runs WHERE {older})", {"keep": keep})
                s.run(f"DELETE FROM runs WHERE {older}", {"keep": keep})
        return int(count)

    def run_stage_names(self) -> list[str]:
        with self.db.read() as s:
            return sorted(stage for (stage,) in s.rows("SELECT DISTINCT stage FROM run_stages"))

    def delete_artifact(self, stage_hash: str) -> None:
        with self.db.write() as s:
            s.run("DELETE FROM artifacts WHERE hash = :hash", {"hash": stage_hash})

    # lineage

    def record_lineage(self, rows: Iterable[LineageRow]) -> None:
        """Record each input of each evaluated stage hash; ``recorded_at`` becomes now, so the
        newest ``recorded_at`` of a stage names its most recently evaluated hash."""
        now = utcnow()
        values = sorted(({**row.__dict__, "recorded_at": now} for row in rows), key=lambda v: (v["hash"], v["input_name"]))
        if values:
            with self.db.write() as s:
                s.run_many(_UPSERT_LINEAGE, values)

    def record_tracked(self, stage_hash: str, stage: str, rows: list[InputRow]) -> None:
        """Make ``rows`` (`lwdp.hashing.tracked`: what a computation of ``stage_hash`` read
        undeclared) the only ones recorded for that hash."""
        with self.db.write() as s:
            _replace_tracked(s, {stage_hash: (stage, rows)})

    def tracked_inputs(self, stages: list[str]) -> TrackedReads:
        """The tracked reads of every hash of these stages that has them, or was computed
        watched (an empty list), and each stage's latest."""
        found = TrackedReads({}, {})
        latest: dict[str, tuple[Any, str]] = {}
        with self.db.read() as s:
            for chunk in chunks(sorted(set(stages))):
                params: dict[str, Any] = {}
                query = (
                    "SELECT stage, hash, recorded_at, input_name, input_kind, input_hash, input_path FROM lineage "
                    f"WHERE input_kind IN {_TRACKED_KINDS} AND stage IN {in_list(chunk, params)} ORDER BY hash, input_name"
                )
                for stage, stage_hash, recorded_at, name, kind, digest, path in s.rows(query, params):
                    found.by_hash.setdefault(stage_hash, []).append((name, kind, digest, path))
                    if stage not in latest or (stored_naive(recorded_at), stage_hash) > latest[stage]:
                        latest[stage] = (stored_naive(recorded_at), stage_hash)
                query = f"SELECT hash FROM artifacts WHERE watched AND stage IN {in_list(chunk, params)}"
                for (stage_hash,) in s.rows(query, params):
                    found.by_hash.setdefault(stage_hash, [])
        found.latest.update({stage: found.by_hash[stage_hash] for stage, (_, stage_hash) in latest.items()})
        return found

    def hashes_with_lineage(self, hashes: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self.db.read() as s:
            for chunk in chunks(hashes):
                params: dict[str, Any] = {}
                found.update(h for (h,) in s.rows(f"SELECT DISTINCT hash FROM lineage WHERE hash IN {in_list(chunk, params)}", params))
        return found

    def previous_manifest(self, stage: str, current: str) -> tuple[bool, dict[str, Any] | None]:
        """(whether a result of ``current`` was stored before, the manifest to explain its
        absence against): of the stage's other hashes, the one whose artifact was used last,
        else the one computed last."""
        with self.db.read() as s:
            seen = _first(s, "SELECT 1 FROM stage_manifests WHERE hash = :hash", {"hash": current}) is not None
            found = _first(s, _PREVIOUS_MANIFEST, {"stage": stage, "current": current})
        return seen, json.loads(found[0]) if found is not None else None

    def stage_manifest(self, stage_hash: str) -> dict[str, Any] | None:
        """The manifest recorded for ``stage_hash`` (`lwdp.hashing.manifest`), if any."""
        with self.db.read() as s:
            found = _first(s, "SELECT manifest FROM stage_manifests WHERE hash = :hash", {"hash": stage_hash})
        return json.loads(found[0]) if found is not None else None

    def stage_names(self) -> set[str]:
        """Every stage name the catalog has seen (in lineage or artifacts)."""
        with self.db.read() as s:
            return {name for (name,) in s.rows("SELECT stage FROM lineage UNION SELECT stage FROM artifacts")}

    def hashes_with_prefix(self, prefix: str) -> dict[str, str]:
        """{hash: stage} of every recorded stage hash starting with ``prefix``."""
        query = (
            "SELECT hash, stage FROM lineage WHERE hash LIKE :pattern "
            "UNION SELECT hash, stage FROM artifacts WHERE hash LIKE :pattern"
        )
        with self.db.read() as s:
            return {h: name for h, name in s.rows(query, {"pattern": prefix.lower() + "%"})}

    def latest_hash(self, stage: str) -> str | None:
        """The stage's most recently evaluated hash (else its newest artifact's)."""
        with self.db.read() as s:
            for query in (
                "SELECT hash FROM lineage WHERE stage = :stage ORDER BY recorded_at DESC LIMIT 1",
                "SELECT hash FROM artifacts WHERE stage = :stage ORDER BY created_at DESC LIMIT 1",
            ):
                found = _first(s, query, {"stage": stage})
                if found is not None:
                    return str(found[0])
        return None

    def inputs_of(self, stage_hashes: Iterable[str]) -> list[LineageRow]:
        """The lineage rows of these stage hashes and of all their ancestors."""
        params: dict[str, Any] = {}
        seeds = list(stage_hashes)
        if not seeds:
            return []
        query = (
            f"WITH RECURSIVE ancestry(hash) AS (SELECT DISTINCT hash FROM lineage WHERE hash IN {in_list(seeds, params)} "
            "UNION SELECT l.input_hash FROM lineage AS l JOIN ancestry AS a ON l.hash = a.hash WHERE l.input_kind = 'stage') "
            f"{_SELECT_LINEAGE} WHERE hash IN (SELECT hash FROM ancestry)"
        )
        with self.db.read() as s:
            return [LineageRow(*row) for row in s.rows(query, params)]

    def raw_inputs(self) -> list[LineageRow]:
        """Every recorded raw input of every stage hash."""
        with self.db.read() as s:
            return [LineageRow(*row) for row in s.rows(f"{_SELECT_LINEAGE} WHERE input_kind = 'raw'")]

    def consumers(self, stage_hash: str) -> set[str]:
        """The stage hashes that take ``stage_hash``'s result as an input."""
        with self.db.read() as s:
            return {h for (h,) in s.rows("SELECT DISTINCT hash FROM lineage WHERE input_hash = :hash AND input_kind = 'stage'", {"hash": stage_hash})}

    def descendants(self, stage_hashes: Iterable[str]) -> list[tuple[str, str, int]]:
        """(hash, stage, depth) of every stage hash derived from these, transitively (depth 1 =
        a direct consumer)."""
        params: dict[str, Any] = {}
        seeds = list(stage_hashes)
        if not seeds:
            return []
        query = (
            "WITH RECURSIVE derived(hash, depth) AS ("
            f"SELECT DISTINCT hash, 0 FROM lineage WHERE hash IN {in_list(seeds, params)} "
            "UNION SELECT l.hash, d.depth + 1 FROM lineage AS l JOIN derived AS d "
            "ON l.input_hash = d.hash AND l.input_kind = 'stage') "
            "SELECT d.hash, l.stage, MIN(d.depth) FROM derived AS d JOIN lineage AS l ON l.hash = d.hash GROUP BY d.hash, l.stage"
        )
        with self.db.read() as s:
            return [(h, name, int(depth)) for h, name, depth in s.rows(query, params)]

    # raw-file digest memo

    def load_digest_memos(self, paths: list[str]) -> dict[str, DigestMemo]:
        memos: dict[str, DigestMemo] = {}
        with self.db.read() as s:
            for chunk in chunks(paths):
                params: dict[str, Any] = {}
                query = f"SELECT {', '.join(_MEMO_COLUMNS)} FROM raw_files WHERE path IN {in_list(chunk, params)}"
                for path, size, mtime_ns, ctime_ns, inode, digest, at_ns in s.rows(query, params):
                    memos[path] = DigestMemo(FileState(path, size, mtime_ns, ctime_ns, inode), digest, at_ns)
        return memos

    def save_digest_memos(self, memos: list[DigestMemo]) -> None:
        values = _in_key_order([
            {**memo.state._asdict(), "digest": memo.digest, "digested_at_ns": memo.digested_at_ns} for memo in memos
        ], "path")
        if values:
            with self.db.write() as s:
                s.run_many(_UPSERT_MEMO, values)


def _total_size(s: Session, where: str, params: dict[str, Any], excluding: Iterable[str]) -> int:
    """The bytes of the artifact rows ``where`` selects, but those of ``excluding``: one
    SUM over the recency index, less the excluded rows', chunk by chunk."""
    (total,), = s.rows(f"SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE {where}", params)
    for chunk in chunks(sorted(excluding)):
        chunk_params = dict(params)
        (excluded,), = s.rows(f"SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE {where} AND hash IN {in_list(chunk, chunk_params)}", chunk_params)
        total -= excluded
    return int(total)


def _replace_tracked(s: Session, tracked: dict[str, tuple[str, list[InputRow]]]) -> None:
    """Make these rows the only tracked reads recorded for each hash."""
    now = utcnow()
    for stage_hash, (stage, rows) in sorted(tracked.items()):
        s.run(f"DELETE FROM lineage WHERE hash = :hash AND input_kind IN {_TRACKED_KINDS}", {"hash": stage_hash})
        values = sorted(
            ({"hash": stage_hash, "stage": stage, "input_name": name, "input_kind": kind, "input_hash": digest,
              "input_path": path, "recorded_at": now} for name, kind, digest, path in rows),
            key=lambda v: str(v["input_name"]),
        )
        if values:
            s.run_many(_UPSERT_LINEAGE, values)


def _first(session: Session, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The first row of a query, or None."""
    return next(iter(session.rows(sql, params)), None)


def _in_key_order(values: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows by primary key: concurrent upserts on PostgreSQL lock rows in one order, so
    they never deadlock."""
    return sorted(values, key=lambda row: row[key])


_catalogs: dict[tuple[int, Path | str], Catalog] = {}
_opening = threading.Lock()


@on_close
def _close_catalogs() -> None:
    with _opening:
        for catalog in _catalogs.values():
            catalog.db.close()
        _catalogs.clear()


_inherited: list[Catalog] = []


@on_fork
def _forget_inherited() -> None:
    """A forked child makes its own connections; the parent's stay open, unused, for the
    parent (closing them here would touch the parent's transactions). The lock is made
    anew: another thread of the parent may have held it at the fork."""
    global _opening
    _inherited.extend(_catalogs.values())
    _catalogs.clear()
    _opening = threading.Lock()


def open_catalog(settings: Settings) -> Catalog:
    """The catalog these settings name, for this process: the database at ``catalog_url``
    when one is set, else the cache directory's SQLite file (made at the head schema when
    missing, migrated when older).

    :raises CacheDirError: the directory or its SQLite catalog cannot be created or opened.
    :raises CatalogUnavailableError: the ``catalog_url`` database can't be reached or used.
    :raises CatalogVersionError: the catalog was made by a newer lwdp.
    :raises MissingExtraError: a PostgreSQL catalog without psycopg installed.
    """
    url, cache_dir = settings.catalog_url, settings.cache_dir
    key = (os.getpid(), url or cache_dir)
    catalog = _catalogs.get(key)
    if catalog is not None and catalog.is_current():
        return catalog
    with _opening:  # one opening (and migration) of a catalog at a time
        catalog = _catalogs.get(key)
        if catalog is None or not catalog.is_current():
            if catalog is not None:
                catalog.db.close()
            catalog = _catalogs[key] = Catalog(_open_database(url, cache_dir))
    return catalog


def _open_database(url: str | None, cache_dir: Path) -> Database:
    if url is None:
        return open_sqlite(cache_dir)
    from .postgres_db import open_postgres  # SQLAlchemy: not imported on a SQLite catalog

    return open_postgres(url)
