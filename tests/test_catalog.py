"""The SQLite catalog as a user sees it with plain sqlite3, its migrations, and the wheel."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from conftest import copy_example

from lwdp.errors import CatalogVersionError
from lwdp.hashing.params import param_digest
from lwdp.store.migrate import HEAD_REVISION, migrations_dir

REPO = Path(__file__).resolve().parents[1]

RAW_CSV = "a,b\n1,2\n3,4\n5,6\n"

# raw csv -> cached A -> cached B (with a parameter) -> uncached C
PIPELINE = '''
import pandas as pd
from lwdp import stage

@stage(src="raw/input.csv", cache=True)
def stg_a(src):
    return pd.read_csv(src)

@stage(a=stg_a, factor=3, cache=True, cache_format="csv")
def stg_b(a, factor):
    return a * factor

@stage(b=stg_b)
def stg_c(b):
    return b.sum().to_frame("total")

for f in (stg_a, stg_b, stg_c):
    print("HASH", f.name, f.hash)
print(stg_c().to_csv())
'''

SUFFIX = {"parquet": "parquet", "csv": "csv", "pickle": "pkl"}


def _hashes(stdout: str) -> dict[str, str]:
    """{qualified stage name: hash} from the pipeline's HASH lines."""
    return {
        name: digest
        for kind, name, digest in (line.split() for line in stdout.splitlines() if line.startswith("HASH "))
    }


def _ts(text: str) -> dt.datetime:
    """A catalog timestamp (naive UTC text) as an aware datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


def _artifact_path(project, stage_hash: str, fmt: str) -> Path:
    return project.cache_dir / "artifacts" / stage_hash[:2] / f"{stage_hash}.{SUFFIX[fmt]}"


@pytest.fixture
def ran(project):
    """The small pipeline run once in a fresh process: (project, {stage: hash}, run result)."""
    project.write("raw/input.csv", RAW_CSV)
    project.write("pipeline.py", PIPELINE)
    before = dt.datetime.now(dt.timezone.utc)
    result = project.run()
    after = dt.datetime.now(dt.timezone.utc)
    hashes = _hashes(result.stdout)
    assert set(hashes) == {"pipeline.stg_a", "pipeline.stg_b", "pipeline.stg_c"}
    return project, hashes, result, (before, after)


def test_artifacts_has_one_row_per_cached_stage(ran):
    project, hashes, result, (before, after) = ran
    assert result.outcomes() == {"stg_a": "computed", "stg_b": "computed", "stg_c": "computed-uncached"}
    rows = project.sql("SELECT hash, stage, format, size, checksum, created_at, last_access FROM artifacts ORDER BY stage")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (hashes["pipeline.stg_a"], "pipeline.stg_a", "parquet"),
        (hashes["pipeline.stg_b"], "pipeline.stg_b", "csv"),
    ]
    for stage_hash, _stage, fmt, size, checksum, created_at, last_access in rows:
        path = _artifact_path(project, stage_hash, fmt)
        assert path.is_file()
        assert size == path.stat().st_size
        assert checksum == xxhash.xxh3_128_hexdigest(path.read_bytes())
        # naive UTC in the database, written during the run
        slack = dt.timedelta(seconds=2)
        assert before - slack <= _ts(created_at) <= after + slack
        assert _ts(last_access) == _ts(created_at)
    # the uncached stage left no artifact behind
    files = sorted(p.name for p in (project.cache_dir / "artifacts").rglob("*") if p.is_file())
    assert files == sorted(f"{h}.{suffix}" for h, _s, fmt, *_ in rows for suffix in (SUFFIX[fmt], "manifest.json"))


def test_lineage_has_one_row_per_input_of_every_evaluated_stage(ran):
    project, hashes, _result, _ = ran
    raw_digest = xxhash.xxh3_128_hexdigest(RAW_CSV.encode())
    rows = project.sql("SELECT hash, stage, input_name, input_kind, input_hash, input_path FROM lineage ORDER BY stage, input_name")
    assert rows == [
        (hashes["pipeline.stg_a"], "pipeline.stg_a", "src", "raw", raw_digest, "raw/input.csv"),
        (hashes["pipeline.stg_b"], "pipeline.stg_b", "a", "stage", hashes["pipeline.stg_a"], None),
        (hashes["pipeline.stg_b"], "pipeline.stg_b", "factor", "param", param_digest(3), None),
        (hashes["pipeline.stg_c"], "pipeline.stg_c", "b", "stage", hashes["pipeline.stg_b"], None),
    ]
    # a warm run evaluates the same stages: no duplicate rows
    project.run()
    assert len(project.sql("SELECT * FROM lineage")) == 4


# Everything the result of one stage hash was derived from: walk `lineage` from that hash
# through every input that is itself a stage. Each row is one input of one ancestor.
ANCESTRY_SQL = """
WITH RECURSIVE ancestry(hash, stage, input_name, input_kind, input_hash, input_path, depth) AS (
    SELECT hash, stage, input_name, input_kind, input_hash, input_path, 1
    FROM lineage
    WHERE hash = ?
  UNION
    SELECT parent.hash, parent.stage, parent.input_name, parent.input_kind,
           parent.input_hash, parent.input_path, child.depth + 1
    FROM lineage AS parent
    JOIN ancestry AS child
      ON child.input_kind = 'stage' AND parent.hash = child.input_hash
)
SELECT depth, stage, input_name, input_kind, input_hash, input_path
FROM ancestry
ORDER BY depth, stage, input_name
"""


def test_recursive_cte_finds_every_ancestor_and_the_raw_file(ran):
    project, hashes, _result, _ = ran
    rows = project.sql(ANCESTRY_SQL, hashes["pipeline.stg_c"])
    assert [(depth, stage, name, kind) for depth, stage, name, kind, _h, _p in rows] == [
        (1, "pipeline.stg_c", "b", "stage"),
        (2, "pipeline.stg_b", "a", "stage"),
        (2, "pipeline.stg_b", "factor", "param"),
        (3, "pipeline.stg_a", "src", "raw"),
    ]
    ancestors = {h for _d, _s, _n, kind, h, _p in rows if kind == "stage"}
    assert ancestors == {hashes["pipeline.stg_b"], hashes["pipeline.stg_a"]}
    raw_paths = [path for *_, kind, _h, path in rows if kind == "raw"]
    assert raw_paths == ["raw/input.csv"]


def _readme_sql(marker: str) -> str:
    """The README's ```sql block that contains ``marker``."""
    blocks = re.findall(r"```sql\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    (found,) = [b for b in blocks if marker in b]
    return found


def test_readme_lineage_recipes_work(ran):
    project, hashes, _result, _ = ran
    with sqlite3.connect(project.cache_dir / "catalog.sqlite") as conn:
        ancestry = conn.execute(
            _readme_sql("WITH RECURSIVE ancestry"), {"hash": hashes["pipeline.stg_c"]}
        ).fetchall()
        derived = conn.execute(_readme_sql("WITH RECURSIVE derived"), {"path": "raw/input.csv"}).fetchall()
    conn.close()
    raw_digest = xxhash.xxh3_128_hexdigest(RAW_CSV.encode())
    assert ancestry == [
        (0, "pipeline.stg_c", "b", "stage", hashes["pipeline.stg_b"], None),
        (1, "pipeline.stg_b", "a", "stage", hashes["pipeline.stg_a"], None),
        (1, "pipeline.stg_b", "factor", "param", param_digest(3), None),
        (2, "pipeline.stg_a", "src", "raw", raw_digest, "raw/input.csv"),
    ]
    assert sorted(derived) == sorted((name, h) for name, h in hashes.items())


def test_cache_hit_moves_last_access_and_keeps_created_at(ran):
    project, hashes, _result, _ = ran
    query = "SELECT created_at, last_access FROM artifacts WHERE stage = ?"
    (created_1, access_1), = project.sql(query, "pipeline.stg_b")
    warm = project.run()
    assert warm.outcomes()["stg_b"] == "hit"
    (created_2, access_2), = project.sql(query, "pipeline.stg_b")
    assert created_2 == created_1
    assert _ts(access_2) > _ts(access_1)  # stored with microseconds: no sleep needed
    assert _ts(access_2) <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)


