"""Parallel runs (``jobs``, an executor, Dask): the same results, cache and log as a serial
run, stages really at once in worker processes, and clean failures.

Stages record where and when they ran (their process id, start and end) in files beside
the project, so overlap is shown by the stages' own clocks, never by timing a run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lwdp
from lwdp.errors import InvalidSettingError, LwdpError
from conftest import Project

PIPELINE = """
    import json, os, sys, time
    import pandas as pd
    import lwdp
    from lwdp import stage

    def _record(name, started):
        os.makedirs("ran", exist_ok=True)
        with open(f"ran/{name}.json", "w") as f:
            json.dump({"pid": os.getpid(), "start": started, "end": time.time()}, f)

    def _busy(name, n):
        started = time.time()
        total = 0
        for i in range(n):  # pure Python: holds the GIL
            total += i % 7
        _record(name, started)
        return pd.DataFrame({"branch": [name], "total": [total]})

    @stage(n=[SIZE], cache=True)
    def left(n):
        return _busy("left", n[0])

    @stage(n=[SIZE], cache=True)
    def right(n):
        return _busy("right", n[0] + 1)

    @stage(a=left, b=right)
    def both(a, b):
        _record("both", time.time())
        return pd.concat([a, b], ignore_index=True)

    @stage(src=both, cache=True, cache_format="parquet")
    def report(src):
        _record("report", time.time())
        return src.assign(double=src["total"] * 2)

    if __name__ == "__main__":
        print(json.dumps({"pid": os.getpid(), "result": report().to_dict("list")}))
