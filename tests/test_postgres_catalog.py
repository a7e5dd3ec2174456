"""The catalog on a real PostgreSQL server (``catalog_url``), and the same on SQLite.

Pipelines run in fresh processes pointed at a database of the test's own with
``LWDP_CATALOG_URL``; their rows are read back with SQLAlchemy, and compared with what the
same runs leave in a SQLite catalog: the same tables, rows, views, explanations, times and
gc victims. Then two users with their own cache directories sharing one catalog, many
processes at once, a catalog from a newer lwdp, and servers that can't be used.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from inspect import signature as inspect_signature
from pathlib import Path

import pytest
import sqlalchemy
import xxhash
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, NullPool, bindparam, create_engine, inspect, text

import lwdp
import lwdp.store
import test_catalog
from conftest import Project
from lwdp.errors import CatalogUnavailableError, CatalogVersionError, LwdpError
from lwdp.hashing.params import param_digest
from lwdp.store.catalog import ArtifactRecord, LineageRow, open_catalog
from lwdp.store.migrate import HEAD_REVISION, migrations_dir
from lwdp.config import settings

RUNNER = Path(__file__).with_name("runner.py")
RAW_CSV = "a,b\n1,2\n3,4\n5,6\n"
RAW_CSV_2 = "a,b\n1,2\n3,4\n5,7\n"
UTC = dt.timezone.utc

# raw csv -> cached A -> cached B (with a parameter) -> uncached C, as in test_catalog
PIPELINE = test_catalog.PIPELINE.replace("print(stg_c().to_csv())", 'print("RESULT", stg_c().to_json())')
assert "RESULT" in PIPELINE

# Four cached stages of different sizes, each used by one uncached stage: for gc.
WIDE = '''
import pandas as pd
from lwdp import stage

def make(k):
    def frame(src, k):
        df = pd.read_csv(src)
        df["pad"] = "x" * (500 * (k + 1))
        return df
    frame.__qualname__ = frame.__name__ = f"w{k}"
    return stage(src="raw/input.csv", k=k, cache=True)(frame)

parts = [make(k) for k in range(4)]

@stage(**{f"w{k}": part for k, part in enumerate(parts)})
def total(**frames):
    return sum(len(f) for f in frames.values())

for f in parts:
    print("HASH", f.name, f.hash)
print("RESULT", total())
'''


def _hashes(stdout: str) -> dict[str, str]:
    """{qualified stage name: hash} from a run's HASH lines."""
    return {name: digest for _, name, digest in (line.split() for line in stdout.splitlines() if line.startswith("HASH "))}


def _reasons(run) -> dict[str, str | None]:
    return {e["stage"].rsplit(".", 1)[-1]: e["reason"] for e in run.events}


def db_rows(url: str, query: str, **params: object) -> list[tuple]:
    """Rows of a query on the catalog database at ``url``, as a user would run it."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(query), params)]
    finally:
        engine.dispose()


def sqlite_url(project: Project) -> str:
    return f"sqlite:///{project.cache_dir / 'catalog.sqlite'}"


def rows_on_both(project: Project, pg_url: str, query: str, **params: object) -> tuple[list[tuple], list[tuple]]:
    """The same query on ``project``'s SQLite catalog and on the PostgreSQL one, rows sorted."""
    return sorted(db_rows(sqlite_url(project), query, **params)), sorted(db_rows(pg_url, query, **params))


def _pg_env(url: str) -> dict[str, str]:
    return {"LWDP_CATALOG_URL": url}


def _process_env(catalog_url: str | None = None) -> dict[str, str]:
    """This environment without lwdp's variables (as ``Project.run`` makes it), plus a catalog URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    return {**env, **_pg_env(catalog_url)} if catalog_url else env


@pytest.fixture
def use_catalog_url() -> Iterator:
    """In this process: ``use_catalog_url(url)`` sets lwdp's catalog_url until the test ends."""
    yield lambda url: lwdp.configure(catalog_url=url)
    lwdp.configure(catalog_url=None)


