"""What a stage reads that its hash can't see, and what lwdp does about it.

While a stage's own function runs, an audit hook (PEP 578) notes the files its thread
opens (SQLite databases too), the directories it lists and the network connections it
makes. Afterwards what is
not data is set aside: the stage's declared raw inputs, lwdp's cache and store, modules
being imported, files of Python and of installed distributions, system files (``/dev``,
``/proc``, ``/sys``, ``/etc``, ``/usr/share``), the temporary directory outside the
working directory, and files the stage wrote itself. The rest is undeclared; the setting
``undeclared_inputs`` decides: "warn" (once per stage and path, recorded in the stage's
manifest), "track" (recorded with the result as inputs, `lwdp.hashing.tracked`), "error"
(`UndeclaredInputError`, nothing cached) or "ignore" (nothing watched).

An audit hook can't be removed: it is added at the first watched call, and outside one it
costs a test of one global (benchmarks/RESULTS.md has the figures). Reads made by native
code that opens files itself (Arrow given a path, so ``pd.read_parquet`` from pandas 3
on; polars; DuckDB) and by other threads don't pass through Python's audited calls and
are not seen.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.machinery import all_suffixes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UndeclaredInputError
from ..hashing.manifest import stage_manifest
from ..hashing.raw_files import is_file_set, literal_root
from ..hashing.stage_hash import InputRow
from ..hashing.tracked import TRACKED_FILE, TRACKED_KINDS, TRACKED_LISTING, current_digests, shown_path, tracked_row
from ..hashing.url_inputs import is_url

if TYPE_CHECKING:
    from ..config import Settings
    from ..graph import StageNode
    from ..hashing.raw_files import MemoStore

logger = logging.getLogger("lwdp")

UNDECLARED = "undeclared"  # the manifest's key for what a stage read undeclared
_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "socket.connect", "sqlite3.connect"})
_SYSTEM_ROOTS = ("/dev", "/proc", "/sys", "/etc", "/usr/share")
_MODULE_SUFFIXES = tuple({*all_suffixes(), ".pyc", ".pth"})
_watching = 0  # calls being watched, in any thread: the hook's whole cost when 0
_current = threading.local()
_installed = threading.Lock()
_hooked = False
_warned: set[tuple[str, str]] = set()


@dataclass
class Reads:
    """What one call of a stage's function opened, listed and connected to (absolute paths)."""

    files: dict[str, None] = field(default_factory=dict)  # ordered sets: the first read first
    listings: dict[str, None] = field(default_factory=dict)
    connections: dict[str, None] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)

    def note(self, event: str, args: tuple[Any, ...]) -> None:
        if _imports_this(sys._getframe(2)):
            return
        if event == "socket.connect":
            self.connections[_address(args[1])] = None
            return
        path = args[0] if args[0] is not None else "."
        if isinstance(path, int) or path in (":memory:", b":memory:", ""):  # an open descriptor, no file
            return
        full = os.path.abspath(os.fsdecode(path))
        if event.startswith("os."):
            self.listings[full] = None
        elif event == "open" and _writes(args[1], args[2]):
            self.written.add(full)
        else:
            self.files[full] = None


def _imports_this(frame: Any) -> bool:
    """Whether the audited call comes from Python's import system (finding or reading a
    module), whatever the stage was doing when it imported."""
    return frame is not None and frame.f_code.co_filename.startswith("<frozen importlib")


def _writes(mode: str | None, flags: int) -> bool:
    if mode is not None:
        return any(letter in mode for letter in "wax+")
    return flags & os.O_ACCMODE != os.O_RDONLY


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return os.fsdecode(address) if isinstance(address, (str, bytes)) else repr(address)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _watching and event in _EVENTS:
        reads = getattr(_current, "reads", None)
        if reads is not None:
            _current.reads = None  # what the note itself does is not the stage's
            try:
                reads.note(event, args)
            finally:
                _current.reads = reads


def _install() -> None:
    global _hooked
    with _installed:
        if not _hooked:
            sys.addaudithook(_hook)
            _hooked = True


@contextmanager
def watched(settings: Settings) -> Iterator[Reads | None]:
    """Note what this thread reads while the block runs (None with "ignore")."""
    global _watching
    if settings.undeclared_inputs == "ignore":
        yield None
        return
    _install()
    reads = Reads()
    outer = getattr(_current, "reads", None)  # a stage calling another's function: the inner one's own
    _current.reads = reads
    _watching += 1
    try:
        yield reads
    finally:
        _watching -= 1
        _current.reads = outer


def suspend_watching() -> Reads | None:
    """Stop noting this thread's reads (lwdp's own work, such as a stage called inside a
    stage: hashing it reads raw files); `resume_watching` with what this returns."""
    reads = getattr(_current, "reads", None)
    _current.reads = None
    return reads


