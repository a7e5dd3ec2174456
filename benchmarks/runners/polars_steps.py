"""The 30-stage DAG's steps in polars: the same computations as `steps` and `downstream`
(the same data, the same results), for the polars benchmark (benchmarks/polars_dag.py)."""

from __future__ import annotations

import polars as pl


def clean_orders(src: str) -> pl.DataFrame:
    """One raw CSV: parse timestamps, drop returns (qty <= 0), add the order amount."""
    orders = pl.read_csv(src, try_parse_dates=True).filter(pl.col("qty") > 0)
    return orders.with_columns(amount=pl.col("qty") * pl.col("price"))


def concat_parts(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(parts)


def _products() -> pl.DataFrame:
    ids = range(50)
    return pl.DataFrame({
        "product": [f"P{i}" for i in ids],
        "category": [f"C{i % 5}" for i in ids],
        "cost": [round(1.0 + (i * 37 % 50) * 0.9, 2) for i in ids],
    })


def daily(merged: pl.DataFrame) -> pl.DataFrame:
    """Orders, units and revenue per day and region."""
    return (merged.group_by(pl.col("ts").dt.truncate("1d").alias("day"), "region", maintain_order=True)
            .agg(orders=pl.len(), qty=pl.col("qty").sum(), amount=pl.col("amount").sum())
            .sort("day", "region"))


def product_join(merged: pl.DataFrame) -> pl.DataFrame:
    joined = merged.join(_products(), on="product", how="left")
    return joined.with_columns(margin=pl.col("amount") - pl.col("qty") * pl.col("cost"))


def derived(merged: pl.DataFrame) -> pl.DataFrame:
    discount = 0.05
    return merged.with_columns(hour=pl.col("ts").dt.hour(), weekday=pl.col("ts").dt.weekday(),
                               net=pl.col("amount") * (1 - discount))


def final(daily: pl.DataFrame, product_join: pl.DataFrame, derived: pl.DataFrame) -> pl.DataFrame:
    keys = ["day", "region"]
    margin = product_join.group_by(pl.col("ts").dt.truncate("1d").alias("day"), "region").agg(pl.col("margin").sum())
    net = derived.group_by(pl.col("ts").dt.truncate("1d").alias("day"), "region").agg(pl.col("net").sum())
    return daily.join(margin, on=keys).join(net, on=keys).sort(keys)
