"""A stage's lineage as OpenLineage run events (``lwdp lineage STAGE --format openlineage``),
what Marquez, DataHub and other lineage servers ingest.

One event per stage evaluation in the stage's ancestry (each stage hash once): the job is
the stage; its inputs are raw files (namespace ``file``, or the URL's scheme and bucket)
and the datasets of the upstream stages; its output is the stage's own dataset, whose
version is the stage hash, so a consumer's input names the very output its upstream
made. A cached result adds its format, size, row count and columns. The event's type and
time are those of the newest run that loaded or computed the hash (the run history): FAIL
with the error where the stage raised, else COMPLETE.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from .. import config
from ..formats import native
from ..store.cache import Hit, ResultCache
from ..store.catalog import open_catalog
from ..store.records import aware, utcnow
from ..store.shared_columns import side_files
from ..version import __version__
from .lineage import LineageNode, lineage

SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
PRODUCER = f"https://pypi.org/project/lwdp/{__version__}/"
_FACETS = "https://openlineage.io/spec/facets"
_SCHEMA_URLS = {
    "schema": f"{_FACETS}/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "storage": f"{_FACETS}/1-0-1/StorageDatasetFacet.json#/$defs/StorageDatasetFacet",
    "version": f"{_FACETS}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
    "outputStatistics": f"{_FACETS}/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
    "jobType": f"{_FACETS}/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "processing_engine": f"{_FACETS}/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet",
    "errorMessage": f"{_FACETS}/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
}
_FILE_KINDS = ("raw", "tracked", "listing")  # inputs that are files (or directories) read


def openlineage_events(stage_or_hash: str, namespace: str = "lwdp",
                       cache_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The run events of ``stage_or_hash`` (a stage's latest hash, or a hash) and of every
    stage evaluation it was derived from, upstream first. ``namespace``: of the jobs and
    of the stages' datasets.

    :raises UnknownStageError: no such stage or hash in the catalog.
    """
    settings = config.settings(cache_dir)
    catalog = open_catalog(settings)
    tree = lineage(stage_or_hash, cache_dir)
    nodes = list({node.digest: node for node in reversed(tree.walk()) if node.kind == "stage"}.values())
    evaluations = catalog.evaluations([node.digest for node in nodes])
    cache = ResultCache(settings, catalog)
    events = []
    for node in nodes:
        assert node.stage is not None
        outcome, reason, when = evaluations.get(node.digest, ("computed", None, None))
        record = catalog.lookup_artifact(node.digest)
        time = when or (record.created_at if record is not None else aware(utcnow()))
        run_facets: dict[str, Any] = {"processing_engine": _facet("processing_engine", name="lwdp", version=__version__)}
        if outcome == "failed":
            run_facets["errorMessage"] = _facet("errorMessage", message=reason or "", programmingLanguage="python")
        events.append({
            "eventType": "FAIL" if outcome == "failed" else "COMPLETE",
            "eventTime": time.isoformat().replace("+00:00", "Z"),
            "run": {"runId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"lwdp:{node.digest}")), "facets": run_facets},
            "job": {"namespace": namespace, "name": node.stage,
                    "facets": {"jobType": _facet("jobType", processingType="BATCH", integration="LWDP", jobType="STAGE")}},
            "inputs": [_input(child, namespace) for child in node.inputs if child.kind == "stage" or child.kind in _FILE_KINDS],
            "outputs": [] if outcome == "failed" else [_output(node, namespace, record, cache)],
            "producer": PRODUCER,
            "schemaURL": f"{SPEC}#/$defs/RunEvent",
        })
    return events


def _facet(facet: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": _SCHEMA_URLS[facet], **fields}


def _input(node: LineageNode, namespace: str) -> dict[str, Any]:
    if node.kind == "stage":
        dataset_namespace, name = namespace, node.stage or "?"
    else:
        dataset_namespace, name = _file_dataset(node.path or "")
    return {"namespace": dataset_namespace, "name": name, "facets": {"version": _facet("version", datasetVersion=node.digest)}}


def _file_dataset(path: str) -> tuple[str, str]:
    """OpenLineage's names: ``file`` and the absolute path; ``s3://bucket`` and the key."""
    if "://" in path:
        scheme, rest = path.split("://", 1)
        bucket, _, key = rest.partition("/")
        return f"{scheme}://{bucket}", key
    return "file", os.path.abspath(path)


def _output(node: LineageNode, namespace: str, record: Any, cache: ResultCache) -> dict[str, Any]:
    facets: dict[str, Any] = {"version": _facet("version", datasetVersion=node.digest)}
    output: dict[str, Any] = {"namespace": namespace, "name": node.stage, "facets": facets}
    if record is None:  # not cached (or evicted): its version is all there is
        return output
    facets["storage"] = _facet("storage", storageLayer="lwdp", fileFormat=record.format)
    statistics: dict[str, Any] = {"size": record.size, "fileCount": 1 + len(side_files(record))}  # the files it links too
    found = cache.peek(record.stage, record.hash)
    if isinstance(found, Hit):
        fields, rows = _columns(found.value)
        if fields is not None:
            facets["schema"] = _facet("schema", fields=[
                {"name": str(name), "type": str(kind), "ordinal_position": position}
                for position, (name, kind) in enumerate(fields, start=1)
            ])
        if rows is not None:
            statistics["rowCount"] = rows
    output["outputFacets"] = {"outputStatistics": _facet("outputStatistics", **statistics)}
    return output


def _columns(value: Any) -> tuple[list[tuple[Any, Any]] | None, int | None]:
    """(column name, type) pairs and the row count of a result, where it has them."""
    if native.is_pandas(value, "DataFrame"):
        return list(value.dtypes.items()), len(value)
    if native.is_pandas(value, "Series"):
        return [(value.name, value.dtype)], len(value)
    kind = native.kind_of(value)
    if kind == native.POLARS_LAZY:
        return list(value.collect_schema().items()), None
    if kind == native.POLARS_FRAME:
        return list(value.schema.items()), value.height
    if kind == native.POLARS_SERIES:
        return [(value.name, value.dtype)], len(value)
    if kind in (native.ARROW_TABLE, native.ARROW_BATCH):
        return [(field.name, field.type) for field in value.schema], value.num_rows
    if kind == native.NUMPY_ARRAY:
        return None, (value.shape[0] if value.ndim else None)
    return None, None

