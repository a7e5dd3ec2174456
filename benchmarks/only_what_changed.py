"""Recomputing only what changed (issue 15), on the 30-stage DAG, against plain pandas.

    python benchmarks/only_what_changed.py                 # 5 rounds, 25 CSVs x 100,000 rows
    python benchmarks/only_what_changed.py --rounds 2 --rows 20000

Scenario "refactor that keeps the output": each round edits the code of the first file's
clean stage (`runners/lwdp_cutoff.py`) in a way that changes its hash but not its result,
then runs lwdp on the cache the previous round left. Only that stage should compute; the
merge and everything after it are reused by early cutoff. Each round also runs plain
pandas (which recomputes everything, its baseline), in an order rotated each round; the
ratio is lwdp's wall time over plain pandas' in the same round, medians over rounds.
Every lwdp result is checked equal to plain pandas'. Fresh processes with bytecode
caching on, as on users' machines.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import scenarios
import workload

_CALL = re.compile(r"^    return steps\.clean_orders\(src\)$", re.MULTILINE)


def refactor(script: Path, round_no: int) -> None:
    """Give the first clean stage new code with the same result (a new local each round)."""
    text, count = _CALL.subn(f"    unused_{round_no} = None  # refactored\n    return steps.clean_orders(src)", script.read_text())
    if count != 1:
        raise RuntimeError(f"{script}: expected one `return steps.clean_orders(src)` line, found {count}")
    script.write_text(text)


def timed(root: Path, script: str, cache: Path, out: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, f"pipeline/{script}", str(cache), str(out)], cwd=root,
                          env=scenarios.runner_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=25)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lwdp-changed-") as folder:
        root = Path(folder)
        workload.make_workdir(root, args.files, args.rows)
        (root / "out").mkdir()
        cache, script = root / "cache", root / "pipeline" / "lwdp_cutoff.py"
        pristine = script.read_text()
        timed(root, "lwdp_cutoff.py", cache, root / "out" / "lwdp.pkl")  # the cache a user has
        ratios, seconds = [], []
        for round_no in range(args.rounds):
            script.write_text(pristine)
            refactor(script, round_no)
            runs = {}
            for runner in (("plain", "lwdp") if round_no % 2 == 0 else ("lwdp", "plain")):
                name = "plain_dag.py" if runner == "plain" else "lwdp_cutoff.py"
                runs[runner] = timed(root, name, cache, root / "out" / f"{runner}.pkl")
            pd.testing.assert_frame_equal(pd.read_pickle(root / "out" / "lwdp.pkl"), pd.read_pickle(root / "out" / "plain.pkl"), check_exact=True)
            ratios.append(runs["lwdp"] / runs["plain"])
            seconds.append((runs["plain"], runs["lwdp"]))
            print(f"round {round_no + 1}/{args.rounds}: plain {runs['plain']:.2f} s, lwdp {runs['lwdp']:.2f} s", flush=True)
        plain = statistics.median(s for s, _ in seconds)
        lwdp = statistics.median(s for _, s in seconds)
        print("| scenario | plain pandas | lwdp | ratio | target |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| a refactor of one clean stage that keeps its output | {plain:.2f} s | {lwdp:.2f} s | "
              f"{statistics.median(ratios):.2f}× | ≤ 0.3× |")
        print(f"\nmedians of {args.rounds} rounds; every result equal to plain pandas'")


if __name__ == "__main__":
    main()
