"""Cache maintenance on real caches made by real pipelines run in fresh processes.

gc (TTL by last access, strict LRU to a size budget, the sweep of orphans, dangling rows,
unlisted-but-intact files and dead writers' temp files, dry runs, its report, and gc run
concurrently with pipelines that compute and read), lineage and dependents across a
diamond and a raw file that changed between runs, the artifact listing, the README's SQL
recipes and views, and the ``lwdp`` command line.

Expensive caches are built once per module (a "template" project) and copied into each
test's own project directory, so every test still works on a cache a pipeline wrote.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import xxhash

import lwdp.store
from conftest import Project
from lwdp.errors import LwdpError, UnknownStageError
from lwdp.hashing.params import param_digest
from lwdp.store.catalog import ArtifactRecord
from lwdp.units import UnitError, human_size

REPO = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("runner.py")
STAMP = "%Y-%m-%d %H:%M:%S.%f"  # how the catalog stores times (naive UTC)

# ---------------------------------------------------------------------------------------
# pipelines

W_CSV = "a,b\n1,2\n3,4\n5,6\n"

# Six independent cached stages of different formats and sizes, all read by one uncached
# stage, so a run reports for each whether it was a cache hit or computed again.
WIDE = '''
import pandas as pd
from lwdp import stage

def frame(src, k, pad):
    df = pd.read_csv(src)
    df["k"] = k
    df["pad"] = "x" * pad
    return df

@stage(src="raw/w.csv", k=0, cache=True)
def w0(src, k):
    return frame(src, k, 2000)

@stage(src="raw/w.csv", k=1, cache=True, cache_format="csv")
def w1(src, k):
    return frame(src, k, 1000)

@stage(src="raw/w.csv", k=2, cache=True)
def w2(src, k):
    return {"k": k, "pad": "y" * 300}

@stage(src="raw/w.csv", k=3, cache=True, cache_format="csv")
def w3(src, k):
    return frame(src, k, 50)

@stage(src="raw/w.csv", k=4, cache=True, cache_format="json")
def w4(src, k):
    return frame(src, k, 700)

@stage(src="raw/w.csv", k=5, cache=True, cache_format="feather")
def w5(src, k):
    return frame(src, k, 3000)

@stage(w0=w0, w1=w1, w2=w2, w3=w3, w4=w4, w5=w5)
def total(**parts):
    return {name: len(part) for name, part in sorted(parts.items())}

if __name__ == "__main__":
    for f in (w0, w1, w2, w3, w4, w5):
        print("HASH", f.name, f.hash)
    print("TOTAL", total())
'''
WIDE_NAMES = [f"w{i}" for i in range(6)]

RAW_V1 = "a,b\n1,2\n3,4\n5,6\n"
RAW_V2 = "a,b\n1,2\n3,4\n5,7\n"
LONG_STAGE = "stg_with_a_deliberately_long_function_name_for_ls"

# raw -> a -> (b, c) -> d, plus an unrelated stage with a long name (for `lwdp ls`).
DIAMOND = f'''
import pandas as pd
from lwdp import stage

@stage(src="raw/x.csv", cache=True)
def stg_a(src):
    return pd.read_csv(src)

@stage(up=stg_a, x=2, cache=True)
def stg_b(up, x):
    return up * x

@stage(up=stg_a, cache=True, cache_format="csv")
def stg_c(up):
    return up + 1

@stage(left=stg_b, right=stg_c, cache=True)
def stg_d(left, right):
    return left + right

@stage(n=3, cache=True)
def {LONG_STAGE}(n):
    return pd.DataFrame({{"v": list(range(n))}})

if __name__ == "__main__":
    for f in (stg_a, stg_b, stg_c, stg_d):
        print("HASH", f.name, f.hash)
    print("RESULT", stg_d().to_json())
    {LONG_STAGE}()
'''
DIAMOND_STAGES = ["stg_a", "stg_b", "stg_c", "stg_d"]
DEPTH = {"stg_a": 1, "stg_b": 2, "stg_c": 2, "stg_d": 3}

# A cached stage that computes for 2 s (holding its compute lock), then a cached consumer.
SLOW = '''
import time
import pandas as pd
from lwdp import stage

@stage(src="raw/s.csv", cache=True)
def slow(src):
    time.sleep(2)
    return pd.read_csv(src)

@stage(up=slow, cache=True)
def after(up):
    return up.assign(t=up["a"] * 10)

if __name__ == "__main__":
    print("RESULT", after().to_json())
'''

# A big csv artifact: reading it back takes a noticeable fraction of a second.
BIG = '''
import numpy as np
import pandas as pd
from lwdp import stage

@stage(n=1_500_000, cache=True, cache_format="csv")
def big(n):
    return pd.DataFrame({"a": np.arange(n), "b": np.arange(n) % 7})

if __name__ == "__main__":
    df = big()
    print("RESULT", len(df), int(df["a"].sum()), int(df["b"].sum()))
'''

HOLD_LOCK = '''
import sys, time
from pathlib import Path
from lwdp.store.locks import LockDir

with LockDir(Path(sys.argv[1])).hold(sys.argv[2], "x"):
    print("locked", flush=True)
    time.sleep(120)
'''


# ---------------------------------------------------------------------------------------
# helpers


def _hashes(stdout: str) -> dict[str, str]:
    """{function name: hash} from a script's ``HASH qualified.name hash`` lines."""
    found = {}
    for line in stdout.splitlines():
        if line.startswith("HASH "):
            _, name, digest = line.split()
            found[name.rsplit(".", 1)[-1]] = digest
    return found


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _execute(project: Project, query: str, *params: object) -> int:
    """Run a writing statement with plain sqlite3; return the row count."""
    with closing(sqlite3.connect(project.cache_dir / "catalog.sqlite")) as conn, conn:
        return conn.execute(query, params).rowcount


def _set_last_access(project: Project, stage_hash: str, when: dt.datetime) -> None:
    assert _execute(project, "UPDATE artifacts SET last_access = ? WHERE hash = ?", when.strftime(STAMP), stage_hash) == 1


def _rows(project: Project) -> dict[str, tuple[str, str, int]]:
    """{hash: (stage, format, size)} of the catalog's artifacts."""
    return {h: (s, f, size) for h, s, f, size in project.sql("SELECT hash, stage, format, size FROM artifacts")}


def _catalog_dump(project: Project) -> dict[str, list[tuple]]:
    return {t: sorted(project.sql(f"SELECT * FROM {t}"), key=repr) for t in ("artifacts", "lineage", "raw_files")}


def _files_of(project: Project, stage_hash: str) -> list[str]:
    """Names of the files of an artifact (its file and its manifest), sorted."""
    folder = project.cache_dir / "artifacts" / stage_hash[:2]
    return sorted(p.name for p in folder.glob(f"{stage_hash}.*")) if folder.is_dir() else []


def _artifact_file(project: Project, stage_hash: str) -> Path:
    (path,) = [p for p in (project.cache_dir / "artifacts" / stage_hash[:2]).glob(f"{stage_hash}.*")
               if not p.name.endswith(".manifest.json")]
    return path


def _assert_present(project: Project, stage_hash: str) -> None:
    files = _files_of(project, stage_hash)
    assert len(files) == 2 and f"{stage_hash}.manifest.json" in files, files


