"""Hamilton nodes for the 25 clean stages and the merge (`downstream` has the rest).

Each clean node takes its path, mtime and size as driver inputs: Hamilton keys a node by
its code and its inputs' values, so without the stamp a changed CSV would be served stale.
"""

from __future__ import annotations

import pandas as pd
from hamilton.function_modifiers import group, inject, parameterize, source

import common
import steps

N_FILES = len(common.raw_files())


@parameterize(**{
    f"clean_{i:02d}": {"src": source(f"src_{i:02d}"), "mtime_ns": source(f"mtime_ns_{i:02d}"), "size": source(f"size_{i:02d}")}
    for i in range(N_FILES)
})
def clean(src: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return steps.clean_orders(src)


@inject(parts=group(*(source(f"clean_{i:02d}") for i in range(N_FILES))))
def merged(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return steps.concat_parts(parts)
