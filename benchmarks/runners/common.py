"""What the runner scripts share: where the raw files are and how results go back.

Every runner script runs in the work directory (raw/ beside it) as
``python pipeline/<script>.py CACHE_DIR OUT``.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the polars runners must not pay for importing pandas
    import pandas as pd

TINY_CSV = "raw/tiny.csv"


def raw_files() -> list[str]:
    """The order CSVs, in the order the merge concatenates them."""
    return sorted(glob.glob("raw/orders_*.csv"))


def file_stamp(path: str) -> tuple[int, int]:
    """(mtime_ns, size): what joblib and Hamilton get so a changed file changes their key."""
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


def cli() -> tuple[str, str]:
    """CACHE_DIR and OUT from the command line."""
    _, cache_dir, out = sys.argv
    return cache_dir, out


def write_result(frame: pd.DataFrame, out: str) -> None:
    """The final frame, pickled so the parent compares it bit for bit."""
    frame.to_pickle(out)


def time_chain(define: Callable[[], Callable[[], Any]]) -> tuple[float, float]:
    """Seconds to define the chain and run it in this fresh process, then to run it again
    in the same process."""
    started = time.perf_counter()
    run = define()
    run()
    fresh = time.perf_counter() - started
    started = time.perf_counter()
    run()
    return fresh, time.perf_counter() - started


def write_chain_timing(out: str, fresh: float, same: float, artifact: str, reader: str) -> None:
    """The chain's timings and length, and the file holding its last result with how to read it."""
    import steps

    timing = {"fresh": fresh, "same": same, "stages": steps.CHAIN_LENGTH, "artifact": artifact, "reader": reader}
    with open(out, "w") as f:
        json.dump(timing, f)


def time_peer_chain(define: Callable[[str], Callable[[], pd.DataFrame]], reader: str) -> None:
    """A peer's chain run: its timings, and the last result written as the peer writes its
    results (their paths are private), for the parent to time reading it."""
    import readers  # here: it imports joblib, which the plain and lwdp runners must not pay for

    cache_dir, out = cli()
    readers.warm_up(reader)
    fresh, same = time_chain(lambda: define(cache_dir))
    artifact = f"{out}.{reader}"
    readers.WRITERS[reader](define(cache_dir)(), artifact)
    write_chain_timing(out, fresh, same, artifact, reader)
