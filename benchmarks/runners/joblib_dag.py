"""The 30-stage DAG with joblib.Memory: every stage a cached function, called eagerly."""

from __future__ import annotations

import pandas as pd
from joblib import Memory

import common
import downstream
import steps


def clean(src: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """`mtime_ns` and `size` only key the cache: joblib hashes arguments, not the file."""
    return steps.clean_orders(src)


def main() -> None:
    cache_dir, out = common.cli()
    memory = Memory(cache_dir, verbose=0)
    cached_clean = memory.cache(clean)
    parts = [cached_clean(path, *common.file_stamp(path)) for path in common.raw_files()]
    merged = memory.cache(steps.concat_parts)(parts)
    result = memory.cache(downstream.final)(
        memory.cache(downstream.daily)(merged),
        memory.cache(downstream.product_join)(merged),
        memory.cache(downstream.derived)(merged),
    )
    common.write_result(result, out)


if __name__ == "__main__":
    main()
