"""gc selection, lineage and dependents on a catalog of 100,000 artifacts.

Builds a cache with N artifacts (tiny real files, manifests omitted) from N/10 runs of a
10-stage chain over one raw file each, with full lineage rows, then times the queries a
maintenance script or a terminal user runs. Prints medians of 5.

    python benchmarks/catalog_scale.py [--artifacts 100000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import xxhash

import lwdp.store
from lwdp.store.artifact_store import LocalArtifactStore
from lwdp.config import settings
from lwdp.store.catalog import ArtifactRecord, LineageRow, open_catalog

CHAIN = 10


def build(root: Path, n_artifacts: int) -> str:
    """Fill the cache; return the hash at the end of the last chain."""
    catalog = open_catalog(settings(root))
    store = LocalArtifactStore(root)
    start = dt.datetime(2026, 1, 1)
    payload = b"x" * 100
    last = ""
    records, rows = [], []
    for run in range(n_artifacts // CHAIN):
        upstream = None
        for step in range(CHAIN):
            stage_hash = xxhash.xxh3_128_hexdigest(f"{run}-{step}".encode())
            path = store.path_for(stage_hash, "parquet")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
            when = start + dt.timedelta(seconds=run * CHAIN + step)
            records.append(ArtifactRecord(stage_hash, f"pipeline.step_{step}", "parquet", len(payload),
                                          xxhash.xxh3_128_hexdigest(payload), {}, when, when))
            if upstream is None:
                rows.append(LineageRow(stage_hash, f"pipeline.step_{step}", "src", "raw",
                                       xxhash.xxh3_128_hexdigest(f"raw{run}".encode()), f"raw/input_{run}.csv"))
            else:
                rows.append(LineageRow(stage_hash, f"pipeline.step_{step}", "up", "stage", upstream, None))
            rows.append(LineageRow(stage_hash, f"pipeline.step_{step}", "k", "param", "0" * 32, None))
            upstream = last = stage_hash
        if len(records) >= 10_000:
            _flush(catalog, records, rows)
    _flush(catalog, records, rows)
    return last


def _flush(catalog, records: list, rows: list) -> None:
    catalog.record_artifacts(records)
    catalog.record_lineage(rows)
    records.clear()
    rows.clear()


def median_time(call, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifacts", type=int, default=100_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lwdp-catalog-bench-"))
    try:
        started = time.perf_counter()
        last = build(root, args.artifacts)
        print(f"built {args.artifacts:,} artifacts with lineage in {time.perf_counter() - started:.1f} s")
        budget = int(args.artifacts * 100 * 0.99)  # 1% over budget: 1,000 LRU victims per 100k
        results = {
            "gc selection (dry run, LRU 1% over budget)": lambda: lwdp.store.gc(max_size=budget, dry_run=True, cache_dir=root),
            "gc selection (dry run, TTL, nothing expired)": lambda: lwdp.store.gc(max_age="3650d", dry_run=True, cache_dir=root),
            f"lineage of a {CHAIN}-stage chain's end": lambda: lwdp.store.lineage(last, cache_dir=root),
            "dependents of one raw file": lambda: lwdp.store.dependents("raw/input_7.csv", cache_dir=root),
            "artifacts(stage=...) listing": lambda: lwdp.store.artifacts(stage="step_3", cache_dir=root),
        }
        for name, call in results.items():
            print(f"{name:<48} median {median_time(call) * 1000:8.1f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
