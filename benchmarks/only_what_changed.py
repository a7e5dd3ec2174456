"""Recomputing only what changed (issue 15), on the 30-stage DAG, against plain pandas.

    python benchmarks/only_what_changed.py                 # 5 rounds, 25 CSVs x 100,000 rows
    python benchmarks/only_what_changed.py --rounds 2 --rows 20000

Two scenarios, each on the cache the previous round left (the first round's on a cache
made beforehand, the cache a user has):

- "one of 25 files changed": the 25 clean stages written as one partitioned stage
  (`runners/lwdp_partitioned.py`); each round rewrites one CSV with new contents. Only
  that file's partition and what follows the merge should compute.
- "a refactor that keeps the output": each round edits the code of the first file's
  clean stage (`runners/lwdp_cutoff.py`) so that its hash changes and its result does
  not. Only that stage should compute; the merge and all after it are reused by early
  cutoff.

Each round also runs plain pandas (which recomputes everything: the baseline), in an order
rotated each round; a ratio is lwdp's wall time over plain pandas' in the same round,
medians over rounds. Every lwdp result is checked equal to plain pandas'. Fresh processes
with bytecode caching on, as on users' machines.
"""

from __future__ import annotations

import re
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

import scenarios
import workload

_CALL = re.compile(r"^    return steps\.clean_orders\(src\)$", re.MULTILINE)


def refactor(script: Path, pristine: str, round_no: int) -> None:
    """Give the first clean stage new code with the same result (a new local each round)."""
    text, count = _CALL.subn(f"    unused_{round_no} = None  # refactored\n    return steps.clean_orders(src)", pristine)
    if count != 1:
        raise RuntimeError(f"{script}: expected one `return steps.clean_orders(src)` line, found {count}")
    script.write_text(text)


def change_file(root: Path, round_no: int, files: int, rows: int) -> None:
    """New contents for one CSV (another each round)."""
    workload.write_orders(root, round_no % files, rows, variant=round_no + 1)


def main() -> None:
    args = scenarios.dag_arguments(__doc__.split("\n\n")[0])
    print("| scenario | plain pandas | lwdp | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for label, script, target, change in (
        ("one of 25 files changed (a partitioned clean stage)", "lwdp_partitioned.py", "≤ 0.35×",
         lambda root, n, _: change_file(root, n, args.files, args.rows)),
        ("a refactor of one clean stage that keeps its output", "lwdp_cutoff.py", "≤ 0.3×",
         lambda root, n, pristine: refactor(root / "pipeline" / "lwdp_cutoff.py", pristine, n)),
    ):
        plain, lwdp, ratio = scenario(script, change, args.files, args.rows, args.rounds)
        print(f"| {label} | {plain:.2f} s | {lwdp:.2f} s | {ratio:.2f}× | {target} |", flush=True)
    print(f"\nmedians of {args.rounds} rounds; every result equal to plain pandas'")


def scenario(script: str, change: Callable[[Path, int, str], None], files: int, rows: int, rounds: int) -> tuple[float, float, float]:
    """Median seconds of plain pandas and lwdp, and of their ratio, over ``rounds`` changes."""
    with tempfile.TemporaryDirectory(prefix="lwdp-changed-") as folder:
        root = Path(folder)
        workload.make_workdir(root, files, rows)
        (root / "out").mkdir()
        cache = root / "cache"
        pristine = (root / "pipeline" / script).read_text()
        scenarios.run_timed(root, script, cache, root / "out" / "lwdp.pkl")  # the cache a user has
        ratios, seconds = [], []
        for round_no in range(rounds):
            change(root, round_no, pristine)
            runs = {}
            for runner in (("plain", "lwdp") if round_no % 2 == 0 else ("lwdp", "plain")):
                runs[runner] = scenarios.run_timed(root, "plain_dag.py" if runner == "plain" else script, cache, root / "out" / f"{runner}.pkl")[0]
            pd.testing.assert_frame_equal(pd.read_pickle(root / "out" / "lwdp.pkl"), pd.read_pickle(root / "out" / "plain.pkl"), check_exact=True)
            ratios.append(runs["lwdp"] / runs["plain"])
            seconds.append((runs["plain"], runs["lwdp"]))
        return statistics.median(s for s, _ in seconds), statistics.median(s for _, s in seconds), statistics.median(ratios)


if __name__ == "__main__":
    main()
