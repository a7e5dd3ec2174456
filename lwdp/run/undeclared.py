"""What a stage read that its hash can't see, and what lwdp does about it.

`lwdp.run.watch` notes what a stage's own code opens, lists and connects to. Here what is
not data is set aside: the stage's declared raw inputs (and the hosts of its URL inputs),
lwdp's cache and store, files of Python and of installed distributions, the directories
Python searches for modules, system files (``/dev``, ``/proc``, ``/sys``, ``/etc``,
``/usr/share``), the temporary directory outside the working directory, and files the
stage wrote itself. The rest is undeclared; the setting ``undeclared_inputs`` decides:
"warn" (once per stage and path, recorded in the stage's manifest), "track" (recorded with
the result as inputs, `lwdp.hashing.tracked`), "error" (`UndeclaredInputError`, nothing
cached) or "ignore" (nothing watched).

Reads made by native code that opens files itself (Arrow given a path, so
``pd.read_parquet`` from pandas 3 on; polars; DuckDB) and by other threads don't pass
through Python's audited calls and are not seen.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from dataclasses import dataclass
from importlib.machinery import all_suffixes
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import UndeclaredInputError
from ..hashing.manifest import stage_manifest
from ..hashing.raw_files import is_file_set, is_under, literal_root
from ..hashing.stage_hash import InputRow
from ..hashing.tracked import (
    TRACKED_FILE, TRACKED_KINDS, TRACKED_LISTING, WATCHED, WATCHED_ROW, current_digests, shown_path, tracked_row,
)
from ..hashing.url_inputs import is_url

if TYPE_CHECKING:
    from ..config import Settings
    from ..graph import StageNode
    from ..hashing.raw_files import MemoStore
    from .watch import Reads

logger = logging.getLogger("lwdp")

UNDECLARED = "undeclared"  # the manifest's key for what a stage read undeclared
_SYSTEM_ROOTS = ("/dev", "/proc", "/sys", "/etc", "/usr/share")
_MODULE_SUFFIXES = tuple({*all_suffixes(), ".pyc", ".pth"})
_warned: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Undeclared:
    """What a call read that is not data it declared, as lwdp records it (paths shown
    relative to the working directory when under it)."""

    files: tuple[str, ...] = ()
    listings: tuple[str, ...] = ()
    connections: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.files or self.listings or self.connections)

    def manifest_entry(self) -> dict[str, list[str]]:
        return {what: list(values) for what, values in self.__dict__.items() if values}

    def tracked_rows(self, memos: MemoStore, assumed: list[InputRow]) -> list[InputRow]:
        """The files (a SQLite database with its write-ahead log) and listings as tracked
        inputs, with their digests now, or as the stage's hash assumed them: a file that
        changed during the call must not vouch for a result made from what it was."""
        files = [*self.files, *(path + "-wal" for path in self.files if os.path.isfile(path + "-wal"))]
        rows = [tracked_row(TRACKED_FILE, path, "") for path in files]
        rows += [tracked_row(TRACKED_LISTING, path, "") for path in self.listings]
        now = current_digests(rows, memos)
        before = {(kind, path): digest for _, kind, digest, path in assumed}
        return [tracked_row(kind, path, before.get((kind, path), now[kind, path])) for (kind, path) in now]


def undeclared(stage: StageNode, reads: Reads, settings: Settings) -> Undeclared:
    """What of ``reads`` is not data the stage declared, nor anything else set aside."""
    import tempfile  # here: a warm run computes nothing, and doesn't import it

    declared_files, declared_roots = _declared(stage)
    skipped = (*_not_data(), str(settings.cache_dir), *_local_store(settings.store_url))
    temporary = tempfile.gettempdir()
    searched = {os.path.abspath(os.path.join(reads.cwd, entry)) for entry in sys.path}

    def counts(path: str, file: bool) -> bool:
        if path in declared_files or path in reads.written or _under(path, (*skipped, *declared_roots)):
            return False
        if _under(path, (temporary,)) and not _under(path, (reads.cwd,)):
            return False
        return not path.endswith(_MODULE_SUFFIXES) if file else path not in searched

    hosts = _declared_hosts(stage) if reads.connections else set()
    return Undeclared(
        tuple(shown_path(path, reads.cwd) for path in reads.files if counts(path, file=True)),
        tuple(shown_path(path, reads.cwd) for path in reads.listings if counts(path, file=False)),
        tuple(f"{host}:{port}" if port is not None else host for host, port in reads.connections if host not in hosts),
    )


def _declared(stage: StageNode) -> tuple[set[str], tuple[str, ...]]:
    """(the files the stage declares, the directories whose contents it declares)."""
    files, roots = set(), []
    for raw in stage.inputs_of_kind("raw"):
        if is_url(raw.value):
            continue
        text = os.fspath(raw.value)
        if is_file_set(text):
            roots.append(os.path.abspath(text if os.path.isdir(text) else literal_root(text)))
        else:
            files.add(os.path.abspath(text))
    return files, tuple(roots)


def _declared_hosts(stage: StageNode) -> set[str]:
    """The hosts of the stage's URL inputs, by name and address: reading one is declared."""
    import socket

    hosts = set()
    for raw in stage.inputs_of_kind("raw"):
        if is_url(raw.value) and (name := urlsplit(os.fspath(raw.value)).hostname):
            hosts.add(name)
            try:
                hosts.update(str(info[4][0]) for info in socket.getaddrinfo(name, None))
            except OSError:
                pass
    return hosts


