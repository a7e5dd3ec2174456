"""The 30-stage DAG in plain polars, computed from scratch every run: the baseline."""

from __future__ import annotations

import common
import polars_steps as steps


def main() -> None:
    _, out = common.cli()
    merged = steps.concat_parts([steps.clean_orders(path) for path in common.raw_files()])
    steps.final(steps.daily(merged), steps.product_join(merged), steps.derived(merged)).write_parquet(out)


if __name__ == "__main__":
    main()
