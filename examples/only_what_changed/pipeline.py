"""Recompute only what changed: one cached call per file, early cutoff, a version pin, and
a recompute on demand. Run it from this directory:

    python pipeline.py                 # computes each month's file, the totals, the report
    python pipeline.py                 # everything from the cache
    echo "B3,P1,5" >> raw/orders/2026-11.csv && python pipeline.py
                                       # only 2026-11's partition, then what follows
    python pipeline.py --recompute     # stg_totals computed again: the same result, so
                                       # stg_report stays cached (early cutoff)

Edit stg_totals's body (a comment changes nothing; a renamed variable does): its version
pin keeps its cache until you change version="1".
"""

import logging
import sys
from pathlib import Path

import pandas as pd

from lwdp import stage


@stage(orders="raw/orders/*.csv", partition_by="orders", cache=True)
def stg_orders(orders):
    """Called once per file: ``orders`` is that file's path."""
    return pd.read_csv(orders).assign(month=Path(orders).stem)


@stage(orders=stg_orders, cache=True, version="1")
def stg_totals(orders):
    return orders.groupby(["month", "product_id"], as_index=False)["qty"].sum()


@stage(totals=stg_totals, products="raw/products.csv", cache=True)
def stg_report(totals, products):
    priced = totals.merge(pd.read_csv(products), on="product_id", validate="many_to_one")
    return priced.assign(revenue=priced["qty"] * priced["unit_price"]).groupby("month")["revenue"].sum().to_frame()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    if "--recompute" in sys.argv:
        stg_totals.recompute()
    print(stg_report())
    print(stg_report.explain())