@functools.lru_cache(maxsize=1)
def _not_data() -> tuple[str, ...]:
    """Python's own files and installed distributions', and the system's."""
    import site
    import sysconfig

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *_SYSTEM_ROOTS}
    paths.update(value for value in sysconfig.get_paths().values() if value)
    paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    if site.ENABLE_USER_SITE and site.USER_SITE:
        paths.add(site.USER_SITE)
    return tuple(sorted(os.path.abspath(p) for p in paths))


def _local_store(store_url: str | None) -> tuple[str, ...]:
    if not store_url or (is_url(store_url) and not store_url.startswith("file://")):
        return ()
    return (os.path.abspath(store_url.removeprefix("file://")),)


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(is_under(path, root) for root in roots)


def judge(stage: StageNode, found: Undeclared, settings: Settings) -> None:
    """Act on what a call read undeclared: an error (mode "error"), else one warning per
    stage and path (files and listings in mode "warn"; connections in every mode).

    :raises UndeclaredInputError: mode "error" and the stage read a file or listed a directory.
    """
    mode = settings.undeclared_inputs
    what = [f"read {path}" for path in found.files] + [f"listed {path}" for path in found.listings]
    paths = [*found.files, *found.listings]
    if mode == "error" and what:
        raise UndeclaredInputError(
            f"stage '{stage.name}' {', '.join(what)}, which {'is' if len(what) == 1 else 'are'} not among its inputs: "
            f"nothing was cached for it. Bind {'it' if len(what) == 1 else 'each'} as an input "
            f"(@stage({_keyword(paths[0])}=\"{paths[0]}\")), or let lwdp track what it reads: "
            "lwdp.configure(undeclared_inputs=\"track\")"
        )
    if mode == "warn":
        for path, did in zip(paths, what):
            change = "a change to it" if path in found.files else "a file added to it or removed"
            if _first_time(stage, path):
                logger.warning(
                    "stage %s %s, which is not one of its inputs: %s will not rerun the stage. Bind it (@stage(%s=\"%s\")) "
                    "or let lwdp track it (lwdp.configure(undeclared_inputs=\"track\"))",
                    stage.name, did, change, _keyword(path), path,
                )
    for address in found.connections:
        if _first_time(stage, f"connect {address}"):
            logger.warning(
                "stage %s connected to %s: its result may change while its inputs don't, and lwdp would serve "
                "the cached one. Make it cache=False (it then runs at every call), or bind what it fetches as an "
                "input (a URL, or a parameter such as the date), or evict its results by age (lwdp gc --max-age)",
                stage.name, address,
            )


def _first_time(stage: StageNode, key: str) -> bool:
    if (stage.name, key) in _warned:
        return False
    _warned.add((stage.name, key))
    return True


def _keyword(path: str) -> str:
    """A keyword to suggest for binding ``path``: its name, made an identifier."""
    name = re.sub(r"\W+", "_", Path(path).stem).strip("_").lower()
    return name if name.isidentifier() else "path"


def saved_with(
    stage: StageNode, rows: list[InputRow], manifest: dict[str, Any], found: Undeclared, settings: Settings, memos: MemoStore,
) -> tuple[list[InputRow], dict[str, Any], list[InputRow]]:
    """(input rows, manifest, reads to record with its hash) a computed result is saved with.

    Every watched call records what it read, so that a later call in "track" mode can
    trust a result computed in "warn" mode; an unwatched one ("ignore") records nothing,
    which clears what an earlier call recorded. In "track" mode the result's input rows
    (its input key) and manifest name what the call read, in place of what its hash
    assumed."""
    if settings.undeclared_inputs == "ignore":
        return rows, manifest, []
    assumed = [row for row in rows if row[1] in TRACKED_KINDS]
    tracked = found.tracked_rows(memos, assumed)
    if settings.undeclared_inputs == "track":
        rows = [row for row in rows if row[1] not in (*TRACKED_KINDS, WATCHED)] + tracked + [WATCHED_ROW]
        manifest = stage_manifest(stage, rows)
        found = Undeclared(connections=found.connections)  # the files are inputs now
    if found:
        manifest = {**manifest, UNDECLARED: found.manifest_entry()}
    return rows, manifest, tracked
