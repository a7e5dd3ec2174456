"""Reading a chain's last result the way each runner stores it.

Only the chain scripts and `read_artifacts.py` import this (it imports joblib), and they
call `warm_up` before any clock starts: the first read of a format in a process pays
one-time setup (pandas' lazy imports of its parquet engine take ~10 ms), which is import
cost, not the cost of reading a file.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from typing import Any

import joblib
import pandas as pd


def _read_pickle(path: str) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def _write_pickle(frame: pd.DataFrame, path: str) -> None:
    with open(path, "wb") as f:
        pickle.dump(frame, f)


READERS: dict[str, Callable[[str], Any]] = {"parquet": pd.read_parquet, "joblib": joblib.load, "pickle": _read_pickle}
WRITERS: dict[str, Callable[[pd.DataFrame, str], Any]] = {
    "parquet": pd.DataFrame.to_parquet, "joblib": joblib.dump, "pickle": _write_pickle,
}


def warm_up(reader: str) -> None:
    """Write and read back a small frame in this format, in a scratch file."""
    frame = pd.DataFrame({"ts": pd.to_datetime(["2026-01-01"]), "region": ["north"], "qty": [1], "price": [1.5]})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "warm-up")
        WRITERS[reader](frame, path)
        READERS[reader](path)
