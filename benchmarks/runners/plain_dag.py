"""The 30-stage DAG in plain pandas, computed from scratch every run: the baseline."""

from __future__ import annotations

import pandas as pd

import common
import downstream
import steps


def after_merge(merged: pd.DataFrame) -> pd.DataFrame:
    """The four stages after the merge, each called once; the final one's result."""
    return downstream.final(downstream.daily(merged), downstream.product_join(merged), downstream.derived(merged))


def main() -> None:
    _, out = common.cli()
    merged = steps.concat_parts([steps.clean_orders(path) for path in common.raw_files()])
    common.write_result(after_merge(merged), out)


if __name__ == "__main__":
    main()
