"""The tiny chain's start-up: one call of its last stage in this fresh process.

    python chain_start.py RUNNER CACHE_DIR OUT

The parent times the whole process (`scenarios.Bench.startup`): run with an empty
`CACHE_DIR` it is the first run in a new cache directory; run again on the same directory,
the warm call in a fresh process. This script adds an in-process clock for the warm call:
it starts after ``import pandas`` and ``import <library>`` (the modules `micro.py` times
as "import X on top of pandas": lwdp, joblib, hamilton.driver) and stops when the call
returns, so it holds everything the call does in a new process: importing the chain's
module (for Hamilton, its nodes too), defining the stages, setting up the cache, the
lazy imports the call triggers, and reading the result. The result goes to OUT (a pickle,
for the parent to compare with plain pandas') and the timing to OUT.json.

RUNNER "plain" computes the chain with pandas alone; "plain+lwdp" (or +joblib, +hamilton)
does the same after importing that library: the baseline the parent subtracts from the
library's whole process, so the difference is what the library's run adds beyond its
import, exit included.

lwdp alone also reports its stage events (counted by a handler on the `lwdp` logger, a
few microseconds a stage), so the parent can check that a first run computed every stage
and a warm call computed none.
"""

from __future__ import annotations

import importlib
import json
import sys
import time

import pandas as pd

import steps

LIBRARIES = {"plain": None, "lwdp": "lwdp", "joblib": "joblib", "hamilton": "hamilton.driver"}


def count_lwdp_outcomes() -> dict[str, int]:
    """A live count of lwdp's stage events by outcome ("hit", "computed", ...)."""
    import logging

    counts: dict[str, int] = {}

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            event = getattr(record, "lwdp_event", None)
            if event is not None:
                counts[event.outcome] = counts.get(event.outcome, 0) + 1

    logger = logging.getLogger("lwdp")
    logger.addHandler(Count())
    logger.setLevel(logging.INFO)
    return counts


def main() -> None:
    spec, cache_dir, out = sys.argv[1:]
    runner, _, imported = spec.partition("+")
    library = LIBRARIES[imported or runner]
    if library is not None:
        importlib.import_module(library)
    outcomes = count_lwdp_outcomes() if runner == "lwdp" else None
    started = time.perf_counter()
    result = importlib.import_module(f"{runner}_chain").start(cache_dir)()
    seconds = time.perf_counter() - started
    if not isinstance(result, pd.DataFrame):
        raise TypeError(f"{runner}'s chain returned {type(result).__name__}, not a DataFrame")
    result.to_pickle(out)
    with open(f"{out}.json", "w") as f:
        json.dump({"seconds": seconds, "outcomes": outcomes, "stages": steps.CHAIN_LENGTH}, f)


if __name__ == "__main__":
    main()
