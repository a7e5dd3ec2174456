"""The tiny 25-stage chain in plain pandas, computed from scratch every call: the baseline
of `chain_start.py`."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

import common
import steps


def start(cache_dir: str) -> Callable[[], pd.DataFrame]:
    """A function computing the chain; `cache_dir` is unused (plain pandas caches nothing)."""
    def run() -> pd.DataFrame:
        frame = steps.tiny_orders(common.TINY_CSV)
        for _ in range(1, steps.CHAIN_LENGTH):
            frame = steps.chain_step(frame)
        return frame

    return run
