"""The benchmark's work directory: raw CSVs, the runner scripts, and the edits scenarios make.

    <root>/raw/orders_00.csv ...   the order files (order_id, ts, region, product, qty, price)
    <root>/raw/tiny.csv            1,000 rows, the head of the tiny chain
    <root>/pipeline/*.py           a copy of runners/, so the code-edit scenario edits the copy
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

RUNNERS_DIR = Path(__file__).parent / "runners"
TINY_ROWS = 1_000
_DISCOUNT = re.compile(r"^(    discount = )[0-9.]+", re.MULTILINE)


def orders(rows: int, first_id: int, seed: tuple[int, ...]) -> pd.DataFrame:
    """Random orders; about 1 in 11 has qty <= 0 (a return) for the clean stage to drop."""
    rng = np.random.default_rng(list(seed))
    return pd.DataFrame({
        "order_id": np.arange(first_id, first_id + rows),
        "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 86400 * 90, rows), unit="s"),
        "region": rng.choice(["north", "south", "east", "west"], rows),
        "product": rng.choice([f"P{j}" for j in range(50)], rows),
        "qty": rng.integers(-1, 10, rows),
        "price": rng.uniform(1, 100, rows).round(2),
    })


def order_file(root: Path, index: int) -> Path:
    return root / "raw" / f"orders_{index:02d}.csv"


def write_orders(root: Path, index: int, rows: int, variant: int = 0) -> None:
    """Write order file `index`; each `variant` gives it different contents."""
    orders(rows, index * rows, (index, variant)).to_csv(order_file(root, index), index=False)


def make_workdir(root: Path, files: int, rows: int) -> None:
    """Raw data and a fresh copy of the runner scripts under `root`."""
    (root / "raw").mkdir(parents=True)
    for index in range(files):
        write_orders(root, index, rows)
    orders(TINY_ROWS, 0, (1_000_000,)).to_csv(root / "raw" / "tiny.csv", index=False)
    shutil.copytree(RUNNERS_DIR, root / "pipeline", ignore=shutil.ignore_patterns("__pycache__", ".*"))


def edit_code(root: Path, variant: int) -> None:
    """Change the constant in the `derived` stage: a real edit, different for each variant."""
    path = root / "pipeline" / "downstream.py"
    text, count = _DISCOUNT.subn(rf"\g<1>{0.05 + variant / 1000:.3f}", path.read_text())
    if count != 1:
        raise RuntimeError(f"{path}: expected one `discount = ...` line to edit, found {count}")
    path.write_text(text)
    # Bytecode is checked by whole-second mtime and size; this edit can keep both.
    shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)
