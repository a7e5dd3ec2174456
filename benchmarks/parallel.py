"""Parallel runs (issue 14) on the 30-stage DAG, and threads against processes.

    python benchmarks/parallel.py                        # 5 rounds, 25 CSVs x 100,000 rows
    python benchmarks/parallel.py --rounds 2 --rows 20000

Each round runs, in an order rotated each round, plain pandas, the floor no cache can beat
on two processes (``runners/floor_parallel.py``: plain pandas with the clean steps on two
forked processes, nothing cached or written), and lwdp cold (empty cache) with
``jobs=1``, ``jobs=2``, two threads (``executor=ThreadPoolExecutor(2)``) and a
2-worker Dask ``LocalCluster`` started beforehand (``LWDP_DASK_SCHEDULER``: the cluster a
team already has), then lwdp warm with ``jobs=2``; a ratio is wall time / plain pandas'
in the same round, medians over rounds. Peak memory is the largest total RSS of the run's
process and its descendants (the fork server and worker processes), sampled every 20 ms,
plus the Dask workers' for the Dask run. Every final result is checked equal to plain
pandas'. Then the same for a pipeline of four pure-Python stages (they hold the GIL):
``jobs=1``, two threads, ``jobs=2``. Fresh processes run with bytecode caching on, as on
users' machines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd

import scenarios
import workload

PAGE = os.sysconf("SC_PAGE_SIZE")
LWDP_DAG = ["pipeline/lwdp_dag.py"]
# The same, its stages in the module `lwdp_dag` rather than in `__main__`: the workers of a
# cluster started elsewhere import them from there (a script's own stages stay in the run).
LWDP_DAG_IMPORTED = ["-c", "import sys; sys.path.insert(0, 'pipeline'); import lwdp_dag; lwdp_dag.main()"]
GIL_PIPELINE = '''
import os
import sys
import lwdp
import pandas as pd
from lwdp import stage

def _make(i):
    def spin(n):
        total = 0
        for k in range(n[0]):  # pure Python: holds the GIL
            total += k % 7
        return pd.DataFrame({"total": [total]})
    spin.__qualname__ = spin.__name__ = f"spin_{i}"
    return stage(n=[15_000_000 + i], cache=True)(spin)

SPINS = {f"s{i}": _make(i) for i in range(4)}

@stage(**SPINS)
def total(**parts):
    return pd.concat(parts.values(), ignore_index=True)

if __name__ == "__main__":
    lwdp.configure(cache_dir=sys.argv[1])
    if os.environ.get("LWDP_BENCH_THREADS"):
        from concurrent.futures import ThreadPoolExecutor
        lwdp.configure(executor=ThreadPoolExecutor(int(os.environ["LWDP_BENCH_THREADS"])))
    total().to_pickle(sys.argv[2])
'''


def _descendants(root: int) -> set[int]:
    """``root`` and its descendants, from the kernel's lists of each thread's children (a
    few small reads: scanning all of /proc every sample would load the machine measured)."""
    found, frontier = set(), [root]
    while frontier:
        pid = frontier.pop()
        found.add(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                frontier += [int(child) for child in children.read_text().split()]
            except OSError:
                continue
    return found


def _rss(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def timed_run(command: list[str], cwd: Path, env: dict[str, str], extra_pids: set[int]) -> tuple[float, int]:
    """Wall time of a fresh process, and the peak RSS of its process tree (+ ``extra_pids``)."""
    peak = 0
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss(_descendants(proc.pid) | extra_pids))
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{err[-3000:]}")
    if "not by a worker" in err:  # a parallel run that was not one
        raise RuntimeError(f"{' '.join(command)}: its workers could not get stages:\n{err[-3000:]}")
    return elapsed, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=25)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    env = scenarios.runner_env()
    with tempfile.TemporaryDirectory(prefix="lwdp-parallel-") as tmp:
        root = Path(tmp)
        workload.make_workdir(root, args.files, args.rows)
        (root / "pipeline" / "gil_pipeline.py").write_text(textwrap.dedent(GIL_PIPELINE))
        # The cluster's workers import the pipeline's modules, as a team's workers have
        # its code installed (they start with this process's sys.path).
        sys.path.insert(0, str(root / "pipeline"))
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster, Client(cluster) as client:
            return _rounds(args, root, env, cluster.scheduler_address, set(client.run(os.getpid).values()))


def _rounds(args: argparse.Namespace, root: Path, env: dict[str, str], scheduler: str, dask_pids: set[int]) -> int:
    """The rounds, then the table."""
    dag = {
        "plain": (["pipeline/plain_dag.py"], {}),
        "floor: 2 processes, nothing cached": (["pipeline/floor_parallel.py"], {}),
        "jobs=1": (LWDP_DAG, {"LWDP_JOBS": "1"}),
        "jobs=2": (LWDP_DAG, {"LWDP_JOBS": "2"}),
        "2 threads": (LWDP_DAG, {"LWDP_BENCH_THREADS": "2"}),
        "Dask, 2 workers": (LWDP_DAG_IMPORTED, {"LWDP_DASK_SCHEDULER": scheduler}),
    }
    gil = {"jobs=1": {"LWDP_JOBS": "1"}, "2 threads": {"LWDP_BENCH_THREADS": "2"}, "jobs=2": {"LWDP_JOBS": "2"}}
    seconds: dict[str, list[float]] = {name: [] for name in [*dag, "warm jobs=2", *(f"GIL {g}" for g in gil)]}
    ratios: dict[str, list[float]] = {name: [] for name in seconds}
    peaks: dict[str, list[int]] = {name: [] for name in seconds}
    names = list(dag)
    for round_no in range(args.rounds):
        print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr, flush=True)
        order = names[round_no % len(names):] + names[: round_no % len(names)]
        took: dict[str, float] = {}
        for name in order:
            runner, extra = dag[name]
            cache, out = root / "cache" / name, root / "out" / f"{name}.pkl"
            shutil.rmtree(cache, ignore_errors=True)
            out.parent.mkdir(exist_ok=True)
            extra_pids = dask_pids if "Dask" in name else set()
            took[name], peak = timed_run([sys.executable, *runner, str(cache), str(out)], root, {**env, **extra}, extra_pids)
            peaks[name].append(peak)
        warm_cache = root / "cache" / "jobs=2"
        took["warm jobs=2"], peak = timed_run(
            [sys.executable, *LWDP_DAG, str(warm_cache), str(root / "out" / "warm.pkl")], root, {**env, "LWDP_JOBS": "2"}, set()
        )
        peaks["warm jobs=2"].append(peak)
        expected = pd.read_pickle(root / "out" / "plain.pkl")
        for name in [*names[1:], "warm"]:
            pd.testing.assert_frame_equal(pd.read_pickle(root / "out" / f"{name}.pkl"), expected, check_exact=True)
        for name, extra in gil.items():
            cache = root / "cache" / f"gil-{name}"
            shutil.rmtree(cache, ignore_errors=True)
            took[f"GIL {name}"], peak = timed_run(
                [sys.executable, "pipeline/gil_pipeline.py", str(cache), str(root / "out" / "gil.pkl")], root, {**env, **extra}, set()
            )
            peaks[f"GIL {name}"].append(peak)
        for name, value in took.items():
            seconds[name].append(value)
            baseline = took["GIL jobs=1"] if name.startswith("GIL") else took["plain"]
            ratios[name].append(value / baseline)
    print("| run | seconds | ratio | peak memory |\n| --- | --- | --- | --- |")
    for name in seconds:
        base = "jobs=1" if name.startswith("GIL") else "plain pandas"
        print(f"| {name} | {statistics.median(seconds[name]):.2f} s | {statistics.median(ratios[name]):.2f}× {base} | "
              f"{statistics.median(peaks[name]) / 2**20:.0f} MiB |")
    print(f"\nmedians of {args.rounds} rounds; every result equal to plain pandas'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