"""
SIZE = 6_000_000  # ~0.4 s of pure-Python work per branch


def _write_pipeline(project: Project, size: int = SIZE) -> None:
    project.write("pipeline.py", PIPELINE.replace("SIZE", str(size)))


def _ran(project: Project) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (project.root / "ran").glob("*.json")}


def _output(run) -> dict:
    return json.loads(run.stdout.strip().splitlines()[-1])


def _events(run) -> list[tuple[str, str, str | None]]:
    return sorted((e["stage"], e["outcome"], e["reason"]) for e in run.events if e["outcome"] != "started")


def test_jobs_overlap_gil_bound_stages_in_a_worker_with_the_serial_run_s_result_cache_and_log(project, tmp_path):
    _write_pipeline(project)
    parallel = project.run(env={"LWDP_JOBS": "2"})
    ran = _ran(project)
    parent = _output(parallel)["pid"]
    # jobs=2: the run's own process is one slot, a worker process the other.
    assert {ran["left"]["pid"], ran["right"]["pid"]} - {parent}
    assert ran["left"]["pid"] != ran["right"]["pid"]
    # The two pure-Python branches ran at the same time (each started before the other ended).
    assert ran["left"]["start"] < ran["right"]["end"] and ran["right"]["start"] < ran["left"]["end"]

    serial_project = Project(tmp_path / "serial")
    _write_pipeline(serial_project)
    serial = serial_project.run()
    assert _output(parallel)["result"] == _output(serial)["result"]
    assert _events(parallel) == _events(serial)
    query = "SELECT stage, hash, format FROM artifacts ORDER BY stage"
    assert project.sql(query) == serial_project.sql(query)
    lineage = "SELECT hash, stage, input_name, input_kind, input_hash FROM lineage ORDER BY hash, input_name"
    assert project.sql(lineage) == serial_project.sql(lineage)
    manifests = "SELECT hash, stage, manifest FROM stage_manifests ORDER BY hash"
    assert project.sql(manifests) == serial_project.sql(manifests)


def test_a_warm_parallel_run_loads_without_starting_a_worker(project):
    _write_pipeline(project, size=1000)
    project.run(env={"LWDP_JOBS": "2"})
    project.write("warm.py", """
        import multiprocessing, runpy, sys
        sys.argv = ["pipeline.py"]
        runpy.run_path("pipeline.py", run_name="__main__")
        from lwdp.run import executors
        print("workers:", len(executors._pools), len(multiprocessing.active_children()))
    """)
    warm = project.run("warm.py", env={"LWDP_JOBS": "2"})
    assert {e["outcome"] for e in warm.events} == {"hit", "not-needed"}
    assert "workers: 0 0" in warm.stdout
    # An uncached last stage over cached ones: it computes, alone, in the run's own process.
    project.write("uncached.py", """
        import multiprocessing, os, runpy, sys
        sys.argv = ["pipeline.py"]
        pipeline = runpy.run_path("pipeline.py")
        pipeline["both"]()
        from lwdp.run import executors
        print("workers:", len(executors._pools), len(multiprocessing.active_children()))
    """)
    uncached = project.run("uncached.py", env={"LWDP_JOBS": "2"})
    assert uncached.ran() == {"both"} and "workers: 0 0" in uncached.stdout


def test_two_parallel_processes_compute_each_stage_once(project):
    _write_pipeline(project, size=2_000_000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")} | {"LWDP_JOBS": "2"}
    runner = Path(__file__).with_name("runner.py")
    procs = [
        subprocess.Popen([sys.executable, str(runner), "pipeline.py"], cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    computed = [
        json.loads(line.split(" ", 1)[1])["stage"]
        for _, err in outputs for line in err.splitlines()
        if line.startswith("LWDP_EVENT") and '"outcome": "computed"' in line
    ]
    assert sorted(computed) == ["pipeline.left", "pipeline.report", "pipeline.right"]


def test_a_target_another_process_computes_while_this_one_plans_is_loaded(project, stage_events):
    """The window between "the target is not cached: go parallel" and the plan, where
    another process finishes the whole pipeline (seen in CI with two runs at once)."""
    _write_pipeline(project, size=1_000)
    sys.path.insert(0, str(project.root))
    try:
        import pipeline
        from lwdp.run.context import RunContext
        from lwdp.run.parallel import ParallelRun
        from lwdp.run.serial import PipelineRun

        lwdp.configure(jobs=2)
        with RunContext() as context:
            planned = PipelineRun(pipeline.report, context)
            assert not planned.loadable(pipeline.report)
            other = subprocess.run([sys.executable, "pipeline.py"], cwd=project.root, capture_output=True, text=True, timeout=120)
            assert other.returncode == 0, other.stderr
            result = ParallelRun(planned, context).result(pipeline.report)
        assert result.to_dict("list") == _output(other)["result"]
        assert stage_events()["report"] == "hit"
    finally:
        sys.path.remove(str(project.root))
        sys.modules.pop("pipeline", None)


FAILING = """
    import os, time
    import pandas as pd
    import lwdp
    from lwdp import stage

    @stage(n=[1], cache=True)
    def slow(n):
        time.sleep(2)
        return pd.DataFrame({"x": n})

    @stage(n=[2], cache=True)
    def broken(n):
        time.sleep(0.3)
        raise ValueError("bad row 17")

    @stage(n=[3], cache=True)
    def later(n):
        open("later-ran", "w").close()
        return pd.DataFrame({"x": n})

    @stage(a=slow, b=broken, c=later)
    def total(a, b, c):
        return pd.concat([a, b, c])

    if __name__ == "__main__":
        lwdp.configure(jobs=2)
        total()
