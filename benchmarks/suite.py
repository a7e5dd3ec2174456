"""The benchmark suite: lwdp against plain pandas, joblib.Memory and Hamilton (issue #7).

    python benchmarks/suite.py            # 25 CSVs x 100,000 rows, 5 rounds; writes RESULTS.md and results.png
    python benchmarks/suite.py --quick    # 25 x 2,000 rows, 1 round: checks every result, writes nothing

Every run is a fresh process; the suite fails (exit 1) if any runner's final result differs
from plain pandas' in any scenario. See RESULTS.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import micro
import plot
import report
import scenarios
import workload

HERE = Path(__file__).parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, 1 round, no files written (CI)")
    parser.add_argument("--files", type=int, default=25, help="raw CSVs (default 25)")
    parser.add_argument("--rows", type=int, help="rows per CSV (default 100,000; 2,000 with --quick)")
    parser.add_argument("--rounds", type=int, help="rounds of every scenario (default 5; 1 with --quick)")
    parser.add_argument("--runners", default=",".join(scenarios.RUNNERS),
                        help="comma-separated subset of %(default)s; plain always runs (it is the baseline)")
    args = parser.parse_args(argv)
    args.rows = args.rows or (2_000 if args.quick else 100_000)
    args.rounds = args.rounds or (1 if args.quick else 5)
    chosen = set(args.runners.split(",")) | {"plain"}
    if unknown := chosen - set(scenarios.RUNNERS):
        parser.error(f"unknown runners {sorted(unknown)}; choose from {','.join(scenarios.RUNNERS)}")
    args.runners = tuple(r for r in scenarios.RUNNERS if r in chosen)
    return args


STARTED = time.perf_counter()


def progress(message: str) -> None:
    minutes, seconds = divmod(int(time.perf_counter() - STARTED), 60)
    print(f"[{minutes:02d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lwdp-suite-") as tmp:
        root = Path(tmp)
        progress(f"writing {args.files} CSVs x {args.rows:,} rows under {root}")
        workload.make_workdir(root, args.files, args.rows)
        bench = scenarios.Bench(root, args.runners, args.files, args.rows)
        try:
            results = scenarios.run_rounds(bench, args.rounds, progress, startup_repeats=1 if args.quick else report.STARTUP_REPEATS)
        except scenarios.MismatchError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
    progress("micro-benchmarks")
    micro_rows = micro.measure(args.quick)
    if args.quick:
        print(f"OK: {results.checks} final results equal plain pandas' (every runner, every scenario); "
              f"{len(micro_rows)} micro-benchmark rows. Timings on quick data mean nothing: none shown or written.")
    else:
        text = report.tables(results, args.runners, micro_rows)
        print(text)
        command = shlex.join(["python", "benchmarks/suite.py", *(sys.argv[1:] if argv is None else argv)])
        elapsed = time.perf_counter() - STARTED
        md = report.results_md(text, command, elapsed, args.files, args.rows, args.rounds)
        (HERE / "RESULTS.md").write_text(md)
        plot.plot(results, args.runners, HERE / "results.png")
        progress(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results.png'} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
