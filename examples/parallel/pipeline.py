"""Parallel runs: one stage per regional order file, computed at once on two cores.

Each region's stage simulates a slow, pure-Python step (a loop that holds the GIL), so the
regions overlap only in separate processes. Run it from this directory:
    python pipeline.py                        # jobs=2: the log shows each region's process
    lwdp run pipeline:stg_report -j 2         # the same from a terminal, with progress
The second run loads everything from the cache and starts no worker.
"""

import logging
import os

import pandas as pd

import lwdp
from lwdp import Stage, stage

REGIONS = ("east", "north", "south", "west")


def _region_stage(region: str) -> Stage:
    def scored(orders: str) -> pd.DataFrame:
        frame = pd.read_csv(orders).assign(region=region, computed_by=os.getpid())
        frame["score"] = [sum(i % 7 for i in range(qty * 50_000)) for qty in frame["qty"]]  # slow on purpose
        return frame

    scored.__qualname__ = scored.__name__ = f"stg_scored_{region}"  # one stage name per region
    return stage(orders=f"../quickstart/raw/orders_{region}.csv", cache=True)(scored)


SCORED = {region: _region_stage(region) for region in REGIONS}


@stage(products="../quickstart/raw/products.csv", cache=True, **SCORED)
def stg_report(products, **regions):
    orders = pd.concat([regions[r] for r in REGIONS], ignore_index=True)
    priced = orders.merge(pd.read_csv(products), on="product_id", validate="many_to_one")
    priced["revenue"] = priced["qty"] * priced["unit_price"]
    return priced.groupby("region").agg(revenue=("revenue", "sum"), score=("score", "sum"), computed_by=("computed_by", "first"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    lwdp.configure(jobs=2)  # or LWDP_JOBS=2, or jobs="auto": one per core
    report = stg_report()
    print(report)
    print(f"{len(REGIONS)} regions computed in {report['computed_by'].nunique()} processes (this one is {os.getpid()})")
