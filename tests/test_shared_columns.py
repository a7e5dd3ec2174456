"""Columns kept once: a cached frame that repeats columns of an upstream's frame links the
file holding them instead of writing them again (`lwdp.store.shared_columns`), and is read
back exactly, in fresh processes, whatever happens to the upstream's artifact."""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd

from lwdp.formats import FORMATS
from lwdp.upkeep.verify import verify

pl = pytest.importorskip("polars")
from polars.testing import assert_frame_equal as assert_polars_equal  # noqa: E402
from polars.testing.parametric import dataframes  # noqa: E402

POLARS_PIPELINE = """
import sys

import numpy as np
import polars as pl
from lwdp import stage

N = 200_000


@stage(cache=True)
def base():
    rng = np.random.default_rng(0)
    return pl.DataFrame({"id": np.arange(N), "x": rng.random(N), "zero": np.zeros(N), "region": [f"r{i % 7}" for i in range(N)]})


@stage(base=base, cache=True)
def joined(base):
    weights = pl.DataFrame({"region": [f"r{i}" for i in range(7)], "w": list(range(7))})
    out = base.join(weights, on="region", how="left", maintain_order="left")
    return out.with_columns(y=pl.col("x") * 2, zero=-pl.col("zero"))  # -0.0: equal to 0.0, but not the same bits


@stage(joined=joined, cache=True)
def final(joined):
    return joined.with_columns(z=pl.col("y") + 1)


if __name__ == "__main__":
    final().write_parquet(sys.argv[1])
"""

PANDAS_PIPELINE = """
import sys

import numpy as np
import pandas as pd
from lwdp import stage

N = 200_000


@stage(cache=True)
def base():
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "id": np.arange(N), "x": rng.random(N), "zero": np.zeros(N),
        "when": pd.date_range("2024-01-01", periods=N, freq="s"),
        "region": pd.Categorical([f"r{i % 7}" for i in range(N)]),
    }, index=pd.RangeIndex(N) * 3)


@stage(base=base, cache=True)
def joined(base):
    weights = pd.DataFrame({"region": pd.Categorical([f"r{i}" for i in range(7)]), "w": np.arange(7)})
    out = base.merge(weights, on="region", how="left")
    return out.assign(y=out["x"] * 2, zero=-out["zero"])


@stage(joined=joined, cache=True)
def final(joined):
    return joined.assign(z=joined["y"] + 1)


if __name__ == "__main__":
    final().to_pickle(sys.argv[1])
"""


def _artifact(project, stage: str) -> tuple[str, str, dict]:
    """The hash, format and read options of the stage's newest artifact."""
    found = project.sql("SELECT hash, format, read_options FROM artifacts WHERE stage LIKE ? ORDER BY created_at DESC", f"%.{stage}")[0]
    return found[0], found[1], json.loads(found[2])


def _path(project, stage_hash: str, fmt: str, link: int | None = None) -> Path:
    suffix = FORMATS[fmt].suffix
    return project.cache_dir / "artifacts" / stage_hash[:2] / (f"{stage_hash}.c{link}.{suffix}" if link is not None else f"{stage_hash}.{suffix}")


def _columns_in(path: Path) -> set[str]:
    return set(pl.read_parquet_schema(path))


LIBRARIES = {
    "polars": (POLARS_PIPELINE, pl.read_parquet, lambda a, b: assert_polars_equal(a, b, check_exact=True)),
    "pandas": (PANDAS_PIPELINE, pd.read_pickle, lambda a, b: pd.testing.assert_frame_equal(a, b, check_exact=True)),
}


