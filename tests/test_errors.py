"""The error contract: every error lwdp raises is an `LwdpError` and the matching builtin,
says what failed, where (stage, path or value) and what to do, and leaves no half state."""

from __future__ import annotations

import errno
import inspect
import logging
import os
from pathlib import Path

import pandas as pd
import pytest
import xxhash

import lwdp
from lwdp import errors, stage
from lwdp.errors import (
    ArtifactWriteError,
    FormatUnavailableError,
    InputBindingError,
    LwdpError,
    RawInputNotFoundError,
    ResultNotStorableError,
    StageNameCollisionError,
    UnknownFormatError,
)
from lwdp.formats import FORMATS, available_formats, frames

SUFFIX = {"parquet": "parquet", "csv": "csv", "pickle": "pkl"}


def _catalog_rows(project) -> list[tuple]:
    if not (project.cache_dir / "catalog.sqlite").exists():
        return []
    return project.sql("SELECT hash, stage, format, size, checksum FROM artifacts ORDER BY stage")


def _artifact_files(cache_dir: Path, manifests: bool = False) -> list[Path]:
    """Files in the artifact store: payloads and temporary files (and manifests if asked)."""
    root = cache_dir / "artifacts"
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and (manifests or not p.name.endswith(".manifest.json")))


def _assert_nothing_cached(project) -> None:
    assert _catalog_rows(project) == []
    # neither artifacts, manifests nor .tmp-* files
    assert _artifact_files(project.cache_dir, manifests=True) == []


def test_every_error_class_is_an_lwdp_error_and_a_builtin():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 5
    for cls in classes:
        if cls is LwdpError:
            continue
        assert issubclass(cls, LwdpError), cls
        builtins_ = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in (Exception, BaseException, object)]
        assert builtins_, f"{cls.__name__} derives from no specific builtin exception"


# --- raw inputs ------------------------------------------------------------------------


def test_missing_raw_file(project):
    @stage(src="raw/missing.csv", cache=True)
    def stg_read(src):
        return pd.read_csv(src)

    with pytest.raises(RawInputNotFoundError) as excinfo:
        stg_read()
    err = excinfo.value
    assert isinstance(err, FileNotFoundError) and isinstance(err, LwdpError)
    message = str(err)
    assert "raw/missing.csv" in message
    assert stg_read.name in message and stg_read.name.endswith("stg_read")
    assert "'src'" in message  # the input
    assert "fix the path" in message
    _assert_nothing_cached(project)


@pytest.mark.parametrize(
    "raw, what",
    [("raw/orders_*.csv", "glob"), ("raw/empty_dir", "directory"), ("raw/only_subdirs", "directory")],
)
def test_glob_or_directory_matching_nothing(project, raw, what):
    (project.root / "raw" / "empty_dir").mkdir(parents=True)
    (project.root / "raw" / "only_subdirs" / "a" / "b").mkdir(parents=True)
    project.write("raw/products.csv", "id\n1\n")  # a file that the glob must not match

    @stage(orders=raw, cache=True)
    def stg_orders(orders):
        return pd.DataFrame()

    with pytest.raises(RawInputNotFoundError) as excinfo:
        stg_orders()
    assert isinstance(excinfo.value, FileNotFoundError)
    message = str(excinfo.value)
    assert raw in message and what in message and stg_orders.name in message
    _assert_nothing_cached(project)


