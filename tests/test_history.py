"""Run history (issue 19): every run of a pipeline, and what happened to each stage in it,
recorded in the catalog at the run's end; ``lwdp history`` lists them and notes a stage
markedly slower or larger than its usual. Pipelines run in fresh processes, as users run
them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_postgres_catalog import db_rows

PIPELINE = """
import os
import pandas as pd
from lwdp import stage


@stage(src="raw/in.csv", cache=True)
def stg_read(src):
    return pd.read_csv(src)


@stage(df=stg_read, cache=True)
def stg_double(df):
    if os.environ.get("FAIL"):
        raise ValueError("boom")
    return df * 2


@stage(df=stg_double)
def stg_total(df):
    return int(df["v"].sum())


if __name__ == "__main__":
    print("TOTAL", stg_total())
"""


def _runs(project):
    return project.sql("SELECT id, target, outcome, error, host, user_name, lwdp_version FROM runs ORDER BY started_at")


def _stages(project, run_id):
    return project.sql(
        "SELECT stage, hash, outcome, bytes, reason FROM run_stages WHERE run_id = ? ORDER BY position", run_id)


def test_each_run_is_recorded_with_its_stages_cold_warm_and_failed(project):
    project.write("raw/in.csv", "v\n1\n2\n")
    project.write("pipeline.py", PIPELINE)
    project.run()
    project.run()
    project.write("raw/in.csv", "v\n1\n5\n")
    failed = project.run(env={"FAIL": "1"}, check=False)
    assert failed.returncode != 0 and "boom" in failed.stderr

    (cold, *_), (warm, *_), (broken, *_) = runs = _runs(project)
    assert [(target, outcome, error) for _, target, outcome, error, *_ in runs] == [
        ("pipeline.stg_total", "succeeded", None), ("pipeline.stg_total", "succeeded", None),
        ("pipeline.stg_total", "failed", "ValueError: boom"),
    ]
    assert all(host and user and version for *_, host, user, version in runs)
    artifacts = set(project.sql("SELECT stage, hash FROM artifacts"))
    cold_stages = {stage: rest for stage, *rest in _stages(project, cold)}  # in the order they were logged
    assert {stage: (outcome, reason) for stage, (_, outcome, _, reason) in cold_stages.items()} == {
        "pipeline.stg_read": ("computed", "never computed"), "pipeline.stg_double": ("computed", "never computed"),
        "pipeline.stg_total": ("computed-uncached", None),
    }
    for stage in ("pipeline.stg_read", "pipeline.stg_double"):
        stage_hash, _, size, _ = cold_stages[stage]
        assert (stage, stage_hash) in artifacts and size > 0
    # A warm run loads only what the target needs: the cached stage below it.
    assert sorted((stage, outcome) for stage, _, outcome, _, _ in _stages(project, warm)) == [
        ("pipeline.stg_double", "hit"), ("pipeline.stg_total", "computed-uncached")]
    # The failing run: what it computed before, then the stage that raised, with its hash.
    assert [(stage, outcome, reason) for stage, _, outcome, _, reason in _stages(project, broken)] == [
        ("pipeline.stg_read", "computed", "raw input `src` (raw/in.csv) content changed"),
        ("pipeline.stg_double", "failed", "ValueError: boom"),
    ]
    [(failed_hash,)] = project.sql("SELECT hash FROM run_stages WHERE outcome = 'failed'")
    assert len(failed_hash) == 32 and ("pipeline.stg_double", failed_hash) not in artifacts  # the hash it had, never cached


def test_hashing_and_explaining_record_no_run(project):
    project.write("raw/in.csv", "v\n1\n2\n")
    project.write("pipeline.py", PIPELINE + "    print(stg_total.hash, stg_total.explain())\n")
    project.run()
    assert len(_runs(project)) == 1


SLOW = """
import pandas as pd
import lwdp
from lwdp import stage


@stage(src="raw/first.txt", cache=True)
def stg_first(src):
    open("first.done", "w").close()
    return pd.DataFrame({"v": [1]})


@stage(first=stg_first, cache=True)
def stg_slow(first):
    import time
    open("slow.started", "w").close()
    time.sleep(60)
    return first


if __name__ == "__main__":
    stg_slow()
"""


def test_an_interrupted_run_is_recorded_with_what_it_did(project):
    project.write("raw/first.txt", "1")
    project.write("pipeline.py", SLOW)
    runner = Path(__file__).with_name("runner.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    proc = subprocess.Popen([sys.executable, str(runner), "pipeline.py"], cwd=project.root, env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (project.root / "slow.started").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    [(run_id, target, outcome, error, *_)] = _runs(project)
    assert (target, outcome, error) == ("pipeline.stg_slow", "interrupted", "KeyboardInterrupt: ")
    assert [(stage, outcome) for stage, _, outcome, _, _ in _stages(project, run_id)] == [("pipeline.stg_first", "computed")]


WORK = """
import time
import numpy as np
import pandas as pd
from lwdp import stage


