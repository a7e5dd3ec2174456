"""The 30-stage DAG with lwdp: every stage `@stage(cache=True)`, default format."""

from __future__ import annotations

import os

import lwdp
import pandas as pd
from lwdp import Stage, stage

import common
import downstream
import steps


def clean_stage(index: int, path: str) -> Stage:
    def clean(src: str) -> pd.DataFrame:
        return steps.clean_orders(src)

    clean.__qualname__ = clean.__name__ = f"clean_{index:02d}"  # one stage name per file
    return stage(src=path, cache=True)(clean)


def merged(**parts: pd.DataFrame) -> pd.DataFrame:
    return steps.concat_parts([parts[name] for name in sorted(parts)])


def pipeline(merge: Stage) -> Stage:
    """The four stages after the merge of every file's orders; the final one."""
    daily = stage(merged=merge, cache=True)(downstream.daily)
    product_join = stage(merged=merge, cache=True)(downstream.product_join)
    derived = stage(merged=merge, cache=True)(downstream.derived)
    return stage(daily=daily, product_join=product_join, derived=derived, cache=True)(downstream.final)


# Made on import: worker processes find the stages in the module.
final = pipeline(stage(cache=True, **{f"part_{i:02d}": clean_stage(i, path) for i, path in enumerate(common.raw_files())})(merged))


def main() -> None:
    cache_dir, out = common.cli()
    lwdp.configure(cache_dir=cache_dir)
    if os.environ.get("LWDP_BENCH_THREADS"):  # benchmarks/parallel.py: threads against processes
        from concurrent.futures import ThreadPoolExecutor

        lwdp.configure(executor=ThreadPoolExecutor(int(os.environ["LWDP_BENCH_THREADS"])))
    common.write_result(final(), out)


if __name__ == "__main__":
    main()
