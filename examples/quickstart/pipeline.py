"""Quickstart: four regional order files fan in, get priced, and are summarised per day.

Run it twice: the second run loads everything from the cache (see the log).
    python pipeline.py
"""

import logging
from pathlib import Path

import pandas as pd

from lwdp import stage


@stage(orders="raw/orders_*.csv", cache=True)
def stg_read_orders(orders):
    """All regional order files, one frame, with the region taken from the file name."""
    frames = [
        pd.read_csv(path).assign(region=Path(path).stem.removeprefix("orders_"))
        for path in sorted(Path().glob(orders))
    ]
    return pd.concat(frames, ignore_index=True)


@stage(products="raw/products.csv", cache=True)
def stg_read_products(products):
    return pd.read_csv(products)


@stage(orders=stg_read_orders, products=stg_read_products, cache=True, cache_format="parquet")
def stg_priced_orders(orders, products):
    priced = orders.merge(products, on="product_id", how="left", validate="many_to_one")
    priced["revenue"] = priced["qty"] * priced["unit_price"]
    return priced


@stage(priced=stg_priced_orders, min_qty=1, cache=True, cache_format="csv")
def stg_daily_revenue(priced, min_qty):
    kept = priced[priced["qty"] >= min_qty]
    return kept.groupby(["date", "region"], as_index=False)["revenue"].sum()


@stage(daily=stg_daily_revenue, cache=True)
def stg_report(daily):
    return daily.pivot(index="date", columns="region", values="revenue").fillna(0.0)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    report = stg_report()
    print(report.tail())
    print(f"total revenue: {report.to_numpy().sum():,.2f}")
