"""What a stage reads without declaring it: warned, tracked or refused; environment
variables a stage names; and ``lwdp verify --recompute``.

Every run is a fresh process on real files; which bodies ran is counted from the events.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from lwdp import stage
from lwdp.errors import InputBindingError

RATES_HELPER = '''
import json


def rates():
    with open("config/rates.json") as f:
        return json.load(f)
'''

PRICES = '''
import logging
import sys

import pandas as pd
import lwdp
from lwdp import stage
from helpers import rates

logging.basicConfig(format="%(levelname)s %(message)s")


@stage(n=3, cache=True)
def stg_prices(n):
    return pd.DataFrame({"x": range(n), "rate": rates()["eur"]})


@stage(prices=stg_prices, cache=True)
def stg_total(prices):
    return pd.DataFrame({"total": [float((prices["x"] * prices["rate"]).sum())]})


if __name__ == "__main__":
    if sys.argv[1:]:
        lwdp.configure(jobs=int(sys.argv[1]))
    try:
        print("TOTAL", stg_total()["total"].iloc[0])
    except lwdp.LwdpError as exc:
        print("ERROR", type(exc).__name__, exc)
    print("EXPLAIN", stg_prices.explain())
'''

WARNING = (
    "WARNING stage pipeline.stg_prices read config/rates.json, which is not one of its inputs: a change to it will "
    "not rerun the stage. Bind it (@stage(rates=\"config/rates.json\")) or let lwdp track it "
    "(lwdp.configure(undeclared_inputs=\"track\"))"
)


def _line(run, prefix: str) -> str:
    return next(line for line in run.stdout.splitlines() if line.startswith(prefix + " ")).split(" ", 1)[1]


def _warnings(run) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("WARNING ")]


def _prices_project(project, rate: str = "1.5") -> None:
    project.write("helpers.py", RATES_HELPER)
    project.write("config/rates.json", f'{{"eur": {rate}}}')
    project.write("pipeline.py", PRICES)


def _mode(name: str) -> dict[str, str]:
    return {"LWDP_UNDECLARED_INPUTS": name}


def test_warn_names_the_stage_the_file_and_what_to_do_once_and_explain_remembers(project):
    _prices_project(project)
    first = project.run()
    assert _warnings(first) == [WARNING]
    assert _line(first, "TOTAL") == "4.5"
    assert "it read config/rates.json, not among its inputs: a change there won't rerun it" in _line(first, "EXPLAIN")
    manifest = json.loads(project.sql("SELECT manifest FROM stage_manifests WHERE stage = 'pipeline.stg_prices'")[0][0])
    assert manifest["undeclared"] == {"files": ["config/rates.json"]}
    status = subprocess.run([sys.executable, "-m", "lwdp", "status", "pipeline:stg_total"], cwd=project.root,
                            capture_output=True, text=True, check=True)
    assert "pipeline.stg_prices" in status.stdout and "it read config/rates.json" in status.stdout

    project.write("config/rates.json", '{"eur": 2.0}')
    warm = project.run()
    assert warm.ran() == set() and _warnings(warm) == []
    assert _line(warm, "TOTAL") == "4.5"  # what "warn" warns of: the edit is not seen


def test_track_reruns_on_an_edit_and_hits_while_unchanged_through_the_whole_pipeline(project):
    _prices_project(project)
    first = project.run(env=_mode("track"))
    assert first.ran() == {"stg_prices", "stg_total"} and _warnings(first) == []
    assert project.sql("SELECT input_name, input_kind FROM lineage WHERE input_kind = 'tracked'") == [
        ("tracked config/rates.json", "tracked")
    ]
    unchanged = project.run(env=_mode("track"))
    assert unchanged.ran() == set() and _line(unchanged, "TOTAL") == "4.5"

    project.write("config/rates.json", '{"eur": 2.0}')
    explained = subprocess.run([sys.executable, "-c", "import pipeline; print(pipeline.stg_prices.explain())"],
                               cwd=project.root, capture_output=True, text=True, check=True, env={**_env(), **_mode("track")})
    assert "stale: tracked file config/rates.json changed" in explained.stdout
    edited = project.run(env=_mode("track"))
    assert edited.ran() == {"stg_prices", "stg_total"} and _line(edited, "TOTAL") == "6.0"
    assert project.run(env=_mode("track")).ran() == set()

    project.write("config/rates.json", '{"eur": 1.5}')  # back as it was: the first results again
    back = project.run(env=_mode("track"))
    assert back.ran() == set() and _line(back, "TOTAL") == "4.5"


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}


def test_track_in_worker_processes(project):
    _prices_project(project)
    assert project.run("pipeline.py", "2", env=_mode("track")).ran() == {"stg_prices", "stg_total"}
    project.write("config/rates.json", '{"eur": 3.0}')
    edited = project.run("pipeline.py", "2", env=_mode("track"))
    assert edited.ran() == {"stg_prices", "stg_total"} and _line(edited, "TOTAL") == "9.0"
    assert project.run("pipeline.py", "2", env=_mode("track")).ran() == set()


def test_warn_in_worker_processes_reaches_the_run(project):
    _prices_project(project)
    run = project.run("pipeline.py", "2")
    assert _warnings(run) == [WARNING]


def test_error_refuses_and_caches_nothing(project):
    _prices_project(project)
    run = project.run(env=_mode("error"))
    error = _line(run, "ERROR")
    assert error.startswith("UndeclaredInputError stage 'pipeline.stg_prices' read config/rates.json, which is not among its inputs")
    assert "@stage(rates=\"config/rates.json\")" in error
    assert project.sql("SELECT COUNT(*) FROM artifacts") == [(0,)]


def test_a_bad_mode_is_an_error_naming_the_four(project):
    _prices_project(project)
    run = project.run(env=_mode("loud"), check=False)
    assert run.returncode != 0
    assert 'undeclared_inputs must be one of "warn", "track", "error", "ignore", not \'loud\'' in run.stderr


def test_ignore_watches_nothing(project):
    _prices_project(project)
    run = project.run(env=_mode("ignore"))
    assert _warnings(run) == [] and "it read" not in _line(run, "EXPLAIN")


LISTING = '''
import logging
import os

import pandas as pd
from lwdp import stage

logging.basicConfig(format="%(levelname)s %(message)s")


@stage(cache=True)
def stg_count():
    return pd.DataFrame({"files": [len(os.listdir("extra"))]})


if __name__ == "__main__":
    print("FILES", int(stg_count()["files"].iloc[0]))
'''


def test_a_listed_directory_is_warned_of_and_tracked_by_its_listing(project):
    project.write("extra/a.txt", "a")
    project.write("pipeline.py", LISTING)
    warned = project.run()
    assert [w for w in _warnings(warned) if "listed extra" in w], warned.stderr
    assert "a file added to it or removed will not rerun the stage" in warned.stderr

    shutil.rmtree(project.cache_dir)
    assert project.run(env=_mode("track")).ran() == {"stg_count"}
    assert project.run(env=_mode("track")).ran() == set()
    project.write("extra/b.txt", "b")
    again = project.run(env=_mode("track"))
    assert again.ran() == {"stg_count"} and _line(again, "FILES") == "2"


NOT_DATA = '''
import glob
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd
from lwdp import stage

logging.basicConfig(format="%(levelname)s %(message)s")


def _package_data_file():
    root = Path(pd.__file__).parent
    return next(p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix not in (".py", ".pyc", ".so"))


@stage(src="raw/in.csv", folder="raw/many", pattern="raw/glob/*.csv", cache=True)
def stg_upstream(src, folder, pattern):
    frames = [pd.read_csv(src)]
    frames += [pd.read_csv(os.path.join(folder, name)) for name in sorted(os.listdir(folder))]
    frames += [pd.read_csv(path) for path in sorted(glob.glob(pattern))]
    return pd.concat(frames, ignore_index=True)


@stage(up=stg_upstream, cache=True)
def stg_clean(up):
    import importlib.metadata

    import lazy_helper  # a module imported while the stage runs

    importlib.metadata.version("pandas")  # lists the directories Python searches

    _package_data_file().read_bytes()  # an installed distribution's data file
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as scratch:  # its own scratch file
        up.to_csv(scratch.name, index=False)
    back = pd.read_csv(scratch.name)
    os.unlink(scratch.name)
    Path("out").mkdir(exist_ok=True)
    up.to_csv("out/written.csv", index=False)  # a file it writes, then reads back
    back = pd.read_csv("out/written.csv")
    inner = stg_upstream()  # a stage called inside a stage: lwdp reads its own cache
    return lazy_helper.double(back).assign(n=len(inner))


if __name__ == "__main__":
    print("ROWS", len(stg_clean()))
'''


def test_declared_inputs_imports_packages_cache_scratch_and_own_writes_are_not_warned_of(project):
    project.write("raw/in.csv", "v\n1\n")
    project.write("raw/many/a.csv", "v\n2\n")
    project.write("raw/glob/b.csv", "v\n3\n")
    project.write("lazy_helper.py", "def double(df):\n    return df.assign(v=df['v'] * 2)\n")
    project.write("pipeline.py", NOT_DATA)
    project.run()  # stg_upstream cached: the inner call loads it from the cache
    shutil.rmtree(project.cache_dir)
    for name in ("pipeline.py", "lazy_helper.py"):
        project.edit(name, project.root.joinpath(name).read_text())
    for mode in ("warn", "error"):
        run = project.run(env=_mode(mode))
        assert _line(run, "ROWS") == "3"
        assert _warnings(run) == [], run.stderr


CONNECTS = '''
import logging
import socket
import sys

import pandas as pd
from lwdp import stage

logging.basicConfig(format="%(levelname)s %(message)s")


@stage(port=int(sys.argv[1]), cache=True)
def stg_fetch(port):
    with socket.create_connection(("127.0.0.1", port)) as conn:
        return pd.DataFrame({"reply": [conn.recv(16).decode()]})


if __name__ == "__main__":
    print("REPLY", stg_fetch()["reply"].iloc[0])
'''


def test_a_stage_that_connects_to_the_network_is_warned_of_in_every_mode(project):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"hello")

    threading.Thread(target=serve, daemon=True).start()
    project.write("pipeline.py", CONNECTS)
    try:
        for mode in ("warn", "track", "error"):
            shutil.rmtree(project.cache_dir, ignore_errors=True)
            run = project.run("pipeline.py", str(port), env=_mode(mode))
            assert _line(run, "REPLY") == "hello"
            assert _warnings(run) == [
                f"WARNING stage pipeline.stg_fetch connected to 127.0.0.1:{port}: its result may change while its inputs "
                "don't, and lwdp would serve the cached one. Make it cache=False (it then runs at every call), or bind "
                "what it fetches as an input (a URL, or a parameter such as the date), or evict its results by age "
                "(lwdp gc --max-age)"
            ], run.stderr
    finally:
        server.close()


ENVIRONMENT = '''
import os

import pandas as pd
from lwdp import stage


@stage(env=["API_REGION"], cache=True)
def stg_region():
    return pd.DataFrame({"region": [os.environ.get("API_REGION", "none")]})


if __name__ == "__main__":
    print("REGION", stg_region()["region"].iloc[0])
    print("EXPLAIN", stg_region.explain())
'''


def test_env_names_variables_whose_values_the_hash_covers(project):
    project.write("pipeline.py", ENVIRONMENT)
    eu = project.run(env={"API_REGION": "eu"})
    assert eu.ran() == {"stg_region"} and _line(eu, "REGION") == "eu"
    assert project.run(env={"API_REGION": "eu"}).ran() == set()
    explained = subprocess.run([sys.executable, "-c", "import pipeline; print(pipeline.stg_region.explain())"],
                               cwd=project.root, capture_output=True, text=True, check=True, env={**_env(), "API_REGION": "us"})
    assert "stale: environment variable `API_REGION` changed" in explained.stdout
    us = project.run(env={"API_REGION": "us"})
    assert us.ran() == {"stg_region"} and _line(us, "REGION") == "us"
    unset = project.run()
    assert unset.ran() == {"stg_region"} and _line(unset, "REGION") == "none"
    assert project.run(env={"API_REGION": "eu"}).ran() == set()
    manifest = project.sql("SELECT manifest FROM stage_manifests")[0][0]
    assert "eu" not in json.loads(manifest)["inputs"]["env API_REGION"].values()  # values may be secrets: never stored


def test_env_is_a_list_of_names_and_reserved():
    with pytest.raises(InputBindingError, match=r"env=\[3\] must list variable names"):
        stage(env=[3])(lambda: None)
    with pytest.raises(InputBindingError, match="rename the function's parameter `env`"):
        stage(env=["A"])(lambda env: None)


REPRODUCIBLE = '''
import random

import pandas as pd
from lwdp import stage


@stage(n=5, cache=True)
def stg_steady(n):
    return pd.DataFrame({"x": range(n), "y": [i * 2.5 for i in range(n)]})


@stage(steady=stg_steady, cache=True)
def stg_noisy(steady):
    return steady.assign(z=[random.random() for _ in range(len(steady))])


if __name__ == "__main__":
    stg_noisy()
'''


def _artifact_files(project) -> list[tuple[str, int]]:
    return sorted(
        (p.name, p.stat().st_mtime_ns) for p in project.cache_dir.rglob("*")
        if p.is_file() and "locks" not in p.parts and not p.name.startswith("catalog.sqlite")
    )


def _verify(project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lwdp", "verify", "--recompute", *args], cwd=project.root,
                          capture_output=True, text=True, env=_env())


def test_verify_recompute_reports_a_stage_that_is_not_reproducible_and_writes_nothing(project):
    project.write("pipeline.py", REPRODUCIBLE)
    project.run()
    before = _artifact_files(project)
    rows_before = project.sql("SELECT hash, checksum, last_access FROM artifacts ORDER BY hash")

    steady = _verify(project, "pipeline.stg_steady")
    assert steady.returncode == 0, steady.stderr
    assert steady.stdout.startswith("reproduced  pipeline.stg_steady ")

    noisy = _verify(project, "pipeline:stg_noisy")
    assert noisy.returncode == 1, noisy.stderr
    assert noisy.stdout.startswith("DIFFERS     pipeline.stg_noisy ")
    assert "column `z` differs first at row 0: " in noisy.stdout and "unseeded randomness" in noisy.stdout

    both = _verify(project, "2")
    assert both.returncode == 1 and sorted(line.split()[1] for line in both.stdout.splitlines()) == [
        "pipeline.stg_noisy", "pipeline.stg_steady"
    ]
    assert _artifact_files(project) == before  # no file written, none touched
    assert project.sql("SELECT hash, checksum, last_access FROM artifacts ORDER BY hash") == rows_before


@pytest.mark.slow
def test_track_on_a_dask_cluster(project):
    pytest.importorskip("distributed")
    _prices_project(project)
    project.write("cluster.py", '''
        import sys
        import dask
        import lwdp
        from distributed import Client, LocalCluster

        if __name__ == "__main__":
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
                lwdp.configure(executor=client)
                import pipeline
                print("TOTAL", pipeline.stg_total()["total"].iloc[0])
    ''')
    assert project.run("cluster.py", env=_mode("track")).ran() == {"stg_prices", "stg_total"}
    project.write("config/rates.json", '{"eur": 4.0}')
    edited = project.run("cluster.py", env=_mode("track"))
    assert edited.ran() == {"stg_prices", "stg_total"} and _line(edited, "TOTAL") == "12.0"


def test_track_with_the_teams_postgres_catalog(project, pg_url):
    _prices_project(project)
    env = {**_mode("track"), "LWDP_CATALOG_URL": pg_url}
    assert project.run(env=env).ran() == {"stg_prices", "stg_total"}
    assert project.run(env=env).ran() == set()
    project.write("config/rates.json", '{"eur": 2.0}')
    edited = project.run(env=env)
    assert edited.ran() == {"stg_prices", "stg_total"} and _line(edited, "TOTAL") == "6.0"


CUTOFF = '''
import pandas as pd
from lwdp import stage
from helpers import rates


@stage(n=3, cache=True)
def stg_base(n):
    return pd.DataFrame({"x": range(n)})


@stage(base=stg_base, cache=True)
def stg_prices(base):
    return base.assign(rate=rates()["eur"])


if __name__ == "__main__":
    print("RATE", stg_prices()["rate"].iloc[0])
'''


def test_track_keeps_early_cutoff_and_reuses_only_a_result_read_from_the_same_files(project):
    project.write("helpers.py", RATES_HELPER)
    project.write("config/rates.json", '{"eur": 1.5}')
    project.write("pipeline.py", CUTOFF)
    assert project.run(env=_mode("track")).ran() == {"stg_base", "stg_prices"}

    project.edit("pipeline.py", CUTOFF.replace('return pd.DataFrame({"x": range(n)})', 'x = range(n)\n    return pd.DataFrame({"x": x})'))
    refactored = project.run(env=_mode("track"))
    assert refactored.ran() == {"stg_base"} and refactored.outcomes()["stg_prices"] == "reused"

    project.edit("pipeline.py", CUTOFF)  # the first code again, and another rate
    project.write("config/rates.json", '{"eur": 2.5}')
    both = project.run(env=_mode("track"))
    assert both.ran() == {"stg_prices"} and _line(both, "RATE") == "2.5"


SQLITE = '''
import logging
import sqlite3

import pandas as pd
from lwdp import stage

logging.basicConfig(format="%(levelname)s %(message)s")


@stage(cache=True)
def stg_customers():
    with sqlite3.connect("crm.db") as conn:
        return pd.read_sql("SELECT * FROM customers", conn)


if __name__ == "__main__":
    print("ROWS", len(stg_customers()))
'''


def test_a_sqlite_database_read_undeclared_is_warned_of_and_tracked(project):
    import sqlite3

    with sqlite3.connect(project.root / "crm.db") as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
        conn.execute("INSERT INTO customers VALUES (1)")
    conn.close()
    project.write("pipeline.py", SQLITE)
    assert [w for w in _warnings(project.run()) if "read crm.db, which is not one of its inputs" in w]
    shutil.rmtree(project.cache_dir)
    assert project.run(env=_mode("track")).ran() == {"stg_customers"}
    with sqlite3.connect(project.root / "crm.db") as conn:
        conn.execute("INSERT INTO customers VALUES (2)")
    conn.close()
    again = project.run(env=_mode("track"))
    assert again.ran() == {"stg_customers"} and _line(again, "ROWS") == "2"


def test_switching_to_track_never_trusts_a_result_computed_from_other_contents(project):
    _prices_project(project)
    assert project.run().ran() == {"stg_prices", "stg_total"}  # "warn": what it read is recorded
    project.write("config/rates.json", '{"eur": 2.0}')
    switched = project.run(env=_mode("track"))
    assert switched.ran() == {"stg_prices", "stg_total"} and _line(switched, "TOTAL") == "6.0"

    shutil.rmtree(project.cache_dir)
    assert project.run(env=_mode("ignore")).ran() == {"stg_prices", "stg_total"}  # nothing recorded
    project.write("config/rates.json", '{"eur": 3.0}')
    unverified = project.run(env=_mode("track"))
    assert unverified.ran() == {"stg_prices", "stg_total"} and _line(unverified, "TOTAL") == "9.0"
    assert project.run(env=_mode("track")).ran() == set()


CHDIR = """
import os

