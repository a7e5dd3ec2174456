"""The stage hash: code digest + every input's name, kind and digest, under a scheme version.

Changing how any part is encoded must bump `HASH_SCHEME`; a golden test pins the result.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import xxhash

from .raw_files import MemoStore, combine_set_digest, digest_files, expand_raw_input
from .tracked import InputRow, TrackedStore, current_digests, resolved_hash
from .url_inputs import is_url, url_input_digests

if TYPE_CHECKING:
    from ..config import Settings
    from ..graph import NodeT

HASH_SCHEME = "lwdp-stage-v1"

# (input name, kind, digest, detail): the detail is a raw input's path as written or a
# package's version. Kinds: "raw", "stage", "param", and "package" for the installed
# versions `lwdp.configure(hash_packages=...)` adds to every stage (named "package NAME"),
# "env" for the environment variables a stage names (``env=[...]``: "env NAME", no
# detail: a value may be a secret), and "tracked"/"listing" for the files and directories
# it read undeclared (`lwdp.hashing.tracked`, "tracked PATH").


def combine_stage_hash(code_digest: str, inputs: Iterable[tuple[str, str, str]]) -> str:
    """XXH3-128 hex of the code digest and (input name, kind, digest) triples."""
    hasher = xxhash.xxh3_128(f"{HASH_SCHEME}\0{code_digest}\0".encode())
    for name, kind, digest in sorted(inputs):
        hasher.update(f"{name}\0{kind}\0{digest}\n".encode())
    return hasher.hexdigest()


def raw_input_digests(stages: list[NodeT], memos: MemoStore, settings: Settings, recheck: bool = False) -> dict[tuple[NodeT, str], str]:
    """The digest of every raw input of ``stages``, keyed by (stage, input name); nothing
    inside the cache directory counts as raw input. ``recheck``: local files only, checked
    against the memos this run's hashing took (`digest_files`).

    All files are stat'ed and looked up in the memo in one batch, so a warm run over many
    unchanged files costs one query, not one per file; a URL costs one request for its
    metadata (`lwdp.hashing.url_inputs`).
    """
    members: dict[tuple[NodeT, str], dict[str, str]] = {}
    where: dict[str, str] = {}
    named_digests: dict[tuple[NodeT, str], dict[str, str]] = {}
    for stage in stages:
        for raw in stage.inputs_of_kind("raw"):
            if is_url(raw.value):
                if recheck:
                    continue
                named_digests[stage, raw.name] = url_input_digests(raw.value, stage.name, raw.name, settings.storage_options)
                continue
            files = expand_raw_input(raw.value, stage.name, raw.name, exclude=settings.cache_dir)
            members[stage, raw.name] = files
            for path in files.values():
                where.setdefault(path, f"stage '{stage.name}', input '{raw.name}'")
    digests = digest_files(where, memos, where, recheck)
    for key, files in members.items():
        named_digests[key] = {name: digests[path] for name, path in files.items()}
    return {key: combine_set_digest(named) for key, named in named_digests.items()}


def raw_inputs_changed(stage: NodeT, rows: list[InputRow], memos: MemoStore, settings: Settings) -> list[str]:
    """The stage's local raw inputs (as written) whose files are no longer those its hash
    ``rows`` covered: a file changed, added to or removed from a glob since the run hashed
    them. A file whose state is the one digested costs a stat; a changed one is read."""
    hashed = {name: digest for name, kind, digest, _ in rows if kind == "raw"}
    now = raw_input_digests([stage], memos, settings, recheck=True)
    return [os.fspath(raw.value) for raw in stage.inputs_of_kind("raw") if (stage, raw.name) in now and now[stage, raw.name] != hashed[raw.name]]


class CatalogForHashes(MemoStore, TrackedStore, Protocol):
    """What hashing reads from the catalog: raw files' digest memos and tracked reads."""


def env_row(name: str) -> InputRow:
    """An environment variable a stage depends on, by its value now (unset is a value)."""
    value = os.environ.get(name)
    digest = xxhash.xxh3_128_hexdigest(b"\0unset" if value is None else value.encode())
    return (f"env {name}", "env", digest, None)


def stage_hashes(
    stages: list[NodeT], memos: CatalogForHashes, settings: Settings
) -> tuple[dict[NodeT, str], dict[NodeT, list[InputRow]]]:
    """Hash of each stage (``stages`` in dependency order), and each stage's input rows.

    With ``undeclared_inputs="track"``, a stage's hash also answers for the files it was
    seen reading (`lwdp.hashing.tracked`): one catalog query for the whole pipeline."""
    raw = raw_input_digests(stages, memos, settings)
    recorded = memos.tracked_inputs([stage.name for stage in stages]) if settings.undeclared_inputs == "track" else None
    now = current_digests([row for rows in recorded.by_hash.values() for row in rows], memos) if recorded else {}
    packages: list[InputRow] = [
        (f"package {name}", "package", xxhash.xxh3_128_hexdigest(version.encode()), version)
        for name, version in settings.package_versions().items()
    ]
    hashes: dict[NodeT, str] = {}
    inputs: dict[NodeT, list[InputRow]] = {}
    for stage in stages:
        rows: list[InputRow] = []
        for inp in stage.inputs:
            if inp.kind == "raw":
                rows.append((inp.name, inp.kind, raw[stage, inp.name], os.fspath(inp.value)))
            elif inp.kind == "stage":
                rows.append((inp.name, inp.kind, hashes[inp.value], None))
            else:
                assert inp.digest is not None  # parameters are digested at decoration
                rows.append((inp.name, inp.kind, inp.digest, None))
        rows += [env_row(name) for name in stage.env]
        rows += packages
        declared = [(n, k, d) for n, k, d, _ in rows]
        if recorded is None:
            hashes[stage], inputs[stage] = combine_stage_hash(stage.code_digest, declared), rows
            continue
        hashes[stage], tracked = resolved_hash(
            combine_stage_hash(stage.code_digest, declared),
            lambda extra: combine_stage_hash(stage.code_digest, declared + extra),  # noqa: B023 (used at once)
            recorded, stage.name, now,
        )
        inputs[stage] = rows + tracked
    return hashes, inputs
