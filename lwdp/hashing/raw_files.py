"""Raw input digests: XXH3-128 of file contents, memoized by file metadata.

A memo entry is keyed by (absolute path, size, mtime_ns, ctime_ns, inode), so a touched
file is re-read (and keeps its digest) and an edit that restores size and mtime still
changes ctime. A memo taken within `RACY_WINDOW_NS` of the file's last change is not
trusted: a second edit inside the filesystem's timestamp granularity could leave every
stat field unchanged (git calls this "racily clean").
"""

from __future__ import annotations

import functools
import glob
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple, Protocol

import xxhash

from ..errors import RawInputChangedError, RawInputNotFoundError, RawInputUnreadableError

RACY_WINDOW_NS = 2_000_000_000  # FAT and SMB keep 2 s timestamps; ext4/xfs/tmpfs a tick
_BUFFER_SIZE = 4 * 1024 * 1024  # one reused buffer: fresh pages cost more than hashing
_buffers = threading.local()
_HASH_THREADS = 2
_PARALLEL_BYTES = 16 * 1024 * 1024  # below this, starting threads costs more than it saves


class FileState(NamedTuple):
    """What `os.stat` says about a file: the memo key. (Tuples: a warm run builds and
    compares one per raw file, and a frozen dataclass costs several times more.)"""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str) -> FileState:
        st = os.stat(path)
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class DigestMemo(NamedTuple):
    """A remembered digest and when it was taken."""

    state: FileState
    digest: str
    digested_at_ns: int

    def is_trusted_for(self, state: FileState) -> bool:
        changed_ns = max(state.mtime_ns, state.ctime_ns)
        return self.state == state and self.digested_at_ns - changed_ns >= RACY_WINDOW_NS


class MemoStore(Protocol):
    """Where memos live (the catalog)."""

    def load_digest_memos(self, paths: list[str]) -> dict[str, DigestMemo]: ...

    def save_digest_memos(self, memos: list[DigestMemo]) -> None: ...


def file_digest(path: str) -> str:
    """XXH3-128 of a file's bytes, read through one reused buffer."""
    return _read_digest(path)[0]


def _read_digest(path: str) -> tuple[str, int]:
    """(XXH3-128 of a file's bytes, how many were read). Reads go into this thread's one
    reused buffer (fresh pages cost more than hashing them), not through mmap: a file
    truncated while mapped would kill the process with SIGBUS."""
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(_BUFFER_SIZE)
    view = memoryview(buf)
    hasher = xxhash.xxh3_128()
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            hasher.update(view[:n])
            total += n
    return hasher.hexdigest(), total


def _state_of(path: str, where: str) -> FileState:
    """`FileState.of` a raw file found a moment ago by listing its directory or glob.

    :raises RawInputNotFoundError: it was removed since.
    """
    try:
        return FileState.of(path)
    except FileNotFoundError as exc:
        raise _vanished(path, where) from exc


def _vanished(path: str, where: str) -> RawInputNotFoundError:
    return RawInputNotFoundError(
        f"{where}: raw input {path} disappeared while lwdp was reading it (something removed or "
        "renamed it); rerun once whatever writes the raw files has finished"
    )


def _raw_file_digest(path: str, state: FileState, where: str) -> str:
    """The digest of a raw file whose size was ``state.size`` a moment ago.

    :raises RawInputNotFoundError: it was removed since.
    :raises RawInputUnreadableError: no permission to read it.
    :raises RawInputChangedError: it grew or shrank while being read.
    """
    try:
        digest, size = _read_digest(path)
    except FileNotFoundError as exc:
        raise _vanished(path, where) from exc
    except PermissionError as exc:
        raise RawInputUnreadableError(f"{where}: cannot read raw input {path} ({exc.strerror}); fix its permissions") from exc
    if size != state.size:
        raise RawInputChangedError(
            f"{where}: raw input {path} changed while lwdp was reading it ({state.size:,} bytes, then "
            f"{size:,}); rerun once whatever writes it has finished"
        )
    return digest


