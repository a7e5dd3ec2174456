"""Cold and warm runs of a 27-stage lwdp pipeline against the same pipeline in plain pandas.

Each run is a fresh process (as users run scripts); rounds interleave the runners so
machine noise hits all of them alike. Prints medians and ratios to plain pandas.

    python benchmarks/warm_cold.py [--files 25] [--rows 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

PIPELINE = '''
import sys
import pandas as pd
USE_LWDP = sys.argv[1] == "lwdp"
N_FILES = {n_files}

if USE_LWDP:
    from lwdp import stage
else:
    def stage(cache=False, cache_format=None, **inputs):
        def decorate(func):
            def run():
                return func(**{{k: v() if callable(v) else v for k, v in inputs.items()}})
            return run
        return decorate

def make_clean(i):
    def clean(src):
        df = pd.read_csv(src, parse_dates=["ts"])
        df = df[df["qty"] > 0]
        df["amount"] = df["qty"] * df["price"]
        return df
    clean.__qualname__ = clean.__name__ = f"clean_{{i:02d}}"  # one stage name per file
    return stage(src=f"raw/orders_{{i:02d}}.csv", cache=True)(clean)

cleans = {{f"part_{{i:02d}}": make_clean(i) for i in range(N_FILES)}}

@stage(cache=True, **cleans)
def merged(**parts):
    return pd.concat([parts[k] for k in sorted(parts)], ignore_index=True)

@stage(m=merged, cache=True)
def daily(m):
    return m.groupby([m["ts"].dt.date, "region"], as_index=False)["amount"].sum()

print(len(daily()))
'''


def make_data(root: Path, n_files: int, rows: int) -> None:
    rng = np.random.default_rng(0)
    (root / "raw").mkdir(parents=True)
    for i in range(n_files):
        pd.DataFrame({
            "order_id": np.arange(rows) + i * rows,
            "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 86400 * 90, rows), unit="s"),
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "product": rng.choice([f"P{j}" for j in range(50)], rows),
            "qty": rng.integers(-1, 10, rows),
            "price": rng.uniform(1, 100, rows).round(2),
        }).to_csv(root / "raw" / f"orders_{i:02d}.csv", index=False)
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE.format(n_files=n_files)))


def timed(root: Path, mode: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "pipeline.py", mode], cwd=root, check=True, capture_output=True)
    return time.perf_counter() - started


def workload_args() -> argparse.Namespace:
    """--files, --rows and --rounds, shared by the benchmarks over this workload."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=25)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args()


def main() -> None:
    args = workload_args()
    root = Path(tempfile.mkdtemp(prefix="lwdp-bench-"))
    try:
        make_data(root, args.files, args.rows)
        times: dict[str, list[float]] = {"plain pandas": [], "lwdp cold": [], "lwdp warm": []}
        for _ in range(args.rounds):
            times["plain pandas"].append(timed(root, "plain"))
            shutil.rmtree(root / ".lwdp", ignore_errors=True)
            times["lwdp cold"].append(timed(root, "lwdp"))
            times["lwdp warm"].append(timed(root, "lwdp"))
        base = statistics.median(times["plain pandas"])
        print(f"{args.files} CSVs x {args.rows:,} rows, {args.files + 2} stages, {args.rounds} rounds, fresh process per run")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:14s} median {median:7.3f} s   ratio {median / base:5.2f}x plain pandas")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