def _listing(root: Path) -> list[tuple[str, int, int]]:
    """Every file under ``root`` except the SQLite files: (path, size, mtime_ns)."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("catalog.sqlite")
    )


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    pid = int(done.stdout)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # edited modules must never be served from a stale .pyc
    env.update(extra)
    return env


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m lwdp ARGS`` in ``cwd``, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "lwdp", *args], cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=120,
    )


def _cli_all(cwd: Path, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Several independent ``python -m lwdp`` commands, run at the same time (they only read)."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "lwdp", *args], cwd=cwd, env=_clean_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in commands
    ]
    done = []
    for args, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess([sys.executable, "-m", "lwdp", *args], proc.returncode, out, err))
    return done


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def _events(stderr: str) -> dict[str, dict]:
    return {
        e["stage"].rsplit(".", 1)[-1]: e
        for e in (json.loads(line.split(" ", 1)[1]) for line in stderr.splitlines() if line.startswith("LWDP_EVENT "))
    }


def _start(project: Project, script: str, name: str) -> tuple[subprocess.Popen, Path, Path]:
    """Start ``runner.py script`` in the background; its output goes to files."""
    out, err = project.root / f"{name}.out", project.root / f"{name}.err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([sys.executable, str(RUNNER), script], cwd=project.root, env=_clean_env(), stdout=o, stderr=e)
    return proc, out, err


def _strict_lru(rows_by_recency: list[tuple[str, int]], budget: int) -> tuple[list[str], list[str]]:
    """(kept, removed) by strict LRU: keep the most recent while they fit; the first that
    doesn't, and everything older, goes."""
    kept, removed, used = [], [], 0
    for stage_hash, size in rows_by_recency:
        if removed or used + size > budget:
            removed.append(stage_hash)
        else:
            kept.append(stage_hash)
            used += size
    return kept, removed


# ---------------------------------------------------------------------------------------
# caches made once per module, copied into each test's project


@dataclass
class Diamond:
    root: Path
    h1: dict[str, str]  # run 1 (RAW_V1)
    h2: dict[str, str]  # run 2 (RAW_V2)
    long_hash: str

    @property
    def d1(self) -> str:
        return self.h1["stg_d"]

    @property
    def d2(self) -> str:
        return self.h2["stg_d"]


def _expected_d(raw: str) -> pd.DataFrame:
    a = pd.read_csv(io.StringIO(raw))
    return a * 2 + (a + 1)


@pytest.fixture(scope="module")
def wide_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, dict[str, str], str]:
    template = Project(tmp_path_factory.mktemp("wide"))
    template.write("raw/w.csv", W_CSV)
    template.write("wide.py", WIDE)
    result = template.run("wide.py")
    hashes = _hashes(result.stdout)
    assert sorted(hashes) == WIDE_NAMES
    assert {n: o for n, o in result.outcomes().items() if n != "total"} == {n: "computed" for n in WIDE_NAMES}
    total = [line for line in result.stdout.splitlines() if line.startswith("TOTAL ")]
    return template, hashes, total[0]


@pytest.fixture
def wide(project: Project, wide_template) -> dict[str, str]:
    """This test's project holds a copy of the wide pipeline and its cache: {w0..w5: hash}."""
    template, hashes, _ = wide_template
    shutil.copytree(template.root, project.root, dirs_exist_ok=True)
    assert set(_rows(project)) == set(hashes.values())
    return hashes


