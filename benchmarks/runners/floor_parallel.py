"""What no cache can beat on a cold run with two processes: plain pandas with the 25 clean
steps shared by two forked processes (each result pickled back), then the merge and the
stages after it in this process, as they depend on each other; nothing hashed, cached or
written."""

from __future__ import annotations

import multiprocessing

import common
import plain_dag
import steps


def main() -> None:
    _, out = common.cli()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        parts = pool.map(steps.clean_orders, common.raw_files(), chunksize=1)
    merged = steps.concat_parts(parts)
    common.write_result(plain_dag.after_merge(merged), out)


if __name__ == "__main__":
    main()