"""


def test_a_failing_stage_stops_new_stages_lets_running_ones_finish_and_propagates(project):
    project.write("pipeline.py", FAILING)
    run = project.run(check=False)
    assert run.returncode != 0
    assert "ValueError: bad row 17" in run.stderr
    assert "raised in lwdp stage 'pipeline.broken'" in run.stderr
    assert not (project.root / "later-ran").exists()  # ready, but not started after the failure
    assert project.sql("SELECT stage FROM artifacts") == [("pipeline.slow",)]  # finished and stored


def test_an_exception_that_cannot_travel_back_from_a_worker_still_says_what_it_was(project):
    project.write("pipeline.py", """
        import time
        import pandas as pd
        import lwdp
        from lwdp import stage

        class BadRow(Exception):
            def __init__(self, row, why):  # pickles, but can't be unpickled: Exception's args are (message,)
                super().__init__(f"row {row}: {why}")

        @stage(n=[1], cache=True)
        def slow(n):
            time.sleep(1)
            return pd.DataFrame({"x": n})

        @stage(n=[2], cache=True)
        def broken(n):
            raise BadRow(17, "no price")

        @stage(a=slow, b=broken)
        def total(a, b):
            return pd.concat([a, b])

        if __name__ == "__main__":
            lwdp.configure(jobs=3)
            total()
    """)
    run = project.run(check=False)
    assert run.returncode != 0
    assert "StageErrorNotSendable: __main__.BadRow: row 17: no price (it could not be sent back from worker" in run.stderr
    assert "raised in lwdp stage 'pipeline.broken'" in run.stderr
    assert project.sql("SELECT stage FROM artifacts") == [("pipeline.slow",)]  # the sibling finished and was stored


@pytest.mark.slow
@pytest.mark.parametrize(("ending", "said"), [
    ("os.kill(os.getpid(), signal.SIGKILL)", "was killed by signal SIGKILL"),
    ("os._exit(3)", "exited with status 3"),
])
def test_a_worker_that_dies_is_an_lwdp_error_naming_the_stage_and_how(project, ending, said):
    project.write("pipeline.py", f"""
        import os, signal, time
        import pandas as pd
        import lwdp
        from lwdp import stage

        @stage(n=[1], cache=True)
        def fine(n):
            return pd.DataFrame({{"x": n}})

        @stage(n=[2], cache=True)
        def doomed(n):
            time.sleep(0.2)
            {ending}

        @stage(a=fine, b=doomed)
        def total(a, b):
            return pd.concat([a, b])

        if __name__ == "__main__":
            lwdp.configure(jobs=3)  # two worker processes: each stage gets one
            try:
                total()
            except lwdp.LwdpError as exc:
                print("ERROR", type(exc).__name__, exc)
    """)
    started = time.monotonic()
    run = project.run()
    assert time.monotonic() - started < 30
    assert "ERROR WorkerError stage 'pipeline.doomed': worker process" in run.stdout
    assert said in run.stdout
    assert ("pipeline.doomed",) not in project.sql("SELECT stage FROM artifacts")
    assert not list((project.cache_dir / "artifacts").rglob("*.parquet.*"))


@pytest.mark.slow
def test_ctrl_c_in_the_parent_stops_the_workers_and_leaves_a_consistent_cache(project):
    project.write("pipeline.py", """
        import os, time
        import pandas as pd
        import lwdp
        from lwdp import stage

        def _long(name):
            open(f"{name}.pid", "w").write(str(os.getpid()))
            time.sleep(60)
            return pd.DataFrame({"x": [1]})

        @stage(cache=True)
        def first():
            return _long("first")

        @stage(cache=True)
        def second():
            return _long("second")

        @stage(a=first, b=second)
        def total(a, b):
            return pd.concat([a, b])

        if __name__ == "__main__":
            lwdp.configure(jobs=2)
            total()
    """)
    runner = Path(__file__).with_name("runner.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    proc = subprocess.Popen([sys.executable, str(runner), "pipeline.py"], cwd=project.root, env=env, stderr=subprocess.PIPE, text=True)
    pids = [project.root / "first.pid", project.root / "second.pid"]
    deadline = time.monotonic() + 60
    while not all(p.exists() and p.read_text() for p in pids):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    for pid_file in pids:
        pid = int(pid_file.read_text())
        deadline = time.monotonic() + 10
        while _alive(pid):
            assert time.monotonic() < deadline, f"worker {pid} outlived its parent"
            time.sleep(0.05)
    assert project.sql("SELECT count(*) FROM artifacts") == [(0,)]
    check = subprocess.run([sys.executable, "-m", "lwdp", "verify"], cwd=project.root, env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


PID_STAGES = """
    import os
    import pandas as pd
    import lwdp
    from lwdp import stage

    @stage(n=[1], cache=True)
    def one(n):
        return pd.DataFrame({"pid": [os.getpid()]})

    @stage(n=[2], cache=True)
    def two(n):
        return pd.DataFrame({"pid": [os.getpid()]})

    @stage(a=one, b=two)
    def both(a, b):
        return pd.concat([a, b])
