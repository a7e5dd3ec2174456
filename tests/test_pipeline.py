"""What reruns and what doesn't, on real files, with warm runs in fresh processes."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from lwdp import stage
from lwdp.hashing.raw_files import RACY_WINDOW_NS

CHAIN = '''
import pandas as pd
from lwdp import stage

@stage(src="raw/input.csv", cache=True)
def stg_read(src):
    return pd.read_csv(src)

@stage(raw=stg_read, factor=FACTOR, cache=True)
def stg_scale(raw, factor):
    raw["v"] = raw["v"] * factor
    return raw

@stage(scaled=stg_scale, cache=True)
def stg_total(scaled):
    return pd.DataFrame({"total": [scaled["v"].sum()]})

print(stg_total()["total"].iloc[0])
'''


def write_chain(project, factor="2", body=CHAIN):
    project.write("pipeline.py", body.replace("FACTOR", factor))


@pytest.fixture
def chain(project):
    return _cold_chain(project)


@pytest.fixture
def aged_chain(project):
    """The chain over a raw file older than the racy window, so its digest memo is trusted:
    what a change must get past is the memo, not a re-read."""
    return _cold_chain(project, age=True)


def _cold_chain(project, age=False):
    project.write("raw/input.csv", "k,v\na,1\nb,2\nc,3\n")
    if age:
        time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)
    write_chain(project)
    cold = project.run()
    assert cold.ran() == {"stg_read", "stg_scale", "stg_total"}
    assert cold.stdout.strip() == "12"
    return project


def test_unchanged_pipeline_is_all_cache(chain):
    warm = chain.run()
    assert warm.outcomes() == {"stg_total": "hit", "stg_read": "not-needed", "stg_scale": "not-needed"}
    assert warm.stdout.strip() == "12"


def test_reformatting_comments_and_docstrings_keep_the_cache(chain):
    reformatted = CHAIN.replace(
        "def stg_scale(raw, factor):\n    raw",
        'def stg_scale(\n    raw,\n    factor,\n):\n    """Scale v."""\n    # multiply in place\n\n    raw',
    ).replace('raw["v"] * factor', 'raw[ "v" ]*factor  # why not')
    assert reformatted != CHAIN
    write_chain(chain, body=reformatted)
    assert chain.run().ran() == set()


def test_code_change_reruns_that_stage_and_its_descendants_only(chain):
    write_chain(chain, body=CHAIN.replace('raw["v"] * factor', 'raw["v"] * factor + 1'))
    warm = chain.run()
    assert warm.outcomes() == {"stg_read": "hit", "stg_scale": "computed", "stg_total": "computed"}
    assert warm.stdout.strip() == "15"


def test_parameter_change_reruns(chain):
    write_chain(chain, factor="3")
    warm = chain.run()
    assert warm.outcomes() == {"stg_read": "hit", "stg_scale": "computed", "stg_total": "computed"}
    assert warm.stdout.strip() == "18"
    write_chain(chain, factor="2")
    assert chain.run().ran() == set()


def test_raw_content_change_reruns_everything_downstream(chain):
    chain.write("raw/input.csv", "k,v\na,1\nb,2\nc,4\n")
    warm = chain.run()
    assert warm.ran() == {"stg_read", "stg_scale", "stg_total"}
    assert warm.stdout.strip() == "14"


def test_touched_raw_file_keeps_the_cache(aged_chain):
    later = time.time() + 60
    os.utime(aged_chain.root / "raw/input.csv", (later, later))
    assert aged_chain.run().ran() == set()


def test_same_size_same_mtime_edit_is_caught(aged_chain):
    chain = aged_chain
    raw = chain.root / "raw/input.csv"
    before = raw.stat()
    raw.write_text("k,v\na,1\nb,2\nc,5\n")  # same size
    os.utime(raw, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = raw.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    warm = chain.run()
    assert warm.ran() == {"stg_read", "stg_scale", "stg_total"}
    assert warm.stdout.strip() == "16"


def test_memo_taken_within_timestamp_granularity_is_not_trusted(project):
    """An edit landing in the same timestamp tick as the digest leaves every stat field equal."""
    from lwdp.hashing.raw_files import FileState
    from lwdp.config import settings
    from lwdp.store.catalog import open_catalog

    raw = project.write("raw/input.csv", "k,v\na,1\n")

    @stage(src="raw/input.csv", cache=True)
    def stg_read(src):
        return pd.read_csv(src)

    first = stg_read.hash
    raw.write_text("k,v\na,2\n")
    # Simulate the racy case: the memo row matches the edited file's stat exactly.
    catalog = open_catalog(settings(project.cache_dir))
    [memo] = catalog.load_digest_memos([str(raw.resolve())]).values()
    state = FileState.of(str(raw.resolve()))
    catalog.save_digest_memos([type(memo)(state, memo.digest, max(state.mtime_ns, state.ctime_ns) + RACY_WINDOW_NS // 2)])
    edited = stg_read.hash
    assert edited != first
    # Once the file is older than the window, the memo is trusted and the file is not re-read:
    # a planted digest is used as is.
    planted = "0" * 32
    catalog.save_digest_memos([type(memo)(state, planted, max(state.mtime_ns, state.ctime_ns) + RACY_WINDOW_NS)])
    assert stg_read.hash not in (first, edited)
    assert [m.digest for m in catalog.load_digest_memos([str(raw.resolve())]).values()] == [planted]


NO_READ = '''
import sys
from pathlib import Path
RAW = str(Path("raw/input.csv").resolve())
opened = []
def audit(event, args):
    if event == "open" and args and str(args[0]) in (RAW, "raw/input.csv"):
        opened.append(args[0])
sys.addaudithook(audit)
'''


def test_second_run_over_unchanged_raw_file_does_not_read_it(project):
    project.write("raw/input.csv", "k,v\na,1\nb,2\nc,3\n")
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)  # a raw file as users have them: not just written
    project.write("pipeline.py", NO_READ + CHAIN.replace("FACTOR", "2") + "print('opened', opened)\n")
    cold = project.run()
    assert cold.ran() == {"stg_read", "stg_scale", "stg_total"}
    assert "opened []" not in cold.stdout  # the audit hook does see reads of the file
    warm = project.run()
    assert warm.ran() == set()
    assert "opened []" in warm.stdout


def test_diamond_runs_each_stage_once(project, stage_events):
    calls = []

    @stage(n=3)
    def top(n):
        calls.append("top")
        return pd.DataFrame({"x": range(n)})

    @stage(t=top)
    def left(t):
        calls.append("left")
        return t["x"].sum()

    @stage(t=top)
    def right(t):
        calls.append("right")
        return t["x"].max()

    @stage(a=left, b=right)
    def bottom(a, b):
        calls.append("bottom")
        return a + b

    assert bottom() == 5
    assert sorted(calls) == ["bottom", "left", "right", "top"]


def test_mutations_do_not_leak_to_siblings_or_the_cache(project):
    @stage(n=3, cache=True)
    def source(n):
        return pd.DataFrame({"x": list(range(n))})

    @stage(s=source)
    def mutate(s):
        s["x"] = -1
        s.loc[0, "x"] = 100
        s["extra"] = 1
        return s

    @stage(s=source)
    def observe(s):
        return s.copy()

    @stage(m=mutate, o=observe)
    def both(m, o):
        return m, o

    mutated, observed = both()
    assert mutated["x"].tolist() == [100, -1, -1]
    pd.testing.assert_frame_equal(observed, pd.DataFrame({"x": [0, 1, 2]}))
    pd.testing.assert_frame_equal(source(), pd.DataFrame({"x": [0, 1, 2]}))


def test_mutable_parameters_are_frozen_at_decoration(project):
    threshold = [1, 2]

    @stage(limits=threshold)
    def uses(limits):
        limits.append(99)
        return list(limits)

    before = uses.hash
    threshold.append(3)
    assert uses() == [1, 2, 99]
    assert uses() == [1, 2, 99]
    assert uses.hash == before


def test_function_may_name_inputs_take_kwargs_or_nothing(project):
    project.write("raw/a.csv", "x\n1\n")

    @stage(src="raw/a.csv", n=2)
    def named(src, n):
        return (src, n)

    @stage(src="raw/a.csv", n=2)
    def kw(**kwargs):
        return kwargs

    @stage(src="raw/a.csv")
    def nothing():
        return "ok"

    assert named() == ("raw/a.csv", 2)
    assert kw() == {"n": 2, "src": "raw/a.csv"}
    assert nothing() == "ok"