@pytest.mark.parametrize("when", ["after the glob listed it", "after its stat, before its read"])
def test_raw_file_removed_while_being_hashed_names_the_stage_and_input(project, monkeypatch, when):
    """Regression (issue 12, bug 4): a bare FileNotFoundError named neither."""
    import lwdp.hashing.raw_files
    import lwdp.hashing.stage_hash

    project.write("raw/orders_a.csv", "id\n1\n")
    doomed = project.write("raw/orders_b.csv", "id\n2\n")
    if when == "after the glob listed it":
        expand = lwdp.hashing.stage_hash.expand_raw_input

        def expand_then_remove(*args, **kwargs):
            files = expand(*args, **kwargs)
            doomed.unlink()
            return files

        monkeypatch.setattr(lwdp.hashing.stage_hash, "expand_raw_input", expand_then_remove)
    else:
        read = lwdp.hashing.raw_files._read_digest

        def remove_then_read(path):
            if path == str(doomed):
                doomed.unlink()
            return read(path)

        monkeypatch.setattr(lwdp.hashing.raw_files, "_read_digest", remove_then_read)

    @stage(orders="raw/orders_*.csv", cache=True)
    def stg_orders(orders):
        return pd.DataFrame({"n": [1]})

    with pytest.raises(RawInputNotFoundError) as excinfo:
        stg_orders()
    message = str(excinfo.value)
    assert isinstance(excinfo.value, FileNotFoundError)
    assert stg_orders.name in message and "'orders'" in message and str(doomed) in message
    assert "disappeared" in message and "rerun" in message
    _assert_nothing_cached(project)


# --- a stage function that raises ------------------------------------------------------


class PipelineBug(Exception):
    pass


def test_user_exception_propagates_unchanged_with_a_note(project):
    boom = PipelineBug("bad row 17")

    @stage(n=1, cache=True)
    def stg_up(n):
        return pd.DataFrame({"n": [n, n + 1]})

    @stage(up=stg_up, cache=True)
    def stg_broken(up):
        raise boom

    with pytest.raises(PipelineBug) as excinfo:
        stg_broken()
    assert excinfo.value is boom
    assert type(excinfo.value) is PipelineBug and not isinstance(excinfo.value, LwdpError)
    assert str(excinfo.value) == "bad row 17"
    notes = getattr(excinfo.value, "__notes__", [])
    assert any(stg_broken.name in note for note in notes), notes
    assert not any(stg_up.name in note for note in notes), notes  # only the stage that raised

    # the failed stage wrote nothing; its upstream was cached before the failure
    rows = _catalog_rows(project)
    assert [r[1] for r in rows] == [stg_up.name]
    assert len(_artifact_files(project.cache_dir)) == 1


def test_builtin_error_inside_a_stage_is_not_turned_into_an_lwdp_error(project):
    project.write("x.txt", "x")

    @stage(src="x.txt")
    def stg_reads_wrong_file(src):
        return pd.read_csv("does-not-exist.csv")

    with pytest.raises(FileNotFoundError) as excinfo:
        stg_reads_wrong_file()
    assert not isinstance(excinfo.value, LwdpError)
    assert "does-not-exist.csv" in str(excinfo.value)


FAILING_PIPELINE = '''
import pandas as pd
from lwdp import stage

@stage(src="raw/input.csv", cache=True)
def stg_a(src):
    return pd.read_csv(src)

@stage(a=stg_a, cache=True)
def stg_b(a):
    {body}

@stage(b=stg_b)
def stg_c(b):
    return b

print(stg_c().to_csv(index=False))
'''


def test_after_fixing_a_failed_stage_only_it_is_recomputed(project):
    project.write("raw/input.csv", "x\n1\n2\n")
    project.write("pipeline.py", FAILING_PIPELINE.format(body='raise KeyError("no column y")'))
    failed = project.run(check=False)
    assert failed.returncode != 0
    assert "KeyError: 'no column y'" in failed.stderr
    assert "raised in lwdp stage 'pipeline.stg_b'" in failed.stderr
    assert failed.outcomes() == {"stg_a": "computed"}
    assert [r[1] for r in project.sql("SELECT hash, stage FROM artifacts")] == ["pipeline.stg_a"]
    assert len(_artifact_files(project.cache_dir)) == 1

    project.write("pipeline.py", FAILING_PIPELINE.format(body='return a.assign(y=a["x"] * 2)'))
    fixed = project.run()
    assert fixed.outcomes() == {"stg_a": "hit", "stg_b": "computed", "stg_c": "computed-uncached"}
    assert fixed.stdout.split() == ["x,y", "1,2", "2,4"]


