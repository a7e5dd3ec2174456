"""Early cutoff: a stage whose upstreams reran and returned what they returned before is
reused, not recomputed.

A stage's hash covers its upstreams' stage hashes, so the lookup by hash (a warm run's one
query) misses as soon as an upstream reran, for whatever reason: a refactor, a raw file
written again with the same data. Every artifact is therefore saved with an *input key*:
the same code, raw files, parameters and packages, with each upstream counted by its
result's content instead (its artifact's checksum, or a digest of the value of an
uncached one). A stage that misses by hash looks for an artifact of its own with the
input key it has now: one computed from exactly these inputs is its result, recorded under
the new hash too (`ResultCache.reuse`), and its consumers in turn find theirs the same way.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import xxhash

from ..formats import stored_as
from ..hashing.stage_hash import combine_stage_hash
from ..store.shared_columns import content
from .events import StageEvent

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ..graph import StageNode
    from ..hashing.stage_hash import InputRow
    from ..store.cache import ResultCache

# (input name, upstream's stage hash) -> the content of that upstream's result, or None
ContentOf = Callable[[str, str], "str | None"]


def input_key(stage: StageNode, rows: list[InputRow], content_of: ContentOf) -> str | None:
    """The stage's hash with each upstream's result content in place of its stage hash;
    None when an upstream's content can't be known (its write failed, a value that
    doesn't pickle)."""
    parts = []
    for name, kind, digest, _ in rows:
        if kind == "stage":
            content = content_of(name, digest)
            if content is None:
                return None
            parts.append((name, "content", content))
        else:
            parts.append((name, kind, digest))
    return combine_stage_hash(stage.code_digest, parts)


def artifact_content(cache: ResultCache, stage_hash: str, pending: Future[Any] | None = None) -> str | None:
    """The content of a cached result: its artifact's checksum, from the catalog (the file
    is not read), once its ``pending`` write in this process is done."""
    if pending is not None:
        pending.exception()  # waits; a failed write has no row, hence no content
    record = cache.catalog.lookup_artifact(stage_hash)
    return None if record is None else f"artifact {content(record)}"


def combined_content(parts: dict[str, str | None]) -> str | None:
    """The content of a partitioned stage's result: its cached partitions' contents, by
    path (what the combination is made of, known without combining anything)."""
    if None in parts.values():
        return None
    hasher = xxhash.xxh3_128(b"lwdp-partitions-v1\0")
    for path, part in sorted(parts.items()):
        hasher.update(f"{path}\0{part}\n".encode())
    return f"partitions {hasher.hexdigest()}"


def value_content(value: Any) -> str | None:
    """The content of an uncached result: XXH3-128 of its pickle, its large buffers (a
    frame's columns) hashed where they lie; None for a value pickle refuses."""
    hasher = xxhash.xxh3_128()

    def hash_in_place(buffer: pickle.PickleBuffer) -> bool:
        try:
            hasher.update(buffer.raw())
        except BufferError:  # not contiguous: it goes into the stream instead
            return True
        return False

    try:
        stream = pickle.dumps(value, protocol=5, buffer_callback=hash_in_place)
    except Exception:
        return None
    hasher.update(stream)
    return f"value {hasher.hexdigest()}"


def reuse_reason(changed: list[tuple[str, str | None]]) -> str:
    """Why a stage was reused, from its upstreams that changed since the result it reuses
    was computed: (name, why it reran in this call, or None)."""
    if not changed:
        return "its inputs returned the same results"
    if not any(why for _, why in changed):
        names = [name for name, _ in changed]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    else:
        listed = ", ".join(f"{name} reran ({why})" if why else f"{name} changed" for name, why in changed)
    if len(changed) == 1:
        return f"upstream {listed}{'' if changed[0][1] else ' changed'} and returned the same result"
    return f"upstreams {listed}{'' if any(why for _, why in changed) else ' changed'} and returned the same results"


def reuse(
    cache: ResultCache, stage: StageNode, stage_hash: str, rows: list[InputRow], key: str, manifest: dict[str, Any],
    why: Callable[[str], str | None],
) -> StageEvent | None:
    """Record the result of ``stage`` computed from the inputs of ``key`` as the result of
    ``stage_hash``, if there is one; its event names the upstreams that changed since
    (``why``: why the upstream of that input name reran in this call, if it did)."""
    started = time.perf_counter()
    for earlier in cache.catalog.with_input_key(stage.name, key):
        if earlier.hash == stage_hash or (stage.format is not None and not stored_as(earlier.format, stage.format)):
            continue
        before = {name: entry.get("digest") for name, entry in (cache.catalog.stage_manifest(earlier.hash) or {}).get("inputs", {}).items()}
        changed = [
            (_short(inp.value.name), why(name))
            for name, kind, digest, _ in rows
            if kind == "stage" and before.get(name) != digest
            for inp in stage.inputs if inp.name == name
        ]
        reason = reuse_reason(changed)
        reused = cache.reuse(stage.name, stage_hash, earlier, {**manifest, REUSED: {"from": earlier.hash, "because": reason}})
        if reused is not None:
            return StageEvent(stage.name, stage_hash, "reused", time.perf_counter() - started, reused.size, reason)
    return None


REUSED = "reused"  # the stage manifest's entry saying which result a reused one is, and why


def _short(stage_name: str) -> str:
    return stage_name.rsplit(".", 1)[-1]
