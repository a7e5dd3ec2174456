"""Regressions found in review, each named after the bug."""

from __future__ import annotations

import enum
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

import lwdp
import lwdp.hashing.raw_files
from lwdp import stage
from lwdp.hashing.raw_files import RACY_WINDOW_NS
from lwdp.errors import CacheDirError

FACTORY = '''
import sys
import pandas as pd
from lwdp import stage

def make(col):
    def pick():
        return pd.DataFrame({"v": [col]})
    pick.__qualname__ = f"pick_{len(col)}"
    return stage(cache=True)(pick)

print(make(sys.argv[1])()["v"].iloc[0])
'''


def test_stages_from_a_factory_differ_by_the_values_they_capture(project):
    project.write("pipeline.py", FACTORY)
    assert project.run("pipeline.py", "a").stdout.strip() == "a"
    second = project.run("pipeline.py", "b")
    assert second.stdout.strip() == "b"
    assert second.ran() == {"pick_1"}


MOD = "from lwdp import stage\n\n@stage(cache=True)\ndef stg_value():\n    return [1]\n"


def test_code_hash_is_taken_at_decoration_not_after_the_file_is_edited(project):
    """Editing a module after importing it must not store old code's result under the new hash."""
    project.write("mod.py", MOD)
    project.write(
        "pipeline.py",
        "import os, sys, time\nsys.path.insert(0, '.')\nimport mod\nopen('imported', 'w').close()\n"
        "while not os.path.exists('edited'):\n    time.sleep(0.01)\nprint(mod.stg_value())\n",
    )
    running = subprocess.Popen([sys.executable, "pipeline.py"], cwd=project.root, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (project.root / "imported").exists():
            assert running.poll() is None and time.monotonic() < deadline, "pipeline.py never imported mod"
            time.sleep(0.01)
        project.edit("mod.py", MOD.replace("[1]", "[2]"))  # while the pipeline runs
    finally:
        (project.root / "edited").touch()
    assert running.communicate(timeout=120)[0].strip() == "[1]"  # the code that was imported ran
    project.write("check.py", "import sys\nsys.path.insert(0, '.')\nimport mod\nprint(mod.stg_value())\n")
    check = project.run("check.py")
    assert check.stdout.strip() == "[2]"
    assert check.ran() == {"stg_value"}


def test_str_enum_parameter_is_a_parameter_not_a_path(project):
    class Mode(str, enum.Enum):
        FAST = "fast"
        SLOW = "slow"

    @stage(mode=Mode.FAST)
    def run_fast(mode):
        return mode

    @stage(mode=Mode.SLOW)
    def run_slow(mode):
        return mode

    assert run_fast() is Mode.FAST
    assert run_fast.inputs[0].kind == "param"
    assert run_slow.inputs[0].digest != run_fast.inputs[0].digest


SYMLINKED = '''
from lwdp import stage

@stage(d="data", cache=True)
def total(d):
    return sum(int(open(f"{d}/{name}").read()) for name in ("a.txt", "more/b.txt"))

print(total())
'''


def test_directory_input_follows_symlinked_subdirectories(project):
    project.write("data/a.txt", "1")
    project.write("shared/b.txt", "10")
    os.symlink("../shared", project.root / "data" / "more")
    os.symlink("..", project.root / "data" / "loop")  # a cycle must not hang or count twice
    project.write("pipeline.py", SYMLINKED)
    assert project.run().stdout.strip() == "11"
    assert project.run().ran() == set()  # the cache directory, reached through "loop", is no raw input
    project.write("shared/b.txt", "99")
    assert project.run().stdout.strip() == "100"


def test_cache_directory_inside_a_directory_input_does_not_count(project):
    project.write("data/a.csv", "v\n1\n")
    project.write(
        "pipeline.py",
        "import lwdp\nfrom lwdp import stage\nlwdp.configure(cache_dir='data/.cache')\n"
        "@stage(d='data', cache=True)\ndef listing(d):\n    return 1\n\nprint(listing.hash, listing())\n",
    )
    first = project.run()
    second = project.run()
    assert first.stdout.split()[0] == second.stdout.split()[0]
    assert second.outcomes() == {"listing": "hit"}


def test_pipeline_deeper_than_the_recursion_limit(project):
    """Loading and computing are loops, not recursion: a chain longer than Python's recursion
    limit runs, cached or not, and the limit is never changed under the user's code."""
    limit = sys.getrecursionlimit()
    seen_limits = set()

    @stage(n=0)
    def first(n):
        return n

    for cache in (False, True):
        previous = first
        for i in range(limit + 100):
            def step(prev):
                seen_limits.add(sys.getrecursionlimit())
                return prev + 1
            step.__qualname__ = f"step_{i}"
            previous = stage(prev=previous, cache=cache)(step)
        assert previous() == limit + 100
    assert previous() == limit + 100  # warm: the last one loaded
    assert seen_limits == {limit} and sys.getrecursionlimit() == limit


def test_deleting_the_cache_directory_while_a_process_runs(project, stage_events):
    @stage(n=2, cache=True)
    def square(n):
        return n * n

    assert square() == 4
    shutil.rmtree(project.cache_dir)
    assert square() == 4
    assert stage_events() == {"square": "computed"}
    assert (project.cache_dir / "catalog.sqlite").exists()
    assert square() == 4
    assert stage_events() == {"square": "hit"}


def test_lock_directory_that_cannot_be_made_is_a_cache_dir_error(project):
    @stage(cache=True)
    def one():
        return 1

    project.cache_dir.mkdir()
    (project.cache_dir / "locks").write_text("not a directory")
    with pytest.raises(CacheDirError, match="locks"):
        one()


def _cached_load_with_a_trusted_memo(project, monkeypatch, stage_events):
    """A cached stage over raw/input.csv, computed once, whose raw digest memo is trusted
    (the file was older than the racy window when read); and the list of reads of the raw
    file since then, which a repeated call leaves empty."""
    raw = project.write("raw/input.csv", "v\n1\n")
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)

    @stage(src="raw/input.csv", cache=True)
    def load(src):
        return pd.read_csv(src)

    load()
    reads = []
    real_read = lwdp.hashing.raw_files._read_digest

    def read(path):
        if path == str(raw):  # (artifacts are read through it too, for their checksums)
            reads.append(path)
        return real_read(path)

    monkeypatch.setattr(lwdp.hashing.raw_files, "_read_digest", read)
    assert load()["v"].iloc[0] == 1
    assert stage_events() == {"load": "hit"} and reads == []  # the memo is trusted
    return raw, load, reads