def resume_watching(reads: Reads | None) -> None:
    _current.reads = reads


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

    def tracked_rows(self, memos: MemoStore) -> list[InputRow]:
        """The files and listings as tracked inputs, with their digests now."""
        rows = [tracked_row(TRACKED_FILE, path, "") for path in self.files]
        rows += [tracked_row(TRACKED_LISTING, path, "") for path in self.listings]
        now = current_digests(rows, memos)
        return [tracked_row(kind, path, now[kind, path]) for _, kind, _, path in rows if path is not None]


def undeclared(stage: StageNode, reads: Reads, settings: Settings) -> Undeclared:
    """What of ``reads`` is not data the stage declared, nor anything else set aside."""
    import tempfile  # here: a warm run computes nothing, and doesn't import it

    declared_files, declared_roots = _declared(stage)
    skipped = (*_not_data(), str(settings.cache_dir), *_local_store(settings.store_url))
    temporary = tempfile.gettempdir()
    here = os.getcwd()

    def counts(path: str, file: bool) -> bool:
        if path in declared_files or path in reads.written or _under(path, (*skipped, *declared_roots)):
            return False
        if _under(path, (temporary,)) and not _under(path, (here,)):
            return False
        return not (file and path.endswith(_MODULE_SUFFIXES))

    return Undeclared(
        tuple(shown_path(path) for path in reads.files if counts(path, file=True)),
        tuple(shown_path(path) for path in reads.listings if counts(path, file=False)),
        tuple(reads.connections),
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
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def judge(stage: StageNode, found: Undeclared, settings: Settings) -> None:
    """Act on what a call read undeclared: an error (mode "error"), else one warning per
    stage and path (files and listings in mode "warn"; connections in every mode).

    :raises UndeclaredInputError: mode "error" and the stage read a file or listed a directory.
    """
    mode = settings.undeclared_inputs
    if mode == "error" and (found.files or found.listings):
        what = [f"read {path}" for path in found.files] + [f"listed {path}" for path in found.listings]
        raise UndeclaredInputError(
            f"stage '{stage.name}' {', '.join(what)}, which {'is' if len(what) == 1 else 'are'} not among its inputs: "
            f"nothing was cached for it. Bind {'it' if len(what) == 1 else 'each'} as an input "
            f"(@stage({_keyword((found.files or found.listings)[0])}=\"{(found.files or found.listings)[0]}\")), "
            "or let lwdp track what it reads: lwdp.configure(undeclared_inputs=\"track\")"
        )
    if mode == "warn":
        for path in found.files:
            _warn_once(stage, path, f"read {path}, which is not one of its inputs: a change to it will not rerun the stage")
        for path in found.listings:
            _warn_once(
                stage, path,
                f"listed {path}, which is not one of its inputs: a file added to it or removed will not rerun the stage",
                keyword_for=path,
            )
    for address in found.connections:
        if _warn_once_key(stage, f"connect {address}"):
            logger.warning(
                "stage %s connected to %s: its result may change while its inputs don't, and lwdp would serve "
                "the cached one. Make it cache=False (it then runs at every call), or bind what it fetches as an "
                "input (a URL, or a parameter such as the date), or evict its results by age (lwdp gc --max-age)",
                stage.name, address,
            )


def _warn_once(stage: StageNode, path: str, what: str, keyword_for: str | None = None) -> None:
    if _warn_once_key(stage, path):
        logger.warning(
            "stage %s %s. Bind it (@stage(%s=\"%s\")) or let lwdp track it (lwdp.configure(undeclared_inputs=\"track\"))",
            stage.name, what, _keyword(keyword_for or path), path,
        )


def _warn_once_key(stage: StageNode, key: str) -> bool:
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
) -> tuple[list[InputRow], dict[str, Any], list[InputRow] | None]:
    """(input rows, manifest, tracked rows to record) a computed result is saved with: in
    "track" mode its tracked reads are what the call read, with their digests now, in
    place of those its hash assumed (None: nothing to record)."""
    tracked = None
    if settings.undeclared_inputs == "track":
        tracked = found.tracked_rows(memos)
        assumed = [row for row in rows if row[1] in TRACKED_KINDS]
        rows = [row for row in rows if row[1] not in TRACKED_KINDS] + tracked
        manifest = stage_manifest(stage, rows)
        if not tracked and not assumed:
            tracked = None
        found = Undeclared(connections=found.connections)  # the files are inputs now
    if found:
        manifest = {**manifest, UNDECLARED: found.manifest_entry()}
    return rows, manifest, tracked
