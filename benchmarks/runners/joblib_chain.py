"""The tiny 25-stage chain with joblib.Memory, timed in-process (imports excluded).

joblib keeps no artifact path we could name without its private API, so the parent times
reading the same frame as a `joblib.dump` file (what joblib writes).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from joblib import Memory

import common
import steps


def head(src: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """`mtime_ns` and `size` only key the cache: joblib hashes arguments, not the file."""
    return steps.tiny_orders(src)


def define_chain(cache_dir: str) -> Callable[[], pd.DataFrame]:
    """A function running the chain through the cache."""
    memory = Memory(cache_dir, verbose=0)
    cached_head, cached_step = memory.cache(head), memory.cache(steps.chain_step)

    def run() -> pd.DataFrame:
        frame = cached_head(common.TINY_CSV, *common.file_stamp(common.TINY_CSV))
        for _ in range(1, steps.CHAIN_LENGTH):
            frame = cached_step(frame)
        return frame

    return run


start = define_chain  # for `chain_start.py`: a function running the chain through joblib's cache


def main() -> None:
    common.time_peer_chain(define_chain, "joblib")


if __name__ == "__main__":
    main()