def test_touch_keeps_the_cache_through_a_trusted_memo(project, monkeypatch, stage_events):
    """README: a touched file is re-read once and keeps the cache."""
    raw, load, reads = _cached_load_with_a_trusted_memo(project, monkeypatch, stage_events)
    os.utime(raw)
    assert load()["v"].iloc[0] == 1
    assert stage_events() == {"load": "hit"}
    assert reads == [str(raw)]


def test_an_edit_restoring_size_and_mtime_is_seen_through_a_trusted_memo(project, monkeypatch, stage_events):
    """README: an edit that restores size and mtime still changes ctime."""
    raw, load, reads = _cached_load_with_a_trusted_memo(project, monkeypatch, stage_events)
    before = raw.stat()
    raw.write_text("v\n7\n")  # same size
    os.utime(raw, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert load()["v"].iloc[0] == 7
    assert stage_events() == {"load": "computed"}
    assert reads == [str(raw)]


def test_mutable_objects_inside_cells_do_not_leak_between_consumers(project):
    @stage(cache=True, cache_format="pickle")
    def tagged():
        return pd.DataFrame({"tags": [["a"], ["b"]], "n": [1, 2]})

    @stage(t=tagged)
    def appends(t):
        t["tags"].iloc[0].append("LEAK")
        return t

    @stage(t=tagged)
    def reads(t):
        return list(t["tags"].iloc[0])

    @stage(a=appends, r=reads)
    def both(a, r):
        return r

    assert both() == ["a"]
    assert tagged()["tags"].iloc[0] == ["a"]


@pytest.mark.parametrize("name", ["a#b", "why?", "50%2541", "é ü"])
def test_a_cache_directory_named_with_uri_characters(project, stage_events, name):
    """The catalog is opened through a SQLite URI: '#', '?' and '%' in the cache directory's
    path are its characters, not the URI's (no file beside it, no other directory)."""
    cache_dir = project.root / "caches" / name
    lwdp.configure(cache_dir=cache_dir)

    @stage(n=3, cache=True)
    def stg_uri(n):
        return pd.DataFrame({"n": [n]})

    assert stg_uri()["n"].tolist() == [3] and stg_uri()["n"].tolist() == [3]
    assert stage_events() == {"stg_uri": "hit"}
    assert sorted(p.name for p in (project.root / "caches").iterdir()) == [name]
    with sqlite3.connect(cache_dir / "catalog.sqlite") as conn:
        assert conn.execute("SELECT stage FROM artifacts").fetchall() == [(stg_uri.name,)]
    conn.close()