def _has_glob_magic(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def literal_root(pattern: str) -> str:
    """The directory a glob starts from ("raw/2024" for "raw/2024/*.csv").

    Matched files are named relative to it, so the digest is the same wherever the
    project lives, as it is for a directory input.
    """
    parts = Path(pattern).parts
    literal = list(itertools.takewhile(lambda part: not _has_glob_magic(part), parts[:-1]))
    return os.path.join(*literal) if literal else "."


def expand_raw_input(
    raw: str | os.PathLike[str], stage: str, input_name: str, exclude: Path | None = None
) -> dict[str, str]:
    """The files behind a raw input, as {name used in the digest: absolute path}.

    A file maps to itself; a directory to every file below it (following symlinked
    directories), and a glob to every file it matches, named relative to the directory
    (or the glob's literal root). Files under ``exclude`` (the cache directory) never count,
    also reached through a symlink: a cache inside a raw directory would otherwise change
    that input on every run.
    """
    text = os.fspath(raw)
    where = f"stage '{stage}', input '{input_name}'"
    if os.path.isfile(text):
        return {"": os.path.abspath(text)}
    excluded = os.path.realpath(exclude) if exclude is not None else None
    if os.path.isdir(text):
        files = {name: path for name, path in _walk_files(text, excluded) if not is_under(path, exclude)}
        if not files:
            raise RawInputNotFoundError(
                f"{where}: directory {text!r} contains no files (cwd {os.getcwd()}); "
                "add the raw files or fix the path in @stage"
            )
        return dict(sorted(files.items()))
    if _has_glob_magic(text):
        real_folders = functools.lru_cache(maxsize=None)(os.path.realpath)
        matched = sorted(
            p for p in glob.glob(text, recursive=True)
            if os.path.isfile(p) and not is_under(os.path.abspath(p), exclude) and not is_under(real_folders(os.path.dirname(p) or "."), excluded)
        )
        if not matched:
            raise RawInputNotFoundError(
                f"{where}: glob {text!r} matches no file (cwd {os.getcwd()}); "
                "fix the pattern in @stage"
            )
        root = literal_root(text)
        return {Path(os.path.relpath(p, root)).as_posix(): os.path.abspath(p) for p in matched}
    raise RawInputNotFoundError(
        f"{where}: raw input {text!r} not found (cwd {os.getcwd()}); fix the path in @stage"
    )


def is_file_set(raw: str | os.PathLike[str]) -> bool:
    """Whether a raw input names a set of files (a glob, or a directory), not one file."""
    text = os.fspath(raw)
    return _has_glob_magic(text) or os.path.isdir(text)


def file_set_members(raw: str | os.PathLike[str], stage: str, input_name: str, exclude: Path | None = None) -> dict[str, str]:
    """Each file of a glob or directory input, in sorted order: {its path under the input's
    root as written ("raw/orders/2024-05.csv" for "raw/orders/*.csv"): its name in the set
    ("2024-05.csv"), as the input's digest names it}.

    :raises RawInputNotFoundError: it matches no file (as `expand_raw_input` does).
    """
    text = os.fspath(raw)
    root = text if os.path.isdir(text) else literal_root(text)
    return dict(sorted((Path(root, name).as_posix(), name) for name in expand_raw_input(text, stage, input_name, exclude)))


def _walk_files(top: str, excluded: str | None) -> list[tuple[str, str]]:
    """(name relative to ``top``, absolute path) of every file below it; a symlinked
    directory is followed once (a link back up the tree is not followed again), and none
    whose real path is under ``excluded``."""
    found = []
    visited: set[str] = set()
    for root, dirs, names in os.walk(top, followlinks=True):
        real = os.path.realpath(root)
        if real in visited or is_under(real, excluded):
            dirs[:] = []
            continue
        visited.add(real)
        for name in names:
            path = os.path.join(root, name)
            found.append((Path(os.path.relpath(path, top)).as_posix(), os.path.abspath(path)))
    return found


def is_under(path: str, directory: str | Path | None) -> bool:
    """Whether the absolute ``path`` is ``directory`` or lies below it."""
    return directory is not None and (path + os.sep).startswith(str(directory).rstrip(os.sep) + os.sep)


def combine_set_digest(file_digests: Mapping[str, str]) -> str:
    """One digest for a raw input: the file's own, or one over every (name, digest) of a set."""
    if list(file_digests) == [""]:
        return file_digests[""]
    hasher = xxhash.xxh3_128(b"lwdp-raw-set-v1\0")
    for name, digest in file_digests.items():
        hasher.update(f"{name}\0{digest}\n".encode())
    return hasher.hexdigest()


def digest_files(paths: Iterable[str], memos: MemoStore, where: Mapping[str, str], recheck: bool = False) -> dict[str, str]:
    """Digest of every absolute path, re-reading only files whose memo can't be trusted.

    ``where`` names, per path, the stage and input it belongs to, for error messages.
    ``recheck``: the run's own hashing took the memos moments ago; a file still in the
    state one was taken at is taken as is, even within the racy window.
    """
    unique = list(dict.fromkeys(paths))
    states = {p: _state_of(p, where[p]) for p in unique}
    known = memos.load_digest_memos(unique)
    digests: dict[str, str] = {}
    stale: list[str] = []
    for path, state in states.items():
        memo = known.get(path)
        if memo is not None and (memo.state == state if recheck else memo.is_trusted_for(state)):
            digests[path] = memo.digest
        else:
            stale.append(path)
    if not stale:
        return digests
    started_ns = time.time_ns()
    total = sum(states[path].size for path in stale)
    read = _in_parallel(lambda path: _raw_file_digest(path, states[path], where[path]), stale, total)
    digests.update(zip(stale, read))
    memos.save_digest_memos([DigestMemo(states[path], digests[path], started_ns) for path in stale])
    return digests


def _in_parallel(digest: Callable[[str], str], paths: list[str], total_bytes: int) -> list[str]:
    """Digests of ``paths``, on two threads when there are several (xxhash and reads release
    the GIL: ~22 GB/s from the page cache against ~17 on one)."""
    if len(paths) < 2 or total_bytes < _PARALLEL_BYTES:
        return [digest(path) for path in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=_HASH_THREADS, thread_name_prefix="lwdp-hash") as pool:
        return list(pool.map(digest, paths))
