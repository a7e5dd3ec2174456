"""The 30-stage DAG with lwdp, its 25 clean stages and their merge written as one
partitioned stage (one call per CSV, each cached on its own; the stage's result is their
concatenation), for `benchmarks/only_what_changed.py`."""

from __future__ import annotations

import lwdp
import pandas as pd
from lwdp import stage

import common
import lwdp_dag
import steps


@stage(orders="raw/orders_*.csv", cache=True, partition_by="orders")
def clean_orders(orders: str) -> pd.DataFrame:
    return steps.clean_orders(orders)


final = lwdp_dag.pipeline(clean_orders)  # the partitioned stage's result is the merge


if __name__ == "__main__":
    cache_dir, out = common.cli()
    lwdp.configure(cache_dir=cache_dir)
    common.write_result(final(), out)
