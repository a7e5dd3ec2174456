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

Each round also runs plain pandas (which recomputes everything: the baseline) and, for the
changed file, the floor no cache can beat (`runners/floor_parts.py`: each file's cleaned
orders kept by hand, nothing else cached or written), in an order rotated each round; a
ratio is wall time over plain pandas' in the same round, medians over rounds. Every result
is checked equal to plain pandas'. Fresh processes with bytecode caching on, as on users'
machines.
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
    print("| scenario | plain pandas | lwdp | ratio | floor | floor's ratio | target |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, script, floor, target, change in (
        ("one of 25 files changed (a partitioned clean stage)", "lwdp_partitioned.py", "floor_parts.py", "≤ 0.35×",
         lambda root, n, _: change_file(root, n, args.files, args.rows)),
        ("a refactor of one clean stage that keeps its output", "lwdp_cutoff.py", None, "≤ 0.3×",
         lambda root, n, pristine: refactor(root / "pipeline" / "lwdp_cutoff.py", pristine, n)),
    ):
        seconds, ratios = scenario(script, floor, change, args.files, args.rows, args.rounds)
        floor_cells = f"{seconds['floor']:.2f} s | {ratios['floor']:.2f}×" if floor else "– | –"
        print(f"| {label} | {seconds['plain']:.2f} s | {seconds['lwdp']:.2f} s | {ratios['lwdp']:.2f}× | {floor_cells} | {target} |", flush=True)
    print(f"\nmedians of {args.rounds} rounds; every result equal to plain pandas'")


def scenario(
    script: str, floor: str | None, change: Callable[[Path, int, str], None], files: int, rows: int, rounds: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds of each runner (plain pandas, lwdp, the floor if any), and median
    ratios to plain pandas, over ``rounds`` changes."""
    scripts = {"plain": "plain_dag.py", "lwdp": script, **({"floor": floor} if floor else {})}
    with tempfile.TemporaryDirectory(prefix="lwdp-changed-") as folder:
        root = Path(folder)
        workload.make_workdir(root, files, rows)
        (root / "out").mkdir()
        caches = {name: root / "cache" / name for name in scripts}
        pristine = (root / "pipeline" / script).read_text()
        for name in ("lwdp", "floor") if floor else ("lwdp",):  # the caches a user has
            scenarios.run_timed(root, scripts[name], caches[name], root / "out" / f"{name}.pkl")
        names = list(scripts)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        ratios: dict[str, list[float]] = {name: [] for name in names}
        for round_no in range(rounds):
            change(root, round_no, pristine)
            took = {}
            for name in names[round_no % len(names):] + names[: round_no % len(names)]:
                took[name] = scenarios.run_timed(root, scripts[name], caches[name], root / "out" / f"{name}.pkl")[0]
            expected = pd.read_pickle(root / "out" / "plain.pkl")
            for name in names:
                pd.testing.assert_frame_equal(pd.read_pickle(root / "out" / f"{name}.pkl"), expected, check_exact=True)
                seconds[name].append(took[name])
                ratios[name].append(took[name] / took["plain"])
        return ({name: statistics.median(values) for name, values in seconds.items()},
                {name: statistics.median(values) for name, values in ratios.items()})


if __name__ == "__main__":
    main()
