"""The per-file and chain steps, shared by every runner so all compute exactly the same.

Each runner wires these its own way (25 copies of `clean_orders`, one per CSV; a chain
of `chain_step`), so they are plain functions with no framework in them.
"""

from __future__ import annotations

import pandas as pd

CHAIN_LENGTH = 25


def clean_orders(src: str) -> pd.DataFrame:
    """One raw CSV: parse timestamps, drop returns (qty <= 0), add the order amount."""
    orders = pd.read_csv(src, parse_dates=["ts"])
    orders = orders[orders["qty"] > 0]
    return orders.assign(amount=orders["qty"] * orders["price"])


def concat_parts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """All cleaned files as one frame, in file order."""
    return pd.concat(parts, ignore_index=True)


def tiny_orders(src: str) -> pd.DataFrame:
    """The head of the tiny chain: a 1,000-row CSV."""
    return pd.read_csv(src, parse_dates=["ts"])


def chain_step(prev: pd.DataFrame) -> pd.DataFrame:
    """A step that costs next to nothing, so a chain of them times the framework."""
    return prev.assign(qty=prev["qty"] + 1)