@pytest.mark.parametrize("library", LIBRARIES)
def test_repeated_columns_are_linked_not_written_and_read_back_exactly(project, library):
    script, read, assert_equal = LIBRARIES[library]
    project.write("pipeline.py", script)
    project.run("pipeline.py", "cold.out")
    warm = project.run("pipeline.py", "warm.out")
    assert warm.ran() == set()
    computed, loaded = read(project.root / "cold.out"), read(project.root / "warm.out")
    assert_equal(loaded, computed)
    zero = loaded["zero"].to_numpy()
    assert np.signbit(zero).all()  # -0.0 was written, not taken for the upstream's 0.0

    base, fmt, _ = _artifact(project, "base")
    joined, _, joined_options = _artifact(project, "joined")
    final, _, final_options = _artifact(project, "final")
    # joined links base's file for the columns it repeats; its own file holds the rest
    repeated = ["id", "x"] if library == "polars" else ["id", "x", "when"]  # region: < 1 MiB
    assert joined_options["shared"]["columns"] == {name: [0, name] for name in repeated}
    assert os.path.samefile(_path(project, joined, fmt, 0), _path(project, base, fmt))
    assert {"id", "x"}.isdisjoint(_columns_in(_path(project, joined, fmt)))
    assert {"y", "zero"} <= _columns_in(_path(project, joined, fmt))
    # final links base's file and joined's own: one level deep, whatever the chain
    linked = {Path(_path(project, final, fmt, k)).stat().st_ino for k in range(len(final_options["shared"]["files"]))}
    assert linked == {_path(project, base, fmt).stat().st_ino, _path(project, joined, fmt).stat().st_ino}
    assert _columns_in(_path(project, final, fmt)) - {"__index_level_0__"} == {"z", "region"}  # region: < 1 MiB
    (size,) = project.sql("SELECT size FROM artifacts WHERE hash = ?", final)[0]
    assert size == sum(os.path.getsize(p) for p in _path(project, final, fmt).parent.glob(f"{final}.*") if "manifest" not in p.name)

    # The upstreams' artifacts gone (gc), the links keep what final reads
    for stage_hash in (base, joined):
        project.sql("DELETE FROM artifacts WHERE hash = ?", stage_hash)
        for path in _path(project, stage_hash, fmt).parent.glob(f"{stage_hash}.*"):
            path.unlink()
    again = project.run("pipeline.py", "again.out")
    assert again.ran() == set()
    assert_equal(read(project.root / "again.out"), computed)


CONCAT_PIPELINE = """
import sys

import numpy as np
import {module} as lib
from lwdp import stage

N = 150_000


def part(seed):
    rng = np.random.default_rng(seed)
    return lib.DataFrame({{"id": np.arange(N) + seed * N, "x": rng.random(N), "small": (np.arange(N) % 3).astype(np.int8)}})


@stage(cache=True)
def first():
    return part(0)


@stage(cache=True)
def second():
    return part(1)


@stage(a=first, b=second, cache=True)
def merged(a, b):
    return {concat}


@stage(merged=merged, cache=True)
def derived(merged):
    return merged.{assign}


if __name__ == "__main__":
    result = derived()
    {write}
"""
CONCAT = {
    "polars": dict(module="polars", concat="lib.concat([a, b])", assign='with_columns(y=lib.col("x") * 2)',
                   write="result.write_parquet(sys.argv[1])"),
    "pandas": dict(module="pandas", concat="lib.concat([a, b], ignore_index=True)", assign='assign(y=merged["x"] * 2)',
                   write="result.to_pickle(sys.argv[1])"),
}


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_concatenation_is_written_whole_and_its_consumers_link_it(project, library):
    project.write("pipeline.py", CONCAT_PIPELINE.format(**CONCAT[library]))
    project.run("pipeline.py", "cold.out")
    warm = project.run("pipeline.py", "warm.out")
    assert warm.ran() == set()
    _, read, assert_equal = LIBRARIES[library]
    assert_equal(read(project.root / "warm.out"), read(project.root / "cold.out"))

    merged, fmt, options = _artifact(project, "merged")
    assert "shared" not in options  # one file: read 3-6x faster than its parts' files
    derived, _, options = _artifact(project, "derived")
    assert options["shared"]["columns"] == {"id": [0, "id"], "x": [0, "x"]}  # small: < 1 MiB, written
    assert os.path.samefile(_path(project, derived, fmt, 0), _path(project, merged, fmt))


