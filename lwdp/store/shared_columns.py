"""Columns kept once: a frame artifact that repeats columns of an upstream's artifact links
the file holding them instead of encoding them again.

A join or ``assign`` returns its input's columns with a few new ones; writing them again
costs as much CPU as the stage that computed them and as many bytes (on the benchmark
DAG, the product join and the derived columns repeat seven of the merged frame's ten).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..formats import FORMATS, Format
from ..formats.handler import ReadOptions
from .artifact_store import bytes_match

if TYPE_CHECKING:
    from .artifact_store import ArtifactStore, LocalArtifactStore
    from .records import ArtifactRecord

WORTH_SHARING = 1 << 20


class SideFile(NamedTuple):
    """A file an artifact links: where it comes from, what it must be, and which of the
    result's columns it holds (by their names there)."""

    source: Path
    size: int
    checksum: str
    options: ReadOptions
    columns: dict[str, str]

    def entry(self) -> dict[str, Any]:
        return {"size": self.size, "checksum": self.checksum, "options": self.options, "columns": self.columns}


def layout(record: ArtifactRecord) -> dict[str, Any] | None:
    """The shared columns of ``record``'s artifact: its column order and linked files."""
    return record.read_options.get("shared")


def side_files(record: ArtifactRecord) -> list[dict[str, Any]]:
    found = layout(record)
    return found["files"] if found else []


def own_size(record: ArtifactRecord) -> int:
    """The size of the artifact's own file (``size`` counts its linked files too)."""
    return record.size - sum(side["size"] for side in side_files(record))


def content(record: ArtifactRecord) -> str:
    """What the artifact holds, for early cutoff: its own file's checksum and its linked
    files' (the same own file may be combined with other columns)."""
    return " ".join([record.checksum, *(side["checksum"] for side in side_files(record))])


def plan(fmt: Format, result: Any, upstreams: list[tuple[ArtifactRecord, Any]], store: LocalArtifactStore) -> list[SideFile]:
    """The files ``result``'s columns can be read from instead of written: for each column
    worth sharing, the first upstream (record, its result in memory) of the same format
    whose frame has it exactly. At least one column is always written (a file of none
    would not keep the row count)."""
    columns = fmt.handler().columns
    names = columns.names(result) if columns is not None else None
    if columns is None or not names:
        return []
    candidates = [
        (record, value, set(theirs)) for record, value in upstreams
        if record.format == fmt.name and (theirs := columns.names(value))
    ]
    found: dict[Path, SideFile] = {}
    shared = 0
    for name in names:
        if shared == len(names) - 1 or columns.nbytes(result, name) < WORTH_SHARING:
            continue
        for record, value, their_names in candidates:
            if name not in their_names or not columns.same(result, name, value, name):
                continue
            side = _holding(record, name, store)
            found.setdefault(side.source, side).columns[name] = side.columns[name]
            shared += 1
            break
    return list(found.values())


def side_files_of(record: ArtifactRecord, store: LocalArtifactStore) -> list[SideFile]:
    """The files ``record``'s artifact links, as they lie beside it."""
    suffix = FORMATS[record.format].suffix
    return [
        SideFile(store.path_for(record.hash, side_suffix(suffix, k)), side["size"], side["checksum"], side["options"], side["columns"])
        for k, side in enumerate(side_files(record))
    ]


def _holding(record: ArtifactRecord, name: str, store: LocalArtifactStore) -> SideFile:
    """The file of ``record``'s artifact that holds its column ``name``: one it links, or its own."""
    for side in side_files_of(record, store):
        if name in side.columns:
            return side._replace(columns={name: side.columns[name]})
    options = {key: value for key, value in record.read_options.items() if key != "shared"}
    return SideFile(store.path_for(record.hash, FORMATS[record.format].suffix), own_size(record), record.checksum, options, {name: name})


def side_suffix(suffix: str, k: int) -> str:
    return f"c{k}.{suffix}"


def without_shared(fmt: Format, result: Any, sides: list[SideFile]) -> Any:
    columns = fmt.handler().columns
    assert columns is not None
    return columns.without(result, [name for side in sides for name in side.columns])


def shared_options(fmt: Format, result: Any, sides: list[SideFile]) -> ReadOptions:
    """What the artifact's read options say of its shared columns."""
    columns = fmt.handler().columns
    assert columns is not None
    return {"shared": {"order": columns.names(result), "files": [side.entry() for side in sides]}}


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
    pieces: dict[str, tuple[Any, str]] = {}
    for side, side_data in zip(found["files"], sides, strict=True):
        frame = fmt.read(io.BytesIO(side_data), side["options"])
        pieces.update((name, (frame, there)) for name, there in side["columns"].items())
    return columns.combine(own, found["order"], pieces)


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
    files += [(side_suffix(suffix, k), side["size"], side["checksum"]) for k, side in enumerate(side_files(record))]
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
