"""A cache within its budget: hits counted, the cost-aware policy, ``max_cache_size`` kept
at the end of a run, ``lwdp du``. Runs are fresh processes on real files and SQLite."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import pytest

import lwdp
import lwdp.store
from lwdp.errors import InvalidSettingError

# Four sizes of a large cheap frame, and a small slow summary of each: what a budget
# should give up first is the large cheap ones.
PIPELINE = '''
import logging
import sys
import time

import numpy as np
import pandas as pd
import lwdp
from lwdp import stage

logging.basicConfig(format="%(levelname)s %(message)s")


@stage(n=int(sys.argv[1]), cache=True)
def stg_big(n):
    return pd.DataFrame({"x": np.arange(n * 100_000, dtype="float64") * 1.1})


@stage(big=stg_big, cache=True)
def stg_slow(big):
    time.sleep(0.3)
    return pd.DataFrame({"total": [big["x"].sum()]})


if __name__ == "__main__":
    print("TOTAL", stg_slow()["total"].iloc[0])
'''


def _env(**more: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}, **more}


def _sizes(project) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for stage, size in project.sql("SELECT stage, size FROM artifacts ORDER BY created_at"):
        found.setdefault(stage.rsplit(".", 1)[-1], []).append(size)
    return found


def _total(project) -> int:
    return project.sql("SELECT SUM(size) FROM artifacts")[0][0]


def _four_versions(project) -> None:
    project.write("pipeline.py", PIPELINE)
    for n in (1, 2, 3, 4):
        project.run("pipeline.py", str(n))


def test_hits_count_the_runs_that_loaded_an_artifact(project):
    project.write("pipeline.py", PIPELINE)
    project.run("pipeline.py", "1")
    assert project.sql("SELECT stage, hits FROM artifacts ORDER BY stage") == [("pipeline.stg_big", 0), ("pipeline.stg_slow", 0)]
    for _ in range(2):
        assert project.run("pipeline.py", "1").ran() == set()
    assert project.sql("SELECT stage, hits FROM artifacts ORDER BY stage") == [("pipeline.stg_big", 0), ("pipeline.stg_slow", 2)]


def test_gc_cost_policy_gives_up_large_cheap_results_before_small_costly_ones(project):
    _four_versions(project)
    budget = _total(project) // 2
    cost = lwdp.store.gc(max_size=budget, policy="cost")
    assert {r.reason for r in cost.removed} == {"cost"}
    assert {r.stage for r in cost.removed} == {"pipeline.stg_big"}
    assert len(_sizes(project)["stg_slow"]) == 4  # every slow summary kept
    assert _total(project) <= budget

    with pytest.raises(InvalidSettingError, match='policy must be "lru" or "cost"'):
        lwdp.store.gc(max_size=budget, policy="newest")
    dry = subprocess.run([sys.executable, "-m", "lwdp", "gc", "--max-size", "0", "--policy", "cost", "--dry-run"],
                         cwd=project.root, env=_env(), capture_output=True, text=True, check=True)
    assert "would remove 6 artifacts" in dry.stdout and dry.stdout.count("  cost ") == 6


def test_gc_lru_policy_still_evicts_the_oldest_first(project):
    _four_versions(project)
    oldest = project.sql("SELECT hash FROM artifacts ORDER BY last_access, hash LIMIT 1")[0][0]
    report = lwdp.store.gc(max_size=_total(project) - 1)  # one artifact must go
    assert [(r.hash, r.reason) for r in report.removed] == [(oldest, "lru")]


def test_max_cache_size_is_kept_at_the_end_of_a_run_that_computed(project):
    _four_versions(project)
    budget = _total(project) // 2  # this run's large frame fits, with every summary
    run = project.run("pipeline.py", "5", env=_env(LWDP_MAX_CACHE_SIZE=str(budget)))
    assert run.ran() == {"stg_big", "stg_slow"}
    assert _total(project) <= budget
    assert "cache over its budget of" in run.stderr and "that cost least to have again" in run.stderr
    kept = _sizes(project)
    assert len(kept["stg_slow"]) == 5  # small and slow: all kept
    newest = project.sql("SELECT hash FROM artifacts WHERE stage = 'pipeline.stg_big' ORDER BY created_at DESC")
    assert len(newest) == 1  # only this run's large frame is left of the five
    warm = project.run("pipeline.py", "5", env=_env(LWDP_MAX_CACHE_SIZE=str(budget)))
    assert warm.ran() == set() and "cache over its budget" not in warm.stderr


def test_a_run_whose_own_results_exceed_the_budget_keeps_them_and_says_so(project):
    project.write("pipeline.py", PIPELINE)
    run = project.run("pipeline.py", "3", env=_env(LWDP_MAX_CACHE_SIZE="100kB"))
    assert run.ran() == {"stg_big", "stg_slow"}
    assert len(project.sql("SELECT hash FROM artifacts")) == 2
    assert "WARNING the cache holds" in run.stderr and "over its budget of 100.0 kB (max_cache_size)" in run.stderr
    assert project.run("pipeline.py", "3", env=_env(LWDP_MAX_CACHE_SIZE="100kB")).ran() == set()


HOLD_LOCK = '''
import sys, time
from pathlib import Path
from lwdp.store.locks import LockDir

with LockDir(Path(sys.argv[1])).hold(sys.argv[2], "x", shared=sys.argv[3] == "reading"):
    print(sys.argv[3], flush=True)
    time.sleep(120)
'''


@pytest.mark.parametrize("doing", ["reading", "computing"])
def test_the_budget_leaves_alone_what_another_process_is_reading_or_computing(project, doing):
    _four_versions(project)
    read = project.sql("SELECT hash FROM artifacts WHERE stage = 'pipeline.stg_big' ORDER BY created_at LIMIT 1")[0][0]
    reader = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(project.cache_dir / "locks"), read, doing],
                              env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([reader.stdout], [], [], 60)
        assert ready and reader.stdout.readline().strip() == doing
        project.run("pipeline.py", "5", env=_env(LWDP_MAX_CACHE_SIZE="1"))
        remaining = {h for (h,) in project.sql("SELECT hash FROM artifacts WHERE stage = 'pipeline.stg_big'")}
        assert read in remaining and len(remaining) == 2  # the one being read, and this run's own
    finally:
        reader.kill()
        reader.wait()


def test_a_bad_budget_is_an_error_naming_the_setting(project):
    with pytest.raises(InvalidSettingError, match=r"max_cache_size=\.\.\.\): .*is not a size"):
        lwdp.configure(max_cache_size="lots")
    project.write("pipeline.py", PIPELINE)
    run = project.run("pipeline.py", "1", env=_env(LWDP_MAX_CACHE_SIZE="lots"), check=False)
    assert run.returncode != 0 and "LWDP_MAX_CACHE_SIZE" in run.stderr


def test_du_lists_stages_with_what_the_budget_gives_up_first(project):
    _four_versions(project)
    project.run("pipeline.py", "4")  # a hit for the newest summary
    out = subprocess.run([sys.executable, "-m", "lwdp", "du"], cwd=project.root, env=_env(), capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].split()[:5] == ["STAGE", "ARTIFACTS", "SIZE", "HITS", "COMPUTE"] and "EVICTED FROM (cost)" in lines[0]
    assert lines[1].split()[0] == "pipeline.stg_big" and lines[1].split()[-1] == "#1"
    assert lines[2].startswith("pipeline.stg_slow ") and lines[-1].startswith("8 artifacts, ")
    by_stage = {s["stage"]: s for s in json.loads(subprocess.run(
        [sys.executable, "-m", "lwdp", "du", "--json"], cwd=project.root, env=_env(), capture_output=True, text=True, check=True,
    ).stdout)["stages"]}
    assert by_stage["pipeline.stg_slow"]["hits"] == 1 and by_stage["pipeline.stg_slow"]["compute_seconds"] >= 1.2
    assert by_stage["pipeline.stg_big"]["evicted_from"] == 1 and by_stage["pipeline.stg_slow"]["evicted_from"] > 1
    as_json = json.loads(subprocess.run([sys.executable, "-m", "lwdp", "du", "--json", "--policy", "lru"], cwd=project.root,
                                        env=_env(), capture_output=True, text=True, check=True).stdout)
    assert as_json["policy"] == "lru"
    assert {s["stage"]: s["artifacts"] for s in as_json["stages"]} == {"pipeline.stg_big": 4, "pipeline.stg_slow": 4}
    assert sum(s["bytes"] for s in as_json["stages"]) == _total(project)


def test_store_budget_with_the_shared_store_and_postgres_catalog(project, s3_server, bucket, pg_url):
    """``max_store_size`` evicts from the team's store and catalog; ``max_cache_size`` then
    only removes local copies (a later run downloads what it needs again)."""
    project.write("pipeline.py", PIPELINE)
    team = {**s3_server.env, "LWDP_STORE_URL": f"s3://{bucket}/lwdp", "LWDP_CATALOG_URL": pg_url}
    for n in (1, 2, 3, 4):
        project.run("pipeline.py", str(n), env=_env(**team))
    store = s3_server.filesystem()

    def objects() -> int:
        return sum(1 for path in store.find(f"{bucket}/lwdp") if not path.endswith(".json"))

    assert objects() == 8
    run = project.run("pipeline.py", "5", env=_env(**team, LWDP_MAX_STORE_SIZE="2.5MB"))
    assert "shared store over its budget of 2.5 MB: removed" in run.stderr
    assert objects() < 10  # the four older large frames went from the store...
    rows = _pg_rows(pg_url, "SELECT stage, COUNT(*) FROM artifacts GROUP BY stage ORDER BY stage")
    assert rows == [("pipeline.stg_big", 1), ("pipeline.stg_slow", 5)]  # ...and from the team's catalog

    local = project.run("pipeline.py", "6", env=_env(**team, LWDP_MAX_CACHE_SIZE="2.5MB"))
    assert "cache over its budget of 2.5 MB: removed" in local.stderr and "local copies" in local.stderr
    big = {h for (h,) in _pg_rows(pg_url, "SELECT hash FROM artifacts WHERE stage = 'pipeline.stg_big'")}
    assert len(big) == 2  # copies only: the rows stay
    local_copies = {p.name.split(".")[0] for p in (project.cache_dir / "artifacts").rglob("*") if p.is_file() and ".manifest" not in p.name}
    assert len(big - local_copies) == 1  # the older frame's local copy went; it stays in the store
    again = project.run("pipeline.py", "5", env=_env(**team))
    assert again.ran() == set()


def _pg_rows(url: str, query: str) -> list[tuple]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(query))]
    finally:
        engine.dispose()