@pytest.fixture(scope="module")
def diamond_template(tmp_path_factory: pytest.TempPathFactory) -> Diamond:
    """The diamond run twice: once on RAW_V1, then (raw file changed) on RAW_V2."""
    template = Project(tmp_path_factory.mktemp("diamond"))
    template.write("raw/x.csv", RAW_V1)
    template.write("pipeline.py", DIAMOND)
    first = template.run()
    template.write("raw/x.csv", RAW_V2)
    second = template.run()
    h1, h2 = _hashes(first.stdout), _hashes(second.stdout)
    assert sorted(h1) == sorted(h2) == DIAMOND_STAGES
    assert all(h1[s] != h2[s] for s in DIAMOND_STAGES)  # the raw change reached every stage
    assert second.outcomes()[LONG_STAGE] == "hit"
    for result, raw in ((first, RAW_V1), (second, RAW_V2)):
        (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        assert json.loads(line.split(" ", 1)[1]) == json.loads(_expected_d(raw).to_json())
    long_hash = second.events[-1]["hash"]
    assert second.events[-1]["stage"] == f"pipeline.{LONG_STAGE}"
    return Diamond(template.root, h1, h2, long_hash)


@pytest.fixture
def diamond(project: Project, diamond_template: Diamond, monkeypatch: pytest.MonkeyPatch) -> Diamond:
    """Read-only use of the diamond template: its directory is the working directory."""
    monkeypatch.chdir(diamond_template.root)
    return diamond_template


@pytest.fixture
def diamond_copy(project: Project, diamond_template: Diamond) -> Diamond:
    """A copy of the diamond template in this test's project, to change freely."""
    shutil.copytree(diamond_template.root, project.root, dirs_exist_ok=True)
    return Diamond(project.root, diamond_template.h1, diamond_template.h2, diamond_template.long_hash)


# ---------------------------------------------------------------------------------------
# gc: TTL


AGES = [  # max_age, in seconds, whether to check a fresh run too (the same code path for all)
    pytest.param(3600, 3600, False, id="int-seconds"),
    pytest.param(5400.5, 5400.5, False, id="float-seconds"),
    pytest.param(dt.timedelta(hours=2), 7200, True, id="timedelta"),
    pytest.param("90s", 90, False, id="90s"),
    pytest.param("30m", 1800, False, id="30m"),
    pytest.param("12h", 12 * 3600, False, id="12h"),
    pytest.param("7d", 7 * 86400, True, id="7d"),
    pytest.param("2w", 14 * 86400, False, id="2w"),
]


@pytest.mark.parametrize("max_age, seconds, rerun", AGES)
def test_ttl_removes_exactly_the_expired_artifacts(project, wide, wide_template, max_age, seconds, rerun):
    rows_before = _rows(project)
    now = _utcnow()
    margin = dt.timedelta(seconds=min(60, seconds / 3))
    expired = {"w0", "w2", "w5"}  # parquet, pickle, feather
    for name, stage_hash in wide.items():
        age = dt.timedelta(seconds=seconds) + (margin if name in expired else -margin)
        _set_last_access(project, stage_hash, now - age)

    report = lwdp.store.gc(max_age=max_age)

    gone = {wide[n] for n in expired}
    assert {r.hash for r in report.removed} == gone
    assert report.count == 3 and not report.dry_run
    for r in report.removed:
        stage, _fmt, size = rows_before[r.hash]
        assert (r.stage, r.size, r.reason) == (stage, size, "expired")
    assert report.in_use == [] and report.temp_files == []
    assert set(_rows(project)) == set(wide.values()) - gone
    for name, stage_hash in wide.items():
        if name in expired:
            assert _files_of(project, stage_hash) == []  # file and manifest
            assert not (project.cache_dir / "locks" / f"{stage_hash}.lock").exists()
        else:
            _assert_present(project, stage_hash)

    if rerun:
        fresh = project.run("wide.py")
        outcomes = fresh.outcomes()
        assert {n: outcomes[n] for n in WIDE_NAMES} == {n: "computed" if n in expired else "hit" for n in WIDE_NAMES}
        assert wide_template[2] in fresh.stdout.splitlines()
        assert set(_rows(project)) == set(wide.values())


@pytest.mark.parametrize("bad", ["banana", "-1d", "7 parsecs", "", True])
def test_max_age_that_is_not_a_duration_is_a_unit_error(project, bad):
    with pytest.raises(UnitError) as info:
        lwdp.store.gc(max_age=bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, LwdpError)
    assert repr(bad) in str(info.value)
    assert not project.cache_dir.exists()  # refused before touching anything


@pytest.mark.parametrize("bad", [-1, -0.5, dt.timedelta(seconds=-1)])
def test_negative_max_age_is_a_unit_error(project, bad):
    with pytest.raises(UnitError, match="negative"):
        lwdp.store.gc(max_age=bad)


@pytest.mark.parametrize("bad", ["lots", "-5MB", "10 parsecs", "1.5 GiBs", -1])
def test_max_size_that_is_not_a_size_is_a_unit_error(project, bad):
    with pytest.raises(UnitError) as info:
        lwdp.store.gc(max_size=bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, LwdpError)
    assert repr(bad) in str(info.value)
    assert not project.cache_dir.exists()


# ---------------------------------------------------------------------------------------
# gc: LRU


LRU_CASES = [
    # max_size, its bytes, recency order (most recent first)
    pytest.param("10kB", 10_000, ["w0", "w1", "w2", "w4", "w5", "w3"], id="10kB"),
    pytest.param("1.5KiB", 1536, ["w2", "w4", "w3", "w1", "w0", "w5"], id="1.5KiB"),
    pytest.param("int", None, ["w1", "w4", "w5", "w0", "w3", "w2"], id="int-bytes"),
]


@pytest.mark.parametrize("max_size, budget, order", LRU_CASES)
def test_lru_keeps_the_most_recently_used_within_the_budget(project, wide, max_size, budget, order):
    now = _utcnow()
    for i, name in enumerate(order):
        _set_last_access(project, wide[name], now - dt.timedelta(minutes=i + 1))
    rows = _rows(project)
    by_recency = [(wide[n], rows[wide[n]][2]) for n in order]
    if budget is None:  # the three most recent plus exactly the smallest: that one must go all the same
        budget = sum(size for _, size in by_recency[:3]) + min(size for _, size in by_recency)
        max_size = budget
    kept, removed = _strict_lru(by_recency, budget)
    # the scenario is informative: some kept, some removed, and strictness matters (an
    # older artifact that would still fit goes, because a more recent one didn't fit)
    used = sum(rows[h][2] for h in kept)
    assert kept and removed
    assert any(rows[h][2] <= budget - used for h in removed[1:]), "scenario does not exercise strict LRU"

    report = lwdp.store.gc(max_size=max_size)

    assert sorted(r.hash for r in report.removed) == sorted(removed)
    assert all(r.reason == "lru" and r.size == rows[r.hash][2] and r.stage == rows[r.hash][0] for r in report.removed)
    assert set(_rows(project)) == set(kept)
    assert sum(size for _s, _f, size in _rows(project).values()) <= budget
    for h in kept:
        _assert_present(project, h)
    for h in removed:
        assert _files_of(project, h) == []


def test_lru_budget_counts_only_what_survives_the_ttl(project, wide):
    """max_age first, then max_size over what is left."""
    now = _utcnow()
    order = ["w0", "w1", "w2", "w3", "w4", "w5"]
    for i, name in enumerate(order):
        _set_last_access(project, wide[name], now - dt.timedelta(hours=i + 1))
    rows = _rows(project)
    # the two oldest expire; of the rest, the budget fits exactly the two most recent
    budget = rows[wide["w0"]][2] + rows[wide["w1"]][2]
    report = lwdp.store.gc(max_age=4.5 * 3600, max_size=budget)
    reasons = {r.hash: r.reason for r in report.removed}
    assert reasons == {wide["w4"]: "expired", wide["w5"]: "expired", wide["w2"]: "lru", wide["w3"]: "lru"}
    assert set(_rows(project)) == {wide["w0"], wide["w1"]}


# ---------------------------------------------------------------------------------------
# gc: the sweep


def test_gc_sweeps_orphans_dangling_rows_and_dead_temp_files_and_readopts_intact_files(project, wide):
    art = project.cache_dir / "artifacts"
    old = time.time() - 3600
    rows = _rows(project)
    # an artifact file that no row lists and no manifest vouches for, published long ago
    orphan_hash = "ab" + "cd" * 15
    orphan = art / "ab" / f"{orphan_hash}.parquet"
    orphan.parent.mkdir(exist_ok=True)
    shutil.copyfile(_artifact_file(project, wide["w0"]), orphan)
    orphan_size = orphan.stat().st_size
    os.utime(orphan, (old, old))
    # ... and one just published (its writer records the row a moment later): left alone
    young_hash = "ab" + "ef" * 15
    young = art / "ab" / f"{young_hash}.parquet"
    shutil.copyfile(_artifact_file(project, wide["w0"]), young)
    # a row whose file is gone
    _artifact_file(project, wide["w1"]).unlink()
    # a file whose row is gone but whose manifest and checksum are intact
    assert _execute(project, "DELETE FROM artifacts WHERE hash = ?", wide["w2"]) == 1
    for p in (art / wide["w2"][:2]).glob(f"{wide['w2']}.*"):
        os.utime(p, (old, old))
    # temporary files: one of a writer that died, one of a writer still running (us)
    dead = art / wide["w3"][:2] / f".tmp-{wide['w3']}-{_dead_pid()}-9f8e.csv"
    dead.write_text("half a csv")
    live = art / wide["w4"][:2] / f".tmp-{wide['w4']}-{os.getpid()}-1a2b.json"
    live.write_text("being written")

    report = lwdp.store.gc()

    assert sorted((r.hash, r.stage, r.size, r.reason) for r in report.removed) == sorted([
        (orphan_hash, None, orphan_size, "orphan"),
        (wide["w1"], "wide.w1", rows[wide["w1"]][2], "dangling"),
    ])
    assert not orphan.exists()
    assert young.exists()
    assert wide["w1"] not in _rows(project) and _files_of(project, wide["w1"]) == []  # manifest too
    # re-adopted, not removed: the row is back as it was
    assert _rows(project)[wide["w2"]] == rows[wide["w2"]]
    _assert_present(project, wide["w2"])
    assert report.temp_files == [dead] and not dead.exists()
    assert live.exists()
    assert report.in_use == []
    for name in ("w0", "w3", "w4", "w5"):
        assert _rows(project)[wide[name]] == rows[wide[name]]
        _assert_present(project, wide[name])

    live.unlink()
    rerun = project.run("wide.py")
    outcomes = rerun.outcomes()
    assert {n: outcomes[n] for n in WIDE_NAMES} == {n: "computed" if n == "w1" else "hit" for n in WIDE_NAMES}


def _make_a_mess(project: Project, wide: dict[str, str]) -> dict[str, object]:
    """Expired, LRU, orphan, dangling, unlisted-intact and dead-temp candidates at once."""
    art = project.cache_dir / "artifacts"
    old = time.time() - 3600
    now = _utcnow()
    for i, name in enumerate(["w5", "w4", "w3", "w0", "w1", "w2"]):
        _set_last_access(project, wide[name], now - dt.timedelta(minutes=i + 1))
    _set_last_access(project, wide["w0"], now - dt.timedelta(days=10))
    orphan = art / "ab" / ("ab" + "12" * 15 + ".csv")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_text("a\n1\n")
    os.utime(orphan, (old, old))
    _artifact_file(project, wide["w1"]).unlink()
    _execute(project, "DELETE FROM artifacts WHERE hash = ?", wide["w2"])
    for p in (art / wide["w2"][:2]).glob(f"{wide['w2']}.*"):
        os.utime(p, (old, old))
    dead = art / wide["w3"][:2] / f".tmp-{wide['w3']}-{_dead_pid()}-0000.csv"
    dead.write_text("x")
    rows = _rows(project)
    budget = rows[wide["w5"]][2] + rows[wide["w4"]][2]  # w3 then goes by LRU
    return {"max_age": "7d", "max_size": budget}


def test_dry_run_reports_what_gc_would_do_and_changes_nothing(project, wide):
    args = _make_a_mess(project, wide)
    catalog_before = _catalog_dump(project)
    files_before = _listing(project.cache_dir / "artifacts")

    dry = lwdp.store.gc(**args, dry_run=True)

    assert _catalog_dump(project) == catalog_before
    assert _listing(project.cache_dir / "artifacts") == files_before
    assert dry.dry_run and repr(dry).startswith("GcReport: would remove ")

    real = lwdp.store.gc(**args)

    assert not real.dry_run and repr(real).startswith("GcReport: removed ")
    assert [(r.hash, r.stage, r.size, r.reason) for r in dry.removed] == [
        (r.hash, r.stage, r.size, r.reason) for r in real.removed
    ]
    assert sorted(r.reason for r in real.removed) == ["dangling", "expired", "lru", "orphan"]
    assert (dry.count, dry.bytes_freed, dry.stages, dry.temp_files, dry.in_use) == (
        real.count, real.bytes_freed, real.stages, real.temp_files, real.in_use)
    assert len(real.temp_files) == 1
    # the real one did it
    assert set(_rows(project)) == {wide["w5"], wide["w4"], wide["w2"]}
    assert _catalog_dump(project) != catalog_before


def test_dry_run_leaves_no_file_behind_in_the_cache_directory(project, wide):
    """Not even a lock file: a dry run of gc over an orphan must leave the cache as it was."""
    args = _make_a_mess(project, wide)
    before = _listing(project.cache_dir)
    lwdp.store.gc(**args, dry_run=True)
    assert _listing(project.cache_dir) == before


def test_gc_report_counts_bytes_stages_and_reads_well(project, wide):
    rows = _rows(project)
    old_time = _utcnow() - dt.timedelta(days=3)
    for name in ("w0", "w1"):
        _set_last_access(project, wide[name], old_time)
    orphan_hash = "ab" + "34" * 15
    orphan = project.cache_dir / "artifacts" / "ab" / f"{orphan_hash}.pkl"
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"\x80\x04N." * 25)
    os.utime(orphan, (time.time() - 3600,) * 2)
    dead = project.cache_dir / "artifacts" / wide["w3"][:2] / f".tmp-{wide['w3']}-{_dead_pid()}-abcd.csv"
    dead.write_text("x")

    report = lwdp.store.gc(max_age="1d")

    freed = rows[wide["w0"]][2] + rows[wide["w1"]][2] + 100
    assert report.count == 3 == len(report.removed)
    assert report.bytes_freed == freed
    assert report.stages == ["wide.w0", "wide.w1"]  # sorted, orphans have no stage
    text = repr(report)
    lines = text.splitlines()
    assert lines[0] == f"GcReport: removed 3 artifacts, {human_size(freed)}, from 2 stages"
    by_hash = {line.split()[2]: line.split() for line in lines[1:4]}
    assert by_hash[wide["w0"][:12]][:2] == ["expired", "wide.w0"]
    assert by_hash[wide["w1"][:12]][:2] == ["expired", "wide.w1"]
    assert by_hash[orphan_hash[:12]][:2] == ["orphan", "?"]
    assert " ".join(by_hash[wide["w0"][:12]][3:]) == human_size(rows[wide["w0"]][2])
    assert lines[4].strip() == "1 temporary files of dead writers removed"
    assert len(lines) == 5
    assert "Removal(" not in text and "PosixPath" not in text
    # and a dry run says so
    assert "would remove 0 artifacts" in repr(lwdp.store.gc(dry_run=True))