def test_a_damaged_linked_file_is_a_miss_verify_reports_and_the_stage_recomputes(project):
    project.write("pipeline.py", POLARS_PIPELINE)
    project.run("pipeline.py", "cold.out")
    final, fmt, _ = _artifact(project, "final")
    side = _path(project, final, fmt, 0)
    data = bytearray(side.read_bytes())
    side.unlink()  # replaced, not written through: the link's other name keeps its bytes
    data[len(data) // 2] ^= 0xFF
    side.write_bytes(bytes(data))

    report = verify(cache_dir=project.cache_dir)
    assert [(p.kind, p.hash) for p in report.problems] == [("corrupt", final)]
    again = project.run("pipeline.py", "again.out")
    (event,) = [e for e in again.events if e["stage"].endswith(".final")]
    assert event["outcome"] == "computed" and "corrupt" in event["reason"], event
    assert_polars_equal(pl.read_parquet(project.root / "again.out"), pl.read_parquet(project.root / "cold.out"), check_exact=True)
    assert verify(cache_dir=project.cache_dir).ok


def test_an_upstream_that_reran_with_the_same_result_is_reused_with_its_links(project):
    project.write("pipeline.py", POLARS_PIPELINE)
    project.run("pipeline.py", "cold.out")
    project.edit("pipeline.py", POLARS_PIPELINE.replace('pl.col("x") * 2', 'pl.col("x") + pl.col("x")'))
    edited = project.run("pipeline.py", "edited.out")
    assert edited.outcomes()["joined"] == "computed" and edited.outcomes()["final"] == "reused"
    final, fmt, options = _artifact(project, "final")
    assert len(options["shared"]["files"]) == 2 and _path(project, final, fmt, 1).exists()
    warm = project.run("pipeline.py", "warm.out")
    assert warm.ran() == set()
    assert_polars_equal(pl.read_parquet(project.root / "warm.out"), pl.read_parquet(project.root / "cold.out"), check_exact=True)


def test_small_frames_and_a_shared_store_write_whole_artifacts(project, s3_server, bucket):
    project.write("pipeline.py", POLARS_PIPELINE.replace("N = 200_000", "N = 20_000"))
    project.run("pipeline.py", "small.out")
    assert not list(project.cache_dir.glob("artifacts/*/*.c0.*"))  # columns under 1 MiB: written

    project.write("shared.py", POLARS_PIPELINE)
    project.run("shared.py", "shared.out", env={**s3_server.env, "LWDP_STORE_URL": f"s3://{bucket}/lwdp", "LWDP_CACHE_DIR": "other"})
    assert len(list(Path(project.root, "other").glob("artifacts/*/*.pl.parquet"))) == 3
    assert not list(Path(project.root, "other").glob("artifacts/*/*.c0.*"))  # object stores have no links


# -- the formats' column functions: what they call the same is read back exactly ------------


def _kept_once(name: str, result, upstream):
    """``result`` as the cache keeps it when ``upstream`` is its upstream's artifact (every
    column the format calls the same linked, whatever its size), written and read back."""
    fmt = FORMATS[name]
    columns = fmt.handler().columns
    names = columns.names(result)
    shared = [n for n in names[:-1] if n in (columns.names(upstream) or []) and columns.same(result, n, upstream, n)]
    with tempfile.TemporaryDirectory() as folder:
        own_path, up_path = os.path.join(folder, "own"), os.path.join(folder, "up")
        own_options = json.loads(json.dumps(fmt.write(columns.without(result, shared), own_path)))
        up_options = json.loads(json.dumps(fmt.write(upstream, up_path)))
        own = fmt.read(io.BytesIO(Path(own_path).read_bytes()), own_options)
        up = fmt.read(io.BytesIO(Path(up_path).read_bytes()), up_options)
    return columns.combine(own, names, {n: (up, n) for n in shared}), shared


POLARS_FLAT = [pl.Int8, pl.UInt64, pl.Float32, pl.Float64, pl.Boolean, pl.String, pl.Date, pl.Datetime("us"),
               pl.Datetime("ns", "Europe/Paris"), pl.Duration("ms"), pl.Decimal(12, 3), pl.List(pl.Int32), pl.Categorical]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=dataframes(allowed_dtypes=POLARS_FLAT, min_cols=2, max_cols=6, min_size=1, max_size=12, allow_null=True),
       changed=st.sets(st.integers(0, 5)), data=st.data())
def test_polars_columns_called_the_same_come_back_exactly(frame, changed, data):
    upstream = frame.with_columns(
        pl.Series(c, data.draw(st.permutations(frame[c].to_list())), dtype=frame[c].dtype) if i in changed else pl.col(c)
        for i, c in enumerate(frame.columns) if frame[c].dtype != pl.Categorical
    )
    again, shared = _kept_once("polars-parquet", frame, upstream)
    assert_polars_equal(again, frame, check_exact=True)
    assert all(frame[c].dtype.is_numeric() or frame[c].dtype.is_temporal() or frame[c].dtype in (pl.String, pl.Boolean) for c in shared)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=hpd.data_frames(
    [hpd.column(n, dtype=t) for n, t in [("i", "int64"), ("f", "float64"), ("b", "bool"), ("t", "datetime64[ns]"), ("u", "uint8")]],
    index=hpd.range_indexes(min_size=1, max_size=12)),
    flips=st.sets(st.sampled_from(["i", "f", "b", "t", "u"])), text=st.lists(st.text(max_size=3) | st.none(), min_size=12, max_size=12))