"""


def test_stages_of_a_notebook_cell_run_in_the_notebook_s_process_with_one_warning(project):
    project.write("cell.py", PID_STAGES + "    lwdp.configure(jobs=2)\n    pids = set(both()['pid'])\n")
    project.write("notebook.py", """
        import logging, os
        from IPython.core.interactiveshell import InteractiveShell

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        shell = InteractiveShell.instance()
        result = shell.run_cell(open("cell.py").read())  # the cell's text, as a notebook holds it
        result.raise_error()
        print("same process:", shell.user_ns["pids"] == {os.getpid()})
    """)
    run = project.run("notebook.py")
    assert "same process: True" in run.stdout
    warnings = [line for line in run.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 3, run.stderr
    assert all("computed in this process, not by a worker" in w and "notebook cell" in w for w in warnings)


def test_a_stage_in_an_importable_module_and_a_given_process_pool_executor(project):
    project.write("steps.py", PID_STAGES)
    project.write("pipeline.py", """
        import multiprocessing, os
        from concurrent.futures import ProcessPoolExecutor
        import lwdp
        import steps

        if __name__ == "__main__":
            with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
                lwdp.configure(executor=pool)
                pids = set(steps.both()["pid"])
            print("parent", os.getpid(), "workers", sorted(pids))
    """)
    run = project.run()
    parent = int(run.stdout.split()[1])
    assert parent not in eval(run.stdout.split("workers", 1)[1])
    assert run.ran() == {"one", "two", "both"}


def test_jobs_setting(project, monkeypatch):
    lwdp.configure(jobs="auto")
    assert lwdp.config.settings().jobs == os.cpu_count()
    lwdp.configure(jobs=None)
    monkeypatch.setenv("LWDP_JOBS", "3")
    assert lwdp.config.settings().jobs == 3
    monkeypatch.setenv("LWDP_JOBS", "0")
    with pytest.raises(InvalidSettingError, match="LWDP_JOBS: jobs must be a positive whole number"):
        lwdp.config.settings()
    for bad in (0, -1, 1.5, "many", True):
        with pytest.raises(InvalidSettingError, match="jobs must be"):
            lwdp.configure(jobs=bad)
    monkeypatch.delenv("LWDP_JOBS")
    lwdp.configure(executor=object())

    @lwdp.stage(n=[1])
    def lonely(n):
        return n

    with pytest.raises(LwdpError, match="takes a concurrent.futures.Executor or a distributed.Client, not object"):
        lonely()


def test_lwdp_run_prints_a_line_per_stage_and_a_summary_and_exits_by_outcome(project):
    _write_pipeline(project, size=1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}

    def lwdp_run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lwdp", "run", *args], cwd=project.root, env=env, capture_output=True, text=True, timeout=120)

    ok = lwdp_run("pipeline:report", "-j", "2")
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert sum("computed" in line and line.startswith("stage pipeline.") for line in lines) == 4
    assert lines[-1].startswith("4 stages in ")
    assert any(line.split()[:2] == ["pipeline.left", "computed"] for line in lines)
    warm = lwdp_run("pipeline:report")
    assert warm.returncode == 0 and any(line.split()[:2] == ["pipeline.report", "cached"] for line in warm.stdout.splitlines())

    project.write("failing.py", FAILING)
    failed = lwdp_run("failing:total", "-j", "2")
    assert failed.returncode == 1 and "ValueError: bad row 17" in failed.stderr
    for bad in (["nope:report"], ["pipeline:report", "-j", "zero"], ["pipeline"]):
        wrong = lwdp_run(*bad)
        assert wrong.returncode == 2 and wrong.stderr.startswith("lwdp run: error:"), wrong.stderr


def test_lwdp_run_on_a_terminal_shows_live_progress(project):
    pytest.importorskip("rich")
    _write_pipeline(project, size=1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")} | {"COLUMNS": "200"}
    command = f"{sys.executable} -m lwdp run pipeline:report -j 2"
    shown = subprocess.run(["script", "-q", "-e", "-c", command, "/dev/null"], cwd=project.root, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stdout
    assert "stages done" in shown.stdout and "to do" in shown.stdout
    assert "4 stages in " in shown.stdout


DASK_PIPELINE = """
    import json, os, sys
    import pandas as pd
    import lwdp
    from lwdp import stage

    @stage(src="raw/orders.csv", cache=True)
    def orders(src):
        return pd.read_csv(src).assign(pid=os.getpid())

    @stage(n=[2], cache=True)
    def factor(n):
        return pd.DataFrame({"factor": n, "pid": [os.getpid()]})

    @stage(o=orders, f=factor, cache=True)
    def scaled(o, f):
        return o.assign(scaled=o["qty"] * int(f["factor"].iloc[0]))

    if __name__ == "__main__":
        if sys.argv[1:] == ["dask"]:
            import dask
            from distributed import Client, LocalCluster
            dask.config.set({"distributed.scheduler.allowed-failures": 0})
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
                lwdp.configure(executor=client)
                result = scaled()
        else:
            result = scaled()
        print(json.dumps({"parent": os.getpid(), "pids": sorted(set(result["pid"])), "sum": int(result["scaled"].sum())}))
