"""The 30-stage DAG with lwdp, the first file's clean stage written out on its own so that
`benchmarks/only_what_changed.py` can refactor it (a change of code, not of output)."""

from __future__ import annotations

import lwdp
import pandas as pd
from lwdp import stage

import common
import lwdp_dag
import steps

FILES = common.raw_files()


@stage(src=FILES[0], cache=True)
def clean_first(src: str) -> pd.DataFrame:
    return steps.clean_orders(src)


CLEANS = {"part_00": clean_first, **{f"part_{i:02d}": lwdp_dag.clean_stage(i, p) for i, p in enumerate(FILES) if i}}
final = lwdp_dag.pipeline(stage(cache=True, **CLEANS)(lwdp_dag.merged))


if __name__ == "__main__":
    cache_dir, out = common.cli()
    lwdp.configure(cache_dir=cache_dir)
    common.write_result(final(), out)
