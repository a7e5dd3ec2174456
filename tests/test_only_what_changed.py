"""Recompute only what really changed: version pins, early cutoff, forced recomputes.

Every run is a fresh process on real files; which function bodies ran is counted from a
log the bodies append to (``ran.log``), not only from lwdp's own events.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from lwdp import stage
from lwdp.errors import InputBindingError

PINNED = '''
import pandas as pd
from lwdp import stage


def _ran(name):
    with open("ran.log", "a") as log:
        log.write(name + "\\n")


@stage(src="raw/in.csv", cache=True, version="1")
def stg_read(src):
    _ran("stg_read")
    return pd.read_csv(src).assign(doubled=lambda df: df["v"] * 2)


@stage(df=stg_read, cache=True)
def stg_total(df):
    _ran("stg_total")
    return pd.DataFrame({"total": [df["doubled"].sum()]})


if __name__ == "__main__":
    print("EXPLAIN", stg_read.explain())
    print("TOTAL", int(stg_total()["total"].iloc[0]))
'''


def _bodies(project) -> list[str]:
    """The stage bodies that ran since the last call, in order (and start a new count)."""
    log = project.root / "ran.log"
    if not log.exists():
        return []
    names = log.read_text().split()
    log.unlink()
    return names


def _line(run, prefix: str) -> str:
    return next(line for line in run.stdout.splitlines() if line.startswith(prefix + " ")).split(" ", 1)[1]


def test_a_pinned_version_keeps_the_cache_through_an_edit_until_it_changes(project):
    project.write("raw/in.csv", "v\n1\n2\n")
    project.write("pipeline.py", PINNED)
    assert _line(project.run(), "TOTAL") == "6"
    assert _bodies(project) == ["stg_read", "stg_total"]

    # An edit that changes the result: the pin says "the same", so the cache is served
    # (stale, as the README warns), and nothing below it reruns either.
    project.edit("pipeline.py", PINNED.replace('df["v"] * 2', 'df["v"] * 3'))
    edited = project.run()
    assert _line(edited, "TOTAL") == "6" and _bodies(project) == []
    assert "fresh" in _line(edited, "EXPLAIN")

    # Inputs still count: a changed raw file reruns the pinned stage.
    project.write("raw/in.csv", "v\n1\n2\n3\n")
    assert _line(project.run(), "TOTAL") == "18" and _bodies(project) == ["stg_read", "stg_total"]

    project.edit("pipeline.py", PINNED.replace('df["v"] * 2', 'df["v"] * 3').replace('version="1"', 'version="2"'))
    run = project.run()
    assert _line(run, "EXPLAIN") == "stage pipeline.stg_read: stale: version changed 1 → 2"
    assert next(e["reason"] for e in run.events if e["stage"].endswith("stg_read")) == "version changed 1 → 2"
    # Its output is what the edited code gave before the pin changed: early cutoff keeps stg_total.
    assert _line(run, "TOTAL") == "18" and _bodies(project) == ["stg_read"]
    assert run.outcomes()["stg_total"] == "reused"


def test_pinning_and_unpinning_a_version_are_explained(project):
    project.write("raw/in.csv", "v\n1\n")
    project.write("pipeline.py", PINNED.replace(', version="1"', ""))
    project.run()
    project.edit("pipeline.py", PINNED)
    assert _line(project.run(), "EXPLAIN") == "stage pipeline.stg_read: stale: version pinned to 1 (its code no longer counts)"
    project.edit("pipeline.py", PINNED.replace(', version="1"', "").replace('df["v"] * 2', 'df["v"] * 3'))
    assert _line(project.run(), "EXPLAIN") == "stage pipeline.stg_read: stale: version pin 1 removed (its code counts again)"


@pytest.mark.parametrize("version", [2, "", b"2"])
def test_a_version_that_is_not_a_non_empty_string_is_refused_at_decoration(project, version):
    with pytest.raises(InputBindingError, match=r"version=.* must be a non-empty string"):
        stage(cache=True, version=version)(lambda: 1)


def test_a_parameter_named_version_is_told_to_be_renamed(project):
    def stg_gen(version):
        return version

    with pytest.raises(InputBindingError, match=r"`version=` pins the stage's version .* rename the function's parameter `version`"):
        stage(cache=True, version=3)(stg_gen)


CUTOFF = '''
import sys
import pandas as pd
import lwdp
from lwdp import stage


def _ran(name):
    with open("ran.log", "a") as log:
        log.write(name + "\\n")


@stage(src="raw/in.csv", cache=True)
def stg_read(src):
    _ran("stg_read")
    return pd.read_csv(src)[["region", "v"]]


@stage(df=stg_read, cache=True)
def stg_clean(df):
    _ran("stg_clean")
    return df[df["v"] > 0].reset_index(drop=True)


@stage(df=stg_clean, cache=True)
def stg_total(df):
    _ran("stg_total")
    return df.groupby("region", as_index=False)["v"].sum()


@stage(totals=stg_total, cache=True)
def stg_report(totals):
    _ran("stg_report")
    return totals.assign(share=totals["v"] / totals["v"].sum())


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lwdp.configure(jobs=int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    print("REPORT", stg_report().to_json(orient="records"))
'''

REFACTORED = CUTOFF.replace(
    'return df[df["v"] > 0].reset_index(drop=True)',
    'kept = df.query("v > 0")\n    return kept.reset_index(drop=True)',
)


def _cutoff_project(project):
    project.write("raw/in.csv", "region,v\nnorth,1\nsouth,-2\nnorth,3\nsouth,4\n")
    project.write("pipeline.py", CUTOFF)
    first = project.run()
    assert _bodies(project) == ["stg_read", "stg_clean", "stg_total", "stg_report"]
    return _line(first, "REPORT")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_refactor_that_keeps_the_output_reruns_only_the_refactored_stage(project, jobs):
    report = _cutoff_project(project)
    project.edit("pipeline.py", REFACTORED)
    project.write("explain.py", "import pipeline\nprint('EXPLAIN', pipeline.stg_total.explain())\n")
    explained = project.run("explain.py")
    assert _line(explained, "EXPLAIN") == "stage pipeline.stg_total: stale: upstream `df` changed (stage stg_clean)"

    run = project.run("pipeline.py", jobs)
    assert _line(run, "REPORT") == report
    assert _bodies(project) == ["stg_clean"]
    assert {name: run.outcomes()[name] for name in ("stg_clean", "stg_total", "stg_report")} == {
        "stg_clean": "computed", "stg_total": "reused", "stg_report": "reused",
    }
    assert "stage pipeline.stg_total: upstream stg_clean reran (code changed) and returned the same result: reused as" in run.stderr
    assert "stage pipeline.stg_report: upstream stg_total changed and returned the same result: reused as" in run.stderr

    assert _line(project.run("explain.py"), "EXPLAIN").endswith(
        "; reused, as upstream stg_clean reran (code changed) and returned the same result)"
    )
    # The reused results are this pipeline's cache now: a warm run finds them by hash.
    warm = project.run("pipeline.py", jobs)
    assert warm.outcomes()["stg_report"] == "hit" and _bodies(project) == []
    # Each is the same file as the result it reuses (a hard link), recorded under both hashes.
    reports = project.sql("SELECT hash, checksum, input_key FROM artifacts WHERE stage = 'pipeline.stg_report'")
    assert len(reports) == 2 and len({(checksum, key) for _, checksum, key in reports}) == 1
    files = [next(project.cache_dir.glob(f"artifacts/{h[:2]}/{h}.parquet")) for h, _, _ in reports]
    assert files[0].stat().st_ino == files[1].stat().st_ino


def test_a_raw_file_rewritten_in_another_layout_reruns_only_its_reader(project):
    report = _cutoff_project(project)
    # Quoted fields, CRLF line endings, another column order and an extra column the reader drops.
    (project.root / "raw/in.csv").write_bytes(b'v,"region",note\r\n1,"north",a\r\n-2,south,b\r\n3,"north",c\r\n4,south,d\r\n')
    run = project.run()
    assert _line(run, "REPORT") == report
    assert _bodies(project) == ["stg_read"]
    assert run.outcomes()["stg_clean"] == "reused"
    assert "upstream stg_read reran (raw input `src` (raw/in.csv) content changed) and returned the same result" in run.stderr


def test_an_upstream_that_returns_something_else_reruns_its_consumers(project):
    _cutoff_project(project)
    project.edit("pipeline.py", CUTOFF.replace('df["v"] > 0', 'df["v"] > 1'))
    run = project.run()
    assert _bodies(project) == ["stg_clean", "stg_total", "stg_report"]
    # ... and stops where a result is the same again: north's 1 was dropped, south's -2 was not in
    project.edit("pipeline.py", CUTOFF.replace('df["v"] > 0', 'df["v"] >= 1'))
    run = project.run()
    assert _bodies(project) == ["stg_clean"] and run.outcomes()["stg_total"] == "reused"


UNCACHED_UPSTREAM = '''
import pandas as pd
from lwdp import stage


def _ran(name):
    with open("ran.log", "a") as log:
        log.write(name + "\\n")


@stage(src="raw/in.csv")
def stg_read(src):
    _ran("stg_read")
    return pd.read_csv(src)


@stage(df=stg_read, cache=True)
def stg_total(df):
    _ran("stg_total")
    return pd.DataFrame({"total": [df["v"].sum()]})


if __name__ == "__main__":
    print("TOTAL", int(stg_total()["total"].iloc[0]))
'''


def test_an_uncached_upstream_that_returns_the_same_value_is_cut_off_too(project):
    project.write("raw/in.csv", "v\n1\n2\n")
    project.write("pipeline.py", UNCACHED_UPSTREAM)
    project.run()
    assert _bodies(project) == ["stg_read", "stg_total"]
    project.write("raw/in.csv", "v\r\n1\r\n2\r\n")  # the same frame, other bytes
    run = project.run()
    assert _line(run, "TOTAL") == "3" and _bodies(project) == ["stg_read"]
    assert run.outcomes()["stg_total"] == "reused"


RECOMPUTE = '''
import sys
import pandas as pd
from lwdp import stage


def _ran(name):
    with open("ran.log", "a") as log:
        log.write(name + "\\n")


@stage(cache=True)
def stg_fetch():
    _ran("stg_fetch")
    with open("db.txt") as f:  # a source lwdp can't see, as a database is
        return pd.DataFrame({"v": [int(x) for x in f.read().split()]})


@stage(df=stg_fetch, cache=True)
def stg_total(df):
    _ran("stg_total")
    return pd.DataFrame({"total": [df["v"].sum()]})


@stage(totals=stg_total, cache=True)
def stg_report(totals):
    _ran("stg_report")
    return totals.assign(label="total")


if __name__ == "__main__":
    if sys.argv[1:] == ["recompute"]:
        print("FETCHED", len(stg_fetch.recompute()))
    print("TOTAL", int(stg_report()["total"].iloc[0]))
'''


def _recompute_project(project):
    project.write("db.txt", "1 2")
    project.write("pipeline.py", RECOMPUTE)
    assert _line(project.run(), "TOTAL") == "3"
    assert _bodies(project) == ["stg_fetch", "stg_total", "stg_report"]


def test_recompute_with_the_same_result_keeps_everything_below(project):
    _recompute_project(project)
    run = project.run("pipeline.py", "recompute")
    assert _line(run, "FETCHED") == "2" and _line(run, "TOTAL") == "3"
    assert _bodies(project) == ["stg_fetch"]
    assert [e["reason"] for e in run.events if e["outcome"] == "computed"] == ["recompute asked"]


def test_recompute_with_another_result_reruns_what_was_computed_from_it(project):
    _recompute_project(project)
    project.write("db.txt", "5 5")
    assert _line(project.run(), "TOTAL") == "3" and _bodies(project) == []  # lwdp can't see the source
    run = project.run("pipeline.py", "recompute")
    assert _line(run, "TOTAL") == "10"
    assert _bodies(project) == ["stg_fetch", "stg_total", "stg_report"]
    assert run.outcomes()["stg_total"] == "computed"
    # The artifacts computed from the old result were removed, not kept beside the new ones.
    assert len(project.sql("SELECT hash FROM artifacts WHERE stage = 'pipeline.stg_report'")) == 1
    assert _line(project.run(), "TOTAL") == "10" and _bodies(project) == []


def _lwdp_run(project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lwdp", "--cache-dir", str(project.cache_dir), "run", "pipeline:stg_report", *args],
        cwd=project.root, capture_output=True, text=True, timeout=300,
    )


def test_lwdp_run_force_recomputes_a_stage_and_only_what_its_new_result_changes(project):
    _recompute_project(project)
    same = _lwdp_run(project, "--force", "stg_fetch")
    assert same.returncode == 0, same.stderr
    assert _bodies(project) == ["stg_fetch"]
    assert re.search(r"pipeline\.stg_report\s+cached", same.stdout), same.stdout

    project.write("db.txt", "5 5")
    changed = _lwdp_run(project, "--force", "pipeline.stg_fetch")
    assert changed.returncode == 0, changed.stderr
    assert _bodies(project) == ["stg_fetch", "stg_total", "stg_report"]
    assert _line(project.run(), "TOTAL") == "10" and _bodies(project) == []

    unknown = _lwdp_run(project, "--force", "stg_nothing")
    assert unknown.returncode == 2
    assert "--force 'stg_nothing' is not a stage of pipeline:stg_report's pipeline" in unknown.stderr


PARTITIONED = '''
import json
import os
import sys
import pandas as pd
import lwdp
from lwdp import stage


def _ran(name):
    with open("ran.log", "a") as log:
        log.write(name + "\\n")


@stage(orders="raw/orders/*.csv", cache=True, partition_by="orders", min_qty=1)
def clean_orders(orders, min_qty):
    _ran(orders)
    with open("pids.log", "a") as log:
        log.write(f"{os.getpid()}\\n")
    df = pd.read_csv(orders)
    return df[df.qty >= min_qty]


@stage(clean=clean_orders, cache=True)
def total(clean):
    _ran("total")
    return pd.DataFrame({"rows": [len(clean)], "qty": [int(clean.qty.sum())]})


@stage(orders="raw/orders", partition_by="orders")
def sizes(orders):
    return os.path.getsize(orders)


if __name__ == "__main__":
    lwdp.configure(jobs=int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    print("EXPLAIN", clean_orders.explain())
    print("TOTAL", total().to_json(orient="records"))
    print("CLEAN", clean_orders().to_json(orient="split"))
    print("SIZES", json.dumps(sizes()))
'''


def _write_month(project, month: str, *qty: int) -> None:
    project.write(f"raw/orders/2024-{month}.csv", "qty\n" + "".join(f"{q}\n" for q in qty))


def _partitioned_project(project) -> None:
    _write_month(project, "01", 1, -1, 2)
    _write_month(project, "02", 3)
    _write_month(project, "03", -5, 4)
    project.write("pipeline.py", PARTITIONED)
    first = project.run()
    assert _line(first, "TOTAL") == '[{"rows":4,"qty":10}]'
    assert _bodies(project) == ["raw/orders/2024-01.csv", "raw/orders/2024-02.csv", "raw/orders/2024-03.csv", "total"]
    # The files' results one after the other, in path order, each with the index its call gave.
    clean = json.loads(_line(first, "CLEAN"))
    assert clean["index"] == [0, 2, 0, 1] and clean["data"] == [[1], [2], [3], [4]]
    assert json.loads(_line(first, "SIZES")) == {f"raw/orders/2024-{m}.csv": (project.root / f"raw/orders/2024-{m}.csv").stat().st_size for m in ("01", "02", "03")}


def test_a_changed_file_recomputes_only_its_partition(project):
    _partitioned_project(project)
    _write_month(project, "02", 3, 6)
    status = subprocess.run(
        [sys.executable, "-m", "lwdp", "--cache-dir", str(project.cache_dir), "status", "pipeline:total"],
        cwd=project.root, capture_output=True, text=True, timeout=120,
    )
    lines = {line.split()[1]: line for line in status.stdout.splitlines() if len(line.split()) > 1}
    assert lines["pipeline.clean_orders[raw/orders/2024-02.csv]"].startswith("stale")
    assert lines["pipeline.clean_orders[raw/orders/2024-01.csv]"].startswith("fresh")
    assert lines["pipeline.clean_orders"].endswith(": partition raw/orders/2024-02.csv: content changed")
    assert _bodies(project) == []  # status runs nothing
    run = project.run()
    assert _line(run, "EXPLAIN") == "stage pipeline.clean_orders: stale: partition raw/orders/2024-02.csv: content changed"
    assert _bodies(project) == ["raw/orders/2024-02.csv", "total"]
    assert _line(run, "TOTAL") == '[{"rows":5,"qty":16}]'
    event = next(e for e in run.events if e["stage"] == "pipeline.clean_orders[raw/orders/2024-02.csv]" and e["outcome"] == "computed")
    assert event["reason"] == "partition raw/orders/2024-02.csv: content changed"


def test_a_new_file_adds_a_partition_and_a_removed_one_drops_its_part(project):
    _partitioned_project(project)
    _write_month(project, "04", 7)
    assert _line(project.run(), "TOTAL") == '[{"rows":5,"qty":17}]'
    assert _bodies(project) == ["raw/orders/2024-04.csv", "total"]
    (project.root / "raw/orders/2024-01.csv").unlink()
    assert _line(project.run(), "TOTAL") == '[{"rows":3,"qty":14}]'
    assert _bodies(project) == ["total"]


def test_a_code_or_parameter_change_recomputes_every_partition(project):
    _partitioned_project(project)
    project.edit("pipeline.py", PARTITIONED.replace("min_qty=1)", "min_qty=2)"))
    assert _line(project.run(), "TOTAL") == '[{"rows":3,"qty":9}]'
    assert _bodies(project) == ["raw/orders/2024-01.csv", "raw/orders/2024-02.csv", "raw/orders/2024-03.csv", "total"]


def test_a_warm_run_of_a_consumer_reads_no_partition(project):
    _partitioned_project(project)
    project.write("warm.py", "import pipeline\nprint('TOTAL', pipeline.total().to_json(orient='records'))\n")
    run = project.run("warm.py")
    assert _line(run, "TOTAL") == '[{"rows":4,"qty":10}]' and _bodies(project) == []
    outcomes = {e["stage"]: e["outcome"] for e in run.events}
    assert outcomes["pipeline.total"] == "hit"
    assert {outcome for stage, outcome in outcomes.items() if stage.startswith("pipeline.clean_orders")} == {"not-needed"}


def test_partitions_run_in_parallel_and_lineage_names_each_file(project):
    _write_month(project, "01", 1)
    _write_month(project, "02", 2)
    _write_month(project, "03", 3)
    _write_month(project, "04", 4)
    project.write("pipeline.py", PARTITIONED)
    run = project.run("pipeline.py", "2")
    assert _line(run, "TOTAL") == '[{"rows":4,"qty":10}]'
    assert len(set((project.root / "pids.log").read_text().split())) == 2  # the run's process and its worker
    dependents = subprocess.run(
        [sys.executable, "-m", "lwdp", "--cache-dir", str(project.cache_dir), "dependents", "raw/orders/2024-03.csv"],
        cwd=project.root, capture_output=True, text=True, timeout=120,
    )
    assert dependents.returncode == 0, dependents.stderr
    named = [line.split()[0] for line in dependents.stdout.splitlines()]
    assert set(named) == {
        "pipeline.clean_orders[raw/orders/2024-03.csv]", "pipeline.clean_orders", "pipeline.total",
        "pipeline.sizes[raw/orders/2024-03.csv]", "pipeline.sizes",  # the directory's partition of the same file
    }


@pytest.mark.parametrize(("inputs", "message"), [
    ({"orders": "raw/one.csv"}, "names 'raw/one.csv', which is not a glob or a directory"),
    ({"orders": 3}, "names 3, which is not a glob or a directory"),
    ({"other": "raw/*.csv"}, "names no input"),
])
def test_partition_by_must_name_a_raw_glob_or_directory(project, inputs, message):
    project.write("raw/one.csv", "qty\n1\n")
    with pytest.raises(InputBindingError, match=re.escape(message)):
        stage(partition_by="orders", **inputs)(lambda **kw: None)


def test_a_partitioned_directory_may_come_after_its_module_is_imported(project):
    """An export folder made by another job: the module imports; a call before it exists
    is the usual missing-input error; a file where the directory should be, the binding's."""
    from lwdp.errors import RawInputNotFoundError

    @stage(orders="exports", cache=True, partition_by="orders")
    def sizes(orders):
        return os.path.getsize(orders)

    with pytest.raises(RawInputNotFoundError, match="not found"):
        sizes()
    project.write("exports/a.csv", "qty\n1\n")
    assert sizes() == {"exports/a.csv": 6}
    (project.root / "exports/a.csv").unlink()
    (project.root / "exports").rmdir()
    project.write("exports", "not a folder")
    with pytest.raises(InputBindingError, match=re.escape("names 'exports', which is not a glob or a directory")):
        sizes()