# --- binding inputs at decoration time ------------------------------------------------------


def test_plain_function_as_input(project):
    def load_orders():
        return pd.DataFrame()

    with pytest.raises(InputBindingError) as excinfo:

        @stage(orders=load_orders)
        def stg_uses(orders):
            return orders

    assert isinstance(excinfo.value, TypeError)
    message = str(excinfo.value)
    assert "'orders'" in message and "load_orders" in message
    assert "decorate it with @stage" in message
    assert "stg_uses" in message


def test_required_parameter_without_input(project):
    with pytest.raises(InputBindingError, match=r"parameter 'factor' has no input") as excinfo:

        @stage(a=1)
        def stg_needs_factor(a, factor):
            return a * factor

    assert isinstance(excinfo.value, TypeError)
    assert "stg_needs_factor" in str(excinfo.value) and "@stage(factor=...)" in str(excinfo.value)


def test_required_parameter_without_input_when_function_takes_kwargs(project):
    # **kwargs swallows unknown inputs, but 'factor' is still required and unbound
    with pytest.raises(InputBindingError, match=r"parameter 'factor' has no input"):

        @stage(a=1)
        def stg_needs_factor(factor, **kwargs):
            return factor


def test_unhashable_parameter(project):
    class Opaque:
        pass

    with pytest.raises(InputBindingError) as excinfo:

        @stage(opts=Opaque())
        def stg_opts(opts):
            return opts

    message = str(excinfo.value)
    assert "'opts'" in message and "Opaque" in message and "stg_opts" in message
    assert "cannot be hashed stably" in message


def test_calling_a_stage_with_arguments(project):
    @stage(n=1)
    def stg_n(n):
        return n

    for args, kwargs in [((2,), {}), ((), {"n": 2})]:
        with pytest.raises(InputBindingError) as excinfo:
            stg_n(*args, **kwargs)
        assert isinstance(excinfo.value, TypeError)
        assert stg_n.name in str(excinfo.value) and "bind its inputs in @stage" in str(excinfo.value)
    assert not (project.cache_dir / "catalog.sqlite").exists()


def test_unknown_cache_format(project):
    with pytest.raises(UnknownFormatError) as excinfo:

        @stage(n=1, cache=True, cache_format="hdf5")
        def stg_n(n):
            return n

    assert isinstance(excinfo.value, ValueError) and isinstance(excinfo.value, LwdpError)
    message = str(excinfo.value)
    assert "'hdf5'" in message
    for name in available_formats():
        assert name in message
    assert {"parquet", "pickle", "csv"} <= set(available_formats())


def test_format_with_missing_dependency(project, monkeypatch):
    real_find_spec = lwdp.formats.importlib.util.find_spec
    monkeypatch.setattr(
        lwdp.formats.importlib.util, "find_spec", lambda name, *a: None if name == "openpyxl" else real_find_spec(name, *a)
    )
    with pytest.raises(FormatUnavailableError) as excinfo:

        @stage(n=1, cache=True, cache_format="excel")
        def stg_n(n):
            return n

    assert isinstance(excinfo.value, ImportError)
    assert "'excel'" in str(excinfo.value) and "pip install openpyxl" in str(excinfo.value)


# --- results a format cannot store -----------------------------------------------------------


def _unstorable_cases():
    def gen():
        yield 1

    return [
        ("parquet", lambda: {"not": "a frame"}, "dict"),
        ("csv", lambda: pd.Series([1, 2]), "Series"),
        ("parquet", lambda: pd.DataFrame({"obj": [object(), object()]}), "DataFrame"),
        ("pickle", lambda: (lambda x: x), "function"),
        ("pickle", lambda: gen(), "generator"),
        (None, lambda: gen(), "generator"),  # default for a non-frame: pickle
    ]