# ---------------------------------------------------------------------------------------
# gc next to running pipelines


def test_gc_keeps_an_artifact_whose_lock_another_process_holds(project, wide):
    held = wide["w3"]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(project.cache_dir / "locks"), held],
        env=_clean_env(), stdout=subprocess.PIPE, text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline().strip() == "locked"

        report = lwdp.store.gc(max_size=0)

        assert report.in_use == [held]
        assert {r.hash for r in report.removed} == set(wide.values()) - {held}
        assert set(_rows(project)) == {held}
        _assert_present(project, held)
        assert "1 artifacts kept: in use by another process" in repr(report)
    finally:
        proc.kill()
        proc.wait()
    # the holder is gone, and so is its lock: now it goes
    again = lwdp.store.gc(max_size=0)
    assert [r.hash for r in again.removed] == [held] and again.in_use == []
    assert _rows(project) == {}


def test_gc_in_a_loop_never_breaks_a_computing_pipeline(project, wide):
    project.write("raw/s.csv", "a\n1\n2\n3\n")
    project.write("slow.py", SLOW)
    proc, out, err = _start(project, "slow.py", "slow")
    reports = []
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            reports.append(lwdp.store.gc(max_size=0))
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, err.read_text()
    (line,) = [line for line in out.read_text().splitlines() if line.startswith("RESULT ")]
    expected = pd.DataFrame({"a": [1, 2, 3]}).assign(t=lambda f: f["a"] * 10)
    assert json.loads(line.split(" ", 1)[1]) == json.loads(expected.to_json())
    events = _events(err.read_text())
    assert {n: e["outcome"] for n, e in events.items()} == {"slow": "computed", "after": "computed"}
    assert len(reports) >= 10  # gc really ran all along the 2 s computation
    assert set(wide.values()) <= {r.hash for rep in reports for r in rep.removed}
    assert {e["reason"] for e in events.values()} == {"never computed"}  # never "artifact missing"
    assert "Traceback" not in err.read_text()
    # nothing gc and the pipeline did at the same time left the cache inconsistent
    assert lwdp.store.verify().ok