def test_pandas_columns_called_the_same_come_back_exactly(frame, flips, text):
    frame = frame.assign(s=pd.array(text[: len(frame)], dtype="string"), k=pd.Categorical([v or "" for v in text[: len(frame)]]))
    upstream = frame.copy()
    for name in flips:  # what a stage may change: another value, or only the bits (-0.0)
        values = upstream[name].to_numpy().copy()
        values[0] = -values[0] if name == "f" else values[-1]
        upstream[name] = values
    upstream.index = upstream.index + 5  # shared columns are put back by position, not by label
    again, shared = _kept_once("parquet", frame, upstream)
    pd.testing.assert_frame_equal(again, frame, check_exact=True)
    for name in shared:
        assert frame[name].reset_index(drop=True).equals(upstream[name].reset_index(drop=True))
        if name == "f":
            assert np.array_equal(np.signbit(frame["f"]), np.signbit(upstream["f"]))


def test_a_categorical_with_its_categories_relabelled_is_not_the_same_column():
    side = pd.Categorical(["buy", "sell", "buy"] * 4)
    upstream = pd.DataFrame({"side": side, "n": np.arange(12)})
    relabelled = upstream.assign(side=upstream["side"].cat.rename_categories({"buy": "sell", "sell": "buy"}))
    assert relabelled["side"].dtype == upstream["side"].dtype  # pandas calls them equal: the codes mean other values
    again, shared = _kept_once("parquet", relabelled, upstream)
    assert shared == []  # "side", the one column that could be linked, is written
    pd.testing.assert_frame_equal(again, relabelled, check_exact=True)


def test_a_column_is_not_linked_from_an_upstream_artifact_that_is_not_the_result_in_memory(project, monkeypatch):
    """A forced recompute of a stage that is not deterministic, whose write fails: the row
    still describes the earlier result, so its consumer must write the columns it took
    from the new one."""
    from lwdp import stage
    from lwdp.errors import ArtifactWriteError
    from lwdp.run.call import run_stage
    from lwdp.store.cache import ResultCache

    @stage(cache=True)
    def base():
        return pd.DataFrame({"x": np.random.default_rng().random(300_000)})

    @stage(base=base, cache=True)
    def derived(base):
        return base.assign(y=base["x"] * 2)

    derived()
    assert _artifact(project, "derived")[2]["shared"]["columns"] == {"x": [0, "x"]}
    real_write = ResultCache._write_file

    def failing(self, stage_name, stage_hash, fmt, result):
        if stage_name.endswith(".base"):
            raise ArtifactWriteError(f"stage '{stage_name}': writing its artifact failed (No space left on device)")
        return real_write(self, stage_name, stage_hash, fmt, result)

    monkeypatch.setattr(ResultCache, "_write_file", failing)
    with pytest.raises(ArtifactWriteError):
        run_stage(derived, forced=frozenset({base, derived}))
    monkeypatch.undo()
    assert "shared" not in _artifact(project, "derived")[2]
    again = derived()
    assert (again["y"] == again["x"] * 2).all()


def test_links_leave_no_temporary_file_and_a_fresh_one_is_no_stray(tmp_path):
    from lwdp.store.artifact_store import UNLISTED_GRACE_S, LocalArtifactStore

    store = LocalArtifactStore(tmp_path)
    upstream, consumer = "ab" + "0" * 30, "cd" + "1" * 30
    store.write(upstream, "parquet", lambda path: Path(path).write_bytes(b"columns"))
    old = time.time() - 10 * UNLISTED_GRACE_S
    os.utime(store.path_for(upstream, "parquet"), (old, old))  # the upstream was written long ago
    for _ in range(2):  # the second time the name is the same file already: rename does nothing
        assert store.link(consumer, "c0.parquet", store.path_for(upstream, "parquet")) == (7, None)
    assert sorted(p.name for p in store.path_for(consumer, "x").parent.iterdir()) == [f"{consumer}.c0.parquet"]
    # a link keeps its source's mtime: without its artifact's own file, which writers make first, it is a stray
    assert store.strays() == [(str(store.path_for(consumer, "c0.parquet")), 7)]
    store.write(consumer, "parquet", lambda path: Path(path).write_bytes(b"own"))
    assert store.strays() == []


