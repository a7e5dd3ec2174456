"""Columns kept once: a frame artifact that repeats columns of an upstream's artifact links
the file holding them instead of encoding them again.

A join or ``assign`` returns its input's columns with a few new ones; writing them again
costs as much CPU as the stage that computed them and as many bytes (on the benchmark
DAG, the product join and the derived columns each repeat the merged frame's seven).
When a cached stage's frame has a column that is, dtype and bits, a column of a direct
upstream's frame (compared in memory, on the writer's thread), and that upstream's
artifact is in the same format in this cache, the column is left out of the stage's file:
the file that holds it (the upstream's own, or one it links in turn) is hard-linked beside
the artifact as ``<hash>.c<k>.<suffix>`` (copied where links can't be made), with its
size, checksum and read options in the artifact's, under ``"shared"``.

Each artifact stays whole on its own: gc can remove the upstream, the link keeps the
bytes. Its ``size`` counts the linked files too (what reading it reads, and what removing
it may free), so a budget counts shared bytes in each artifact holding them: it may
evict sooner, never too late. Columns under `WORTH_SHARING` bytes are written (reading
one more file costs more than encoding them), and a cache with a shared store writes
every artifact whole (object stores have no hard links).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import xxhash

from ..formats import FORMATS, Format
from ..formats.handler import ReadOptions
from .artifact_store import bytes_match, linked_suffix

if TYPE_CHECKING:
    from .artifact_store import ArtifactStore, LocalArtifactStore
    from .records import ArtifactRecord

WORTH_SHARING = 1 << 20


class LinkedFile(NamedTuple):
    """A file an artifact links: where it comes from, and what it must be."""

    source: Path
    size: int
    checksum: str
    options: ReadOptions


Piece = tuple[LinkedFile, str]  # where a column is kept: a file, and its name there


def layout(record: ArtifactRecord) -> dict[str, Any] | None:
    """The shared columns of ``record``'s artifact: its column order, the files it links
    (``files``: size, checksum, read options) and where each shared column is in them
    (``columns``: name -> [file number, name there])."""
    return record.read_options.get("shared")


def side_files(record: ArtifactRecord) -> list[dict[str, Any]]:
    found = layout(record)
    return found["files"] if found else []


def own_size(record: ArtifactRecord) -> int:
    """The size of the artifact's own file (``size`` counts its linked files too)."""
    return record.size - sum(side["size"] for side in side_files(record))


def content(record: ArtifactRecord) -> str:
    """What the artifact holds, for early cutoff: its own file's checksum, and where its
    shared columns are (the same own file may be combined with other columns)."""
    found = layout(record)
    if not found:
        return record.checksum
    where = {"files": [side["checksum"] for side in found["files"]], "columns": found["columns"], "order": found["order"]}
    return f"{record.checksum} {xxhash.xxh3_128_hexdigest(json.dumps(where, sort_keys=True).encode())}"


def linked_files(record: ArtifactRecord, store: LocalArtifactStore) -> list[LinkedFile]:
    """The files ``record``'s artifact links, as they lie beside it."""
    suffix = FORMATS[record.format].suffix
    return [
        LinkedFile(store.path_for(record.hash, linked_suffix(suffix, k)), side["size"], side["checksum"], side["options"])
        for k, side in enumerate(side_files(record))
    ]