def test_raw_files_holds_the_digest_memo(ran):
    project, _hashes, _result, _ = ran
    raw = project.root / "raw" / "input.csv"
    st = os.stat(raw)
    rows = project.sql("SELECT path, size, mtime_ns, ctime_ns, inode, digest, digested_at_ns FROM raw_files")
    assert len(rows) == 1
    path, size, mtime_ns, ctime_ns, inode, digest, digested_at_ns = rows[0]
    assert path == str(raw.resolve()) and os.path.isabs(path)
    assert (size, mtime_ns, ctime_ns, inode) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    assert digest == xxhash.xxh3_128_hexdigest(raw.read_bytes())
    assert digested_at_ns >= max(mtime_ns, ctime_ns)


def test_catalog_is_in_wal_mode(ran):
    project, *_ = ran
    assert project.sql("PRAGMA journal_mode") == [("wal",)]


def test_head_revision_is_newest_migration_and_new_catalog_is_at_it(ran):
    project, *_ = ran
    script = ScriptDirectory(str(migrations_dir()))
    assert script.get_heads() == [HEAD_REVISION]
    newest_file = sorted((migrations_dir() / "versions").glob("[0-9]*.py"))[-1]
    assert newest_file.name.startswith(HEAD_REVISION + "_")
    assert project.sql("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


def _alembic_config(catalog: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", f"sqlite:///{catalog}")
    return config


PARAM_PIPELINE = '''
import pandas as pd
from lwdp import stage

@stage(n=3, cache=True)
def stg_old(n):
    return pd.DataFrame({"n": [n]})

print("HASH", stg_old.name, stg_old.hash)
print("VALUE", int(stg_old()["n"].iloc[0]))
'''


def test_old_catalog_is_upgraded_in_place(project, tmp_path_factory):
    project.write("pipeline.py", PARAM_PIPELINE)
    # Make a real artifact elsewhere to know the stage hash; then doctor its content so a
    # hit is visible: the run must print the stored 42, not recompute 3.
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    stage_hash = _hashes(project.run(env={"LWDP_CACHE_DIR": str(elsewhere)}).stdout)["pipeline.stg_old"]
    import pandas as pd

    artifact = _artifact_path(project, stage_hash, "parquet")
    artifact.parent.mkdir(parents=True)
    pd.DataFrame({"n": [42]}).to_parquet(artifact)
    data = artifact.read_bytes()

    catalog = project.cache_dir / "catalog.sqlite"
    command.upgrade(_alembic_config(catalog), "0001")
    created = "2020-01-02 03:04:05.000000"
    with sqlite3.connect(catalog) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        columns_0001 = {r[1] for r in conn.execute("PRAGMA table_info(artifacts)")}
        assert "compute_seconds" not in columns_0001
        conn.execute(
            "INSERT INTO artifacts (hash, stage, format, size, checksum, read_options, created_at, last_access)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (stage_hash, "pipeline.stg_old", "parquet", len(data), xxhash.xxh3_128_hexdigest(data), "{}", created, created),
        )
    conn.close()

    result = project.run()
    assert result.outcomes() == {"stg_old": "hit"}
    assert "VALUE 42" in result.stdout

    assert project.sql("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    columns = {r[1] for r in project.sql("PRAGMA table_info(artifacts)")}
    assert {"compute_seconds", "lwdp_version", "pandas_version"} <= columns
    indexes = {r[0] for r in project.sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_artifacts_stage", "ix_artifacts_recency", "ix_lineage_input_hash"} <= indexes
    rows = project.sql("SELECT hash, stage, size, created_at, compute_seconds FROM artifacts")
    assert rows == [(stage_hash, "pipeline.stg_old", len(data), created, None)]


def test_catalog_from_newer_lwdp_is_refused_and_left_unchanged(ran):
    project, hashes, _result, _ = ran
    catalog = project.cache_dir / "catalog.sqlite"
    with sqlite3.connect(catalog) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    conn.close()  # last connection: the WAL is checkpointed into the file
    before_bytes = hashlib.sha256(catalog.read_bytes()).hexdigest()
    before_rows = project.sql("SELECT * FROM artifacts ORDER BY hash"), project.sql("SELECT * FROM lineage ORDER BY hash, input_name")

    failed = project.run(check=False)
    assert failed.returncode != 0
    last_line = failed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("lwdp.errors.CatalogVersionError: ")
    assert "9999_future" in last_line and str(catalog) in last_line
    assert failed.events == []

    # in-process too, to check the class family
    import lwdp
    from lwdp import stage

    @stage(x=1)
    def probe(x):
        return x

    with pytest.raises(CatalogVersionError, match="9999_future") as excinfo:
        probe()
    assert isinstance(excinfo.value, lwdp.LwdpError) and isinstance(excinfo.value, RuntimeError)

    assert hashlib.sha256(catalog.read_bytes()).hexdigest() == before_bytes
    assert project.sql("SELECT version_num FROM alembic_version") == [("9999_future",)]
    after_rows = project.sql("SELECT * FROM artifacts ORDER BY hash"), project.sql("SELECT * FROM lineage ORDER BY hash, input_name")
    assert after_rows == before_rows
    assert len(before_rows[0]) == 2


@pytest.mark.slow
def test_wheel_installs_in_a_clean_venv_and_runs_the_quickstart(tmp_path):
    # build from a clean copy: setuptools would otherwise reuse (and leave) the repo's build/
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", ".lwdp", "__pycache__", ".pytest_cache", ".venv", ".hypothesis",
    ))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", str(wheels), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = wheels.glob("lwdp-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, text=True, timeout=600,
    )

    work = tmp_path / "user"
    copy_example("quickstart", work)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LWDP_", "PYTHON", "VIRTUAL_ENV"))}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], cwd=work, env=env, capture_output=True, text=True, timeout=300, check=True)

    where = run("-c", "import lwdp, pathlib; print(pathlib.Path(lwdp.__file__).parent)").stdout.strip()
    package = Path(where)
    assert package.is_relative_to(venv), f"lwdp imported from {package}, not the new venv"
    assert (package / "migrations" / "versions" / "0001_initial.py").is_file()
    assert (package / "migrations" / "env.py").is_file()
    assert (package / "migrations" / "script.py.mako").is_file()

    cold = run("pipeline.py")
    assert "cache hit" not in cold.stderr
    assert "stage pipeline.stg_report: computed" in cold.stderr
    warm = run("pipeline.py")
    assert "lwdp INFO stage pipeline.stg_report: cache hit" in warm.stderr
    assert "computed" not in warm.stderr
    assert warm.stdout == cold.stdout and "total revenue:" in warm.stdout
    assert (work / ".lwdp" / "catalog.sqlite").is_file()
    with sqlite3.connect(work / ".lwdp" / "catalog.sqlite") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
    conn.close()
