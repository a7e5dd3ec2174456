"""Contract suites: one set of behaviour tests over every artifact store and every catalog
path, so that implementations can't drift apart. A new backend is one line of `STORES`,
`ARTIFACT_STORES` or `CATALOGS`; a test ID names the backend.

- `STORES`: where a team's artifacts live (the local cache alone, a ``file://`` or an S3
  shared store, S3 with a PostgreSQL catalog), held to what a user sees, in fresh
  processes: a small pipeline (a raw CSV, then a parquet, a csv and a pickle stage) run
  cold and warm, by a second member, after damage to a local file or a shared object,
  after ``lwdp gc``; ``lwdp verify`` on the result; ``explain()`` before every call must
  agree with the call.
- `ARTIFACT_STORES`: the `ArtifactStore` interface the local cache and every shared store
  implement (local, ``file://``, ``memory://``, S3), method by method, in this process.
- `CATALOGS`: each path to the catalog (a run's, with its marks of use deferred to its end,
  on a catalog it finds or makes at the head schema; upkeep's; a file the Alembic
  migrations made; the run's and upkeep's on PostgreSQL), method by method: whatever one path writes, every path over the same database reads back
  identically, and every database gives back what was written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import fsspec
import pytest
import xxhash
from conftest import Project, RunResult
from sqlalchemy import make_url

import lwdp
from lwdp import config
from lwdp.hashing.raw_files import DigestMemo, FileState
from lwdp.formats import FORMATS
from lwdp.store.artifact_store import ArtifactStore, LocalArtifactStore
from lwdp.run.context import RunContext
from lwdp.store.catalog import Catalog, open_catalog
from lwdp.store.migrate import migrate_sqlite
from lwdp.store.records import ArtifactRecord, LineageRow, UsageRow
from lwdp.store.remote import RemoteArtifactStore

# ---------------------------------------------------------------------------------------
# Artifact stores


@dataclass(frozen=True)
class StoreBackend:
    """Where a team's artifacts live, as a run sees it: the environment of every process,
    and the shared store (fsspec's filesystem and the store's root path) if there is one."""

    env: dict[str, str]
    shared_fs: Any = None
    shared_root: str | None = None
    shared_catalog: bool = False  # a team catalog: gc evicts from the shared store too

    @property
    def shared(self) -> bool:
        return self.shared_fs is not None

    def shared_key(self, stage_hash: str, fmt: str) -> str:
        return f"{self.shared_root}/{stage_hash[:2]}/{stage_hash}.{FORMATS[fmt].suffix}"

    def shared_objects(self) -> list[str]:
        """Every object under the store's root (not the folder markers some servers leave)."""
        if not self.shared:
            return []
        return sorted(k for k in self.shared_fs.find(self.shared_root) if "." in k.rsplit("/", 1)[-1])