def _holds_shared_flock(path: Path) -> bool:
    """Whether some process holds a shared flock on ``path`` (read from /proc/locks)."""
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return False
    for line in Path("/proc/locks").read_text().splitlines():
        parts = [p for p in line.split() if p != "->"]
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[3] == "READ" and parts[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs /proc/locks to see the reader's lock")
def test_gc_never_breaks_a_reader_holding_the_shared_lock(project):
    project.write("big.py", BIG)
    first = project.run("big.py")
    assert first.outcomes() == {"big": "computed"}
    big_hash = first.events[0]["hash"]
    lock = project.cache_dir / "locks" / f"{big_hash}.lock"

    proc, out, err = _start(project, "big.py", "reader")
    reports = []
    try:
        deadline = time.monotonic() + 60
        while not _holds_shared_flock(lock):  # only once it reads: before, gc could rightly take it
            assert proc.poll() is None, f"the reader ended before it was seen reading:\n{err.read_text()}"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        while proc.poll() is None:
            reports.append(lwdp.store.gc(max_size=0))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, err.read_text()
    assert _events(err.read_text())["big"]["outcome"] == "hit"
    result_lines = [line for line in out.read_text().splitlines() if line.startswith("RESULT ")]
    assert result_lines == [line for line in first.stdout.splitlines() if line.startswith("RESULT ")]
    assert any(big_hash in r.in_use for r in reports)
    assert not any(big_hash in {x.hash for x in r.removed} for r in reports if big_hash in r.in_use)
    # once the reader is done the artifact can go
    lwdp.store.gc(max_size=0)
    assert _rows(project) == {}


# ---------------------------------------------------------------------------------------
# lineage, dependents, artifacts


def _check_diamond_tree(tree, hashes: dict[str, str], raw: str) -> None:
    raw_digest = xxhash.xxh3_128_hexdigest(raw.encode())
    assert (tree.kind, tree.stage, tree.digest, tree.input_name, tree.path) == (
        "stage", "pipeline.stg_d", hashes["stg_d"], None, None)
    assert [c.input_name for c in tree.inputs] == ["left", "right"]
    left, right = tree.inputs
    assert (left.kind, left.stage, left.digest) == ("stage", "pipeline.stg_b", hashes["stg_b"])
    assert (right.kind, right.stage, right.digest) == ("stage", "pipeline.stg_c", hashes["stg_c"])
    assert [c.input_name for c in left.inputs] == ["up", "x"]
    a_via_b, x = left.inputs
    assert (x.kind, x.digest, x.path, x.stage, x.inputs) == ("param", param_digest(2), None, None, [])
    assert [c.input_name for c in right.inputs] == ["up"]
    (a_via_c,) = right.inputs
    for a in (a_via_b, a_via_c):
        assert (a.kind, a.stage, a.digest) == ("stage", "pipeline.stg_a", hashes["stg_a"])
        (src,) = a.inputs
        assert (src.kind, src.input_name, src.path, src.digest, src.inputs) == ("raw", "src", "raw/x.csv", raw_digest, [])
    assert len(tree.walk()) == 8
    text = repr(tree)
    lines = text.splitlines()
    assert lines[0] == f"pipeline.stg_d {hashes['stg_d'][:12]}"
    assert f"├── left = pipeline.stg_b {hashes['stg_b'][:12]}" in lines
    assert f"└── right = pipeline.stg_c {hashes['stg_c'][:12]}" in lines
    assert sum(f"src = raw raw/x.csv {raw_digest[:12]}" in line for line in lines) == 2
    assert sum(f"x = param {param_digest(2)[:12]}" in line for line in lines) == 1


def test_lineage_is_the_latest_tree_across_a_diamond_and_a_changed_raw_file(diamond):
    _check_diamond_tree(lwdp.store.lineage("stg_d"), diamond.h2, RAW_V2)
    _check_diamond_tree(lwdp.store.lineage("pipeline.stg_d"), diamond.h2, RAW_V2)
    _check_diamond_tree(lwdp.store.lineage(diamond.d2), diamond.h2, RAW_V2)
    # the old tree by a hash prefix, with the old raw digest
    _check_diamond_tree(lwdp.store.lineage(diamond.d1[:10]), diamond.h1, RAW_V1)
    _check_diamond_tree(lwdp.store.lineage(diamond.d1[:10].upper()), diamond.h1, RAW_V1)
    # a middle node
    b_tree = lwdp.store.lineage(diamond.h1["stg_b"][:8])
    assert (b_tree.stage, b_tree.digest) == ("pipeline.stg_b", diamond.h1["stg_b"])
    assert [(n.kind, n.digest) for n in b_tree.walk()][1:] == [
        ("stage", diamond.h1["stg_a"]), ("raw", xxhash.xxh3_128_hexdigest(RAW_V1.encode())), ("param", param_digest(2)),
    ]
    for unknown in ("stg_zzz", "0123456789abcdef"):
        with pytest.raises(UnknownStageError, match=unknown):
            lwdp.store.lineage(unknown)


def test_lineage_follows_the_latest_run_when_a_raw_file_is_reverted(project, diamond_copy):
    """v1, then v2, then back to v1: the latest evaluation of stg_d is v1's hash again."""
    project.write("raw/x.csv", RAW_V1)
    third = project.run()
    assert _hashes(third.stdout) == diamond_copy.h1
    assert third.outcomes()["stg_d"] == "hit"
    _check_diamond_tree(lwdp.store.lineage("stg_d"), diamond_copy.h1, RAW_V1)


def test_dependents_lists_every_stage_hash_of_every_run(diamond):
    expected = {
        (f"pipeline.{s}", h[s], DEPTH[s]) for h in (diamond.h1, diamond.h2) for s in DIAMOND_STAGES
    }
    for spelled in ("raw/x.csv", "./raw/x.csv", str(diamond.root / "raw" / "x.csv"), Path("raw/x.csv")):
        found = lwdp.store.dependents(spelled)
        assert len(found) == 8
        assert {(d.stage, d.hash, d.depth) for d in found} == expected
        assert [d.depth for d in found] == sorted(d.depth for d in found)  # nearest first
        assert found.stages() == [f"pipeline.{s}" for s in DIAMOND_STAGES]
    text = repr(lwdp.store.dependents("raw/x.csv"))
    assert f"pipeline.stg_a {diamond.h1['stg_a'][:12]}" in text.splitlines()
    assert f"  pipeline.stg_c {diamond.h2['stg_c'][:12]}" in text.splitlines()
    assert f"    pipeline.stg_d {diamond.d2[:12]}" in text.splitlines()
    nothing = lwdp.store.dependents("raw/unrelated.csv")
    assert list(nothing) == [] and repr(nothing) == "no stage was derived from it"


GLOB_PIPELINE = '''
import glob
import pandas as pd
from lwdp import stage

@stage(files="raw/*.csv", cache=True)
def load(files):
    return pd.concat([pd.read_csv(p) for p in sorted(glob.glob(files))], ignore_index=True)

@stage(up=load, cache=True)
def summarize(up):
    return up.sum().to_frame("total")

if __name__ == "__main__":
    print("HASH", load.name, load.hash)
    print("HASH", summarize.name, summarize.hash)
    summarize()
'''

OTHER = '''
import pandas as pd
from lwdp import stage

@stage(src="raw/p.csv", cache=True)
def load(src):
    return pd.read_csv(src)

if __name__ == "__main__":
    print("HASH", load.name, load.hash)
    load()
'''


@dataclass
class TwoLoads:
    root: Path
    main: dict[str, str]  # pipeline.load (glob raw/*.csv) -> pipeline.summarize
    other: dict[str, str]  # other.load (raw/p.csv)


@pytest.fixture(scope="module")
def two_loads_template(tmp_path_factory: pytest.TempPathFactory) -> TwoLoads:
    template = Project(tmp_path_factory.mktemp("two_loads"))
    template.write("raw/p.csv", "a\n1\n")
    template.write("raw/q.csv", "a\n2\n")
    template.write("pipeline.py", GLOB_PIPELINE)
    template.write("other.py", OTHER)
    main = _hashes(template.run("pipeline.py").stdout)
    other = _hashes(template.run("other.py").stdout)
    return TwoLoads(template.root, main, other)


@pytest.fixture
def two_loads(project: Project, two_loads_template: TwoLoads, monkeypatch: pytest.MonkeyPatch) -> TwoLoads:
    monkeypatch.chdir(two_loads_template.root)
    return two_loads_template


def test_a_glob_input_depends_on_each_file_it_matches(two_loads):
    main, other = two_loads.main, two_loads.other
    assert {(d.stage, d.hash, d.depth) for d in lwdp.store.dependents("raw/p.csv")} == {
        ("pipeline.load", main["load"], 1), ("pipeline.summarize", main["summarize"], 2), ("other.load", other["load"], 1),
    }
    assert {(d.stage, d.hash, d.depth) for d in lwdp.store.dependents("raw/q.csv")} == {
        ("pipeline.load", main["load"], 1), ("pipeline.summarize", main["summarize"], 2),
    }
    assert list(lwdp.store.dependents("raw/p.txt")) == list(lwdp.store.dependents("elsewhere/p.csv")) == []
    glob_tree = lwdp.store.lineage("pipeline.load")
    assert (glob_tree.stage, glob_tree.digest) == ("pipeline.load", main["load"])
    assert [(n.kind, n.input_name, n.path) for n in glob_tree.inputs] == [("raw", "files", "raw/*.csv")]
    assert lwdp.store.lineage("summarize").digest == main["summarize"]  # a bare name only one stage has


def test_a_bare_name_two_stages_share_is_ambiguous_and_the_qualified_name_works(two_loads):
    main, other = two_loads.main, two_loads.other
    assert [r.hash for r in lwdp.store.artifacts(stage="other.load")] == [other["load"]]
    assert [r.hash for r in lwdp.store.artifacts(stage="pipeline.load")] == [main["load"]]
    assert lwdp.store.lineage("pipeline.load").digest == main["load"]
    other_tree = lwdp.store.lineage("other.load")
    assert (other_tree.digest, other_tree.inputs[0].path) == (other["load"], "raw/p.csv")
    assert other_tree.inputs[0].digest == xxhash.xxh3_128_hexdigest(b"a\n1\n")

    for what, call in (("artifacts", lambda: lwdp.store.artifacts(stage="load")), ("lineage", lambda: lwdp.store.lineage("load"))):
        with pytest.raises(UnknownStageError) as info:
            call()
        assert isinstance(info.value, LookupError) and isinstance(info.value, LwdpError)
        message = str(info.value)
        assert "ambiguous" in message and "pipeline.load" in message and "other.load" in message, f"{what}: {message}"

    cli = _cli(two_loads.root, "lineage", "load")
    assert cli.returncode == 2 and cli.stdout == ""
    (line,) = cli.stderr.strip().splitlines()
    assert "pipeline.load" in line and "other.load" in line, line


ARTIFACT_COLUMNS = [
    "hash", "stage", "format", "size", "checksum", "read_options", "created_at", "last_access",
    "compute_seconds", "lwdp_version", "pandas_version", "input_key", "watched", "hits",
]


def test_artifacts_newest_first_and_as_a_frame(diamond):
    project = Project(diamond.root)
    newest_first = [h for (h,) in project.sql("SELECT hash FROM artifacts ORDER BY created_at DESC")]
    listed = lwdp.store.artifacts()
    assert isinstance(listed, lwdp.store.ArtifactList)
    assert [r.hash for r in listed] == newest_first and len(listed) == 9
    created = [r.created_at for r in listed]
    assert created == sorted(created, reverse=True)
    assert all(r.created_at.tzinfo is not None and r.last_access.utcoffset() == dt.timedelta(0) for r in listed)
    # the second run's artifacts come before the first's
    assert listed.index(next(r for r in listed if r.hash == diamond.d2)) < listed.index(
        next(r for r in listed if r.hash == diamond.d1))

    for name in ("stg_b", "pipeline.stg_b"):
        assert [r.hash for r in lwdp.store.artifacts(stage=name)] == [diamond.h2["stg_b"], diamond.h1["stg_b"]]
    with pytest.raises(UnknownStageError):
        lwdp.store.artifacts(stage="no_such_stage")

    frame = listed.to_frame()
    assert list(frame.columns) == ARTIFACT_COLUMNS == list(ArtifactRecord.__dataclass_fields__)
    catalog_columns = [row[1] for row in project.sql("PRAGMA table_info(artifacts)")]
    assert sorted(frame.columns) == sorted(catalog_columns)
    assert frame["hash"].tolist() == newest_first
    sizes = dict(project.sql("SELECT hash, size FROM artifacts"))
    assert dict(zip(frame["hash"], frame["size"])) == sizes
    assert set(frame["format"]) == {"parquet", "csv"}
    assert list(lwdp.store.ArtifactList().to_frame().columns) == ARTIFACT_COLUMNS


# ---------------------------------------------------------------------------------------
# the README's SQL


def _readme_statements() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [s.strip() for block in blocks for s in block.split(";") if s.strip()]


def test_readme_sql_recipes_and_views_run_as_written(diamond):
    statements = _readme_statements()

    def one(marker: str) -> str:
        (found,) = [s for s in statements if marker in s]
        return found

    ancestry_sql, derived_sql = one("ancestry("), one("derived(")
    closure_sql, descendants_sql = one("FROM lineage_closure"), one("FROM raw_descendants")
    parameters_sql = one("FROM stage_manifests")
    history_sql = one("FROM run_stages")
    assert len(statements) == 6

    def run(sql: str, **params: str) -> list[tuple]:
        with closing(sqlite3.connect(diamond.root / ".lwdp" / "catalog.sqlite")) as conn:
            return conn.execute(sql, params).fetchall()

    for hashes, raw in ((diamond.h2, RAW_V2), (diamond.h1, RAW_V1)):
        d = hashes["stg_d"]
        ancestry = run(ancestry_sql, hash=d)
        assert ancestry == [
            (0, "pipeline.stg_d", "left", "stage", hashes["stg_b"], None),
            (0, "pipeline.stg_d", "right", "stage", hashes["stg_c"], None),
            (1, "pipeline.stg_b", "up", "stage", hashes["stg_a"], None),
            (1, "pipeline.stg_b", "x", "param", param_digest(2), None),
            (1, "pipeline.stg_c", "up", "stage", hashes["stg_a"], None),
            (2, "pipeline.stg_a", "src", "raw", xxhash.xxh3_128_hexdigest(raw.encode()), "raw/x.csv"),
        ]
        deepest = max(row[0] for row in ancestry)
        assert [row[5] for row in ancestry if row[0] == deepest] == ["raw/x.csv"]
        # the view says the same (its depth counts from 1: the artifact's own inputs)
        closure = run(closure_sql, hash=d)
        assert [row[0] for row in closure] == sorted(row[0] for row in closure)
        assert set(closure) == {(depth + 1, kind, name, path) for depth, _s, name, kind, _h, path in ancestry}
        assert closure[-1] == (3, "raw", "src", "raw/x.csv")

    derived = run(derived_sql, path="raw/x.csv")
    expected = {(f"pipeline.{s}", h[s]) for h in (diamond.h1, diamond.h2) for s in DIAMOND_STAGES}
    assert len(derived) == len(expected) and set(derived) == expected
    descendants = run(descendants_sql, path="raw/x.csv")
    assert {(stage, h) for stage, h, _depth in descendants} == expected
    assert [row[2] for row in descendants] == sorted(row[2] for row in descendants)
    assert set(descendants) == {(d.stage, d.hash, d.depth) for d in lwdp.store.dependents("raw/x.csv")}
    assert run(derived_sql, path="raw/nothing.csv") == run(descendants_sql, path="raw/nothing.csv") == []
    parameters = run(parameters_sql, stage="pipeline.stg_b", param="x")
    assert [(h, value) for h, _, value in parameters] == [(diamond.h2["stg_b"], "2"), (diamond.h1["stg_b"], "2")]
    computations = {stage: count for stage, count, _, largest in run(history_sql) if largest > 0}
    assert {stage: computations[f"pipeline.{stage}"] for stage in DIAMOND_STAGES} == dict.fromkeys(DIAMOND_STAGES, 2)  # V1, V2


# ---------------------------------------------------------------------------------------
# the command line


def test_cli_ls_fits_80_columns_parses_as_json_and_filters(project, diamond_copy):
    # an old access, so the widest age column shows
    _set_last_access(project, diamond_copy.h1["stg_a"], _utcnow() - dt.timedelta(days=400))
    rows = _rows(project)

    table, as_json, only_b, only_b_json = _cli_all(
        project.root, ["ls"], ["ls", "--json"], ["ls", "--stage", "stg_b"], ["ls", "--stage", "pipeline.stg_b", "--json"],
    )

    lines = _ok(table).splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert lines[0].split() == ["STAGE", "HASH", "FORMAT", "SIZE", "CREATED", "ACCESSED"]
    assert len(lines) == 1 + len(rows) + 1
    assert lines[-1] == f"{len(rows)} artifacts, {human_size(sum(size for _s, _f, size in rows.values()))}"
    body = lines[1:-1]
    assert sorted(line.split()[1] for line in body) == sorted(h[:12] for h in rows)
    long_name = f"pipeline.{LONG_STAGE}"
    (long_line,) = [line for line in body if diamond_copy.long_hash[:12] in line]
    shown_name = long_line.split()[0]  # too long for its column: its end, after an ellipsis
    assert shown_name.startswith("…") and long_name.endswith(shown_name[1:]) and len(shown_name) > 10
    (old_line,) = [line for line in body if diamond_copy.h1["stg_a"][:12] in line]
    assert old_line.endswith("400d ago")

    listed = json.loads(_ok(as_json))
    assert sorted(r["hash"] for r in listed) == sorted(rows)
    assert all(list(r) == ARTIFACT_COLUMNS for r in listed)
    assert {r["hash"]: r["size"] for r in listed} == {h: size for h, (_s, _f, size) in rows.items()}

    b_lines = _ok(only_b).splitlines()
    assert [line.split()[:2] for line in b_lines[1:-1]] == [
        ["pipeline.stg_b", diamond_copy.h2["stg_b"][:12]], ["pipeline.stg_b", diamond_copy.h1["stg_b"][:12]],
    ]
    assert b_lines[-1].startswith("2 artifacts, ")
    assert [r["hash"] for r in json.loads(_ok(only_b_json))] == [diamond_copy.h2["stg_b"], diamond_copy.h1["stg_b"]]


def _last_uses(root: Path) -> list[tuple]:
    with sqlite3.connect(root / ".lwdp" / "catalog.sqlite") as conn:
        return conn.execute("SELECT hash, last_access FROM artifacts ORDER BY hash").fetchall()


def test_cli_lineage_dependents_show_verify(diamond):
    """Read-only commands, on the read-only template: looking at an artifact (show) is no
    use of it (regression, issue 12: show marked it used, in a template shared by tests)."""
    used_before = _last_uses(diamond.root)
    tree, old, deps, deps_json, shown, verified = _cli_all(
        diamond.root,
        ["lineage", "stg_d"], ["lineage", diamond.d1[:10]], ["dependents", "raw/x.csv"],
        ["dependents", "raw/x.csv", "--json"], ["show", diamond.d2[:12]], ["verify"],
    )
    raw2 = xxhash.xxh3_128_hexdigest(RAW_V2.encode())
    tree = _ok(tree).splitlines()
    assert tree[0] == f"pipeline.stg_d {diamond.d2[:12]}"
    assert f"├── left = pipeline.stg_b {diamond.h2['stg_b'][:12]}" in tree
    assert f"└── right = pipeline.stg_c {diamond.h2['stg_c'][:12]}" in tree
    assert sum(line.endswith(f"└── src = raw raw/x.csv {raw2[:12]}") for line in tree) == 2
    assert len(tree) == 8
    old = _ok(old).splitlines()
    assert old[0] == f"pipeline.stg_d {diamond.d1[:12]}"
    assert any(line.endswith(f"raw raw/x.csv {xxhash.xxh3_128_hexdigest(RAW_V1.encode())[:12]}") for line in old)

    assert sorted(_ok(deps).splitlines()) == sorted(
        f"{'  ' * (DEPTH[s] - 1)}pipeline.{s} {h[s][:12]}" for h in (diamond.h1, diamond.h2) for s in DIAMOND_STAGES
    )
    assert {(d["stage"], d["hash"], d["depth"]) for d in json.loads(_ok(deps_json))} == {
        (f"pipeline.{s}", h[s], DEPTH[s]) for h in (diamond.h1, diamond.h2) for s in DIAMOND_STAGES
    }

    shown = _ok(shown)
    assert shown.splitlines()[0].startswith(f"pipeline.stg_d {diamond.d2}")
    assert "shape: 3 rows x 2 columns" in shown
    assert _expected_d(RAW_V2).head(5).to_string(max_colwidth=20) in shown

    assert _ok(verified).splitlines()[0] == "VerifyReport: 9 artifacts checked, 0 problems"
    assert _last_uses(diamond.root) == used_before


def test_cli_gc_and_verify(project, diamond_copy):
    rows = _rows(project)
    old_b = [diamond_copy.h1["stg_b"], diamond_copy.h2["stg_b"]]
    for h in old_b:
        _set_last_access(project, h, _utcnow() - dt.timedelta(days=8))
    before = (_catalog_dump(project), _listing(project.cache_dir / "artifacts"))

    # one after the other: even a dry run takes each victim's lock for a moment, so two gc
    # at once would each see the other's victims as in use
    dry = _cli(project.root, "gc", "--max-age", "7d", "--dry-run")
    dry_json = _cli(project.root, "gc", "--max-age", "7d", "--dry-run", "--json")
    dry = _ok(dry).splitlines()
    freed_b = sum(rows[h][2] for h in old_b)
    assert dry[0] == f"GcReport: would remove 2 artifacts, {human_size(freed_b)}, from 1 stages"
    assert sorted(line.split()[2] for line in dry[1:]) == sorted(h[:12] for h in old_b)
    assert all(line.split()[:2] == ["expired", "pipeline.stg_b"] for line in dry[1:])
    dry_json = json.loads(_ok(dry_json))
    assert dry_json["dry_run"] is True and dry_json["bytes_freed"] == freed_b
    assert sorted(r["hash"] for r in dry_json["removed"]) == sorted(old_b)
    assert (_catalog_dump(project), _listing(project.cache_dir / "artifacts")) == before

    _artifact_file(project, diamond_copy.h1["stg_c"]).unlink()
    damaged = _cli(project.root, "verify")
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    assert any(line.split()[:1] == ["missing"] and diamond_copy.h1["stg_c"][:12] in line for line in damaged.stdout.splitlines())

    everything = _ok(_cli(project.root, "gc", "--max-size", "0"))
    total = sum(size for _s, _f, size in rows.values())
    first = everything.splitlines()[0]
    assert first == f"GcReport: removed {len(rows)} artifacts, {human_size(total)}, from 5 stages"
    assert _rows(project) == {}
    assert [p for p in (project.cache_dir / "artifacts").rglob("*") if p.is_file()] == []


def _parse_status(proc: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str, str]]:
    """{function name: (state, short hash, reasons)} from ``lwdp status``."""
    found = {}
    for line in _ok(proc).splitlines():
        match = re.fullmatch(r"(fresh|stale|never computed|not cached) +(\S+) ([0-9a-f]{12})(?:: (.*))?", line)
        assert match, line
        found[match[2].rsplit(".", 1)[-1]] = (match[1], match[3], match[4] or "")
    return found


