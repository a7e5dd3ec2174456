"""The 30-stage DAG written in polars (issue 18): plain polars against lwdp-cached polars,
cold and warm, and the cache's size against pickles of the same results.

    python benchmarks/polars_dag.py                 # 5 rounds, 25 CSVs x 100,000 rows
    python benchmarks/polars_dag.py --rounds 2 --rows 20000

Each round runs plain polars, lwdp on a new cache (cold) and lwdp again (warm), in fresh
processes with bytecode caching on, in an order rotated each round; ratios are to plain
polars in the same round, medians over rounds. Every lwdp result is checked equal to
plain polars'. The pickles are of the very results lwdp cached, read back from it.
"""

from __future__ import annotations

import pickle
import shutil
import statistics
import tempfile
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

import scenarios
import workload


def pickled_size(cache: Path) -> int:
    """Bytes of the cached results, each read as a run reads it (its linked columns too), pickled."""
    from lwdp import config
    from lwdp.store.cache import Hit, ResultCache
    from lwdp.store.catalog import open_catalog

    settings = config.settings(cache)
    catalog = open_catalog(settings)
    results = ResultCache(settings, catalog)
    total = 0
    for record in catalog.all_artifacts():
        found = results.peek(record.stage, record.hash)
        assert isinstance(found, Hit), found
        total += len(pickle.dumps(found.value, protocol=pickle.HIGHEST_PROTOCOL))
    return total


def stored_size(cache: Path) -> int:
    """Bytes of the cache's artifact files, a file linked by several artifacts once."""
    files = {(found := path.stat()).st_ino: found.st_size for path in (cache / "artifacts").rglob("*.pl.parquet")}
    return sum(files.values())


def main() -> None:
    args = scenarios.dag_arguments(__doc__.split("\n\n")[0])
    seconds: dict[str, list[float]] = {"plain": [], "cold": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="lwdp-polars-") as folder:
        root = Path(folder)
        workload.make_workdir(root, args.files, args.rows)
        for round_no in range(args.rounds):
            cache = root / f"cache-{round_no}"
            order = ["plain", "lwdp"] if round_no % 2 == 0 else ["lwdp", "plain"]
            for runner in order:
                if runner == "plain":
                    seconds["plain"].append(scenarios.run_timed(root, "plain_polars_dag.py", cache, root / "plain.parquet")[0])
                else:
                    seconds["cold"].append(scenarios.run_timed(root, "lwdp_polars_dag.py", cache, root / "cold.parquet")[0])
                    seconds["warm"].append(scenarios.run_timed(root, "lwdp_polars_dag.py", cache, root / "warm.parquet")[0])
            expected = pl.read_parquet(root / "plain.parquet")
            for name in ("cold", "warm"):
                assert_frame_equal(pl.read_parquet(root / f"{name}.parquet"), expected, check_exact=True)
        cached = stored_size(root / "cache-0")
        pickles = pickled_size(root / "cache-0")
        for round_no in range(args.rounds):
            shutil.rmtree(root / f"cache-{round_no}", ignore_errors=True)
    plain = statistics.median(seconds["plain"])
    print(f"| 30-stage DAG in polars ({args.files} CSVs x {args.rows:,} rows) | seconds | ratio to plain polars | target |")
    print("| --- | --- | --- | --- |")
    print(f"| plain polars | {plain:.2f} s | 1 | |")
    for name, target in (("cold", "≤ 1.3×"), ("warm", "≤ 0.25×")):
        ratios = [lwdp / base for lwdp, base in zip(seconds[name], seconds["plain"])]
        print(f"| lwdp, {name} | {statistics.median(seconds[name]):.2f} s | {statistics.median(ratios):.2f}× | {target} |")
    print(f"\ncache: {cached / 1e6:.1f} MB of polars parquet, against {pickles / 1e6:.1f} MB pickled: "
          f"{cached / pickles:.2f}× (target ≤ 0.5×); medians of {args.rounds} rounds, every result equal to plain polars'")


if __name__ == "__main__":
    main()