def _local_only(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    return StoreBackend({})


def _file_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    shared = tmp_path / "shared"
    return StoreBackend({"LWDP_STORE_URL": shared.as_uri()}, fsspec.filesystem("file"), str(shared))


def _s3_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    s3_server, bucket = request.getfixturevalue("s3_server"), request.getfixturevalue("bucket")
    env = {**s3_server.env, "LWDP_STORE_URL": f"s3://{bucket}/lwdp"}
    return StoreBackend(env, s3_server.filesystem(), f"{bucket}/lwdp")


def _s3_and_postgres(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    """The README's team set-up: the store on S3 and the catalog on PostgreSQL."""
    s3 = _s3_store(request, tmp_path)
    return StoreBackend({**s3.env, "LWDP_CATALOG_URL": request.getfixturevalue("pg_url")}, s3.shared_fs, s3.shared_root, True)


# (memory:// is no entry: it lives in one process, and these contracts run many.)
STORES = [
    pytest.param(_local_only, id="local"),
    pytest.param(_file_store, id="file"),
    pytest.param(_s3_store, id="s3"),
    pytest.param(_s3_and_postgres, id="s3+postgres", marks=pytest.mark.slow),  # the README's team set-up
]


SHARED_STORES = [param for param in STORES if param.values[0] is not _local_only]


def _made(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    # Pickles this team computed are trusted (the pickle stage must be shareable).
    made = request.param(request, tmp_path)
    return StoreBackend({**made.env, "LWDP_TRUST_PICKLE": "1"}, made.shared_fs, made.shared_root, made.shared_catalog)


@pytest.fixture(params=STORES)
def backend(request: pytest.FixtureRequest, project: Project, tmp_path: Path) -> StoreBackend:
    return _made(request, tmp_path)


@pytest.fixture(params=SHARED_STORES)
def shared_backend(request: pytest.FixtureRequest, project: Project, tmp_path: Path) -> StoreBackend:
    """The contracts of what only a shared store has."""
    return _made(request, tmp_path)


PIPELINE = '''
import json
import logging
import sys

import pandas as pd
from lwdp import stage


class Collect(logging.Handler):
    """Each call's stage events and warnings, in order."""

    def __init__(self):
        super().__init__()
        self.events, self.warnings = [], []

    def emit(self, record):
        event = getattr(record, "lwdp_event", None)
        if event is not None:
            self.events.append({"stage": event.stage, "hash": event.hash, "outcome": event.outcome, "reason": event.reason})
        elif record.levelno >= logging.WARNING:
            self.warnings.append(record.getMessage())


collect = Collect()
logging.getLogger("lwdp").addHandler(collect)
logging.getLogger("lwdp").setLevel(logging.INFO)


@stage(src="raw/orders.csv", cache=True)
def stg_orders(src):
    return pd.read_csv(src, dtype={"sku": "string"})


@stage(orders=stg_orders, rate=0.125, cache=True, cache_format="csv")
def stg_priced(orders, rate):
    orders["net"] = orders["qty"] * orders["price"] * (1 - rate)
    orders["day"] = pd.to_datetime(orders["day"])
    return orders


@stage(priced=stg_priced, cache=True, cache_format="pickle")
def stg_totals(priced):
    by_sku = priced.groupby("sku")["net"].sum()
    return {"rows": len(priced), "net": float(priced["net"].sum()), "by_sku": {k: float(v) for k, v in by_sku.items()}}


def shown(value):
    """Everything a result holds, exactly (floats by repr)."""
    if isinstance(value, pd.DataFrame):
        dtypes = {c: str(t) for c, t in value.dtypes.items()}
        return repr({"dtypes": dtypes, "index": value.index.tolist(), "columns": value.to_dict("list")})
    return repr(value)


for target in (stg_orders, stg_priced, stg_totals):
    explained = str(target.explain()) if "--explain" in sys.argv else None
    collect.events.clear()
    collect.warnings.clear()
    result = target()
    print("CALL " + json.dumps({
        "stage": target.name, "explained": explained, "events": collect.events, "warnings": collect.warnings, "result": shown(result),
    }))
'''
ORDERS_CSV = "day,sku,qty,price\n2024-01-01,007,3,1.1\n2024-01-01,A-2,1,19.99\n2024-01-02,007,5,1.1\n2024-01-03,NA,2,0.3\n"
STAGES = {"pipeline.stg_orders": "parquet", "pipeline.stg_priced": "csv", "pipeline.stg_totals": "pickle"}
GONE = "its result was cached before and is gone (evicted by gc or deleted)"


@dataclass
class Calls:
    """One run of the pipeline: per stage called (in order), what explain() said before the
    call, the call's events and warnings, and its result as printed."""

    calls: dict[str, dict[str, Any]]

    def own_events(self) -> dict[str, dict[str, Any]]:
        """Each called stage's own event in its call (its ancestors' are other events)."""
        return {name: next(e for e in call["events"] if e["stage"] == name) for name, call in self.calls.items()}

    def computed(self) -> set[str]:
        return {e["stage"] for call in self.calls.values() for e in call["events"] if e["outcome"] == "computed"}

    def outcomes(self) -> dict[str, str]:
        return {name: event["outcome"] for name, event in self.own_events().items()}

    def reasons(self) -> dict[str, str | None]:
        return {name: event["reason"] for name, event in self.own_events().items()}

    def results(self) -> dict[str, str]:
        return {name: call["result"] for name, call in self.calls.items()}

    def hashes(self) -> dict[str, str]:
        return {name: event["hash"] for name, event in self.own_events().items()}

    def warnings(self) -> list[str]:
        return [w for call in self.calls.values() for w in call["warnings"]]


def _member(root: Path) -> Project:
    """A checkout of the team's project: the same code and raw files, an empty cache."""
    member = Project(root)
    member.write("raw/orders.csv", ORDERS_CSV)
    member.write("pipeline.py", PIPELINE)
    return member


def _calls(done: RunResult) -> Calls:
    calls = {}
    for line in done.stdout.splitlines():
        if line.startswith("CALL "):
            call = json.loads(line[len("CALL "):])
            calls[call["stage"]] = call
    assert list(calls) == list(STAGES), done.stdout + done.stderr
    return Calls(calls)


def _run(member: Project, backend: StoreBackend, explain: bool = True) -> Calls:
    """The pipeline in a fresh process; with ``explain``, each call is explained first and
    the explanation must agree with the call."""
    ran = _calls(member.run("pipeline.py", *(["--explain"] if explain else []), env=backend.env))
    if explain:
        _assert_explain_agrees_with_the_call(ran)
    return ran


def _assert_explain_agrees_with_the_call(ran: Calls, downloads_corrupt: bool = False) -> None:
    """What explain() said just before each call is what the call did: a fresh stage is
    hit (downloaded if it was said to be in the shared store), and a computed one was
    explained with the reason the call logs."""
    for name, event in ran.own_events().items():
        said = ran.calls[name]["explained"]
        if event["outcome"] == "hit":
            assert said.startswith(f"stage {name}: fresh (cached as {event['hash'][:12]}"), (said, event)
            downloaded = (event["reason"] or "").startswith("downloaded from ")
            assert said.endswith(" in the shared store, to be downloaded)") == downloaded, (said, event)
        elif downloads_corrupt and event["reason"] == "shared artifact corrupt (size or checksum mismatch)":
            # Documented: a shared object is judged by its manifest, its bytes when downloaded.
            assert said == f"stage {name}: fresh (cached as {event['hash'][:12]} in the shared store, to be downloaded)", said
        else:
            assert event["outcome"] == "computed", event
            assert said in (f"stage {name}: stale: {event['reason']}", f"stage {name}: never computed: {event['reason']}"), (said, event)


def _lwdp(member: Project, backend: StoreBackend, *args: str) -> tuple[int, dict[str, Any]]:
    """``python -m lwdp ARGS --json`` in the member's directory: exit code and output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    done = subprocess.run(
        [sys.executable, "-m", "lwdp", *args, "--json"], cwd=member.root, env={**env, **backend.env},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode in (0, 1) and done.stdout.startswith("{"), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def _problems(member: Project, backend: StoreBackend) -> list[tuple[str, str]]:
    """(kind, hash) of every problem ``lwdp verify`` reports; checks its exit code agrees."""
    code, report = _lwdp(member, backend, "verify")
    problems = sorted((p["kind"], p["hash"]) for p in report["problems"])
    assert code == (1 if problems else 0) and report["ok"] == (not problems), report
    return problems


def _local_files(member: Project) -> list[Path]:
    """The artifact files of a member's cache directory (manifests included)."""
    root = member.cache_dir / "artifacts"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _local_artifact(member: Project, stage_hash: str, fmt: str) -> Path:
    return member.cache_dir / "artifacts" / stage_hash[:2] / f"{stage_hash}.{FORMATS[fmt].suffix}"


def test_a_cold_run_computes_a_warm_one_hits_and_a_teammate_gets_what_the_store_shares(backend, tmp_path):
    alice, bob = _member(tmp_path / "alice"), _member(tmp_path / "bob")
    cold = _run(alice, backend, explain=False)  # the plain run path: no explain() first
    assert cold.computed() == set(STAGES) and cold.outcomes() == dict.fromkeys(STAGES, "computed")
    assert set(cold.reasons().values()) == {"never computed"} and cold.warnings() == []
    assert len(backend.shared_objects()) == (2 * len(STAGES) if backend.shared else 0)  # each artifact and its manifest

    warm = _run(alice, backend, explain=False)
    assert warm.computed() == set() and warm.outcomes() == dict.fromkeys(STAGES, "hit")
    assert set(warm.reasons().values()) == {None}  # read locally, nothing downloaded
    assert warm.results() == cold.results() and warm.hashes() == cold.hashes()

    teammate = _run(bob, backend)
    assert teammate.hashes() == cold.hashes() and teammate.results() == cold.results()
    assert teammate.warnings() == []
    if backend.shared:
        assert teammate.computed() == set() and teammate.outcomes() == dict.fromkeys(STAGES, "hit")
        assert all(r.startswith("downloaded from ") for r in teammate.reasons().values()), teammate.reasons()
        for name, fmt in STAGES.items():  # kept as a local copy: the next run reads it locally
            assert _local_artifact(bob, cold.hashes()[name], fmt).read_bytes() == backend.shared_fs.cat_file(
                backend.shared_key(cold.hashes()[name], fmt)
            )
    else:
        assert teammate.computed() == set(STAGES)


def test_a_damaged_local_artifact_is_never_served_and_verify_reports_it(backend, tmp_path):
    alice = _member(tmp_path / "alice")
    cold = _run(alice, backend)
    damaged = {name: _local_artifact(alice, cold.hashes()[name], fmt) for name, fmt in STAGES.items()}
    for path in damaged.values():
        path.write_bytes(path.read_bytes()[:-7])  # truncated

    assert _problems(alice, backend) == sorted(("corrupt", cold.hashes()[name]) for name in STAGES)
    after = _run(alice, backend)
    assert after.results() == cold.results()
    if backend.shared:  # the store's whole copy replaces the local one
        assert after.computed() == set() and after.outcomes() == dict.fromkeys(STAGES, "hit")
        assert all(r.startswith("downloaded from ") for r in after.reasons().values()), after.reasons()
    else:
        corrupt = "artifact corrupt (size or checksum mismatch)"
        assert after.computed() == set(STAGES) and after.reasons() == dict.fromkeys(STAGES, corrupt)
        assert sorted(after.warnings()) == sorted(
            f"stage '{name}': artifact {path} is corrupt (size or checksum mismatch); recomputing" for name, path in damaged.items()
        )
    assert _problems(alice, backend) == []  # after a clean run, nothing is wrong


def _flip_a_byte(backend: StoreBackend, key: str) -> None:
    data = backend.shared_fs.cat_file(key)
    backend.shared_fs.pipe_file(key, data[:5] + bytes([data[5] ^ 0xFF]) + data[6:])  # the same size


def test_a_damaged_shared_object_is_never_served_and_verify_reports_it(shared_backend, tmp_path):
    """Also where explain() can't know: a shared object is judged by its manifest, without
    downloading it (documented), so explain() says fresh and the call recomputes."""
    backend = shared_backend
    alice, bob = _member(tmp_path / "alice"), _member(tmp_path / "bob")
    cold = _run(alice, backend, explain=False)
    hashes = cold.hashes()
    for name, fmt in STAGES.items():
        _flip_a_byte(backend, backend.shared_key(hashes[name], fmt))

    assert _problems(alice, backend) == sorted(("shared-corrupt", hashes[name]) for name in STAGES)
    done = bob.run("pipeline.py", "--explain", env=backend.env)
    teammate = _calls(done)
    _assert_explain_agrees_with_the_call(teammate, downloads_corrupt=True)
    assert teammate.results() == cold.results()
    shared_corrupt = "shared artifact corrupt (size or checksum mismatch)"
    assert teammate.computed() == set(STAGES) and teammate.reasons() == dict.fromkeys(STAGES, shared_corrupt)
    assert sorted(teammate.warnings()) == sorted(
        f"stage '{name}': {backend.env['LWDP_STORE_URL']}/{hashes[name][:2]}/{hashes[name]}.{FORMATS[fmt].suffix} "
        "is corrupt (size or checksum mismatch); recomputing" for name, fmt in STAGES.items()
    )


def test_a_shared_object_a_teammate_recomputed_is_whole_again(shared_backend, tmp_path):
    """The README's "recomputed and its artifact replaced", for the shared store."""
    backend = shared_backend
    alice, bob = _member(tmp_path / "alice"), _member(tmp_path / "bob")
    hashes = _run(alice, backend, explain=False).hashes()
    key = backend.shared_key(hashes["pipeline.stg_priced"], "csv")
    _flip_a_byte(backend, key)
    assert _run(bob, backend, explain=False).computed() == {"pipeline.stg_priced"}
    manifest = json.loads(backend.shared_fs.cat_file(key.rsplit(".", 1)[0] + ".manifest.json"))
    assert xxhash.xxh3_128_hexdigest(backend.shared_fs.cat_file(key)) == manifest["checksum"]


def test_gc_removes_what_it_manages_and_the_next_run_gives_the_same_result(backend, tmp_path):
    alice = _member(tmp_path / "alice")
    cold = _run(alice, backend)
    objects = backend.shared_objects()
    _, report = _lwdp(alice, backend, "gc", "--max-size", "0")
    assert sorted((r["hash"], r["reason"]) for r in report["removed"]) == sorted((h, "lru") for h in cold.hashes().values())
    assert _local_files(alice) == []
    # The store is evicted from only with a team catalog (a local one knows nothing of teammates' use).
    assert backend.shared_objects() == ([] if backend.shared_catalog else objects)

    after = _run(alice, backend)
    assert after.results() == cold.results()
    if backend.shared and not backend.shared_catalog:  # the store still has them
        assert after.computed() == set() and after.outcomes() == dict.fromkeys(STAGES, "hit")
    else:
        assert after.computed() == set(STAGES) and after.reasons() == dict.fromkeys(STAGES, GONE)


# ---------------------------------------------------------------------------------------
# The ArtifactStore interface, method by method (what the local cache and every shared
# store implement; the checks built on it are written once, in the base class)


@dataclass(frozen=True)
class StoreUnderTest:
    """A store, and a way around it to put bytes at a path under its root (what a tool or a
    hand copy would leave there)."""

    store: ArtifactStore
    place: Callable[[str, bytes], None]


def _local_artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUnderTest:
    store = LocalArtifactStore(tmp_path / "cache")

    def place(relpath: str, data: bytes) -> None:
        (store.root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (store.root / relpath).write_bytes(data)

    return StoreUnderTest(store, place)


def _remote_artifacts(url: str) -> StoreUnderTest:
    store = RemoteArtifactStore(url)

    def place(relpath: str, data: bytes) -> None:
        key = f"{store.prefix}/{relpath}"
        store.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        store.fs.pipe_file(key, data)

    return StoreUnderTest(store, place)


def _file_artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUnderTest:
    return _remote_artifacts((tmp_path / "shared").as_uri())


def _memory_artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUnderTest:
    made = _remote_artifacts(f"memory://lwdp-{uuid.uuid4().hex}/store")  # one filesystem per process: a root of the test's own
    fs, root = made.store.fs, made.store.prefix  # type: ignore[attr-defined]
    request.addfinalizer(lambda: fs.rm(root, recursive=True) if fs.exists(root) else None)
    return made


def _s3_artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUnderTest:
    s3_server, bucket = request.getfixturevalue("s3_server"), request.getfixturevalue("bucket")
    for name, value in s3_server.env.items():  # as a user's shell sets them (downloads go through obstore)
        request.getfixturevalue("monkeypatch").setenv(name, value)
    return _remote_artifacts(f"s3://{bucket}/lwdp")


ARTIFACT_STORES = [
    pytest.param(_local_artifacts, id="local"),
    pytest.param(_file_artifacts, id="file"),
    pytest.param(_memory_artifacts, id="memory"),
    pytest.param(_s3_artifacts, id="s3"),
]


@pytest.fixture(params=ARTIFACT_STORES)
def artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUnderTest:
    return request.param(request, tmp_path)


H1, H2, H3 = "ab" + "1" * 30, "cd" + "2" * 30, "ffff" + "0" * 28


def test_an_artifact_put_is_got_back_whole_and_checked_by_size_and_checksum(artifact_store):
    store = artifact_store.store
    payload = bytes(range(256)) * 40 + b"\x00"
    assert (store.get(H1, "parquet"), store.size(H1, "parquet"), store.exists(H1, "parquet")) == (None, None, False)
    assert store.checksum(H1, "parquet") is None and store.is_intact(H1, "parquet", 0, "0" * 32) is None
    store.put(H1, "parquet", payload)
    assert store.get(H1, "parquet") == payload and store.size(H1, "parquet") == len(payload) and store.exists(H1, "parquet")
    checksum = xxhash.xxh3_128_hexdigest(payload)
    assert store.checksum(H1, "parquet") == checksum
    assert store.is_intact(H1, "parquet", len(payload), checksum) is True
    assert store.is_intact(H1, "parquet", len(payload) - 1, checksum) is False
    assert store.is_intact(H1, "parquet", len(payload), "0" * 32) is False
    assert store.get(H1, "csv") is None  # another format of the same hash is another artifact
    store.put(H1, "parquet", b"replaced")
    assert store.get(H1, "parquet") == b"replaced" and store.size(H1, "parquet") == 8
    store.put(H2, "pkl", b"")  # empty is not missing
    assert (store.get(H2, "pkl"), store.size(H2, "pkl"), store.exists(H2, "pkl")) == (b"", 0, True)
    assert store.is_intact(H2, "pkl", 0, xxhash.xxh3_128_hexdigest(b"")) is True
    assert store.describe(H1, "parquet").endswith(f"/{H1[:2]}/{H1}.parquet")


def test_a_manifest_reads_back_and_a_damaged_one_is_empty(artifact_store):
    store = artifact_store.store
    assert store.read_manifest(H1) is None
    manifest = {"hash": H1, "stage": "pipeline.stg_ü", "size": 2**40, "read_options": {"index": ["k"]}, "checksum": None}
    store.write_manifest(H1, manifest)
    assert store.read_manifest(H1) == manifest
    assert store.artifacts() == {}  # a manifest is no artifact
    for damaged in (b"{not json", b'["a", "list"]', b""):
        artifact_store.place(f"{H1[:2]}/{H1}.manifest.json", damaged)
        assert store.read_manifest(H1) == {}, damaged


def test_artifacts_lists_what_is_where_it_belongs_and_delete_removes_it_with_its_manifest(artifact_store):
    store = artifact_store.store
    for stage_hash, suffix in ((H1, "parquet"), (H2, "csv")):
        store.put(stage_hash, suffix, b"payload " + suffix.encode())
        store.write_manifest(stage_hash, {"hash": stage_hash})
    artifact_store.place(f"c0/{H3}.parquet", b"in the wrong folder")
    artifact_store.place(f"{H1[:2]}/{H1}.unknown-format", b"no format of lwdp's")
    assert store.artifacts() == {H1: "parquet", H2: "csv"}
    store.delete(H1, "parquet")
    assert store.get(H1, "parquet") is None and store.read_manifest(H1) is None
    assert store.artifacts() == {H2: "csv"} and store.read_manifest(H2) == {"hash": H2}
    store.delete(H1, "parquet")  # already gone is fine
    store.delete(H3, "csv")  # never there is fine


def test_strays_are_what_lwdp_did_not_put_where_it_is_and_delete_stray_removes_them(artifact_store, monkeypatch, request):
    for module in (LocalArtifactStore.__module__, RemoteArtifactStore.__module__):
        monkeypatch.setattr(sys.modules[module], "UNLISTED_GRACE_S", -5.0)  # every file counts as old enough
    store = artifact_store.store
    store.put(H1, "parquet", b"an artifact")
    store.write_manifest(H1, {"hash": H1})
    strays = {f"c0/{H3}.parquet": b"in the wrong folder", "notes.txt": b"notes", "ab/x/deep.parquet": b"deeper"}
    for relpath, data in strays.items():
        artifact_store.place(relpath, data)
    found = store.strays()
    assert sorted((where.rsplit("/", 1)[-1], size) for where, size in found) == sorted(
        (relpath.rsplit("/", 1)[-1], len(data)) for relpath, data in strays.items()
    )
    assert all(any(where.endswith("/" + relpath) for relpath in strays) for where, _ in found), found
    for where, _ in found:
        store.delete_stray(where)
        store.delete_stray(where)  # already gone is fine
    assert store.strays() == []
    assert store.artifacts() == {H1: "parquet"} and store.get(H1, "parquet") == b"an artifact"


# ---------------------------------------------------------------------------------------
# Catalogs


class _RunWrites:
    """The catalog as a run writes it: through its run context, the artifacts it read marked
    used and the lineage it evaluated again made recent when the run ends (`settle`)."""

    def __init__(self, cache_dir: Path) -> None:
        assert config.settings().cache_dir == cache_dir
        self.context = RunContext()

    def __getattr__(self, name: str) -> Any:  # every other statement: the run's catalog's
        return getattr(self.context.catalog, name)

    def touch_artifact(self, stage_hash: str) -> None:
        self.context.cache.used.add(stage_hash)  # as a load from the local cache does

    def record_lineage(self, rows: list[LineageRow]) -> None:
        self.context.record_lineage(rows)

    def settle(self) -> None:
        self.context.__exit__(None, None, None)
        self.context = RunContext()


def _run_path_on_a_catalog_that_exists(cache_dir: Path) -> Any:
    open_catalog(config.settings())  # made, as by an earlier run
    return _RunWrites(cache_dir)


def _run_path_on_a_new_catalog(cache_dir: Path) -> Any:
    """A first run's catalog: made by the run itself at the head schema (no migration)."""
    return _RunWrites(cache_dir)


def _upkeep_path(cache_dir: Path) -> Any:
    """The catalog as gc, verify, lineage and status use it."""
    return open_catalog(config.settings())


def _upkeep_path_on_a_migrated_file(cache_dir: Path) -> Any:
    """A catalog file the Alembic migrations made (an older lwdp's, upgraded), not the head schema's DDL."""
    path = cache_dir / "catalog.sqlite"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        migrate_sqlite(path)
    return open_catalog(config.settings())


@dataclass(frozen=True)
class CatalogPath:
    database: str  # a key of DATABASES: paths over one database read each other's writes
    open: Callable[[Path], Any]


# How a test reaches each database: the catalog_url in force (None: the cache directory's SQLite file).
DATABASES: dict[str, Callable[[pytest.FixtureRequest], str | None]] = {
    "sqlite": lambda request: None,
    "postgresql": lambda request: _postgres_in_india(request),
}
CATALOGS = [
    pytest.param(CatalogPath("sqlite", _upkeep_path_on_a_migrated_file), id="sqlite-migrated"),
    pytest.param(CatalogPath("sqlite", _run_path_on_a_catalog_that_exists), id="sqlite-run"),
    pytest.param(CatalogPath("sqlite", _run_path_on_a_new_catalog), id="sqlite-run-new"),
    pytest.param(CatalogPath("sqlite", _upkeep_path), id="sqlite-upkeep"),
    pytest.param(CatalogPath("postgresql", _run_path_on_a_catalog_that_exists), id="postgresql-run"),
    pytest.param(CatalogPath("postgresql", _upkeep_path), id="postgresql-upkeep"),
]
_PATHS = {str(p.id): cast(CatalogPath, p.values[0]) for p in CATALOGS}


class CatalogUnderTest:
    """The catalog a test writes through, and every path that reads the same database."""

    def __init__(self, path: CatalogPath, cache_dir: Path) -> None:
        self.path = path
        self.cache_dir = cache_dir
        self.writer = path.open(cache_dir)

    def settle(self) -> None:
        """What a run defers (marks of use, writes while its catalog is made) is written."""
        if isinstance(self.writer, _RunWrites):
            self.writer.settle()

    def read(self, how: Callable[[Any], Any]) -> dict[str, Any]:
        """{path: what ``how`` reads through it} for every path over the writer's database,
        each opened now, after the writes: what one path writes, all read back."""
        self.settle()
        return {name: how(path.open(self.cache_dir)) for name, path in _PATHS.items() if path.database == self.path.database}

    def upkeep(self) -> Catalog:
        """The same database as gc, verify and lineage read it."""
        self.settle()
        return open_catalog(config.settings())


@pytest.fixture(params=CATALOGS)
def catalog(request: pytest.FixtureRequest, project: Project) -> Iterator[CatalogUnderTest]:
    path: CatalogPath = request.param
    lwdp.configure(catalog_url=DATABASES[path.database](request))  # the project fixture resets it
    under_test = CatalogUnderTest(path, project.root / ".lwdp")
    yield under_test
    under_test.settle()


def _postgres_in_india(request: pytest.FixtureRequest) -> str:
    """A database of the test's own on a server whose sessions are not in UTC (a team's
    server need not be): timestamps must not depend on it."""
    url = make_url(request.getfixturevalue("pg_url"))
    return url.update_query_dict({"options": "-c timezone=Asia/Kolkata"}).render_as_string(hide_password=False)


def _same_everywhere(found: dict[str, Any], expected: Any) -> None:
    wrong = {name: value for name, value in found.items() if value != expected}
    assert not wrong, f"expected {expected!r}, but {wrong!r}"


UTC = dt.timezone.utc
INDIA = dt.timezone(dt.timedelta(hours=5, minutes=30))
T0 = dt.datetime(2026, 3, 29, 0, 30, 15, 123456, tzinfo=UTC)  # a DST night in Europe


def _record(key: str, **fields: Any) -> ArtifactRecord:
    values: dict[str, Any] = {
        "hash": key * 32, "stage": "pipeline.stg_x", "format": "parquet", "size": 10, "checksum": "c" * 32,
        "read_options": {}, "created_at": T0, "last_access": T0,
    }
    return ArtifactRecord(**{**values, **fields})


def _as_read(record: ArtifactRecord) -> ArtifactRecord:
    """A record as every catalog gives it back: times as aware UTC."""
    def utc(value: dt.datetime) -> dt.datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    return replace(record, created_at=utc(record.created_at), last_access=utc(record.last_access))


def test_an_artifact_row_reads_back_field_by_field_on_every_path(catalog):
    full = _record(
        "a", stage="pipeline.stg_ünïcode", size=2**40 + 3, checksum="0123456789abcdef" * 2,
        read_options={"index": ["k"], "dtypes": {"x": "Int64", "ß": "string"}, "note": 'line\n"quoted"'},
        created_at=T0.astimezone(INDIA), last_access=(T0 + dt.timedelta(hours=1)).replace(tzinfo=None),
        compute_seconds=0.1 + 0.2, lwdp_version="0.9.0", pandas_version="3.0.1",
    )
    on_the_second = _record("b", format="csv", size=0, created_at=T0.replace(microsecond=0), last_access=T0.replace(microsecond=0))
    replaced = _record("b", format="pickle", size=11, checksum="e" * 32, created_at=T0 + dt.timedelta(days=1), compute_seconds=2.5)
    catalog.writer.record_artifact(full, {"inputs": {"src": {"kind": "raw", "path": "raw/ü.csv"}}})
    catalog.writer.record_artifact(on_the_second)
    _same_everywhere(catalog.read(lambda c: c.lookup_artifact(on_the_second.hash)), _as_read(on_the_second))
    catalog.writer.record_artifact(replaced)  # the same hash again: every field replaced

    expected = {full.hash: _as_read(full), replaced.hash: _as_read(replaced), "f" * 32: None}
    _same_everywhere(catalog.read(lambda c: {h: c.lookup_artifact(h) for h in expected}), expected)
    _same_everywhere(
        catalog.read(lambda c: {(r.created_at.tzinfo, r.last_access.tzinfo) for r in map(c.lookup_artifact, expected) if r}), {(UTC, UTC)},
    )
    upkeep = catalog.upkeep()
    assert upkeep.all_artifacts() == [expected[replaced.hash], expected[full.hash]]  # newest first
    assert upkeep.all_artifacts(stage="pipeline.stg_ünïcode") == [expected[full.hash]]
    assert upkeep.listed_formats() == {full.hash: "parquet", replaced.hash: "pickle"}
    assert sorted(upkeep.usage_rows([full.hash, replaced.hash, "f" * 32])) == [
        UsageRow(full.hash, "pipeline.stg_ünïcode", "parquet", 2**40 + 3), UsageRow(replaced.hash, "pipeline.stg_x", "pickle", 11),
    ]
    assert upkeep.last_access(full.hash) == (T0 + dt.timedelta(hours=1)).replace(tzinfo=None)  # naive UTC, as stored
    assert upkeep.last_access("f" * 32) is None


def _last_access(stage_hash: str) -> Callable[[Any], dt.datetime]:
    return lambda c: c.lookup_artifact(stage_hash).last_access


def test_marks_of_use_move_last_access_the_same_on_every_path(catalog):
    used, touched = _record("a"), _record("b")
    for record in (used, touched):
        catalog.writer.record_artifact(record)
    used_at = (T0 + dt.timedelta(days=3, microseconds=7)).replace(tzinfo=None)  # naive UTC, as a run passes it
    catalog.writer.mark_used([used.hash], [], used_at)
    _same_everywhere(catalog.read(_last_access(used.hash)), used_at.replace(tzinfo=UTC))
    _same_everywhere(catalog.read(_last_access(touched.hash)), T0)
    before = dt.datetime.now(UTC)
    if isinstance(catalog.writer, _RunWrites):
        catalog.writer.touch_artifact(touched.hash)  # a run writes it at its end
    else:
        catalog.writer.mark_used([touched.hash], [], dt.datetime.now(UTC))
    catalog.settle()
    after = dt.datetime.now(UTC)
    found = catalog.read(_last_access(touched.hash))
    _same_everywhere(found, next(iter(found.values())))
    assert before <= next(iter(found.values())) <= after, (before, found, after)
    _same_everywhere(catalog.read(_last_access(used.hash)), used_at.replace(tzinfo=UTC))


def test_a_time_in_any_zone_is_the_same_instant_on_every_path(catalog, request):
    """A time given aware, in any zone, is that instant whichever method takes it (as
    record_artifact does): never its wall-clock reading taken for UTC."""
    record = _record("a")
    catalog.writer.record_artifact(record)
    catalog.writer.mark_used([record.hash], [], (T0 + dt.timedelta(hours=2)).astimezone(INDIA))
    _same_everywhere(catalog.read(_last_access(record.hash)), T0 + dt.timedelta(hours=2))


MANIFESTS = {
    key: {"stage": "pipeline.stg_m", "inputs": {"rate": {"kind": "param", "value": repr(i / 8), "digest": key * 32}},
          "code": {"pipeline.stg_m": "9" * 32}, "note": ["ü", None, 2**53 + 1, 0.1]}
    for i, key in enumerate("123")
}


def _pause() -> None:
    """Two writes in a row get distinct times (a clock's step may exceed a microsecond)."""
    time.sleep(0.002)


def test_the_manifest_a_miss_is_explained_against_is_the_same_on_every_path(catalog):
    """previous_manifest: of the stage's other hashes, the one used last, else (no artifact
    left) the one recorded last; and whether the hash itself was stored before."""
    stage, never = "pipeline.stg_m", "4" * 32
    for key, days_unused in {"1": 2, "2": 1, "3": 3}.items():
        catalog.writer.record_artifact(_record(key, stage=stage, last_access=T0 - dt.timedelta(days=days_unused)), MANIFESTS[key])
        _pause()

    def previous(current: str, expected: tuple[bool, dict[str, Any] | None], stage: str = stage) -> None:
        _same_everywhere(catalog.read(lambda c: c.previous_manifest(stage, current)), expected)

    previous(never, (False, MANIFESTS["2"]))
    previous("2" * 32, (True, MANIFESTS["1"]))
    catalog.writer.mark_used(["3" * 32], [], T0.replace(tzinfo=None))
    previous(never, (False, MANIFESTS["3"]))
    catalog.upkeep().delete_artifact("3" * 32)  # evicted: its manifest stays, and says it was stored
    previous("3" * 32, (True, MANIFESTS["2"]))
    previous(never, (False, MANIFESTS["2"]))
    for key in "12":
        catalog.upkeep().delete_artifact(key * 32)
    previous(never, (False, MANIFESTS["3"]))  # no artifact left: the one recorded last
    previous(never, (False, None), stage="pipeline.stg_other")


def _lineage(child: str, parent: str) -> list[LineageRow]:
    return [
        LineageRow(parent, "pipeline.stg_read", "src", "raw", "d" * 32, "raw/données *.csv"),
        LineageRow(parent, "pipeline.stg_read", "package pandas", "package", "e" * 32, "3.0.1"),
        LineageRow(child, "pipeline.stg_scale", "raw", "stage", parent, None),
        LineageRow(child, "pipeline.stg_scale", "factor", "param", child[0] * 32, None),
    ]


def test_lineage_reads_back_and_the_hash_evaluated_last_is_the_latest_on_every_path(catalog):
    first, second = _lineage("1" * 32, "2" * 32), _lineage("3" * 32, "2" * 32)  # a parameter changed
    catalog.writer.record_lineage(first)
    catalog.settle()
    _pause()
    catalog.writer.record_lineage(second)
    upkeep = catalog.upkeep()
    assert sorted(upkeep.inputs_of(["3" * 32]), key=repr) == sorted(second, key=repr)  # with its ancestors'
    assert upkeep.stage_names() == {"pipeline.stg_read", "pipeline.stg_scale"}
    assert upkeep.latest_hash("pipeline.stg_scale") == "3" * 32
    assert upkeep.hashes_with_lineage(["1" * 32, "2" * 32, "4" * 32]) == {"1" * 32, "2" * 32}
    assert upkeep.hashes_with_prefix("33") == {"3" * 32: "pipeline.stg_scale"}
    assert sorted(upkeep.descendants(["2" * 32])) == [
        ("1" * 32, "pipeline.stg_scale", 1), ("2" * 32, "pipeline.stg_read", 0), ("3" * 32, "pipeline.stg_scale", 1),
    ]
    assert upkeep.raw_inputs() == [first[0]]
    _pause()
    catalog.writer.record_lineage(first)  # the first parameter value again: its hash is the latest
    catalog.settle()
    assert upkeep.latest_hash("pipeline.stg_scale") == "1" * 32
    assert sorted(upkeep.inputs_of(["1" * 32, "3" * 32]), key=repr) == sorted({*first, *second}, key=repr)  # no row twice
    _pause()
    catalog.writer.mark_used([], ["3" * 32], dt.datetime.now(UTC).replace(tzinfo=None))
    assert catalog.upkeep().latest_hash("pipeline.stg_scale") == "3" * 32


def test_digest_memos_read_back_equal_on_every_path(catalog):
    memos = [
        DigestMemo(
            FileState(f"/data/raw/ünï {i:04d}.csv", 2**33 + i, 1_700_000_000_123_456_789 + i, 1_700_000_001_000_000_000 + i, 2**62 + i),
            f"{i:032x}", 1_700_000_009_999_999_999,
        )
        for i in range(1203)  # more than two chunks of an IN (...) list
    ]
    catalog.writer.save_digest_memos(memos)
    catalog.settle()
    changed = memos[600]._replace(state=memos[600].state._replace(size=1, mtime_ns=5), digest="a" * 32, digested_at_ns=7)
    catalog.writer.save_digest_memos([changed])
    expected = {m.state.path: m for m in [*memos[:600], changed, *memos[601:]]}
    _same_everywhere(catalog.read(lambda c: c.load_digest_memos([*expected, "/data/raw/none.csv"])), expected)
    _same_everywhere(catalog.read(lambda c: c.load_digest_memos([])), {})