def _status(cwd: Path, target: str) -> dict[str, tuple[str, str, str]]:
    return _parse_status(_cli(cwd, "status", target))


def test_cli_status_and_graph_say_what_is_stale_and_why_without_running_anything(project):
    project.write("raw/x.csv", RAW_V1)
    project.write("pipeline.py", DIAMOND)
    h = _hashes(project.run().stdout)
    artifacts_before = _catalog_dump(project)["artifacts"]
    lineage_before = _catalog_dump(project)["lineage"]
    files_before = sorted(str(p) for p in (project.cache_dir / "artifacts").rglob("*"))

    def nothing_ran() -> None:
        assert _catalog_dump(project)["artifacts"] == artifacts_before
        assert _catalog_dump(project)["lineage"] == lineage_before
        assert sorted(str(p) for p in (project.cache_dir / "artifacts").rglob("*")) == files_before

    assert _status(project.root, "pipeline:stg_d") == {s: ("fresh", h[s][:12], "") for s in DIAMOND_STAGES}

    # a parameter changed
    project.edit("pipeline.py", DIAMOND.replace("x=2", "x=5"))
    status, mermaid, dot = _cli_all(
        project.root, ["status", "pipeline:stg_d"], ["graph", "pipeline:stg_d"], ["graph", "pipeline:stg_d", "--format", "dot"],
    )
    status = _parse_status(status)
    assert list(status) == ["stg_a", "stg_b", "stg_c", "stg_d"]  # upstream first
    assert status["stg_a"] == ("fresh", h["stg_a"][:12], "")
    assert status["stg_c"] == ("fresh", h["stg_c"][:12], "")
    assert status["stg_b"][0::2] == ("stale", "parameter `x` changed 2 → 5") and status["stg_b"][1] != h["stg_b"][:12]
    assert status["stg_d"][0::2] == ("stale", "upstream `left` changed (stage stg_b)") and status["stg_d"][1] != h["stg_d"][:12]

    mermaid = _ok(mermaid).splitlines()
    assert mermaid[0] == "flowchart LR"
    ids = {}
    for line in mermaid:
        if m := re.fullmatch(r'  (s\d+)\["pipeline\.(\w+)<br/>(fresh|stale|never computed)"\]:::(\w+)', line):
            ids[m[2]] = m[1]
            assert m[4] == m[3].replace(" ", "_")
            assert m[3] == status[m[2]][0]
    assert sorted(ids) == DIAMOND_STAGES
    (raw_line,) = [line for line in mermaid if "raw/x.csv" in line]
    raw_id = re.fullmatch(r'  (r\d+)\[/"raw/x\.csv"/\]', raw_line)[1]
    edges = {line.strip() for line in mermaid if "-->" in line}
    assert edges == {
        f"{raw_id} -->|src| {ids['stg_a']}", f"{ids['stg_a']} -->|up| {ids['stg_b']}", f"{ids['stg_a']} -->|up| {ids['stg_c']}",
        f"{ids['stg_b']} -->|left| {ids['stg_d']}", f"{ids['stg_c']} -->|right| {ids['stg_d']}",
    }
    assert any(line.strip().startswith("classDef stale") for line in mermaid)

    dot = _ok(dot).splitlines()
    assert dot[0] == "digraph lwdp {" and dot[-1] == "}"
    dot_ids = {}
    for line in dot:
        if m := re.fullmatch(r'  (s\d+) \[label="pipeline\.(\w+)\\n(fresh|stale)", fillcolor="(#[0-9a-f]{6})"\];', line):
            dot_ids[m[2]] = m[1]
            assert m[3] == status[m[2]][0]
    assert sorted(dot_ids) == DIAMOND_STAGES
    assert sum("->" in line for line in dot) == 5
    assert f'  {dot_ids["stg_b"]} -> {dot_ids["stg_d"]} [label="left"];' in dot
    assert any('label="raw/x.csv", shape=note' in line for line in dot)
    nothing_ran()

    # the raw file changed (the parameter is back)
    project.edit("pipeline.py", DIAMOND)
    project.write("raw/x.csv", RAW_V2)
    status = _status(project.root, "pipeline:stg_d")
    assert {s: (v[0], v[2]) for s, v in status.items()} == {
        "stg_a": ("stale", "raw input `src` (raw/x.csv) content changed"),
        "stg_b": ("stale", "upstream `up` changed (stage stg_a)"),
        "stg_c": ("stale", "upstream `up` changed (stage stg_a)"),
        "stg_d": ("stale", "upstream `left` changed (stage stg_b); upstream `right` changed (stage stg_c)"),
    }
    nothing_ran()

    # the raw file is back; the code of stg_c changed; and a pipeline that never ran
    project.write("raw/x.csv", RAW_V1)
    project.edit("pipeline.py", DIAMOND.replace("return up + 1", "return up + 100"))
    project.write("fresh_pipe.py", DIAMOND.replace("stg_", "new_").replace("raw/x.csv", "raw/y.csv"))
    project.write("raw/y.csv", RAW_V1)
    code, never = _cli_all(project.root, ["status", "pipeline:stg_d"], ["status", "fresh_pipe:new_d"])
    assert {s: (v[0], v[2]) for s, v in _parse_status(code).items()} == {
        "stg_a": ("fresh", ""),
        "stg_b": ("fresh", ""),
        "stg_c": ("stale", "code changed"),
        "stg_d": ("stale", "upstream `right` changed (stage stg_c)"),
    }
    assert {s: v[0] for s, v in _parse_status(never).items()} == {f"new_{c}": "never computed" for c in "abcd"}
    nothing_ran()


