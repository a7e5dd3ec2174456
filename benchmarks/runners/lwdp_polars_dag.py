"""The 30-stage DAG in polars with lwdp: every stage `@stage(cache=True)`, default format
(polars' parquet)."""

from __future__ import annotations

import lwdp
import polars as pl
from lwdp import Stage, stage

import common
import polars_steps as steps


def clean_stage(index: int, path: str) -> Stage:
    def clean(src: str) -> pl.DataFrame:
        return steps.clean_orders(src)

    clean.__qualname__ = clean.__name__ = f"clean_{index:02d}"  # one stage name per file
    return stage(src=path, cache=True)(clean)


def merged(**parts: pl.DataFrame) -> pl.DataFrame:
    return steps.concat_parts([parts[name] for name in sorted(parts)])


merge = stage(cache=True, **{f"part_{i:02d}": clean_stage(i, path) for i, path in enumerate(common.raw_files())})(merged)
daily = stage(merged=merge, cache=True)(steps.daily)
product_join = stage(merged=merge, cache=True)(steps.product_join)
derived = stage(merged=merge, cache=True)(steps.derived)
final = stage(daily=daily, product_join=product_join, derived=derived, cache=True)(steps.final)


def main() -> None:
    cache_dir, out = common.cli()
    lwdp.configure(cache_dir=cache_dir)
    final().write_parquet(out)


if __name__ == "__main__":
    main()
