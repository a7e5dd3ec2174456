"""What no cache can beat when one file changes: plain pandas with a hand-written cache of
each file's cleaned orders (a parquet file per CSV, kept while the CSV's mtime and size
hold, as joblib and Hamilton key files) and of nothing else. The merge and the stages after
it run again, as they must when their input changed, and nothing of theirs is written: no
hashing, no catalog, no artifact of a result that changed."""

from __future__ import annotations

import os

import pandas as pd

import common
import plain_dag
import steps


def cleaned(path: str, parts_dir: str) -> pd.DataFrame:
    """One file's cleaned orders, from its part file when the file's stamp is the same."""
    mtime_ns, size = common.file_stamp(path)
    part = os.path.join(parts_dir, f"{os.path.basename(path)}-{mtime_ns}-{size}.parquet")
    if os.path.exists(part):
        return pd.read_parquet(part)
    frame = steps.clean_orders(path)
    frame.to_parquet(part)
    return frame


def main() -> None:
    parts_dir, out = common.cli()
    os.makedirs(parts_dir, exist_ok=True)
    merged = steps.concat_parts([cleaned(path, parts_dir) for path in common.raw_files()])
    common.write_result(plain_dag.after_merge(merged), out)


if __name__ == "__main__":
    main()
