"""Where a result came from (`lineage`), what came from a raw file (`dependents`), and
the artifact listing (`artifacts`), read from the catalog's lineage rows.

Stages are named by their qualified name (``pipeline.stg_format_more``) or, when it is
unambiguous in the catalog, by their function name (``stg_format_more``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
import os
import re
from dataclasses import dataclass, field

import pandas as pd

from .. import config
from ..errors import UnknownStageError
from ..hashing.tracked import TRACKED_KINDS
from ..store.records import ArtifactRecord, LineageRow

from ..store.catalog import Catalog, open_catalog

_HEX_PREFIX = re.compile(r"[0-9a-fA-F]{6,32}")


def _catalog(cache_dir: str | os.PathLike[str] | None) -> Catalog:
    return open_catalog(config.settings(cache_dir))


def resolve_stage(catalog: Catalog, name: str) -> str:
    """The qualified stage name meant by ``name`` (qualified, or a bare function name).

    :raises UnknownStageError: no such stage, or a bare name several stages share.
    """
    matches = stages_named(catalog.stage_names(), name)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UnknownStageError(f"stage name {name!r} is ambiguous; use one of: {', '.join(matches)}")
    raise UnknownStageError(f"no stage named {name!r} in the catalog {catalog.path}")


def stages_named(names: Iterable[str], name: str) -> list[str]:
    """The stages of ``names`` that ``name`` means: itself where it is qualified, else every
    stage whose function has that name."""
    names = set(names)
    return [name] if name in names else sorted(n for n in names if n.endswith("." + name))


def resolve_hash(catalog: Catalog, stage_or_hash: str) -> tuple[str, str]:
    """(hash, stage) for a stage name (its latest hash) or a hash or unique hash prefix."""
    if _HEX_PREFIX.fullmatch(stage_or_hash):
        found = catalog.hashes_with_prefix(stage_or_hash)
        if len(found) == 1:
            return next(iter(found.items()))
        if len(found) > 1:
            raise UnknownStageError(f"hash prefix {stage_or_hash!r} is ambiguous ({len(found)} hashes); give more digits")
    if not stages_named(catalog.stage_names(), stage_or_hash):
        raise UnknownStageError(f"no stage or stage hash {stage_or_hash!r} in the catalog {catalog.path}")
    stage = resolve_stage(catalog, stage_or_hash)  # raises if the bare name is ambiguous
    stage_hash = catalog.latest_hash(stage)
    assert stage_hash is not None  # a known stage name has a row
    return stage_hash, stage


@dataclass
class LineageNode:
    """A stage hash and its inputs, or an input leaf (raw file or parameter)."""

    kind: str  # "stage" | "raw" | "param" | "env" | "package" | "tracked" | "listing"
    digest: str  # stage hash, raw digest or parameter digest
    stage: str | None = None
    input_name: str | None = None  # how the consumer named this input
    path: str | None = None  # raw path as written
    inputs: list[LineageNode] = field(default_factory=list)

    def __repr__(self) -> str:
        return "\n".join(self._lines("", ""))

    def _lines(self, first: str, rest: str) -> list[str]:
        named = f"{self.input_name} = " if self.input_name else ""
        if self.kind == "stage":
            label = f"{named}{self.stage} {self.digest[:12]}"
        elif self.kind == "raw":
            label = f"{named}raw {self.path} {self.digest[:12]}"
        elif self.kind in TRACKED_KINDS:
            label = f"{self.kind} {self.path} {self.digest[:12]}"  # read undeclared (`lwdp.hashing.tracked`)
        else:
            label = f"{named}param {self.digest[:12]}"
        lines = [first + label]
        for i, child in enumerate(self.inputs):
            last = i == len(self.inputs) - 1
            lines += child._lines(rest + ("└── " if last else "├── "), rest + ("    " if last else "│   "))
        return lines

    def walk(self) -> list[LineageNode]:
        """This node and every node below it."""
        return [self, *(node for child in self.inputs for node in child.walk())]


def lineage(stage_or_hash: str, cache_dir: str | os.PathLike[str] | None = None) -> LineageNode:
    """The full ancestry of a stage's latest hash, or of a given hash (prefix): upstream
    stages (name, hash) and raw files (path, digest), recursively."""
    catalog = _catalog(cache_dir)
    stage_hash, stage = resolve_hash(catalog, stage_or_hash)
    by_hash: dict[str, list[LineageRow]] = {}
    for row in catalog.inputs_of([stage_hash]):
        by_hash.setdefault(row.hash, []).append(row)

    def build(digest: str, stage_name: str, input_name: str | None) -> LineageNode:
        node = LineageNode("stage", digest, stage_name, input_name)
        for row in sorted(by_hash.get(digest, []), key=lambda r: r.input_name):
            if row.input_kind == "stage":
                upstream = by_hash.get(row.input_hash, [])
                node.inputs.append(build(row.input_hash, upstream[0].stage if upstream else "?", row.input_name))
            else:
                node.inputs.append(LineageNode(row.input_kind, row.input_hash, None, row.input_name, row.input_path))
        return node

    return build(stage_hash, stage, None)


@dataclass(frozen=True)
class Dependent:
    stage: str
    hash: str
    depth: int  # 1: reads the raw file itself


class Dependents(list[Dependent]):
    """Stage hashes derived from a raw file, nearest first."""

    def __repr__(self) -> str:
        if not self:
            return "no stage was derived from it"
        return "\n".join(f"{'  ' * (d.depth - 1)}{d.stage} {d.hash[:12]}" for d in self)

    def stages(self) -> list[str]:
        return sorted({d.stage for d in self})


def dependents(raw_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Dependents:
    """Every stage hash derived from ``raw_path``, transitively, across all recorded runs.

    A raw input matches when it was written as this path, when it is a glob that matches
    it, or when it is a directory that contains it.
    """
    catalog = _catalog(cache_dir)
    wanted = os.path.normpath(os.fspath(raw_path))
    direct = {row.hash for row in catalog.raw_inputs() if row.input_path and _names(row.input_path, wanted)}
    found = [Dependent(s, h, d + 1) for h, s, d in catalog.descendants(direct)]
    return Dependents(sorted(found, key=lambda d: (d.depth, d.stage, d.hash)))


def _names(written: str, wanted: str) -> bool:
    written = os.path.normpath(written)
    if written == wanted or os.path.abspath(written) == os.path.abspath(wanted):
        return True
    if any(ch in written for ch in "*?["):
        return fnmatch.fnmatch(wanted, written) or fnmatch.fnmatch(os.path.abspath(wanted), os.path.abspath(written))
    return os.path.abspath(wanted).startswith(os.path.abspath(written) + os.sep)


class ArtifactList(list[ArtifactRecord]):
    """Artifact records, newest first."""

    def to_frame(self) -> pd.DataFrame:
        columns = list(ArtifactRecord.__dataclass_fields__)
        return pd.DataFrame([r.__dict__ for r in self], columns=columns)


def artifacts(stage: str | None = None, cache_dir: str | os.PathLike[str] | None = None) -> ArtifactList:
    """Every artifact (of one stage), newest first, as records; ``.to_frame()`` for a DataFrame."""
    catalog = _catalog(cache_dir)
    return ArtifactList(catalog.all_artifacts(resolve_stage(catalog, stage) if stage is not None else None))