@stage(spec="raw/spec.txt", cache=True)
def stg_work(spec):
    _, pause, rows = open(spec).read().split()
    time.sleep(float(pause))
    return pd.DataFrame({"x": np.random.default_rng(int(rows)).random(int(rows))})


if __name__ == "__main__":
    print("ROWS", len(stg_work()))
"""


def _lwdp(project, *args):
    return subprocess.run([sys.executable, "-m", "lwdp", *args], cwd=project.root, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("LWDP_")})


def test_history_notes_a_stage_markedly_slower_or_larger_than_its_usual(project):
    project.write("pipeline.py", WORK)
    for run in range(4):  # the usual: a few milliseconds and a hundred rows
        project.write("raw/spec.txt", f"{run} 0.01 100")
        project.run()
        assert "cached" not in _lwdp(project, "history").stdout  # sizes repeat exactly (times vary with the machine)
    project.write("raw/spec.txt", "4 1.0 20000")
    project.run()

    listing = _lwdp(project, "history")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count("succeeded") == 5 and "1 computed" in listing.stdout
    notes = [line for line in listing.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 2, listing.stdout
    assert notes[0].startswith("note: stage pipeline.stg_work took 1.") and "× its usual 0." in notes[0]
    assert "(the median of its 4 computations before)" in notes[0]
    assert notes[1].startswith("note: stage pipeline.stg_work cached 1") and "its usual 2" in notes[1]

    one = json.loads(_lwdp(project, "history", "stg_work", "--json").stdout)
    assert one["stage"] == "pipeline.stg_work" and len(one["runs"]) == 5
    assert [run["stages"][0]["outcome"] for run in one["runs"]] == ["computed"] * 5
    changes = {change["what"]: change for change in one["changes"]}
    assert set(changes) == {"slower", "larger"} and changes["slower"]["now"] >= 1.0 and changes["slower"]["earlier"] == 4

    unknown = _lwdp(project, "history", "stg_nothing")
    assert unknown.returncode == 2
    assert "no run recorded a stage 'stg_nothing'; stages in the history: pipeline.stg_work" in unknown.stderr


def test_runs_are_recorded_in_a_postgres_catalog(project, pg_url):
    project.write("raw/in.csv", "v\n1\n2\n")
    project.write("pipeline.py", PIPELINE)
    project.run(env={"LWDP_CATALOG_URL": pg_url})
    project.run(env={"LWDP_CATALOG_URL": pg_url})
    assert db_rows(pg_url, "SELECT target, outcome FROM runs") == [("pipeline.stg_total", "succeeded")] * 2
    assert sorted(db_rows(pg_url, "SELECT stage, outcome FROM run_stages")) == [
        ("pipeline.stg_double", "computed"), ("pipeline.stg_double", "hit"), ("pipeline.stg_read", "computed"),
        ("pipeline.stg_total", "computed-uncached"), ("pipeline.stg_total", "computed-uncached"),
    ]
    shown = subprocess.run([sys.executable, "-m", "lwdp", "history", "stg_double"], cwd=project.root, capture_output=True,
                           text=True, env={**os.environ, "LWDP_CATALOG_URL": pg_url})
    assert shown.returncode == 0 and shown.stdout.count("pipeline.stg_double") == 1 and "hit" in shown.stdout


def test_gc_keeps_the_newest_runs_of_the_history(project):
    project.write("raw/in.csv", "v\n1\n2\n")
    project.write("pipeline.py", PIPELINE)
    for _ in range(3):
        project.run()
    newest = _runs(project)[-1][0]
    dry = _lwdp(project, "gc", "--keep-runs", "1", "--dry-run")
    assert "2 older runs of the history would be forgotten" in dry.stdout and len(_runs(project)) == 3
    assert "older runs" not in _lwdp(project, "gc").stdout  # the default keeps 1,000
    assert "2 older runs of the history forgotten" in _lwdp(project, "gc", "--keep-runs", "1").stdout
    assert [run[0] for run in _runs(project)] == [newest]
    assert {run_id for (run_id,) in project.sql("SELECT run_id FROM run_stages")} == {newest}


PARALLEL = """
import os
import time
import pandas as pd
import lwdp
from lwdp import stage


def _pid():
    time.sleep(0.5)  # long enough that the other slot takes the other stage
    return pd.DataFrame({"pid": [os.getpid()]})


@stage(n=[1], cache=True)
def one(n):
    return _pid()


@stage(n=[2], cache=True)
def two(n):
    return _pid()


@stage(a=one, b=two)
def both(a, b):
    return pd.concat([a, b])


if __name__ == "__main__":
    lwdp.configure(jobs=2)
    print("WORKER RAN ONE", set(both()["pid"]) != {os.getpid()})
"""


def test_a_parallel_run_records_what_its_workers_computed(project):
    project.write("pipeline.py", PARALLEL)
    assert "WORKER RAN ONE True" in project.run().stdout
    [(run_id, *_)] = _runs(project)
    assert sorted((stage, outcome) for stage, _, outcome, _, _ in _stages(project, run_id)) == [
        ("pipeline.both", "computed-uncached"), ("pipeline.one", "computed"), ("pipeline.two", "computed"),
    ]
