"""Hamilton nodes for the tiny chain: a head reading the CSV, then `step_01` ... `step_24`."""

from __future__ import annotations

import pandas as pd
from hamilton.function_modifiers import parameterize, source

import steps


def step_00(src: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """`mtime_ns` and `size` only key the cache: Hamilton hashes input values, not the file."""
    return steps.tiny_orders(src)


@parameterize(**{f"step_{i:02d}": {"prev": source(f"step_{i - 1:02d}")} for i in range(1, steps.CHAIN_LENGTH)})
def step(prev: pd.DataFrame) -> pd.DataFrame:
    return steps.chain_step(prev)