"""


def _dask_project(project: Project) -> None:
    pytest.importorskip("distributed")
    project.write("raw/orders.csv", "qty\n1\n2\n3\n")
    project.write("pipeline.py", DASK_PIPELINE)


@pytest.mark.slow
def test_a_dask_local_cluster_computes_in_its_workers_and_fills_the_cache(project):
    _dask_project(project)
    first = project.run("pipeline.py", "dask")
    out = json.loads(first.stdout.strip().splitlines()[-1])
    assert out["sum"] == 12 and out["parent"] not in out["pids"]
    assert first.ran() == {"orders", "factor", "scaled"}
    again = project.run("pipeline.py")
    assert again.ran() == set() and json.loads(again.stdout.strip().splitlines()[-1])["sum"] == 12


@pytest.mark.slow
def test_a_dask_cluster_with_the_shared_store_and_postgres_catalog(project, s3_server, bucket, pg_url, tmp_path):
    _dask_project(project)
    env = {**s3_server.env, "LWDP_STORE_URL": f"s3://{bucket}/lwdp", "LWDP_CATALOG_URL": pg_url}
    first = project.run("pipeline.py", "dask", env=env)
    assert first.ran() == {"orders", "factor", "scaled"}
    elsewhere = Project(tmp_path / "elsewhere")
    _dask_project(elsewhere)
    fresh = elsewhere.run("pipeline.py", env={**env, "LWDP_CACHE_DIR": str(tmp_path / "empty-cache")})
    assert fresh.ran() == set()
    assert json.loads(fresh.stdout.strip().splitlines()[-1])["sum"] == 12


def test_a_script_without_a_main_guard_gets_a_clear_error_where_workers_import_it(project):
    project.write("pipeline.py", PID_STAGES + """
    import threading, time

    # A thread of its own (as a notebook's kernel or fsspec has): lwdp won't fork this
    # process, so its workers come from a fork server, which imports the script first.
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    lwdp.configure(jobs=3)
    print(sorted(set(both()["pid"])))
    """)
    run = project.run(check=False)
    assert run.returncode != 0
    assert 'put the pipeline\'s call under `if __name__ == "__main__":`' in run.stderr
    assert "WorkerError" in run.stderr


def test_a_single_threaded_script_forks_its_workers_so_needs_no_main_guard(project):
    project.write("pipeline.py", PID_STAGES + """
    lwdp.configure(jobs=3)
    print("pids", len(set(both()["pid"]) - {os.getpid()}))
    """)
    run = project.run()
    assert "pids 2" in run.stdout
    assert run.ran() == {"one", "two", "both"}


def _error_on_a_spawned_worker(project, target: str, caught: str) -> str:
    """Run pipeline.py's ``target`` on one spawned worker process; the ``caught`` error it
    raises, as the line ``ERROR <type> <message>``."""
    project.write("pipeline.py", (project.root / "pipeline.py").read_text() + f"""