import pandas as pd
from lwdp import stage


@stage(cache=True)
def stg_elsewhere():
    here = os.getcwd()
    os.chdir("sub")
    try:
        with open("x.txt") as f:
            return pd.DataFrame({"x": [f.read()]})
    finally:
        os.chdir(here)


if __name__ == "__main__":
    print("X", stg_elsewhere()["x"].iloc[0])
"""


def test_track_a_file_read_after_the_stage_changed_directory(project):
    project.write("sub/x.txt", "1")
    project.write("pipeline.py", CHDIR)
    assert project.run(env=_mode("track")).ran() == {"stg_elsewhere"}
    assert project.sql("SELECT input_path FROM lineage WHERE input_kind = 'tracked'") == [("sub/x.txt",)]
    assert project.run(env=_mode("track")).ran() == set()
    for value in ("2", "3"):
        project.write("sub/x.txt", value)
        run = project.run(env=_mode("track"))
        assert run.ran() == {"stg_elsewhere"} and _line(run, "X") == value


PARTITIONED_NOISE = """
import random

import pandas as pd
from lwdp import stage


@stage(src="raw/*.csv", partition_by="src", cache=True)
def stg_parts(src):
    return pd.read_csv(src).assign(noise=random.random())


if __name__ == "__main__":
    stg_parts()
"""


def test_verify_recompute_a_partitioned_stage_checks_each_partition(project):
    project.write("raw/a.csv", "v\n1\n")
    project.write("raw/b.csv", "v\n2\n")
    project.write("pipeline.py", PARTITIONED_NOISE)
    project.run()
    found = _verify(project, "pipeline.stg_parts")
    assert found.returncode == 1
    assert sorted(line.split()[1] for line in found.stdout.splitlines()) == [
        "pipeline.stg_parts[raw/a.csv]", "pipeline.stg_parts[raw/b.csv]"
    ]
    assert "column `noise` differs first at row 0" in found.stdout
    zero = _verify(project, "0")
    assert zero.returncode == 2 and "N must be 1 or more" in zero.stderr