@pytest.mark.parametrize("fmt, make, kind", _unstorable_cases(), ids=lambda v: v if isinstance(v, str) else None)
def test_result_the_format_cannot_store(project, fmt, make, kind):
    @stage(n=1, cache=True, cache_format=fmt)
    def stg_result(n):
        return make()

    with pytest.raises(ResultNotStorableError) as excinfo:
        stg_result()
    assert isinstance(excinfo.value, TypeError)
    message = str(excinfo.value)
    assert stg_result.name in message
    assert repr(fmt or "pickle") in message
    assert kind in message
    assert "cache_format" in message  # what to do
    _assert_nothing_cached(project)


def test_unparquetable_frame_falls_back_to_pickle_when_no_format_is_asked(project, caplog):
    @stage(n=1, cache=True)
    def stg_objects(n):
        return pd.DataFrame({"mixed": [1, "a"]})  # pyarrow refuses int and str in one column

    with caplog.at_level(logging.WARNING, logger="lwdp"):
        result = stg_objects()
    assert result["mixed"].tolist() == [1, "a"]
    assert [r[2] for r in _catalog_rows(project)] == ["pickle"]
    assert any(stg_objects.name in r.getMessage() and "pickle" in r.getMessage() for r in caplog.records)
    assert stg_objects()["mixed"].tolist() == [1, "a"]  # read back from the pickle


# --- the cache directory -------------------------------------------------------------------------


@pytest.mark.parametrize("cache_dir", ["somefile/cache", "somefile"])
def test_cache_dir_that_cannot_be_created(project, monkeypatch, cache_dir):
    project.write("somefile", "a regular file\n")
    monkeypatch.setenv("LWDP_CACHE_DIR", str(project.root / cache_dir))

    @stage(n=1, cache=True)
    def stg_n(n):
        return pd.DataFrame({"n": [n]})

    with pytest.raises(Exception) as excinfo:
        stg_n()
    err = excinfo.value
    assert isinstance(err, LwdpError), f"got {type(err).__module__}.{type(err).__qualname__}: {err}"
    assert str(project.root / cache_dir) in str(err)
    assert "LWDP_CACHE_DIR" in str(err)  # says how to choose another
    assert (project.root / "somefile").read_text() == "a regular file\n"


def test_cache_dir_resolution_order(project, monkeypatch, tmp_path_factory):
    env_dir = tmp_path_factory.mktemp("env") / "cache"
    configured = tmp_path_factory.mktemp("configured") / "cache"

    @stage(n=1, cache=True)
    def stg_n(n):
        return pd.DataFrame({"n": [n]})

    def catalogs() -> set[Path]:
        return {p for p in (project.cache_dir, env_dir, configured) if (p / "catalog.sqlite").exists()}

    # configure() beats LWDP_CACHE_DIR
    monkeypatch.setenv("LWDP_CACHE_DIR", str(env_dir))
    lwdp.configure(cache_dir=configured)
    stg_n()
    assert catalogs() == {configured}
    assert len(_artifact_files(configured)) == 1

    # LWDP_CACHE_DIR beats ./.lwdp
    lwdp.configure(cache_dir=None)
    stg_n()
    assert catalogs() == {configured, env_dir}

    # ./.lwdp when nothing is set
    monkeypatch.delenv("LWDP_CACHE_DIR")
    stg_n()
    assert catalogs() == {configured, env_dir, project.cache_dir}
    assert (project.root / ".lwdp" / "catalog.sqlite").is_file()


def test_relative_configured_cache_dir_is_fixed_at_configure_time(project, monkeypatch):
    lwdp.configure(cache_dir="mycache")
    (project.root / "sub").mkdir()
    monkeypatch.chdir(project.root / "sub")

    @stage(n=1, cache=True)
    def stg_n(n):
        return pd.DataFrame({"n": [n]})

    stg_n()
    assert (project.root / "mycache" / "catalog.sqlite").is_file()
    assert not (project.root / "sub" / "mycache").exists()


