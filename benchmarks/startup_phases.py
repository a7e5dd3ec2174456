"""Where lwdp's start-up time goes on the tiny chain: first-use imports against the work.

    python benchmarks/startup_phases.py [--repeats 7]

Times lwdp's warm call and first run (as `startup.py` does: fresh processes, bytecode
caching on) three ways: with nothing imported beyond pandas and lwdp; with every module a
run uses imported first; and with pyarrow's parquet reader and writer also used once
first. The differences are what first-use imports cost; the last column is the work.
Prints medians; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import workload

WARMED = ("nothing pre-imported", "lwdp's modules pre-imported", "and pyarrow's parquet reader warmed")

CHILD = r"""
import importlib, io, json, pkgutil, sys, tempfile, time
sys.path.insert(0, "pipeline")
import pandas as pd
import lwdp
level, cache = int(sys.argv[1]), sys.argv[2]
if level >= 1:  # every module a run uses (upkeep, the CLI and PostgreSQL are not)
    skip = ("lwdp.__main__", "lwdp.cli", "lwdp.store.postgres_db", "lwdp.store.migrate", "lwdp.upkeep")
    for module in pkgutil.walk_packages(lwdp.__path__, "lwdp."):
        if not module.name.startswith(skip):
            importlib.import_module(module.name)
if level >= 2:  # pyarrow's parquet writer, reader and pandas conversion, used once
    import pyarrow, pyarrow.parquet
    buffer = io.BytesIO()
    pyarrow.parquet.write_table(pyarrow.Table.from_pandas(pd.DataFrame({"a": [1]})), buffer)
    pyarrow.parquet.ParquetFile(pyarrow.BufferReader(buffer.getvalue())).read().to_pandas()
import lwdp_chain
cache = cache if cache != "new" else tempfile.mkdtemp() + "/cache"
started = time.perf_counter()
last = lwdp_chain.start(cache)
defined = time.perf_counter()
last()
print(json.dumps([(defined - started) * 1000, (time.perf_counter() - defined) * 1000]))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per cell (default 7)")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # users cache bytecode
    with tempfile.TemporaryDirectory(prefix="lwdp-phases-") as tmp:
        root = Path(tmp)
        workload.make_workdir(root, 0, 0)

        def run(level: int, cache: str) -> list[float]:
            done = subprocess.run([sys.executable, "-c", CHILD, str(level), cache], cwd=root, env=env,
                                  capture_output=True, text=True, check=True)
            return json.loads(done.stdout)

        run(0, str(root / "warm"))  # writes bytecode, and the warm cache
        rows = {"warm call: defining the stages": [], "warm call: the call": [], "first run: the call": []}
        for level in range(len(WARMED)):
            warm = [run(level, str(root / "warm")) for _ in range(args.repeats)]
            first = [run(level, "new")[1] for _ in range(args.repeats)]
            rows["warm call: defining the stages"].append(statistics.median(w[0] for w in warm))
            rows["warm call: the call"].append(statistics.median(w[1] for w in warm))
            rows["first run: the call"].append(statistics.median(first))
    print(f"| 25 tiny stages | {' | '.join(WARMED)} |")
    print("| --- |" + " --- |" * len(WARMED))
    for name, medians in rows.items():
        print(f"| {name} | " + " | ".join(f"{m:.1f} ms" for m in medians) + " |")
    print(f"\nmedians of {args.repeats} fresh processes each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