@pytest.fixture
def twin(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A second project with the same files as ``project`` will have (written by the test)."""
    return Project(tmp_path_factory.mktemp("twin"))


def _write_both(files: dict[str, str], *projects: Project) -> None:
    for project in projects:
        for relpath, content in files.items():
            project.write(relpath, content)


# ---------------------------------------------------------------------------------------
# a pipeline's rows


def test_a_run_records_everything_in_postgres_and_a_fresh_process_hits(project, pg_url):
    project.write("raw/input.csv", RAW_CSV)
    project.write("pipeline.py", PIPELINE)
    before = dt.datetime.now(UTC).replace(tzinfo=None)
    first = project.run(env=_pg_env(pg_url))
    hashes = _hashes(first.stdout)
    assert first.outcomes() == {"stg_a": "computed", "stg_b": "computed", "stg_c": "computed-uncached"}

    a, b, c = (hashes[f"pipeline.stg_{n}"] for n in "abc")
    rows = db_rows(pg_url, "SELECT hash, stage, format, size, checksum, created_at, last_access FROM artifacts ORDER BY stage")
    assert [r[:3] for r in rows] == [(a, "pipeline.stg_a", "parquet"), (b, "pipeline.stg_b", "csv")]
    for stage_hash, _stage, fmt, size, checksum, created_at, last_access in rows:
        data = (project.cache_dir / "artifacts" / stage_hash[:2] / f"{stage_hash}.{fmt}").read_bytes()
        assert (size, checksum) == (len(data), xxhash.xxh3_128_hexdigest(data))
        assert created_at.tzinfo is None and before - dt.timedelta(seconds=2) <= created_at == last_access
    raw_digest = xxhash.xxh3_128_hexdigest(RAW_CSV.encode())
    assert sorted(db_rows(pg_url, "SELECT hash, stage, input_name, input_kind, input_hash, input_path FROM lineage")) == sorted([
        (a, "pipeline.stg_a", "src", "raw", raw_digest, "raw/input.csv"),
        (b, "pipeline.stg_b", "a", "stage", a, None),
        (b, "pipeline.stg_b", "factor", "param", param_digest(3), None),
        (c, "pipeline.stg_c", "b", "stage", b, None),
    ])
    assert sorted(db_rows(pg_url, "SELECT hash, stage FROM stage_manifests")) == sorted([(a, "pipeline.stg_a"), (b, "pipeline.stg_b")])
    raw = project.root / "raw" / "input.csv"
    assert db_rows(pg_url, "SELECT path, digest FROM raw_files") == [(str(raw.resolve()), raw_digest)]
    assert db_rows(pg_url, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert sorted(p.name for p in project.cache_dir.iterdir()) == ["artifacts", "locks"]  # no SQLite file

    second = project.run(env=_pg_env(pg_url))
    assert second.outcomes() == {"stg_a": "not-needed", "stg_b": "hit", "stg_c": "computed-uncached"}
    assert second.stdout == first.stdout
    (created, accessed), = db_rows(pg_url, "SELECT created_at, last_access FROM artifacts WHERE hash = :h", h=b)
    assert created == rows[1][5] and accessed > rows[1][6]
    assert len(db_rows(pg_url, "SELECT * FROM lineage")) == 4


def test_postgres_and_sqlite_catalogs_hold_the_same_rows_views_and_explanations(project, twin, pg_url):
    """The same runs, one project on SQLite and its twin on PostgreSQL: the same rows in every
    table and view (times aside), and the same reasons for each rerun."""
    _write_both({"raw/input.csv": RAW_CSV, "pipeline.py": PIPELINE}, project, twin)
    runs = []
    for change in (None, {"raw/input.csv": RAW_CSV_2}, {"pipeline.py": PIPELINE.replace("factor=3", "factor=4")}):
        _write_both(change or {}, project, twin)
        runs.append((project.run(), twin.run(env=_pg_env(pg_url))))
    for on_sqlite, on_pg in runs:
        assert on_pg.stdout == on_sqlite.stdout
        assert _reasons(on_pg) == _reasons(on_sqlite)
        assert on_pg.outcomes() == on_sqlite.outcomes()
    assert _reasons(runs[2][1])["stg_b"] == "parameter `factor` changed 3 → 4"

    assert not (twin.cache_dir / "catalog.sqlite").exists()
    for query in (
        "SELECT hash, stage, format, size, checksum, read_options, lwdp_version, pandas_version FROM artifacts",
        "SELECT hash, stage, input_name, input_kind, input_hash, input_path FROM lineage",
        "SELECT hash, stage, manifest FROM stage_manifests",
        "SELECT hash, stage, ancestor_kind, ancestor_hash, ancestor_name, ancestor_path, depth FROM lineage_closure",
        "SELECT raw_path, raw_digest, hash, stage, depth FROM raw_descendants",
    ):
        on_sqlite, on_pg = rows_on_both(project, pg_url, query)
        assert on_pg == on_sqlite and on_pg, query
    # the README's one-liners over the views
    for query, params in (
        ("SELECT depth, ancestor_kind, ancestor_name, ancestor_path FROM lineage_closure WHERE hash = :hash", {"hash": runs[2][0].events[-1]["hash"]}),
        ("SELECT DISTINCT stage, hash, depth FROM raw_descendants WHERE raw_path = :path", {"path": "raw/input.csv"}),
    ):
        on_sqlite, on_pg = rows_on_both(project, pg_url, query, **params)
        assert on_pg == on_sqlite and on_pg, query


def test_a_second_user_with_another_cache_dir_sees_the_first_users_history(project, twin, pg_url, use_catalog_url):
    _write_both({"raw/input.csv": RAW_CSV, "pipeline.py": PIPELINE}, project, twin)
    first = _hashes(project.run(env=_pg_env(pg_url)).stdout)
    project.write("raw/input.csv", RAW_CSV_2)
    second = _hashes(project.run(env=_pg_env(pg_url)).stdout)
    assert first != second

    # user 2 has run nothing: the shared catalog answers from user 1's runs
    cli = subprocess.run(
        [sys.executable, "-m", "lwdp", "lineage", "stg_c"], cwd=twin.root, capture_output=True, text=True, timeout=60,
        env=_process_env(pg_url),
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines()[0] == f"pipeline.stg_c {second['pipeline.stg_c'][:12]}"
    assert f"a = pipeline.stg_a {second['pipeline.stg_a'][:12]}" in cli.stdout
    use_catalog_url(pg_url)
    tree = lwdp.store.lineage(first["pipeline.stg_c"][:10], cache_dir=twin.cache_dir)
    assert [(n.kind, n.stage, n.digest) for n in tree.walk() if n.kind == "stage"] == [
        ("stage", f"pipeline.stg_{s}", first[f"pipeline.stg_{s}"]) for s in "cba"
    ]
    assert [(n.path, n.digest) for n in tree.walk() if n.kind == "raw"] == [("raw/input.csv", xxhash.xxh3_128_hexdigest(RAW_CSV.encode()))]
    dependents = lwdp.store.dependents("raw/input.csv", cache_dir=twin.cache_dir)
    assert sorted((d.stage, d.hash) for d in dependents) == sorted([*first.items(), *second.items()])
    assert {r.hash for r in lwdp.store.artifacts(cache_dir=twin.cache_dir)} == {
        h[f"pipeline.stg_{s}"] for h in (first, second) for s in "ab"
    }

    # artifact files are each user's own: user 2 (with the first raw file) computes again,
    # into the rows of user 1's first run
    ran = twin.run(env=_pg_env(pg_url))
    assert ran.outcomes() == {"stg_a": "computed", "stg_b": "computed", "stg_c": "computed-uncached"}
    assert _hashes(ran.stdout) == first
    assert not (twin.cache_dir / "catalog.sqlite").exists()
    assert len(db_rows(pg_url, "SELECT * FROM artifacts")) == 4
    assert len(db_rows(pg_url, "SELECT * FROM lineage")) == 8


# ---------------------------------------------------------------------------------------
# migrations


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _schema(url: str) -> dict[str, object]:
    """Tables with their columns (name, type family, length, nullable), primary keys and
    indexes, and the views, as reflected."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        found = inspect(engine)
        tables = {
            name: (
                [(c["name"], c["type"]._type_affinity.__name__, getattr(c["type"], "length", None), c["nullable"]) for c in found.get_columns(name)],
                found.get_pk_constraint(name)["constrained_columns"],
                sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in found.get_indexes(name)),
            )
            for name in found.get_table_names()
        }
        return {"tables": tables, "views": sorted(found.get_view_names())}
    finally:
        engine.dispose()