def test_a_partitioned_glob_that_matches_nothing_is_the_usual_error(project):
    project.write("pipeline.py", PARTITIONED)
    (project.root / "raw/orders").mkdir(parents=True)
    run = project.run(check=False)
    assert run.returncode != 0 and "RawInputNotFoundError" in run.stderr and "matches no file" in run.stderr


def test_a_damaged_earlier_result_is_not_reused(project):
    report = _cutoff_project(project)
    (total_hash,) = [h for (h,) in project.sql("SELECT hash FROM artifacts WHERE stage = 'pipeline.stg_total'")]
    artifact = next(project.cache_dir.glob(f"artifacts/{total_hash[:2]}/{total_hash}.parquet"))
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    artifact.write_bytes(bytes(data))
    project.edit("pipeline.py", REFACTORED)
    run = project.run()
    assert _line(run, "REPORT") == report
    assert _bodies(project) == ["stg_clean", "stg_total"]  # the report is reused: stg_total returned the same result
    assert run.outcomes()["stg_total"] == "computed" and run.outcomes()["stg_report"] == "reused"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_partitions_that_return_the_same_results_keep_their_consumers(project, jobs):
    _partitioned_project(project)
    project.edit("pipeline.py", PARTITIONED.replace("return df[df.qty >= min_qty]", "kept = df.qty >= min_qty\n    return df[kept]"))
    run = project.run("pipeline.py", jobs)
    assert _line(run, "TOTAL") == '[{"rows":4,"qty":10}]'
    assert sorted(_bodies(project)) == ["raw/orders/2024-01.csv", "raw/orders/2024-02.csv", "raw/orders/2024-03.csv"]
    assert run.outcomes()["total"] == "reused"


