"""The tiny chain's start-up alone (issue 13), without the rest of the suite.

    python benchmarks/startup.py                      # 5 rounds x 3 repeats, every runner
    python benchmarks/startup.py --rounds 2 --runners plain,lwdp

Prints the start-up table the suite puts in RESULTS.md (first run in a new cache
directory; warm call in a fresh process; see RESULTS.md for the definitions) and writes
nothing. Every result is checked against plain pandas', as in the suite. Takes ~10 s a
round and repeat with every runner, most of it Python and pandas starting.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import report
import scenarios
import workload

STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each in a rotated runner order (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="start-up passes per round (default 3)")
    parser.add_argument("--runners", default=",".join(scenarios.RUNNERS), help="comma-separated subset of %(default)s")
    args = parser.parse_args(argv)
    chosen = set(args.runners.split(",")) | {"plain"}
    if unknown := chosen - set(scenarios.RUNNERS):
        parser.error(f"unknown runners {sorted(unknown)}; choose from {','.join(scenarios.RUNNERS)}")
    runners = tuple(r for r in scenarios.RUNNERS if r in chosen)
    with tempfile.TemporaryDirectory(prefix="lwdp-startup-") as tmp:
        root = Path(tmp)
        workload.make_workdir(root, 0, 0)  # the tiny chain's CSV and the runner scripts only
        (root / "out").mkdir()
        bench = scenarios.Bench(root, runners, 0, 0)
        try:
            for round_no in range(args.rounds):
                progress(f"round {round_no + 1}/{args.rounds}")
                shift = round_no % len(runners)
                bench.startup(runners[shift:] + runners[:shift], round_no, args.repeats, prime=round_no == 0)
        except scenarios.MismatchError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
    print(report.startup_table(bench.results, runners))
    print(f"\n{bench.results.checks} results equal plain pandas'; medians of {args.rounds * args.repeats} passes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