def plan(fmt: Format, result: Any, upstreams: list[tuple[ArtifactRecord, Any]], store: LocalArtifactStore) -> dict[str, Piece]:
    """Where ``result``'s columns can be read from instead of written: for each column
    worth sharing, the file holding it in the first upstream (record, its result in
    memory) of the same format whose frame has it exactly. At least one column is always
    written.

    A column that is several upstreams' one after another (a concatenation) is written: it
    would be read from as many files, 3 to 6 times slower than from one on the benchmark
    DAG, and each consumer that links it would read them all again."""
    columns = fmt.handler().columns
    names = columns.names(result) if columns is not None else None
    if columns is None or not names:
        return {}
    candidates = [(record, value, theirs) for record, value in upstreams if record.format == fmt.name and (theirs := columns.names(value))]
    shared: dict[str, Piece] = {}
    for name in names:
        if columns.nbytes(result, name) < WORTH_SHARING:
            continue
        found = next((record for record, value, theirs in candidates if name in theirs and columns.same(result, name, value, name)), None)
        if found is not None:
            shared[name] = _piece(found, name, store)
    if len(shared) == len(names):  # the smallest is written: a file of no column would not keep the row count
        del shared[min(shared, key=lambda name: columns.nbytes(result, name))]
    return shared


def own_file(record: ArtifactRecord, store: LocalArtifactStore) -> LinkedFile:
    """``record``'s artifact's own file, as another artifact would link it."""
    options = {key: value for key, value in record.read_options.items() if key != "shared"}
    return LinkedFile(store.path_for(record.hash, FORMATS[record.format].suffix), own_size(record), record.checksum, options)


def _piece(record: ArtifactRecord, name: str, store: LocalArtifactStore) -> Piece:
    """Where ``record``'s artifact keeps its column ``name``: a file it links, or its own."""
    found = layout(record)
    if found and name in found["columns"]:
        k, there = found["columns"][name]
        return linked_files(record, store)[k], there
    return own_file(record, store), name


def linked_layout(fmt: Format, result: Any, shared: dict[str, Piece]) -> tuple[list[LinkedFile], ReadOptions]:
    """The files to link (each once) and what the artifact's read options say of them."""
    columns = fmt.handler().columns
    assert columns is not None
    files = list({file.source: file for file, _ in shared.values()}.values())
    number = {file.source: k for k, file in enumerate(files)}
    options = {"shared": {
        "order": columns.names(result),
        "files": [{"size": file.size, "checksum": file.checksum, "options": file.options} for file in files],
        "columns": {name: [number[file.source], there] for name, (file, there) in shared.items()},
    }}
    return files, options


def read_artifact(record: ArtifactRecord, data: bytes | None, sides: tuple[bytes, ...] = ()) -> Any:
    """The result ``record`` describes, from its own file's verified bytes and its linked
    files' (in order)."""
    fmt = FORMATS[record.format]
    own = fmt.read(io.BytesIO(data or b""), record.read_options)
    found = layout(record)
    if not found:
        return own
    columns = fmt.handler().columns
    assert columns is not None
    frames = [fmt.read(io.BytesIO(side_data), side["options"]) for side, side_data in zip(found["files"], sides, strict=True)]
    return columns.combine(own, found["order"], {name: (frames[k], there) for name, (k, there) in found["columns"].items()})


class Checked(NamedTuple):
    """An artifact's files checked: intact (None: one is missing), the first that is not,
    and the verified bytes when asked for."""

    intact: bool | None
    failed: str
    data: bytes | None = None
    sides: tuple[bytes, ...] = ()


def check_files(store: ArtifactStore, record: ArtifactRecord, keep_bytes: bool) -> Checked:
    """Check the artifact's own file, then each file it links, against their sizes and
    checksums (reading their bytes once, kept when ``keep_bytes``)."""
    suffix = FORMATS[record.format].suffix
    files = [(suffix, own_size(record), record.checksum)]
    files += [(linked_suffix(suffix, k), side["size"], side["checksum"]) for k, side in enumerate(side_files(record))]
    kept: list[bytes] = []
    for file_suffix, size, checksum in files:
        if keep_bytes:
            data = store.get(record.hash, file_suffix)
            intact = bytes_match(data, size, checksum)
            if data is not None:
                kept.append(data)
        else:
            intact = store.is_intact(record.hash, file_suffix, size, checksum)
        if not intact:
            return Checked(intact, store.describe(record.hash, file_suffix))
    return Checked(True, "", kept[0] if kept else None, tuple(kept[1:]))
