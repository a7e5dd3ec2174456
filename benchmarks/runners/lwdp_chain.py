"""The tiny 25-stage chain with lwdp, timed in-process (imports excluded).

Run as a script, every module lwdp ships is imported, and the parquet reader warmed up,
before the clock starts; so the fresh-process time is defining the stages (hashing their
code), opening the catalog, checking 25 hashes and reading the last stage's artifact,
whose path goes back to the parent for `read_artifacts.py` to time.

`chain_start.py` imports this module for `start` alone: importing it imports nothing
beyond lwdp's public names, pandas and the shared steps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lwdp
import pandas as pd
from lwdp import Stage, stage

import common
import steps


def import_all_of_lwdp() -> None:
    """Every module lwdp ships but its CLI entry point, so no clock pays for an import."""
    import importlib
    import pkgutil

    for module in pkgutil.walk_packages(lwdp.__path__, "lwdp."):
        if module.name != "lwdp.__main__":
            importlib.import_module(module.name)


def define_chain() -> Stage:
    """The chain's stages; returns the last."""
    def step_00(src: str) -> pd.DataFrame:
        return steps.tiny_orders(src)

    last = stage(src=common.TINY_CSV, cache=True)(step_00)
    for index in range(1, steps.CHAIN_LENGTH):
        def step(prev: pd.DataFrame) -> pd.DataFrame:
            return steps.chain_step(prev)

        step.__qualname__ = step.__name__ = f"step_{index:02d}"  # one stage name per step
        last = stage(prev=last, cache=True)(step)
    return last


def start(cache_dir: str) -> Callable[[], pd.DataFrame]:
    """For `chain_start.py`: the last stage, with lwdp's cache in `cache_dir`."""
    lwdp.configure(cache_dir=cache_dir)
    return define_chain()


def main() -> None:
    import readers  # here: it imports joblib, which `chain_start.py` must not pay for

    import_all_of_lwdp()
    cache_dir, out = common.cli()
    lwdp.configure(cache_dir=cache_dir)
    readers.warm_up("parquet")
    fresh, same = common.time_chain(define_chain)
    last_hash = define_chain().hash
    artifact = Path(cache_dir, "artifacts", last_hash[:2], f"{last_hash}.parquet")  # the default format
    if not artifact.is_file():
        raise FileNotFoundError(f"no artifact for the last stage at {artifact}")
    common.write_chain_timing(out, fresh, same, str(artifact), "parquet")


if __name__ == "__main__":
    main()
