"""What watching for undeclared inputs costs (issue 16): the audit hook outside a stage and
inside one, and the 30-stage DAG cold and warm with ``undeclared_inputs`` "warn" (the
default) against "ignore" (nothing watched, no hook).

    python benchmarks/undeclared_inputs.py                 # 5 rounds, 25 CSVs x 100,000 rows
    python benchmarks/undeclared_inputs.py --rounds 2 --rows 20000

The hook is measured in fresh processes on two audited operations: ``sys._getframe()``
(the most frequent audit event: pandas' warnings machinery asks for frames) and opening a
small file; nanoseconds per call without the hook, with it outside a stage, and inside a
watched stage. The DAG runs alternate the two modes in an order rotated each round, in
fresh processes with bytecode caching on; medians over rounds.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import scenarios
import workload

MICRO = r'''
import json, os, sys, tempfile, time
from lwdp.run.watch import Watch

mode = sys.argv[1]
path = os.path.join(tempfile.mkdtemp(), "small.txt")
with open(path, "w") as f:
    f.write("x")
os.chdir(os.path.dirname(path))

def frames(n=200_000):
    started = time.perf_counter_ns()
    for _ in range(n):
        sys._getframe()
    return (time.perf_counter_ns() - started) / n

def opens(n=20_000):
    started = time.perf_counter_ns()
    for _ in range(n):
        open(path).close()
    return (time.perf_counter_ns() - started) / n

if mode == "none":
    result = {"frame": frames(), "open": opens()}
elif mode == "outside":
    with Watch(True):  # a stage watched once: the hook stays, as after a run's first stage
        pass
    result = {"frame": frames(), "open": opens()}
else:
    with Watch(True):
        result = {"frame": frames(), "open": opens()}
print(json.dumps(result))
'''


def micro(rounds: int) -> dict[str, dict[str, float]]:
    """Median ns per call, by mode ("none", "outside", "inside") and operation."""
    found: dict[str, dict[str, list[float]]] = {mode: {"frame": [], "open": []} for mode in ("none", "outside", "inside")}
    for round_no in range(rounds):
        modes = list(found)
        for mode in modes[round_no % 3:] + modes[:round_no % 3]:
            out = subprocess.run([sys.executable, "-c", MICRO, mode], env=scenarios.runner_env(), capture_output=True, text=True, check=True)
            for operation, ns in json.loads(out.stdout).items():
                found[mode][operation].append(ns)
    return {mode: {op: statistics.median(values) for op, values in ops.items()} for mode, ops in found.items()}


def timed(root: Path, cache: Path, mode: str) -> float:
    seconds, stderr = scenarios.run_timed(root, "lwdp_dag.py", cache, root / "out.pkl", LWDP_UNDECLARED_INPUTS=mode)
    if "WARNING" in stderr:
        raise RuntimeError(f"the DAG read something undeclared:\n{stderr[-3000:]}")
    return seconds


def dag(files: int, rows: int, rounds: int) -> dict[tuple[str, str], float]:
    """Median seconds of the DAG by (cold or warm, mode)."""
    seconds: dict[tuple[str, str], list[float]] = {(kind, mode): [] for kind in ("cold", "warm") for mode in ("ignore", "warn")}
    with tempfile.TemporaryDirectory(prefix="lwdp-undeclared-") as folder:
        root = Path(folder)
        workload.make_workdir(root, files, rows)
        for round_no in range(rounds):
            for mode in (("ignore", "warn") if round_no % 2 == 0 else ("warn", "ignore")):
                cache = root / f"cache-{mode}-{round_no}"
                seconds["cold", mode].append(timed(root, cache, mode))
                seconds["warm", mode].append(timed(root, cache, mode))
    return {key: statistics.median(values) for key, values in seconds.items()}


def main() -> None:
    args = scenarios.dag_arguments(__doc__.split("\n\n")[0])
    calls = micro(args.rounds)
    print("| audited call | no hook | hook, outside a stage | hook, inside a watched stage |")
    print("| --- | --- | --- | --- |")
    for operation, label in (("frame", "`sys._getframe()`"), ("open", "`open()` of a small file")):
        none, outside, inside = (calls[mode][operation] for mode in ("none", "outside", "inside"))
        print(f"| {label} | {none:.0f} ns | {outside:.0f} ns (+{outside - none:.0f}) | {inside:.0f} ns (+{inside - none:.0f}) |")
    times = dag(args.files, args.rows, args.rounds)
    print("\n| 30-stage DAG | ignore | warn | warn / ignore |")
    print("| --- | --- | --- | --- |")
    for kind in ("cold", "warm"):
        ignore, warn = times[kind, "ignore"], times[kind, "warn"]
        print(f"| {kind} | {ignore:.2f} s | {warn:.2f} s | {warn / ignore:.3f}× |")
    print(f"\nmedians of {args.rounds} rounds, fresh processes")


if __name__ == "__main__":
    main()
