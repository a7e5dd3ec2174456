"""The fast paths keep every guarantee: warm runs through stdlib sqlite3, marks of use
batched once per run, artifacts written on a background thread, raw files hashed on two
threads. What ran is asserted from events and catalog rows, never from timings."""

from __future__ import annotations

import errno
import os
import sqlite3
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from pathlib import Path

import pandas as pd
import pytest
import xxhash
from alembic import command
from alembic.script import ScriptDirectory

import lwdp.hashing.raw_files
import test_catalog
from lwdp import stage
from lwdp.hashing.raw_files import RACY_WINDOW_NS, FileState, digest_files
from lwdp.errors import ArtifactWriteError, RawInputChangedError
from lwdp.formats import frames
from lwdp.store.migrate import migrations_dir
from lwdp.config import settings
from lwdp.store.catalog import open_catalog

PIPELINE = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from lwdp import stage

    @stage(src="raw.csv", cache=True)
    def stg_read(src):
        return pd.read_csv(src)

    @stage(df=stg_read, cache=True)
    def stg_double(df):
        return df.assign(b=df["a"] * 2)

    print("ROWS", len(stg_double()))
    print("SQLALCHEMY", "sqlalchemy" in sys.modules)
    """
)


def test_a_warm_run_neither_imports_sqlalchemy_nor_loses_marks_of_use(project):
    project.write("raw.csv", "a\n1\n2\n")
    project.write("pipeline.py", PIPELINE)
    time.sleep(RACY_WINDOW_NS / 1e9)  # a memo taken sooner after the file changed is re-checked (and rewritten)
    cold = project.run()
    assert cold.ran() == {"stg_read", "stg_double"}
    assert "SQLALCHEMY False" in cold.stdout  # the new catalog is made with sqlite3, at the head schema
    (final_hash, used_cold), = project.sql("SELECT hash, last_access FROM artifacts WHERE stage LIKE '%stg_double'")
    lineage_cold = project.sql("SELECT recorded_at FROM lineage WHERE hash = ?", final_hash)

    warm = project.run()
    assert warm.outcomes() == {"stg_read": "not-needed", "stg_double": "hit"}
    assert "ROWS 2" in warm.stdout and "SQLALCHEMY False" in warm.stdout
    # the end-of-run write: the artifact read is marked used, its lineage the most recent
    (used_warm,), = project.sql("SELECT last_access FROM artifacts WHERE hash = ?", final_hash)
    assert used_warm > used_cold
    assert all(new > old for (new,), (old,) in zip(project.sql("SELECT recorded_at FROM lineage WHERE hash = ?", final_hash), lineage_cold))


ALLOCATOR_PIPELINE = PIPELINE + textwrap.dedent(
    """
    import pyarrow
    print("POOL", pyarrow.default_memory_pool().backend_name)
    """
)


@pytest.mark.parametrize(("chosen", "expected"), [(None, "system"), ("jemalloc", "jemalloc")])
def test_a_run_that_computes_uses_the_system_allocator_for_arrow_unless_the_user_chose(project, chosen, expected):
    project.write("raw.csv", "a\n1\n2\n")
    project.write("pipeline.py", ALLOCATOR_PIPELINE)
    env = {"ARROW_DEFAULT_MEMORY_POOL": chosen} if chosen else {"ARROW_DEFAULT_MEMORY_POOL": ""}
    assert f"POOL {expected}" in project.run(env=env).stdout
    project.write("pipeline.py", "import pyarrow\nprint('POOL', pyarrow.default_memory_pool().backend_name)\n")
    assert "POOL system" not in project.run(env=env).stdout  # not pyarrow's own default: lwdp chose


def test_a_warm_run_on_an_older_catalog_migrates_it_through_the_full_catalog(project):
    project.write("raw.csv", "a\n1\n")
    project.write("pipeline.py", PIPELINE)
    project.run()
    script = ScriptDirectory(str(migrations_dir()))
    head = script.get_current_head()
    command.downgrade(test_catalog._alembic_config(project.cache_dir / "catalog.sqlite"), "-1")  # one revision behind
    assert project.sql("SELECT version_num FROM alembic_version") == [(script.get_revision(head).down_revision,)]
    warm = project.run()
    assert warm.outcomes()["stg_double"] == "hit"
    assert "SQLALCHEMY True" in warm.stdout
    assert project.sql("SELECT version_num FROM alembic_version") == [(head,)]


def test_a_failed_background_write_is_raised_after_the_run_and_leaves_no_row(project, monkeypatch, stage_events):
    real = frames.HANDLERS["parquet"]

    def full_disk_for_wide_frames(df, path):
        if "wide" in df.columns:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real.write(df, path)

    @stage(n=3, cache=True)
    def stg_wide(n):
        return pd.DataFrame({"wide": range(n)})

    @stage(df=stg_wide, cache=True)
    def stg_narrow(df):
        return pd.DataFrame({"total": [int(df["wide"].sum())]})

    with monkeypatch.context() as patched:
        patched.setitem(frames.HANDLERS, "parquet", real._replace(write=full_disk_for_wide_frames))
        with pytest.raises(ArtifactWriteError, match="stg_wide.*No space left on device.*nothing was cached"):
            stg_narrow()
    stages = dict(project.sql("SELECT stage, format FROM artifacts"))
    assert list(stages) == [stg_narrow.name]  # the consumer's write went through; the failed one left no row
    assert not [p for p in (project.cache_dir / "artifacts").rglob("*") if p.is_file() and stg_wide.hash in p.name]

    assert stg_narrow()["total"].tolist() == [3]  # the consumer's artifact serves; nothing recomputes
    assert stage_events()["stg_narrow"] == "hit"


def test_a_raw_file_that_changes_size_while_hashed_raises(project, monkeypatch):
    raw = project.write("raw.csv", "a\n" + "1\n" * 1000)
    path = str(raw.resolve())
    real_of = FileState.of
    monkeypatch.setattr(FileState, "of", classmethod(lambda cls, p: real_of(p)._replace(size=os.path.getsize(p) - 7)))
    catalog = open_catalog(settings(project.cache_dir))
    with pytest.raises(RawInputChangedError, match="raw.csv changed while lwdp was reading it") as excinfo:
        digest_files([path], catalog, {path: "stage 'x', input 'src'"})
    assert isinstance(excinfo.value, OSError)


def test_raw_files_hashed_in_parallel_are_the_xxh3_of_their_bytes(project, monkeypatch):
    sizes = [9 * 1024 * 1024, 9 * 1024 * 1024, 5, 0]  # above the threshold for threads
    paths = []
    for i, size in enumerate(sizes):
        path = project.root / f"raw{i}.bin"
        path.write_bytes(bytes([i]) * size)
        paths.append(str(path))
    threads = []  # the thread each file was read on
    real_read = lwdp.hashing.raw_files._read_digest
    monkeypatch.setattr(lwdp.hashing.raw_files, "_read_digest", lambda p: threads.append(threading.current_thread().name) or real_read(p))
    catalog = open_catalog(settings(project.cache_dir))
    together = digest_files(paths, catalog, {p: "test" for p in paths})
    assert len(threads) == 4 and all(name.startswith("lwdp-hash") for name in threads)
    expected = {p: xxhash.xxh3_128_hexdigest(Path(p).read_bytes()) for p in paths}
    assert together == expected and len(set(expected.values())) == 4
    # ... and the memos a warm run trusts hold the same digests, with each file's size.
    stored = {path: (size, digest) for path, size, digest in project.sql("SELECT path, size, digest FROM raw_files")}
    assert stored == {p: (size, expected[p]) for p, size in zip(paths, sizes)}


def test_catalogs_made_at_once_in_one_process_are_all_whole(project):
    """Catalogs of several cache directories made at once in one process (one run per
    thread, or a `.hash` left running) are each whole, at the head schema."""
    with ThreadPoolExecutor(6) as pool:  # raises what making one raised
        list(pool.map(lambda i: open_catalog(settings(project.root / f"cache{i}")), range(6)))
    for i in range(6):
        with sqlite3.connect(project.root / f"cache{i}" / "catalog.sqlite") as conn:
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        assert {"artifacts", "lineage", "raw_files", "stage_manifests"} <= {name for (name,) in tables}