def test_two_stages_pinned_alike_over_the_same_inputs_keep_their_own_results(project):
    """A pin replaces the code in the hash, not the stage: the sum and the maximum of one
    upstream, both at version "1", are two results."""
    project.write("raw/in.csv", "v\n10\n20\n")
    project.write("pipeline.py", '''
        import pandas as pd
        from lwdp import stage

        @stage(src="raw/in.csv", cache=True)
        def stg_read(src):
            return pd.read_csv(src)

        @stage(df=stg_read, cache=True, version="1")
        def stg_total(df):
            return pd.DataFrame({"v": [df["v"].sum()]})

        @stage(df=stg_read, cache=True, version="1")
        def stg_maximum(df):
            return pd.DataFrame({"v": [df["v"].max()]})

        if __name__ == "__main__":
            print("TOTAL", int(stg_total()["v"].iloc[0]))
            print("MAXIMUM", int(stg_maximum()["v"].iloc[0]))
    ''')
    for _ in range(2):  # cold, then warm
        run = project.run()
        assert (_line(run, "TOTAL"), _line(run, "MAXIMUM")) == ("30", "20")
    assert len(project.sql("SELECT DISTINCT hash FROM artifacts WHERE stage LIKE '%stg_total' OR stage LIKE '%stg_maximum'")) == 2


