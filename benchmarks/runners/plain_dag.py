"""The 30-stage DAG in plain pandas, computed from scratch every run: the baseline."""

from __future__ import annotations

import common
import downstream
import steps


def main() -> None:
    _, out = common.cli()
    merged = steps.concat_parts([steps.clean_orders(path) for path in common.raw_files()])
    result = downstream.final(downstream.daily(merged), downstream.product_join(merged), downstream.derived(merged))
    common.write_result(result, out)


if __name__ == "__main__":
    main()
