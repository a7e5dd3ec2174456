"""The four stages after the merge, shared by every runner.

Each function is named after the stage it computes and its parameters after its
upstreams, so Hamilton takes this module as it is, lwdp wraps each function with
`stage`, joblib with `Memory.cache`, and plain pandas calls them. Hamilton and joblib
hash only a node's own source, so everything a stage computes is in its own body
(`_products` is never edited).
"""

from __future__ import annotations

import pandas as pd


def _products() -> pd.DataFrame:
    """50 products, each with a category and a unit cost."""
    ids = range(50)
    return pd.DataFrame({
        "product": [f"P{i}" for i in ids],
        "category": [f"C{i % 5}" for i in ids],
        "cost": [round(1.0 + (i * 37 % 50) * 0.9, 2) for i in ids],
    })


def daily(merged: pd.DataFrame) -> pd.DataFrame:
    """Orders, units and revenue per day and region."""
    day = merged["ts"].dt.floor("D").rename("day")
    return (merged.groupby([day, "region"])
            .agg(orders=("order_id", "size"), qty=("qty", "sum"), amount=("amount", "sum"))
            .reset_index())


def product_join(merged: pd.DataFrame) -> pd.DataFrame:
    """Every order with its product's category, and its margin over cost."""
    joined = merged.merge(_products(), on="product", how="left")
    return joined.assign(margin=joined["amount"] - joined["qty"] * joined["cost"])


def derived(merged: pd.DataFrame) -> pd.DataFrame:
    """Derived columns: hour, weekday, and the amount net of a discount."""
    discount = 0.05  # the code-edit scenario rewrites this number
    return merged.assign(
        hour=merged["ts"].dt.hour,
        weekday=merged["ts"].dt.dayofweek,
        net=merged["amount"] * (1 - discount),
    )


def final(daily: pd.DataFrame, product_join: pd.DataFrame, derived: pd.DataFrame) -> pd.DataFrame:
    """The daily table with each day and region's margin and net revenue."""
    keys = ["day", "region"]
    margin = (product_join.assign(day=product_join["ts"].dt.floor("D"))
              .groupby(keys, as_index=False)["margin"].sum())
    net = (derived.assign(day=derived["ts"].dt.floor("D"))
           .groupby(keys, as_index=False)["net"].sum())
    return daily.merge(margin, on=keys).merge(net, on=keys)