def test_a_stage_that_changes_its_uncached_input_in_a_worker_is_keyed_by_what_it_was_given(project):
    """With jobs=2, early cutoff keys a result by its inputs as they came, not as the stage
    left them: `df["q"] = df["q"] * 10` on an uncached upstream's frame, then a new raw
    file whose frame equals what the stage made of the old one, is a new result."""
    project.write("raw/a.csv", "q\n1\n")
    project.write("pipeline.py", '''
        import lwdp
        import pandas as pd
        from lwdp import stage

        @stage(src="raw/a.csv", cache=True)
        def stg_read(src):
            return pd.read_csv(src)

        @stage(df=stg_read)
        def stg_clean(df):
            return df[["q"]].astype("int64")

        @stage(df=stg_clean, cache=True)
        def stg_scaled(df):
            df["q"] = df["q"] * 10
            return df

        @stage(a=stg_scaled, b=stg_read, cache=True)
        def stg_both(a, b):  # two branches, so that the run has work for its worker
            return a

        if __name__ == "__main__":
            lwdp.configure(jobs=2)
            print("RESULT", stg_both()["q"].tolist())
    ''')
    assert _line(project.run(), "RESULT") == "[10]"
    project.write("raw/a.csv", "q\n10\n")
    run = project.run()
    assert _line(run, "RESULT") == "[100]" and run.outcomes()["stg_scaled"] == "computed", run.stderr