# --- names ---------------------------------------------------------------------------------------


def _make_stage(value):
    @stage(value=value, cache=True)
    def stg_twin(value):
        return pd.DataFrame({"v": [value]})

    return stg_twin


def test_two_stages_with_the_same_qualified_name(project):
    first, second = _make_stage(1), _make_stage(2)
    assert first.name == second.name and first is not second

    @stage(a=first, b=second)
    def stg_both(a, b):
        return pd.concat([a, b])

    with pytest.raises(StageNameCollisionError) as excinfo:
        stg_both()
    assert isinstance(excinfo.value, ValueError)
    assert first.name in str(excinfo.value) and "rename" in str(excinfo.value)
    _assert_nothing_cached(project)


# --- disk full ---------------------------------------------------------------------------------


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _disk_full_at_fsync(monkeypatch):
    monkeypatch.setattr(os, "fsync", _enospc)


def _disk_full_while_writing(monkeypatch):
    real = frames.HANDLERS["parquet"]

    def half_write(df, path):
        with open(path, "wb") as f:
            f.write(b"PAR1 partial")
        _enospc()

    monkeypatch.setitem(frames.HANDLERS, "parquet", real._replace(write=half_write))


@pytest.mark.parametrize("fail", [_disk_full_at_fsync, _disk_full_while_writing], ids=["fsync", "writer"])
def test_disk_full_while_writing_an_artifact(project, monkeypatch, fail):
    @stage(n=1, cache=True)
    def stg_big(n):
        return pd.DataFrame({"n": [n] * 10})

    with monkeypatch.context() as patched:
        fail(patched)
        with pytest.raises(ArtifactWriteError) as excinfo:
            stg_big()
    err = excinfo.value
    assert isinstance(err, OSError) and isinstance(err, LwdpError)
    assert err.errno == errno.ENOSPC
    assert stg_big.name in str(err) and "No space left on device" in str(err)
    assert "nothing was cached" in str(err)
    _assert_nothing_cached(project)  # no artifact, no .tmp-* file, no row

    # with space again, the next call computes and caches normally
    assert stg_big()["n"].tolist() == [1] * 10
    assert len(_catalog_rows(project)) == 1


# --- damaged artifacts -------------------------------------------------------------------------


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, word", [(_flip_a_byte, "corrupt"), (Path.unlink, "missing")], ids=["flipped", "deleted"])
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_damaged_artifact_is_recomputed_with_a_warning(project, stage_events, caplog, damage, word, fmt):
    calls = []

    @stage(n=4, cache=True, cache_format=fmt)
    def stg_frame(n):
        calls.append(n)
        return pd.DataFrame({"n": list(range(n)), "s": list("abcd")[:n]})

    expected = stg_frame()
    assert stage_events() == {"stg_frame": "computed"}
    (stage_hash, _stage, fmt_row, size, checksum), = _catalog_rows(project)
    path = project.cache_dir / "artifacts" / stage_hash[:2] / f"{stage_hash}.{SUFFIX[fmt_row]}"
    assert path.is_file()
    damage(path)

    caplog.clear()
    again = stg_frame()
    pd.testing.assert_frame_equal(again, expected)
    assert calls == [4, 4]
    assert stage_events() == {"stg_frame": "computed"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(stg_frame.name in w and str(path) in w and word in w for w in warnings), warnings

    # replaced: the catalog row describes the new file, and the next call is a hit
    (hash_2, _s, _f, size_2, checksum_2), = _catalog_rows(project)
    assert hash_2 == stage_hash
    assert size_2 == path.stat().st_size
    assert checksum_2 == xxhash.xxh3_128_hexdigest(path.read_bytes())
    caplog.clear()
    pd.testing.assert_frame_equal(stg_frame(), expected)
    assert stage_events() == {"stg_frame": "hit"}
    assert calls == [4, 4]
    assert not [f for f in _artifact_files(project.cache_dir) if f.name.startswith(".tmp-")]
