"""``lwdp lineage STAGE --format openlineage`` (issue 19): one OpenLineage run event per
stage evaluation, valid against the OpenLineage specification's own JSON schemas (in
tests/openlineage/, copied from the specification), facets included, and linked so that a
lineage server joins each stage's output to its consumers' inputs."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import xxhash
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC_DIR = Path(__file__).with_name("openlineage")
REGISTRY = Registry().with_resources(
    (contents["$id"], Resource.from_contents(contents))
    for contents in (json.loads(path.read_text()) for path in sorted(SPEC_DIR.glob("*.json")))
)

PIPELINE = """
import os
import pandas as pd
from lwdp import stage


@stage(src="raw/in.csv", cache=True)
def stg_read(src):
    return pd.read_csv(src)


@stage(df=stg_read, factor=2, cache=True)
def stg_double(df, factor):
    if os.environ.get("FAIL"):
        raise ValueError("boom")
    return df.assign(doubled=df["v"] * factor)


@stage(df=stg_double)
def stg_total(df):
    return int(df["doubled"].sum())


if __name__ == "__main__":
    print("TOTAL", stg_total())
"""


def _problems(instance: dict, schema_url: str) -> list[str]:
    validator = Draft202012Validator({"$ref": schema_url}, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(instance)]


def _facets(event: dict) -> list[dict]:
    found = [*event["run"].get("facets", {}).values(), *event["job"].get("facets", {}).values()]
    for dataset in (*event["inputs"], *event["outputs"]):
        found += [*dataset.get("facets", {}).values(), *dataset.get("outputFacets", {}).values()]
    return found


def _events(project, stage: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "lwdp", "lineage", stage, "--format", "openlineage"], cwd=project.root,
                          capture_output=True, text=True, env={k: v for k, v in os.environ.items() if not k.startswith("LWDP_")})
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _assert_valid(events: list[dict]) -> None:
    for event in events:
        assert _problems(event, event["schemaURL"]) == []
        assert event["schemaURL"] == "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
        dt.datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))  # the format checker skips date-times
        for facet in _facets(event):  # each facet against its own schema, which its _schemaURL names
            assert _problems(facet, facet["_schemaURL"]) == [], facet


def test_events_are_valid_openlineage_and_link_outputs_to_inputs(project):
    project.write("raw/in.csv", "v\n1\n2\n3\n")
    project.write("pipeline.py", PIPELINE)
    project.run()
    events = _events(project, "stg_total")
    _assert_valid(events)

    by_job = {event["job"]["name"]: event for event in events}
    assert list(by_job) == ["pipeline.stg_read", "pipeline.stg_double", "pipeline.stg_total"]  # upstream first
    assert {event["eventType"] for event in events} == {"COMPLETE"}
    assert len({event["run"]["runId"] for event in events}) == 3
    artifacts = dict(project.sql("SELECT stage, hash FROM artifacts"))
    sizes = dict(project.sql("SELECT hash, size FROM artifacts"))

    [raw] = by_job["pipeline.stg_read"]["inputs"]
    assert (raw["namespace"], raw["name"]) == ("file", str(project.root / "raw" / "in.csv"))
    assert raw["facets"]["version"]["datasetVersion"] == xxhash.xxh3_128_hexdigest(b"v\n1\n2\n3\n")

    [double_out] = by_job["pipeline.stg_double"]["outputs"]
    assert (double_out["namespace"], double_out["name"]) == ("lwdp", "pipeline.stg_double")
    assert double_out["facets"]["version"]["datasetVersion"] == artifacts["pipeline.stg_double"]
    assert double_out["facets"]["storage"]["fileFormat"] == "parquet"
    assert [(f["name"], f["type"]) for f in double_out["facets"]["schema"]["fields"]] == [("v", "int64"), ("doubled", "int64")]
    statistics = double_out["outputFacets"]["outputStatistics"]
    assert statistics["size"] == sizes[artifacts["pipeline.stg_double"]] and statistics["rowCount"] == 3

    # Every stage input is the very output (namespace, name, version) an event of the export made.
    outputs = {(o["namespace"], o["name"], o["facets"]["version"]["datasetVersion"]) for e in events for o in e["outputs"]}
    stage_inputs = [(i["namespace"], i["name"], i["facets"]["version"]["datasetVersion"])
                    for e in events for i in e["inputs"] if i["namespace"] == "lwdp"]
    assert len(stage_inputs) == 2 and set(stage_inputs) <= outputs
    # The uncached final stage: its dataset's version only, no storage.
    [total_out] = by_job["pipeline.stg_total"]["outputs"]
    assert set(total_out["facets"]) == {"version"} and "outputFacets" not in total_out


def test_a_stage_that_raised_is_a_fail_event_with_its_error(project):
    project.write("raw/in.csv", "v\n1\n")
    project.write("pipeline.py", PIPELINE)
    project.run()
    project.write("raw/in.csv", "v\n5\n")
    assert project.run(env={"FAIL": "1"}, check=False).returncode != 0
    events = _events(project, "stg_double")
    _assert_valid(events)
    read, double = events
    assert (read["job"]["name"], read["eventType"]) == ("pipeline.stg_read", "COMPLETE")
    assert (double["job"]["name"], double["eventType"], double["outputs"]) == ("pipeline.stg_double", "FAIL", [])
    assert double["run"]["facets"]["errorMessage"]["message"] == "ValueError: boom"
    assert read["outputs"][0]["facets"]["version"] == double["inputs"][0]["facets"]["version"]