def test_a_partitioned_stage_may_have_an_input_named_partition(project):
    project.write("raw/a.txt", "x")
    project.write("pipeline.py", '''
        import json
        from lwdp import stage

        @stage(files="raw/*.txt", partition=[3], cache=True, partition_by="files")
        def per_file(files, partition):
            return {"file": files, "partition": partition}

        if __name__ == "__main__":
            print("RESULT", json.dumps(per_file()))
    ''')
    assert json.loads(_line(project.run(), "RESULT")) == {"raw/a.txt": {"file": "raw/a.txt", "partition": [3]}}


@pytest.mark.parametrize("setting", ["hash_packages", "env"])
def test_a_consumer_of_a_partitioned_stage_with_package_or_environment_rows(project, setting):
    """The combination's rows then hold more than its partitions: a consumer's early
    cutoff compares the partitions alone."""
    project.write("raw/a.csv", "qty\n10\n")
    project.write("pipeline.py", '''
        import pandas as pd
        from lwdp import stage

        @stage(orders="raw/*.csv", cache=True, partition_by="orders"ENV)
        def parts(orders):
            return pd.read_csv(orders)

        @stage(p=parts, cache=True)
        def total(p):
            return p[["qty"]].sum().to_frame("s")

        if __name__ == "__main__":
            print("TOTAL", total()["s"].tolist())
    '''.replace("ENV", ', env=["REGION"]' if setting == "env" else ""))
    env = {"LWDP_HASH_PACKAGES": "pandas"} if setting == "hash_packages" else {}
    assert _line(project.run(env=env), "TOTAL") == "[10]"
    project.write("raw/a.csv", "qty\n11\n")
    assert _line(project.run(env=env), "TOTAL") == "[11]"
    project.write("raw/a.csv", "qty\r\n11\r\n")  # the same frame: the consumer is reused
    run = project.run(env=env)
    assert _line(run, "TOTAL") == "[11]" and run.outcomes()["total"] == "reused", run.stderr


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_raw_file_rewritten_during_the_run_caches_nothing_made_from_it(project, jobs):
    """A writer rewrites b.csv while a.csv's partition runs, after the run hashed both:
    b's result, made from the new bytes, must not be stored under the old bytes' hash
    (where it would be served once b.csv holds them again)."""
    project.write("raw/a.csv", "qty\n10\n")
    project.write("raw/b.csv", "qty\n20\n")
    project.write("pipeline.py", '''
        import os
        import sys
        import time

        import lwdp
        import pandas as pd
        from lwdp import stage

        @stage(orders="raw/*.csv", cache=True, partition_by="orders")
        def parts(orders):
            if os.environ.get("WRITER"):
                if orders.endswith("a.csv"):
                    with open("raw/b.csv", "w") as f:  # another process's write, during the run
                        f.write("qty\\n999\\n")
                else:
                    time.sleep(1)
            return pd.read_csv(orders)

        if __name__ == "__main__":
            lwdp.configure(jobs=int(sys.argv[1]))
            print("QTY", parts()["qty"].tolist())
    ''')
    during = project.run("pipeline.py", str(jobs), env={"WRITER": "1"}, check=False)
    assert during.returncode == 1
    assert "RawInputChangedError: stage 'pipeline.parts[raw/b.csv]': raw input raw/b.csv changed during the run" in during.stderr
    project.write("raw/b.csv", "qty\n20\n")  # back to the bytes the run hashed
    assert _line(project.run("pipeline.py", str(jobs)), "QTY") == "[10, 20]"