if __name__ == "__main__":
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    import lwdp

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        lwdp.configure(executor=pool)
        try:
            {target}()
        except {caught} as exc:
            print("ERROR", type(exc).__name__, exc)
""")
    run = project.run()
    return next(line for line in run.stdout.splitlines() if line.startswith("ERROR"))


def test_a_worker_that_cannot_reach_a_raw_input_names_itself_and_the_path(project):
    project.write("raw/b.csv", "x\n1\n")
    project.write("pipeline.py", """
        import os
        import pandas as pd
        from lwdp import stage

        @stage(n=[1], cache=True)
        def first(n):
            os.remove("raw/b.csv")  # gone before the next stage reaches its worker
            return pd.DataFrame({"x": n})

        @stage(src="raw/b.csv", prev=first, cache=True)
        def second(src, prev):
            return pd.read_csv(src)
    """)
    line = _error_on_a_spawned_worker(project, "second", "FileNotFoundError")
    assert line.startswith("ERROR RawInputNotFoundError worker ")
    assert "stage 'pipeline.second': raw input 'src' = 'raw/b.csv' is not there" in line
    assert ("pipeline.second",) not in project.sql("SELECT stage FROM artifacts")


@pytest.mark.slow
def test_lwdp_run_dask_connects_to_a_running_scheduler(project):
    _dask_project(project)
    project.write("cluster.py", """
        import sys
        from distributed import LocalCluster

        if __name__ == "__main__":
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
                print(cluster.scheduler_address, flush=True)
                sys.stdin.read()  # until the test closes it
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    cluster = subprocess.Popen([sys.executable, "cluster.py"], cwd=project.root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("tcp://127.0.0.1:")
        ran = subprocess.run([sys.executable, "-m", "lwdp", "run", "pipeline:scaled", "--dask", address],
                             cwd=project.root, env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert sum(line.split()[1:2] == ["computed"] for line in ran.stdout.splitlines() if line.startswith("pipeline.")) == 3
        wrong = subprocess.run([sys.executable, "-m", "lwdp", "run", "pipeline:scaled", "--dask", "tcp://127.0.0.1:9"],
                               cwd=project.root, env=env, capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in wrong.stderr
    finally:
        cluster.stdin.close()
        cluster.wait(timeout=30)


def test_a_single_threaded_script_whose_first_stage_runs_alone_still_forks_its_workers(project):
    """The workers are made before the run's first thread (its own slot, its writer), so
    they are forks even when one stage computes before the others can overlap."""
    project.write("pipeline.py", """
        import os
        import time
        import lwdp
        from lwdp import stage

        @stage(cache=True)
        def first():
            return 1

        @stage(f=first, n=[1], cache=True)
        def one(f, n):
            time.sleep(0.5)
            return (os.getpid(), os.getppid())

        @stage(f=first, n=[2], cache=True)
        def two(f, n):
            time.sleep(0.5)
            return (os.getpid(), os.getppid())

        @stage(f=first, n=[3], cache=True)
        def three(f, n):
            time.sleep(0.5)
            return (os.getpid(), os.getppid())

        @stage(a=one, b=two, c=three)
        def gathered(a, b, c):
            return [a, b, c]

        lwdp.configure(jobs=3)
        ran = gathered()
        print("WORKERS", sorted({ppid == os.getpid() for pid, ppid in ran if pid != os.getpid()}))
    """)
    run = project.run()
    assert "WORKERS [True]" in run.stdout, run.stdout + run.stderr


def test_an_uncached_result_a_worker_cannot_send_back_is_an_error_naming_the_stage(project):
    project.write("pipeline.py", """
        from lwdp import stage

        @stage()
        def connection():  # a client object, say
            return {"add": lambda x: x + 1}

        @stage(c=connection, cache=True)
        def total(c):
            return c["add"](1)
    """)
    line = _error_on_a_spawned_worker(project, "total", "TypeError")
    assert line.startswith("ERROR ResultNotSendableError worker ")
    assert "stage 'pipeline.connection': its result, a dict, can't be sent from the worker" in line
    assert "cache it (cache=True)" in line and project.sql("SELECT stage FROM artifacts") == []
