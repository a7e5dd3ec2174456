"""Results that are not pandas objects: polars (DataFrame, Series, LazyFrame), Arrow tables
and record batches, NumPy arrays and plain JSON values, cached in their own formats and
read back exactly; no pickle, so a shared store serves them without ``trust_pickle``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwdp.errors import ResultNotStorableError
from lwdp.formats import FORMATS, choose_format, default_format_for

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")
from polars.testing import assert_frame_equal, assert_series_equal  # noqa: E402
from polars.testing.parametric import dataframes  # noqa: E402

# Dtypes polars has and pandas lacks, nested ones included, with nulls anywhere.
POLARS_DTYPES = [
    pl.Int8, pl.UInt64, pl.Float32, pl.Float64, pl.Boolean, pl.String, pl.Binary, pl.Date, pl.Time,
    pl.Datetime("us"), pl.Datetime("ns", "Europe/Paris"), pl.Duration("ms"), pl.Decimal(12, 3), pl.Categorical,
    pl.Enum(["lo", "mid", "hi"]), pl.List(pl.Int32), pl.List(pl.String), pl.Array(pl.Float64, 2),
    pl.Struct({"a": pl.Int64, "b": pl.List(pl.String)}), pl.Null,
]


def _round_trip(name: str, result):
    """What the format gives back, as the cache writes and reads it (options through JSON)."""
    fmt = FORMATS[name]
    assert fmt.why_cannot_store(result) is None
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"artifact.{fmt.suffix}")
        options = json.loads(json.dumps(fmt.write(result, path)))
        return fmt.read(io.BytesIO(Path(path).read_bytes()), options)


@pytest.mark.parametrize("name", ["polars-parquet", "polars-ipc"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=dataframes(allowed_dtypes=POLARS_DTYPES, max_cols=6, max_size=12, allow_null=True))
def test_polars_frames_come_back_exactly(name, frame):
    assert_frame_equal(_round_trip(name, frame), frame, check_exact=True)
    series = frame.to_series(0) if frame.width else pl.Series("empty", [], dtype=pl.Int64)
    assert_series_equal(_round_trip(name, series), series, check_exact=True)


# What each text format must give back, never refuse (values of JSON floats aside).
TEXT_KEEPS = {
    "polars-csv": [pl.Int8, pl.UInt64, pl.Float32, pl.Float64, pl.Boolean, pl.String, pl.Date, pl.Time,
                   pl.Datetime("us"), pl.Datetime("ns", "Europe/Paris"), pl.Decimal(12, 3), pl.Categorical,
                   pl.Enum(["lo", "mid", "hi"]), pl.Null],
    "polars-json": [pl.Int8, pl.UInt64, pl.Boolean, pl.String, pl.Date, pl.Datetime("us"),
                    pl.Datetime("ns", "Europe/Paris"), pl.Categorical, pl.Enum(["lo", "mid", "hi"]),
                    pl.List(pl.Int32), pl.List(pl.String), pl.Struct({"a": pl.Int64, "b": pl.List(pl.String)}), pl.Null],
}


@pytest.mark.parametrize("name", ["polars-csv", "polars-json"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=dataframes(allowed_dtypes=POLARS_DTYPES, max_cols=6, max_size=12, allow_null=True))
def test_polars_text_formats_give_frames_back_exactly_or_refuse_them(name, frame):
    """The promise of pandas' formats: what is read back equals what was returned, or a
    reason before anything is written."""
    if FORMATS[name].why_cannot_store(frame) is None:
        assert_frame_equal(_round_trip(name, frame), frame, check_exact=True)
    else:
        assert any(dtype not in TEXT_KEEPS[name] for dtype in frame.dtypes) or name == "polars-json"


@pytest.mark.parametrize("name", ["polars-csv", "polars-json"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_polars_text_formats_never_refuse_the_dtypes_they_keep(name, data):
    frame = data.draw(dataframes(allowed_dtypes=TEXT_KEEPS[name], max_cols=6, max_size=12, allow_null=True))
    assert FORMATS[name].why_cannot_store(frame) is None
    assert_frame_equal(_round_trip(name, frame), frame, check_exact=True)
    series = frame.to_series(0) if frame.width else pl.Series("empty", [], dtype=pl.Int64)
    assert_series_equal(_round_trip(name, series), series, check_exact=True)


def test_polars_text_formats_name_what_they_refuse_and_keep_odd_names():
    frame = pl.DataFrame({"": [1, None, 3], "a,b\n\"c": ["\\N", None, ""], " x ": [-0.0, float("nan"), float("-inf")],
                          "when": pl.Series([-1861920000000000000, None, 0], dtype=pl.Datetime("ns", "Europe/Paris"))})
    assert_frame_equal(_round_trip("polars-csv", frame), frame, check_exact=True)  # names and a \N cell kept
    assert FORMATS["polars-json"].why_cannot_store(frame) == (
        "column ' x ' holds NaN or infinity, which JSON cannot (polars writes null)")
    durations = pl.DataFrame({"wait": pl.Series([1], dtype=pl.Duration("ms")), "tags": [["a"]]})
    assert FORMATS["polars-csv"].why_cannot_store(durations) == (
        "column 'wait' is Duration(time_unit='ms'), which a polars csv file does not give back")
    assert FORMATS["polars-csv"].why_cannot_store(durations.drop("wait")) == (
        "column 'tags' is List(String), which a polars csv file does not give back")
    lazy = _round_trip("lazy-json", frame.drop(" x ").lazy())
    assert isinstance(lazy, pl.LazyFrame)
    assert_frame_equal(lazy.collect(), frame.drop(" x "), check_exact=True)
    with tempfile.TemporaryDirectory() as folder, pytest.raises(ValueError, match="holds NaN or infinity"):
        FORMATS["lazy-json"].write(frame.lazy(), os.path.join(folder, "a.lz.json"))  # its values, once collected


def test_each_kind_gets_its_own_format_and_a_stage_names_the_family():
    frame = pl.DataFrame({"x": [1, 2]})
    assert default_format_for(frame).name == "polars-parquet"
    assert default_format_for(frame.lazy()).name == "lazy-parquet"
    assert default_format_for(frame.to_arrow()).name == "arrow-parquet"
    assert default_format_for(np.arange(3)).name == "npy"
    assert default_format_for({"a": [1, 2.5, None, "x"]}).name == "json-value"
    assert default_format_for((1, 2)).name == "pickle"  # JSON would give a list back
    assert default_format_for({1: "a"}).name == "pickle"  # and text keys
    assert default_format_for([float("nan")]).name == "pickle"
    assert choose_format("s", frame, FORMATS["feather"]).format.name == "polars-ipc"
    assert choose_format("s", frame.lazy(), FORMATS["parquet"]).format.name == "lazy-parquet"
    assert choose_format("s", frame.to_arrow(), FORMATS["feather"]).format.name == "arrow-feather"
    assert choose_format("s", {"a": 1}, FORMATS["json"]).format.name == "json-value"
    assert choose_format("s", frame, FORMATS["csv"]).format.name == "polars-csv"
    assert choose_format("s", frame.lazy(), FORMATS["json"]).format.name == "lazy-json"
    with pytest.raises(ResultNotStorableError, match=r"cannot store the DataFrame it returned \(a polars DataFrame\); "
                                                      r"give cache_format one of the formats for it: csv, feather, json, parquet, pickle"):
        choose_format("s", frame, FORMATS["excel"])


def test_arrow_tables_and_batches_come_back_equal_with_their_metadata():
    table = pa.table({"a": [1, None, 3], "b": [["x"], [], None]}).replace_schema_metadata({"source": "lab 3"})
    for name in ("arrow-parquet", "arrow-feather"):
        back = _round_trip(name, table)
        assert isinstance(back, pa.Table) and back.equals(table, check_metadata=True)
        batch = table.to_batches()[0]
        again = _round_trip(name, batch)
        assert isinstance(again, pa.RecordBatch) and again.equals(batch, check_metadata=True)


def test_numpy_arrays_without_pickle():
    for array in (np.arange(12, dtype="int16").reshape(3, 4), np.array([1.5, np.nan, -0.0]),
                  np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]"), np.array([b"a", b"bc"]), np.array(["é", "x"])):
        back = _round_trip("npy", array)
        assert back.dtype == array.dtype and back.shape == array.shape and back.tobytes() == array.tobytes()  # bit for bit
    objects = np.array([{"a": 1}, None], dtype=object)
    assert "holds Python objects, which .npy keeps only by pickling them" in FORMATS["npy"].why_cannot_store(objects)
    with pytest.raises(ResultNotStorableError, match="holds Python objects"):
        choose_format("s", objects, FORMATS["npy"])


def test_json_values_come_back_equal_and_of_the_same_types():
    value = {"n": 3, "x": 0.1, "big": 2**70, "t": "é\n", "ok": True, "none": None, "list": [1, [2.5, {"k": []}]]}
    back = _round_trip("json-value", value)
    assert back == value and type(back["x"]) is float and type(back["big"]) is int
    assert "is a tuple" in FORMATS["json-value"].why_cannot_store({"a": (1, 2)})


PIPELINE = '''
import logging

import polars as pl
from lwdp import stage

logging.basicConfig(format="%(levelname)s %(message)s")


@stage(orders="raw/orders.csv", cache=True)
def stg_orders(orders):
    return pl.scan_csv(orders).with_columns(pl.col("qty").cast(pl.Int32))


@stage(orders=stg_orders, cache=True)
def stg_big(orders):
    print("CONSUMER GOT", type(orders).__name__)
    return orders.filter(pl.col("qty") > 1).select("product", "qty").collect()


@stage(big=stg_big, cache=True)
def stg_summary(big):
    return {"rows": big.height, "products": sorted(big["product"].unique().to_list())}


@stage(big=stg_big, cache=True)
def stg_array(big):
    return big["qty"].to_numpy()


@stage(big=stg_big, cache=True)
def stg_pandas(big):
    return big.to_pandas()  # a pandas consumer converts itself


if __name__ == "__main__":
    print("SUMMARY", stg_summary())
    print("ARRAY", stg_array().tolist())
    print("PANDAS", type(stg_pandas()).__module__)
'''


def test_a_polars_pipeline_with_a_lazyframe_in_fresh_processes(project):
    project.write("raw/orders.csv", "product,qty\na,1\nb,2\nc,3\nb,5\n")
    project.write("pipeline.py", PIPELINE)
    first = project.run()
    assert "CONSUMER GOT LazyFrame" in first.stdout  # it scans the artifact
    assert "SUMMARY {'rows': 3, 'products': ['b', 'c']}" in first.stdout and "ARRAY [2, 3, 5]" in first.stdout
    assert "WARNING" not in first.stderr and "PANDAS pandas" in first.stdout
    formats = dict(project.sql("SELECT stage, format FROM artifacts"))
    assert formats == {
        "pipeline.stg_orders": "lazy-parquet", "pipeline.stg_big": "polars-parquet", "pipeline.stg_summary": "json-value",
        "pipeline.stg_array": "npy", "pipeline.stg_pandas": "parquet",
    }
    warm = project.run()
    assert warm.ran() == set() and warm.stdout.splitlines()[-3:] == first.stdout.splitlines()[-3:]


POLARS_ONLY = '''
import sys

import polars as pl
from lwdp import stage


@stage(orders="raw/orders.csv", cache=True)
def stg_orders(orders):
    return pl.scan_csv(orders)


@stage(orders=stg_orders, cache=True, cache_format="csv")
def stg_big(orders):
    return orders.filter(pl.col("qty") > 1).collect()


@stage(big=stg_big, cache=True, cache_format="json")
def stg_qty(big):
    return big["qty"]


@stage(part="raw/parts/*.csv", partition_by="part", cache=True)
def stg_parts(part):
    return pl.read_csv(part)


@stage(big=stg_big, factor=2, cache=True)
def stg_total(big, factor):
    return {"total": int(big["qty"].sum()) * factor, "products": big["product"].unique().sort().to_list()}


print("BEFORE", sorted(m for m in ("pandas", "pyarrow", "numpy", "polars") if m in sys.modules))
print("TOTAL", stg_total())
print("QTY", stg_qty().to_list())
print("PARTS", stg_parts()["v"].to_list())
print("AFTER", sorted(m for m in ("pandas", "pyarrow", "numpy") if m in sys.modules))
'''


def test_a_polars_pipeline_never_imports_pandas_pyarrow_or_numpy(project):
    """They cost a polars script ~0.3 s of imports it would not otherwise make."""
    project.write("raw/orders.csv", "product,qty\na,1\nb,2\nc,3\nb,5\n")
    project.write("raw/parts/a.csv", "v\n1\n")
    project.write("raw/parts/b.csv", "v\n2\n")
    project.write("pipeline.py", POLARS_ONLY)
    for run in (project.run(), project.run()):  # cold, then warm
        assert "BEFORE ['polars']" in run.stdout and "AFTER []" in run.stdout, run.stdout
        assert "TOTAL {'total': 20, 'products': ['b', 'c']}" in run.stdout and "QTY [2, 3, 5]" in run.stdout
        assert "PARTS [1, 2]" in run.stdout
    assert dict(project.sql("SELECT stage, format FROM artifacts")) == {
        "pipeline.stg_orders": "lazy-parquet", "pipeline.stg_big": "polars-csv", "pipeline.stg_total": "json-value",
        "pipeline.stg_qty": "polars-json", "pipeline.stg_parts[raw/parts/a.csv]": "polars-parquet",
        "pipeline.stg_parts[raw/parts/b.csv]": "polars-parquet",
    }
    assert project.sql("SELECT DISTINCT pandas_version FROM artifacts") == [(None,)]
    bare = subprocess.run([sys.executable, "-c", "import sys, lwdp\n"
                           "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy', 'polars') if m in sys.modules))"],
                          capture_output=True, text=True, check=True)
    assert bare.stdout.strip() == "[]"


def test_lwdp_show_describes_polars_arrow_and_numpy_results(project):
    project.write("raw/orders.csv", "product,qty\na,1\nb,2\nc,3\nb,5\n")
    project.write("pipeline.py", PIPELINE)
    project.run()
    shown = {}
    for stage_hash, stage in project.sql("SELECT hash, stage FROM artifacts"):
        out = subprocess.run([sys.executable, "-m", "lwdp", "show", stage_hash, "--rows", "2"], cwd=project.root,
                             capture_output=True, text=True, check=True).stdout
        shown[stage.rsplit(".", 1)[-1]] = out
    assert "shape: 3 rows x 2 columns" in shown["stg_big"] and "qty  Int32" in shown["stg_big"]
    assert "shape: (lazy) 2 columns" in shown["stg_orders"]
    assert "shape: (3,), dtype int32" in shown["stg_array"]
    assert "dict: {'rows': 3" in shown["stg_summary"]


def test_the_shared_store_serves_them_without_trusting_pickle(project, s3_server, bucket, tmp_path):
    project.write("raw/orders.csv", "product,qty\na,1\nb,2\nc,3\nb,5\n")
    project.write("pipeline.py", PIPELINE)
    env = {**s3_server.env, "LWDP_STORE_URL": f"s3://{bucket}/lwdp"}
    project.run(env=env)
    assert len(project.sql("SELECT hash FROM artifacts")) == 5
    teammate = tmp_path / "teammate"
    teammate.mkdir()
    for name in ("pipeline.py", "raw/orders.csv"):
        (teammate / name).parent.mkdir(parents=True, exist_ok=True)
        (teammate / name).write_text((project.root / name).read_text())
    from conftest import Project

    other = Project(teammate)
    run = other.run(env=env)  # a new cache, LWDP_TRUST_PICKLE unset
    assert run.ran() == set() and "SUMMARY {'rows': 3, 'products': ['b', 'c']}" in run.stdout


PARTITIONED = '''
import polars as pl
import lwdp
from lwdp import stage


@stage(src="raw/*.csv", partition_by="src", cache=True)
def stg_parts(src):
    return pl.read_csv(src).with_columns(pl.lit(src).alias("file"))


@stage(parts=stg_parts, cache=True)
def stg_total(parts):
    return parts.select(pl.col("v").sum()).item()


if __name__ == "__main__":
    lwdp.configure(jobs=2)
    print("COMBINED", type(stg_parts()).__module__, stg_parts()["file"].to_list())
    print("TOTAL", stg_total())
'''


def test_polars_partitions_combine_into_one_polars_frame_in_a_parallel_run(project):
    project.write("raw/a.csv", "v\n1\n2\n")
    project.write("raw/b.csv", "v\n3\n")
    project.write("pipeline.py", PARTITIONED)
    first = project.run()
    assert "COMBINED polars.dataframe.frame ['raw/a.csv', 'raw/a.csv', 'raw/b.csv']" in first.stdout
    assert "TOTAL 6" in first.stdout
    project.write("raw/b.csv", "v\n30\n")
    again = project.run()
    assert "TOTAL 33" in again.stdout
    assert sorted(name for name, _ in project.sql("SELECT stage, format FROM artifacts WHERE format = 'polars-parquet'")) == [
        "pipeline.stg_parts[raw/a.csv]", "pipeline.stg_parts[raw/b.csv]", "pipeline.stg_parts[raw/b.csv]",
    ]


SHUFFLED = '''
import polars as pl
from lwdp import stage


@stage(n=50, cache=True)
def stg_rows(n):
    return pl.DataFrame({"x": range(n), "y": [i * 0.5 for i in range(n)]}).sample(fraction=1.0, shuffle=True)


@stage(n=5, cache=True)
def stg_steady(n):
    return pl.DataFrame({"x": range(n)}).lazy()


if __name__ == "__main__":
    stg_rows(), stg_steady()
'''


def test_verify_recompute_compares_polars_results_and_names_rows_in_another_order(project):
    project.write("pipeline.py", SHUFFLED)
    project.run()
    found = subprocess.run([sys.executable, "-m", "lwdp", "verify", "--recompute", "pipeline.stg_rows", "pipeline.stg_steady"],
                           cwd=project.root, capture_output=True, text=True)
    assert found.returncode == 1, found.stderr
    rows, steady = found.stdout.splitlines()
    assert rows.startswith("DIFFERS     pipeline.stg_rows ") and "column `x` differs first at row " in rows
    assert "(the same rows in another order: a join or group_by without maintain_order=True?)" in rows
    assert steady.startswith("reproduced  pipeline.stg_steady ")