@pytest.mark.parametrize("failure", ["ENOSYS", "EACCES", "EXDEV"])
def test_a_filesystem_that_makes_no_links_gets_copies_whatever_it_answers(tmp_path, monkeypatch, failure):
    """EXDEV across devices, ENOSYS from FUSE mounts without links, EACCES from some
    network filesystems: the file is copied, checked, and published all the same."""
    import errno

    from lwdp.store import artifact_store
    from lwdp.store.artifact_store import LocalArtifactStore

    store = LocalArtifactStore(tmp_path)
    upstream, consumer = "ab" + "0" * 30, "cd" + "1" * 30
    store.write(upstream, "parquet", lambda path: Path(path).write_bytes(b"columns"))

    def no_links(source, destination):
        raise OSError(getattr(errno, failure), os.strerror(getattr(errno, failure)), str(source), None, str(destination))

    monkeypatch.setattr(artifact_store.os, "link", no_links)
    size, checksum = store.link(consumer, "c0.parquet", store.path_for(upstream, "parquet"))
    assert (size, checksum) == (7, store.checksum(upstream, "parquet"))
    assert store.path_for(consumer, "c0.parquet").read_bytes() == b"columns"
    assert not os.path.samefile(store.path_for(consumer, "c0.parquet"), store.path_for(upstream, "parquet"))
    with pytest.raises(FileNotFoundError):  # the source gone: the caller writes the columns itself
        store.link(consumer, "c1.parquet", tmp_path / "gone.parquet")


def test_a_sweep_for_strays_while_an_artifact_is_written_removes_none_of_its_links(project, monkeypatch):
    """gc or verify --repair sweeping while a large artifact's own file is encoded (here:
    every file old enough to be a stray at once): its links come after its own file."""
    from lwdp import stage
    from lwdp.store import artifact_store
    from lwdp.store.cache import ResultCache

    @stage(cache=True)
    def base():
        return pd.DataFrame({"x": np.arange(300_000, dtype="float64")})

    @stage(base=base, cache=True)
    def derived(base):
        return base.assign(y=base["x"] * 2)

    real_write = ResultCache._write_file
    swept = []

    def sweeping(self, stage_name, stage_hash, fmt, result):
        swept.extend(self.store.sweep_strays(remove=True))
        return real_write(self, stage_name, stage_hash, fmt, result)

    monkeypatch.setattr(artifact_store, "UNLISTED_GRACE_S", -3600)
    monkeypatch.setattr(ResultCache, "_write_file", sweeping)
    derived()
    monkeypatch.undo()
    assert swept == []
    derived_hash, fmt, options = _artifact(project, "derived")
    assert options["shared"]["columns"] == {"x": [0, "x"]} and _path(project, derived_hash, fmt, 0).exists()
    assert verify(cache_dir=project.cache_dir).ok


@pytest.mark.parametrize("library", LIBRARIES)
def test_recomputing_a_stage_that_links_columns_keeps_what_was_computed_from_it(project, library):
    """The same result written again under its hash (a forced recompute, or a repair after
    a linked file was lost) is laid out as before, so early cutoff sees it unchanged and
    every artifact below it stays cached."""
    script, read, assert_equal = LIBRARIES[library]
    project.write("pipeline.py", script)
    project.run("pipeline.py", "cold.out")
    joined = _artifact(project, "joined")
    project.write("again.py", """
        import sys
        import pipeline

        pipeline.joined.recompute() if sys.argv[1] == "recompute" else pipeline.joined()
        final = pipeline.final()
        final.to_pickle(sys.argv[2]) if hasattr(final, "to_pickle") else final.write_parquet(sys.argv[2])
    """)
    side = _path(project, joined[0], joined[1], 0)
    for action in ("recompute", "repair"):
        if action == "repair":
            side.unlink()
        again = project.run("again.py", action, f"{action}.out")
        outcomes = {(e["stage"].rsplit(".", 1)[-1], e["outcome"]) for e in again.events}
        assert {("joined", "computed"), ("final", "hit")} <= outcomes and ("final", "computed") not in outcomes, again.stderr
        assert "removed" not in again.stderr and side.exists()
        assert _artifact(project, "joined") == joined
        assert_equal(read(project.root / f"{action}.out"), read(project.root / "cold.out"))
    assert verify(cache_dir=project.cache_dir).ok


def test_a_parallel_run_links_the_same_columns_as_a_serial_one(project):
    """With jobs=2 a stage the run's own process computes after its upstream links that
    upstream's columns, as a serial run does: the same artifacts, the same rows."""
    script = PANDAS_PIPELINE.replace('if __name__ == "__main__":', 'if __name__ == "__main__":\n    import lwdp\n    lwdp.configure(jobs=2)')
    project.write("pipeline.py", script)
    project.run("pipeline.py", "parallel.out")
    for stage in ("joined", "final"):
        assert "shared" in _artifact(project, stage)[2], stage
    joined, fmt, options = _artifact(project, "joined")
    assert os.path.samefile(_path(project, joined, fmt, 0), _path(project, _artifact(project, "base")[0], fmt))
