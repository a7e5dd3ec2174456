"""Micro-benchmarks of lwdp's internals, each against the limit it should approach.

- raw hashing throughput vs a plain ``readinto`` loop over the same files (page cache);
- the memo check of unchanged raw files (stat + one batched catalog query), per file;
- ``import lwdp`` (and the peers) on top of pandas, in fresh processes;
- catalog operations on a catalog of 1,000,000 artifacts: lookup, the batched marks of
  use at the end of a run, and gc's LRU victim selection.

`measure` returns rows for `benchmarks/suite.py`; run alone it prints them:

    python benchmarks/micro.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xxhash

from lwdp.config import settings
from lwdp.hashing.raw_files import DigestMemo, digest_files
from lwdp.store.catalog import open_catalog
from lwdp.store.records import sqlite_time, utcnow

Row = dict[str, Any]
READ_BUFFER = 4 * 1024 * 1024


def median_time(action: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def make_raw_files(root: Path, count: int, size: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1024 * 1024)
    paths = []
    for i in range(count):
        path = root / f"raw_{i:04d}.bin"
        with open(path, "wb") as f:
            for start in range(0, size, len(block)):
                f.write(block[: size - start])
            f.write(i.to_bytes(4, "little"))
        paths.append(str(path))
    return paths


def read_limit(paths: list[str]) -> None:
    """The page-cache read limit from Python: one reused buffer, nothing done with it."""
    buf = bytearray(READ_BUFFER)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


class NoMemos:
    """A memo store that remembers nothing: every file is read and hashed."""

    def load_digest_memos(self, paths: list[str]) -> dict[str, DigestMemo]:
        return {}

    def save_digest_memos(self, memos: list[DigestMemo]) -> None:
        pass


def raw_hashing(root: Path, quick: bool) -> list[Row]:
    paths = make_raw_files(root / "hashing", 25, (1 if quick else 5) * 1024 * 1024)
    total = sum(os.path.getsize(p) for p in paths)
    where = {p: "benchmark" for p in paths}
    read_limit(paths)  # into the page cache
    repeat = 3 if quick else 15
    limit = median_time(lambda: read_limit(paths), repeat)
    hashing = median_time(lambda: digest_files(paths, NoMemos(), where), repeat)
    share = limit / hashing
    return [{
        "what": f"raw hashing, 25 files x {total / 25 / 2**20:.0f} MiB in the page cache (XXH3-128, 2 threads)",
        "value": f"{total / hashing / 1e9:.1f} GB/s = {share:.0%} of the read limit ({total / limit / 1e9:.1f} GB/s)",
        "target": ">= 85% of the read limit",
        "met": share >= 0.85,
    }]


def memo_check(root: Path, quick: bool) -> list[Row]:
    rows = []
    for count in (25, 1000):
        paths = make_raw_files(root / f"memo{count}", count, 4096)
        where = {p: "benchmark" for p in paths}
        cache_dir = root / f"memo{count}-cache"
        open_catalog(settings(cache_dir))
        time.sleep(2.1)  # past the racy window: memos taken now are trusted
        digest_files(paths, open_catalog(settings(cache_dir)), where)  # takes the memos (on an existing catalog: no thread)
        per_file = median_time(lambda: digest_files(paths, open_catalog(settings(cache_dir)), where), 5 if quick else 50) / count
        rows.append({
            "what": f"memo check of an unchanged raw file ({count:,} files: stat each, one catalog query)",
            "value": f"{per_file * 1e6:.1f} us per file",
            "target": "<= 5 us per file",
            "met": per_file <= 5e-6,
        })
    return rows


def import_time(module: str, repeat: int) -> float | None:
    """Median seconds of ``import module`` on top of pandas, each in a fresh process."""
    code = (
        "import time, pandas\nstarted = time.perf_counter()\n"
        f"import {module}\nprint(time.perf_counter() - started)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # users cache bytecode
    times = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return None
        times.append(float(done.stdout))
    return statistics.median(times)


def imports(quick: bool) -> list[Row]:
    repeat = 3 if quick else 11
    ours = import_time("lwdp", repeat)
    assert ours is not None, "import lwdp failed"
    peers = {name: import_time(module, repeat) for name, module in (("joblib", "joblib"), ("Hamilton", "hamilton.driver"))}
    compared = ", ".join(f"{name} {t * 1000:.0f} ms" for name, t in peers.items() if t is not None)
    return [{
        "what": "import lwdp on top of pandas (fresh processes)" + (f"; peers: {compared}" if compared else ""),
        "value": f"{ours * 1000:.0f} ms",
        "target": "<= 30 ms",
        "met": ours <= 0.030,
    }]


def fill_catalog(cache_dir: Path, count: int) -> list[str]:
    """A real catalog (made and migrated by lwdp) with ``count`` artifact rows, inserted in
    bulk the way SQLAlchemy stores them; returns the hashes."""
    open_catalog(settings(cache_dir))
    hashes = [xxhash.xxh3_128_hexdigest(i.to_bytes(8, "little")) for i in range(count)]
    rng = random.Random(0)
    conn = sqlite3.connect(cache_dir / "catalog.sqlite")
    conn.execute("PRAGMA synchronous = OFF")  # a scratch catalog: no need to wait for the disk
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB, with rows in key order: 13 s to fill, not 45
    with conn:
        conn.executemany(
            "INSERT INTO artifacts (hash, stage, format, size, checksum, read_options, created_at, last_access, "
            "compute_seconds, lwdp_version, pandas_version) VALUES (?, ?, 'parquet', ?, ?, '{}', ?, ?, 0.5, '0.1.0', '3.0')",
            (
                (h, f"pipeline.stage_{i % 30:02d}", rng.randrange(1_000, 10_000_000), h,
                 f"2026-01-01 00:00:00.{i % 1_000_000:06d}", f"2026-{1 + i % 11:02d}-{1 + i % 28:02d} {i % 24:02d}:00:00.{i % 999_983:06d}")
                for i, h in sorted(enumerate(hashes), key=lambda pair: pair[1])  # in key order: appends to the B-trees
            ),
        )
    conn.close()
    return hashes


def catalog_scale(root: Path, quick: bool) -> list[Row]:
    count = 10_000 if quick else 1_000_000
    cache_dir = root / "catalog"
    hashes = fill_catalog(cache_dir, count)
    run_catalog = open_catalog(settings(cache_dir))
    rng = random.Random(1)
    probes = [rng.choice(hashes) for _ in range(2_000 if quick else 20_000)]
    lookup = median_time(lambda: [run_catalog.lookup_artifact(h) for h in probes], 5) / len(probes)

    def one_run_of_marks() -> None:  # as a run ends: the artifacts it read, marked used in one write
        open_catalog(settings(cache_dir)).mark_used(rng.sample(hashes, 30), [], utcnow())

    marks = median_time(one_run_of_marks, 5 if quick else 21)
    catalog = open_catalog(settings(cache_dir))

    def selection(expire_months: int, lru_share: float) -> tuple[float, int]:
        """Seconds to choose the rows last used in the first ``expire_months`` of the
        year (the ages are spread over 11 months) and the oldest ``lru_share`` of the
        others' bytes; and how many that is."""
        cutoff = dt.datetime(2026, 1 + expire_months, 1)
        with sqlite3.connect(cache_dir / "catalog.sqlite") as conn:
            (kept_bytes,), = conn.execute("SELECT SUM(size) FROM artifacts WHERE last_access >= ?", (sqlite_time(cutoff),))
        conn.close()
        budget = int(kept_bytes * (1 - lru_share))
        victims: list[Any] = []
        seconds = median_time(lambda: victims.extend(catalog.eviction_victims(cutoff, budget, set())), 3 if quick else 5)
        return seconds, len(victims) // (3 if quick else 5)

    choices = [selection(0, 0.02), selection(1, 0.10)]
    where = f"catalog of {count:,} artifacts"
    return [
        {"what": f"{where}: artifact lookup (stdlib sqlite3 on the warm path)", "value": f"{lookup * 1e6:.1f} us",
         "target": "<= 10 us", "met": lookup <= 10e-6},
        {"what": f"{where}: last-access marks of a run (30 artifacts, one transaction at its end)",
         "value": f"{marks * 1000:.2f} ms per run", "target": "batched once per run", "met": None},
        *({"what": f"{where}: gc victim selection ({victims:,} rows: expired, or least recently used beyond a size budget)",
           "value": f"{seconds:.2f} s", "target": "<= 0.3 s", "met": seconds <= 0.3} for seconds, victims in choices),
    ]


def measure(quick: bool) -> list[Row]:
    root = Path(tempfile.mkdtemp(prefix="lwdp-micro-"))
    try:
        return [*raw_hashing(root, quick), *memo_check(root, quick), *imports(quick), *catalog_scale(root, quick)]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats: checks that it runs")
    args = parser.parse_args()
    for row in measure(args.quick):
        met = {True: "met", False: "NOT met", None: ""}[row["met"]]
        print(f"{row['what']}\n    {row['value']}   target {row['target']}   {met}")


if __name__ == "__main__":
    main()
