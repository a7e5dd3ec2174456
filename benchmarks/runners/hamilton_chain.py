"""The tiny 25-stage chain with Hamilton's `.with_cache()`, timed in-process (imports excluded).

Importing the node module (its decorators build the nodes) and building the driver are
timed; Hamilton's own modules are imported first. The parent times reading the same frame
as a pickle (what Hamilton's file result store writes).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import hamilton.caching.adapter  # noqa: F401  (imported here so the clock excludes it)
import hamilton.function_modifiers  # noqa: F401
import pandas as pd
from hamilton import driver

import common
import steps

LAST = f"step_{steps.CHAIN_LENGTH - 1:02d}"


def define_chain(cache_dir: str) -> Callable[[], pd.DataFrame]:
    """A function running the chain through a driver with the cache."""
    nodes = importlib.import_module("hamilton_chain_nodes")
    dr = driver.Builder().with_modules(nodes).with_cache(path=cache_dir).build()

    def run() -> pd.DataFrame:
        mtime_ns, size = common.file_stamp(common.TINY_CSV)
        inputs = {"src": common.TINY_CSV, "mtime_ns": mtime_ns, "size": size}
        return dr.execute([LAST], inputs=inputs)[LAST]

    return run


start = define_chain  # for `chain_start.py`: a function running the chain through Hamilton's cache


def main() -> None:
    common.time_peer_chain(define_chain, "pickle")


if __name__ == "__main__":
    main()
