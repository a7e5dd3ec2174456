"""How long reading each chain's last result takes: first in this process, then again.

    python read_artifacts.py OUT READER=PATH ...

Each reader is warmed up on a scratch file first (`readers.warm_up`), so the first read of
each file is the "fresh process" cost; the median of 5 more is the "same process" cost.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import readers


def seconds(reader: str, path: str) -> float:
    started = time.perf_counter()
    readers.READERS[reader](path)
    return time.perf_counter() - started


def main() -> None:
    out, *specs = sys.argv[1:]
    results = {}
    for spec in specs:
        reader, path = spec.split("=", 1)
        readers.warm_up(reader)
        first = seconds(reader, path)
        results[spec] = {"fresh": first, "same": statistics.median(seconds(reader, path) for _ in range(5))}
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