BAD_ARGUMENTS = [  # the command, and the bad value its one-line message must name
    (["gc", "--max-age", "banana"], "banana"),
    (["gc", "--max-size", "lots"], "lots"),
    (["show", "deadbeef00"], "deadbeef00"),
    (["status", "nosuch:stage"], "nosuch"),
    (["status", "pipeline:not_a_stage"], "not_a_stage"),
    (["status", "pipeline"], "pipeline"),
    (["lineage", "unknown_stage"], "unknown_stage"),
]


def test_cli_bad_arguments_exit_2_with_one_line_naming_the_value(diamond):
    before = _listing(diamond.root / ".lwdp")
    wrong = []
    for (args, bad), proc in zip(BAD_ARGUMENTS, _cli_all(diamond.root, *(args for args, _ in BAD_ARGUMENTS))):
        lines = proc.stderr.strip().splitlines()
        ok = (
            proc.returncode == 2 and proc.stdout == "" and len(lines) == 1
            and lines[0].startswith(f"lwdp {args[0]}: error: ") and bad in lines[0]
        )
        if not ok:
            wrong.append(f"lwdp {' '.join(args)}: exit {proc.returncode}, stdout {proc.stdout!r}, stderr {proc.stderr!r}")
    assert not wrong, "\n".join(wrong)
    assert _listing(diamond.root / ".lwdp") == before
