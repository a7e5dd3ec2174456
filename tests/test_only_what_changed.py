"""Recompute only what really changed: version pins, early cutoff, forced recomputes.

Every run is a fresh process on real files; which function bodies ran is counted from a
log the bodies append to (``ran.log``), not only from lwdp's own events.
"""

from __future__ import annotations

import pytest

from lwdp import stage
from lwdp.errors import InputBindingError

PINNED = '''
import pandas as pd
from lwdp import stage


def _ran(name):
    with open("ran.log", "a") as log:
        log.write(name + "\\n")


@stage(src="raw/in.csv", cache=True, version="1")
def stg_read(src):
    _ran("stg_read")
    return pd.read_csv(src).assign(doubled=lambda df: df["v"] * 2)


@stage(df=stg_read, cache=True)
def stg_total(df):
    _ran("stg_total")
    return pd.DataFrame({"total": [df["doubled"].sum()]})


if __name__ == "__main__":
    print("EXPLAIN", stg_read.explain())
    print("TOTAL", int(stg_total()["total"].iloc[0]))
'''


def _bodies(project) -> list[str]:
    """The stage bodies that ran since the last call, in order (and start a new count)."""
    log = project.root / "ran.log"
    if not log.exists():
        return []
    names = log.read_text().split()
    log.unlink()
    return names


def _line(run, prefix: str) -> str:
    return next(line for line in run.stdout.splitlines() if line.startswith(prefix + " ")).split(" ", 1)[1]


def test_a_pinned_version_keeps_the_cache_through_an_edit_until_it_changes(project):
    project.write("raw/in.csv", "v\n1\n2\n")
    project.write("pipeline.py", PINNED)
    assert _line(project.run(), "TOTAL") == "6"
    assert _bodies(project) == ["stg_read", "stg_total"]

    # An edit that changes the result: the pin says "the same", so the cache is served
    # (stale, as the README warns), and nothing below it reruns either.
    project.edit("pipeline.py", PINNED.replace('df["v"] * 2', 'df["v"] * 3'))
    edited = project.run()
    assert _line(edited, "TOTAL") == "6" and _bodies(project) == []
    assert "fresh" in _line(edited, "EXPLAIN")

    # Inputs still count: a changed raw file reruns the pinned stage.
    project.write("raw/in.csv", "v\n1\n2\n3\n")
    assert _line(project.run(), "TOTAL") == "18" and _bodies(project) == ["stg_read", "stg_total"]

    project.edit("pipeline.py", PINNED.replace('df["v"] * 2', 'df["v"] * 3').replace('version="1"', 'version="2"'))
    run = project.run()
    assert _line(run, "EXPLAIN") == "stage pipeline.stg_read: stale: version changed 1 → 2"
    assert next(e["reason"] for e in run.events if e["stage"].endswith("stg_read")) == "version changed 1 → 2"
    assert _line(run, "TOTAL") == "18" and _bodies(project) == ["stg_read", "stg_total"]


def test_pinning_and_unpinning_a_version_are_explained(project):
    project.write("raw/in.csv", "v\n1\n")
    project.write("pipeline.py", PINNED.replace(', version="1"', ""))
    project.run()
    project.edit("pipeline.py", PINNED)
    assert _line(project.run(), "EXPLAIN") == "stage pipeline.stg_read: stale: version pinned to 1 (its code no longer counts)"
    project.edit("pipeline.py", PINNED.replace(', version="1"', "").replace('df["v"] * 2', 'df["v"] * 3'))
    assert _line(project.run(), "EXPLAIN") == "stage pipeline.stg_read: stale: version pin 1 removed (its code counts again)"


@pytest.mark.parametrize("version", [2, "", b"2"])
def test_a_version_that_is_not_a_non_empty_string_is_refused_at_decoration(project, version):
    with pytest.raises(InputBindingError, match=r"version=.* must be a non-empty string"):
        stage(cache=True, version=version)(lambda: 1)