def test_migrations_go_up_down_and_up_on_postgres_to_the_sqlite_schema(pg_url, tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    command.upgrade(_alembic(sqlite), "head")
    expected = _schema(sqlite)
    assert set(expected["tables"]) == {"alembic_version", "artifacts", "lineage", "raw_files", "stage_manifests", "runs", "run_stages"}
    assert expected["views"] == ["lineage_closure", "raw_descendants"]

    command.upgrade(_alembic(pg_url), "head")
    assert _schema(pg_url) == expected
    assert db_rows(pg_url, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    command.downgrade(_alembic(pg_url), "base")
    assert _schema(pg_url) == {"tables": {"alembic_version": expected["tables"]["alembic_version"]}, "views": []}
    assert db_rows(pg_url, "SELECT version_num FROM alembic_version") == []
    command.upgrade(_alembic(pg_url), "head")
    assert _schema(pg_url) == expected


MIGRATE_AT_ONCE = '''
import logging, os, sys, time
from pathlib import Path
logging.basicConfig(level=logging.WARNING, format="LOG %(name)s %(message)s")
logging.getLogger("lwdp").setLevel(logging.DEBUG)  # where lwdp logs Alembic's "Running upgrade" lines
import lwdp
from lwdp.config import settings
from lwdp.store.catalog import open_catalog

PROCESSES, URLS = int(sys.argv[1]), sys.argv[2:]
for n, url in enumerate(URLS):  # a barrier, then all open the new catalog at once
    ready = f"ready-{n}"
    os.makedirs(ready, exist_ok=True)
    open(os.path.join(ready, str(os.getpid())), "w").close()
    while len(os.listdir(ready)) < PROCESSES:
        time.sleep(0.002)
    lwdp.configure(catalog_url=url)
    print("OPENED", n, open_catalog(settings(Path(".lwdp"))).stage_names(), file=sys.stderr, flush=True)
'''


def test_four_processes_opening_a_new_catalog_at_once_migrate_it_exactly_once(project, pg_server):
    project.write("migrate.py", MIGRATE_AT_ONCE)
    revisions = [script.revision for script in ScriptDirectory(str(migrations_dir())).walk_revisions()]
    urls = [pg_server.create_database() for _ in range(3)]
    try:
        env = _process_env()
        procs = [
            subprocess.Popen([sys.executable, "migrate.py", "4", *urls], cwd=project.root, env=env, stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        logs = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, "\n".join(logs)
        for n, url in enumerate(urls):
            # each process logged the upgrades it ran, then that it had the catalog open
            rounds = [log.split(f"OPENED {n - 1} set()\n")[-1].split(f"OPENED {n} set()\n") for log in logs]
            assert all(len(r) == 2 for r in rounds), "\n".join(logs)
            upgrades = Counter(
                line.split(" -> ", 1)[1].split(",", 1)[0]  # "Running upgrade 0001 -> 0002, what it does": 0002
                for before, _ in rounds for line in before.splitlines() if "Running upgrade" in line
            )
            assert upgrades == dict.fromkeys(revisions, 1), n  # every revision, once
            assert db_rows(url, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    finally:
        for url in urls:
            pg_server.drop_database(url)


# ---------------------------------------------------------------------------------------
# many processes at once

LOAD = '''
import logging, os, sys, time
import pandas as pd
import lwdp.store
from lwdp import stage

ROLE, WORKERS = sys.argv[1], int(sys.argv[2])
os.makedirs("ready", exist_ok=True)
open(os.path.join("ready", ROLE), "w").close()
while len(os.listdir("ready")) < WORKERS + 2:
    time.sleep(0.005)


def pipeline(worker, version):
    @stage(worker=worker, generation=version, cache=True)
    def stg_gen(worker, generation):
        return pd.DataFrame({"g": [i % 7 for i in range(500)], "x": [worker * 1000 + generation + i for i in range(500)]})

    @stage(gen=stg_gen, cache=True, cache_format="csv")
    def stg_clean(gen):
        return gen[gen["x"] % 3 != 0].reset_index(drop=True)

    @stage(clean=stg_clean, cache=True, cache_format="pickle")
    def stg_agg(clean):
        return clean.groupby("g")["x"].sum().to_frame("total")

    return stg_agg


if ROLE.startswith("gc"):
    removed = runs = 0
    while len(os.listdir("done")) < WORKERS:
        report = lwdp.store.gc(max_age="1d") if ROLE == "gc0" else lwdp.store.gc()
        removed += report.count
        runs += 1
        if not lwdp.store.verify().ok:
            sys.exit("verify failed under load")
    print("GC", runs, removed)
else:
    worker = int(ROLE[1:])
    for version in (0, 1, 0, 2, 1):  # cold, cold, warm, cold, warm
        print("RESULT", version, int(pipeline(worker, version)()["total"].sum()), flush=True)
    open(os.path.join("done", ROLE), "w").close()
'''


def test_four_pipelines_and_two_gc_loops_at_once_lose_no_row(project, pg_url, use_catalog_url):
    project.write("load.py", LOAD)
    (project.root / "done").mkdir()
    workers = 4
    env = _process_env(pg_url)
    roles = [f"w{w}" for w in range(workers)] + ["gc0", "gc1"]
    procs = {
        role: subprocess.Popen([sys.executable, str(RUNNER), "load.py", role, str(workers)], cwd=project.root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for role in roles
    }
    done = {role: p.communicate(timeout=180) + (p.returncode,) for role, p in procs.items()}
    for role, (out, err, code) in done.items():
        assert code == 0 and "Traceback" not in err, f"{role}:\n{out}\n{err}"
    for w in range(workers):
        out, err, _ = done[f"w{w}"]
        results = [line.split()[1:] for line in out.splitlines() if line.startswith("RESULT ")]
        assert [r[0] for r in results] == ["0", "1", "0", "2", "1"]
        assert results[0] == results[2] and results[1] == results[4]
        events = [json.loads(line.split(" ", 1)[1]) for line in err.splitlines() if line.startswith("LWDP_EVENT ")]
        outcomes = Counter((e["stage"].rsplit(".", 1)[-1], e["outcome"]) for e in events)
        assert outcomes == {
            **{(s, "computed"): 3 for s in ("stg_gen", "stg_clean", "stg_agg")},
            ("stg_agg", "hit"): 2, ("stg_gen", "not-needed"): 2, ("stg_clean", "not-needed"): 2,
        }, f"w{w}:\n{err}"
    for role in ("gc0", "gc1"):
        _, runs, removed = done[role][0].split()
        assert int(runs) >= 3 and int(removed) == 0, done[role]

    expected = workers * 3 * 3
    assert db_rows(pg_url, "SELECT count(*), count(DISTINCT hash) FROM artifacts") == [(expected, expected)]
    assert db_rows(pg_url, "SELECT count(*) FROM stage_manifests") == [(expected,)]
    assert db_rows(pg_url, "SELECT count(*) FROM lineage") == [(workers * 3 * (2 + 1 + 1),)]
    use_catalog_url(pg_url)
    report = lwdp.store.verify(cache_dir=project.cache_dir)
    assert report.ok and report.checked == expected, repr(report)


def test_a_forked_child_uses_connections_of_its_own(project, pg_url, use_catalog_url):
    use_catalog_url(pg_url)
    catalog = open_catalog(settings(project.cache_dir))
    assert catalog.stage_names() == set()  # a pooled connection now exists in the parent
    pid = os.fork()
    if pid == 0:  # the child: its own engine, never the parent's socket
        try:
            child = open_catalog(settings(project.cache_dir))
            child.record_lineage([LineageRow("c" * 32, "child.stage", "x", "param", "d" * 32, None)])
            os._exit(0 if child is not catalog and child.stage_names() == {"child.stage"} else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert catalog.stage_names() == {"child.stage"}  # the parent's connection still works
    assert open_catalog(settings(project.cache_dir)) is catalog


# ---------------------------------------------------------------------------------------
# times


def test_times_are_stored_naive_utc_and_read_back_aware_on_both(project, pg_url, use_catalog_url):
    on_sqlite = open_catalog(settings(project.cache_dir))
    use_catalog_url(pg_url)
    on_pg = open_catalog(settings(project.cache_dir))
    instant = dt.datetime(2026, 3, 29, 0, 30, 15, 123456, tzinfo=UTC)  # a DST night in Europe
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    record = ArtifactRecord(
        "e" * 32, "pipeline.stg_t", "parquet", 10, "f" * 32, {"index": ["k"]},
        created_at=instant.astimezone(india), last_access=(instant + dt.timedelta(hours=1)).replace(tzinfo=None),
    )
    for catalog in (on_sqlite, on_pg):
        catalog.record_artifact(record, {"inputs": {}})
    found = [catalog.lookup_artifact(record.hash) for catalog in (on_sqlite, on_pg)]
    assert found[0] == found[1]
    assert found[1].created_at == instant and found[1].created_at.tzinfo == UTC
    assert found[1].last_access == instant + dt.timedelta(hours=1) and found[1].last_access.tzinfo == UTC
    assert on_sqlite.all_artifacts() == on_pg.all_artifacts() == [found[0]]
    assert on_sqlite.last_access(record.hash) == on_pg.last_access(record.hash) == (instant + dt.timedelta(hours=1)).replace(tzinfo=None)
    naive = [(instant.replace(tzinfo=None), (instant + dt.timedelta(hours=1)).replace(tzinfo=None))]
    assert db_rows(pg_url, "SELECT created_at, last_access FROM artifacts") == naive
    stored_text = project.sql("SELECT created_at, last_access FROM artifacts")
    assert [tuple(map(dt.datetime.fromisoformat, row)) for row in stored_text] == naive
    before = dt.datetime.now(UTC)
    for catalog in (on_sqlite, on_pg):
        catalog.mark_used([record.hash], [], dt.datetime.now(UTC))
    touched = [catalog.lookup_artifact(record.hash).last_access for catalog in (on_sqlite, on_pg)]
    assert all(before <= t <= dt.datetime.now(UTC) for t in touched)


# A time bound as SQLAlchemy's DateTime: stored as each engine stores it (text on SQLite).
_SET_LAST_ACCESS = text("UPDATE artifacts SET last_access = :at WHERE hash = :hash").bindparams(bindparam("at", type_=DateTime))


def test_gc_picks_the_same_victims_on_both(project, twin, pg_url, use_catalog_url):
    _write_both({"raw/input.csv": RAW_CSV, "wide.py": WIDE}, project, twin)
    hashes = _hashes(project.run("wide.py").stdout)
    assert _hashes(twin.run("wide.py", env=_pg_env(pg_url)).stdout) == hashes
    now = dt.datetime.now(UTC).replace(tzinfo=None)
    ages = {"wide.w0": 3599, "wide.w1": 3601, "wide.w2": 20, "wide.w3": 7200}  # seconds; the TTL below is 1 h
    for url in (sqlite_url(project), pg_url):
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            for name, age in ages.items():
                conn.execute(_SET_LAST_ACCESS, {"hash": hashes[name], "at": now - dt.timedelta(seconds=age)})
        engine.dispose()
    sizes = dict(db_rows(pg_url, "SELECT hash, size FROM artifacts"))

    reports = []
    for catalog_url, where in ((None, project), (pg_url, twin)):
        use_catalog_url(catalog_url)
        ttl = lwdp.store.gc(max_age="1h", cache_dir=where.cache_dir)
        lru = lwdp.store.gc(max_size=sizes[hashes["wide.w2"]] + 1, cache_dir=where.cache_dir)
        reports.append([sorted((r.hash, r.reason) for r in report.removed) for report in (ttl, lru)])
    assert reports[0] == reports[1] == [
        sorted([(hashes["wide.w1"], "expired"), (hashes["wide.w3"], "expired")]),
        [(hashes["wide.w0"], "lru")],
    ]
    assert rows_on_both(project, pg_url, "SELECT hash FROM artifacts") == ([(hashes["wide.w2"],)],) * 2


# ---------------------------------------------------------------------------------------
# catalogs that can't be used


def test_a_catalog_from_a_newer_lwdp_is_refused_and_left_unchanged(project, pg_url, use_catalog_url):
    project.write("raw/input.csv", RAW_CSV)
    project.write("pipeline.py", PIPELINE)
    project.run(env=_pg_env(pg_url))
    engine = create_engine(pg_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    before = [db_rows(pg_url, f"SELECT * FROM {table}") for table in ("artifacts", "lineage", "stage_manifests")]

    failed = project.run(env=_pg_env(pg_url), check=False)
    assert failed.returncode != 0 and failed.events == []
    last_line = failed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("lwdp.errors.CatalogVersionError: ")
    assert "9999_future" in last_line and sqlalchemy.make_url(pg_url).render_as_string() in last_line
    assert "LWDP_CATALOG_URL" in last_line

    use_catalog_url(pg_url)
    with pytest.raises(CatalogVersionError, match="9999_future"):
        open_catalog(settings(project.cache_dir))
    assert db_rows(pg_url, "SELECT version_num FROM alembic_version") == [("9999_future",)]
    assert [db_rows(pg_url, f"SELECT * FROM {table}") for table in ("artifacts", "lineage", "stage_manifests")] == before


def _assert_unavailable_without_password(exc: BaseException, shown_url: str, logs: str) -> None:
    assert isinstance(exc, CatalogUnavailableError) and isinstance(exc, OSError) and isinstance(exc, LwdpError)
    assert f"catalog {shown_url}:" in str(exc)
    everything = "".join(traceback.format_exception(exc)) + logs  # the causes' texts too
    assert "s3cret" not in everything


@pytest.mark.parametrize("where", ["127.0.0.1:1", "localhost:1", "[::1]:1"])
def test_an_unreachable_server_is_catalog_unavailable_and_the_password_is_never_shown(
    project, caplog, monkeypatch, use_catalog_url, where
):
    psycopg = pytest.importorskip("psycopg", reason="psycopg is in the test extra")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    use_catalog_url(f"postgresql+psycopg://u:s3cret@{where}/db")
    attempts = []  # the parameters of every connection psycopg was asked to open
    real_connect = psycopg.connect
    own = {n for n, p in inspect_signature(real_connect).parameters.items() if p.kind is p.KEYWORD_ONLY}  # context...

    def connect(conninfo: str = "", **kwargs):
        params = {k: v for k, v in kwargs.items() if k not in own}
        attempts.append(psycopg.conninfo.conninfo_to_dict(psycopg.conninfo.make_conninfo(conninfo, **params)))
        return real_connect(conninfo, **kwargs)

    monkeypatch.setattr(psycopg, "connect", connect)

    @lwdp.stage(x=1)
    def probe(x):
        return x

    with pytest.raises(CatalogUnavailableError) as info:
        probe()
    _assert_unavailable_without_password(info.value, f"postgresql+psycopg://u:***@{where}/db", caplog.text)
    # A host that drops packets (this one refuses at once) fails within seconds, not the
    # kernel's minutes: every attempt carries a connect timeout (0 would mean none).
    assert attempts and all(0 < int(params.get("connect_timeout", 0)) <= 10 for params in attempts)


def test_the_command_line_names_the_unreachable_catalog_without_its_password(project):
    project.write("raw/input.csv", RAW_CSV)
    project.write("pipeline.py", PIPELINE)
    url = "postgresql://analyst:s3cret@127.0.0.1:1/team"  # no driver named: psycopg
    failed = project.run(env=_pg_env(url), check=False)
    assert failed.returncode != 0 and "s3cret" not in failed.stderr + failed.stdout
    assert failed.stderr.strip().splitlines()[-1].startswith(
        "lwdp.errors.CatalogUnavailableError: catalog postgresql+psycopg://analyst:***@127.0.0.1:1/team: connection failed"
    )
    cli = subprocess.run(
        [sys.executable, "-m", "lwdp", "ls"], cwd=project.root, capture_output=True, text=True, timeout=60,
        env=_process_env(url),
    )
    assert cli.returncode == 2 and "s3cret" not in cli.stderr + cli.stdout
    assert cli.stderr.startswith("lwdp ls: error: catalog postgresql+psycopg://analyst:***@127.0.0.1:1/team: ")


def test_a_missing_database_or_a_role_without_rights_is_catalog_unavailable(project, pg_server, pg_url, use_catalog_url):
    missing = sqlalchemy.make_url(pg_url).set(database="lwdp_no_such_db", password="s3cret")
    use_catalog_url(missing.render_as_string(hide_password=False))
    with pytest.raises(CatalogUnavailableError) as info:
        open_catalog(settings(project.cache_dir))
    _assert_unavailable_without_password(info.value, missing.render_as_string(), "")
    assert "does not exist" in str(info.value)

    use_catalog_url(pg_url)
    open_catalog(settings(project.cache_dir))  # made and migrated by its owner
    role = f"reader_{sqlalchemy.make_url(pg_url).database[-8:]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 's3cret'")
    try:
        reader = sqlalchemy.make_url(pg_url).set(username=role, password="s3cret")
        use_catalog_url(reader.render_as_string(hide_password=False))
        with pytest.raises(CatalogUnavailableError) as info:
            open_catalog(settings(project.cache_dir))
        _assert_unavailable_without_password(info.value, reader.render_as_string(), "")
        assert "permission denied" in str(info.value)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def test_without_psycopg_a_postgres_catalog_asks_for_the_extra(project):
    script = (
        "import sys, pathlib\nsys.modules['psycopg'] = None  # as if not installed\n"
        "import lwdp\nfrom lwdp.errors import MissingExtraError\nfrom lwdp.store.catalog import open_catalog\nfrom lwdp.config import settings\n"
        "lwdp.configure(catalog_url='postgresql+psycopg://u:s3cret@127.0.0.1:1/db')\n"
        "try:\n    open_catalog(settings(pathlib.Path('.lwdp')))\nexcept MissingExtraError as exc:\n    print('ERROR', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=project.root, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == (
        "ERROR a PostgreSQL catalog needs psycopg: pip install 'lwdp[postgres]' (catalog postgresql+psycopg://u:***@127.0.0.1:1/db)"
    ), out.stderr


def test_a_catalog_url_that_is_not_postgres_is_refused(project, use_catalog_url):
    use_catalog_url(f"sqlite:///{project.root / 'shared.sqlite'}")
    with pytest.raises(CatalogUnavailableError, match="a shared catalog is a PostgreSQL database"):
        open_catalog(settings(project.cache_dir))
    use_catalog_url("not a url s3cret")
    with pytest.raises(CatalogUnavailableError, match="not a database URL") as info:
        open_catalog(settings(project.cache_dir))
    assert "s3cret" not in str(info.value)
    assert not (project.root / "shared.sqlite").exists()
