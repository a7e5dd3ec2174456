"""Per-file partitions: ``@stage(orders="raw/orders/*.csv", partition_by="orders")``.

The function runs once per file the glob (or directory) matches, each call a stage of its
own in the run's graph, a `Partition`: the partitioned input bound to that one path, its
hash covering the stage's code, that file's digest, its path under the input's root, and
the other inputs. The stage the user made becomes the *combination*: an uncached stage
whose upstreams are its partitions, one input per file named by its path, and whose value
is their results concatenated in sorted path order (DataFrames and Series, each with the
index its call returned) or else a dict ``{path: result}``. So a changed file recomputes
one partition, a new file adds one, a removed file drops its part, and everything else
(caching, early cutoff, parallel runs, the log, lineage) is what any stage gets.

The files are listed anew each time a run orders the pipeline (`StageNode.refresh`); a
partition is made once per path and kept while its file is matched.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import xxhash

from . import config
from .errors import InputBindingError
from .formats.native import POLARS_FRAME, POLARS_LAZY, POLARS_SERIES, is_pandas, kind_of
from .graph import Input, StageNode
from .hashing.code import CodeDigest
from .hashing.params import param_digest
from .hashing.raw_files import file_set_members

if TYPE_CHECKING:
    from .stage import Stage

PARTITION_INPUT = "lwdp partition"  # a partition's input, its file's path under the input's root: no input's name has a space
COMBINATION_CODE = CodeDigest(xxhash.xxh3_128_hexdigest(b"lwdp-partitions-v1"), version="lwdp partitions v1")


class Partition(StageNode):
    """One file's call of a partitioned stage."""

    partition: str  # its file's path as matched

    def __init__(self, parent: Stage, path: str, relative: str) -> None:
        self.parent = parent
        self.partition = path
        self.name = f"{parent.name}[{path}]"
        self.module = parent.module
        self.func = parent.partition_func
        self.cache = parent.partition_cache
        self.format = parent.format
        self.code = parent.partition_code
        self.code_digest = self.code.digest
        self.passed_inputs = parent.partition_passed
        self.env = parent.env
        by = _partitioned_input(parent)
        by_file = Input(by, "raw", path)
        where = Input(PARTITION_INPUT, "param", relative, param_digest(relative))
        self.inputs = tuple(sorted(
            (by_file if inp.name == by else inp for inp in parent.declared_inputs), key=lambda inp: inp.name,
        )) + (where,)

    def __repr__(self) -> str:
        return f"<lwdp partition {self.name}>"


def list_partitions(stage: Stage) -> tuple[Partition, ...]:
    """The stage's partitions for the files its input matches now (made once per path).

    :raises RawInputNotFoundError: the input matches no file.
    """
    by = _partitioned_input(stage)
    declared = next(inp for inp in stage.declared_inputs if inp.name == by)
    raw = declared.value
    if os.path.isfile(raw):  # a directory when decorated, or not there yet
        raise not_partitionable(stage.name, by, declared)
    paths = file_set_members(raw, stage.name, by, exclude=config.settings().cache_dir)
    known = stage.known_partitions
    for path, under_root in paths.items():
        if path not in known:
            known[path] = Partition(stage, path, under_root)
    for gone in set(known) - set(paths):
        del known[gone]
    return tuple(known[path] for path in paths)


def not_partitionable(stage_name: str, input_name: str, raw: Input | None) -> InputBindingError:
    """The error for a ``partition_by`` that names no raw glob or directory of local files."""
    what = "names no input" if raw is None else f"names {raw.value!r}, which is not a glob or a directory of local files"
    return InputBindingError(
        f"stage '{stage_name}': partition_by={input_name!r} {what}; name a raw input bound to a glob "
        "(\"raw/orders/*.csv\") or a directory, whose files are each a partition"
    )


def _partitioned_input(stage: Stage) -> str:
    assert stage.partition_by is not None  # only a partitioned stage has partitions
    return stage.partition_by


def combination_inputs(partitions: tuple[Partition, ...]) -> tuple[Input, ...]:
    """The combination's inputs: one per partition, named by its file's path."""
    return tuple(Input(partition.partition, "stage", partition) for partition in partitions)


def combine(**parts: Any) -> Any:
    """The partitioned stage's result: its partitions' results concatenated in sorted path
    order when all are pandas DataFrames or Series (or all polars DataFrames, Series or
    LazyFrames), else ``{path: result}``."""
    ordered = {path: parts[path] for path in sorted(parts)}
    if ordered and all(is_pandas(part, "DataFrame") or is_pandas(part, "Series") for part in ordered.values()):
        import pandas as pd

        return pd.concat(ordered.values())
    kinds = {kind_of(part) for part in ordered.values()}
    if ordered and len(kinds) == 1 and kinds <= {POLARS_FRAME, POLARS_SERIES, POLARS_LAZY}:
        import polars

        return polars.concat(list(ordered.values()))
    return ordered

