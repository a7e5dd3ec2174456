"""Watching what a stage's own code reads: an audit hook (PEP 578) that notes the files its
thread opens (SQLite databases too), the directories it lists and the network
connections it makes, while the stage's function runs (`lwdp.run.undeclared` sorts out
what of it is data and acts on it).

An audit hook can't be removed: it is added at the first watched call, and outside one it
costs the test of one global (benchmarks/RESULTS.md has the figures). What the import
system does (finding and reading modules, and what a module does while it is imported)
is not the stage's: an event with an importlib frame anywhere on its stack is ignored.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "socket.connect", "sqlite3.connect"})
_watching = 0  # calls being watched, in any thread: the hook's whole cost when 0
_count_lock = threading.Lock()
_current = threading.local()
_hooked = False


@dataclass
class Reads:
    """What one call of a stage's function opened, listed and connected to (absolute
    paths, made so when the event happened; ``cwd``: where the call started)."""

    cwd: str = field(default_factory=os.getcwd)
    caller: Any = None  # the frame that called the stage: what is above it is not the stage's
    files: dict[str, None] = field(default_factory=dict)  # ordered sets: the first read first
    listings: dict[str, None] = field(default_factory=dict)
    connections: dict[tuple[str, Any], None] = field(default_factory=dict)  # (host, port), or (path, None)
    written: set[str] = field(default_factory=set)

    def note(self, event: str, args: tuple[Any, ...]) -> None:
        if _importing(sys._getframe(2), self.caller):
            return
        if event == "socket.connect":
            address = args[1]
            host, port = (address[0], address[1]) if isinstance(address, tuple) and len(address) >= 2 else (address, None)
            self.connections[os.fsdecode(host) if isinstance(host, bytes) else str(host), port] = None
            return
        path = args[0] if args[0] is not None else "."
        if isinstance(path, int) or path in (":memory:", b":memory:", ""):  # an open descriptor; no file
            return
        full = os.path.abspath(os.fsdecode(path))
        if event.startswith("os."):
            self.listings[full] = None
        elif event == "open" and _writes(args[1], args[2]):
            self.written.add(full)
        else:
            self.files[full] = None


def _importing(frame: Any, caller: Any) -> bool:
    """Whether Python's import system is on the stack below the stage's caller: finding or
    reading a module, or a module's own code running as it is imported (a font cache a
    plotting library reads)."""
    while frame is not None and frame is not caller:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _writes(mode: str | None, flags: int) -> bool:
    if mode is not None:
        return any(letter in mode for letter in "wax+")
    return flags & os.O_ACCMODE != os.O_RDONLY


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _watching and event in _EVENTS:
        reads = getattr(_current, "reads", None)
        if reads is not None:
            _current.reads = None  # what noting does is not the stage's
            try:
                reads.note(event, args)
            finally:
                _current.reads = reads


def _count(step: int) -> None:
    global _watching, _hooked
    with _count_lock:
        if not _hooked:
            sys.addaudithook(_hook)
            _hooked = True
        _watching += step


class Watch:
    """``with Watch(True) as reads:`` notes what this thread reads in the block (``reads``
    is None when not watching). A class, not a generator: entering it knows its caller's
    frame, where the stage's own stack begins."""

    def __init__(self, watch: bool) -> None:
        self.reads = Reads() if watch else None
        self.outer: Reads | None = None

    def __enter__(self) -> Reads | None:
        if self.reads is not None:
            self.reads.caller = sys._getframe(1)
            self.outer = suspend_watching()  # a stage calling another's function: the inner one's own
            _current.reads = self.reads
            _count(1)
        return self.reads

    def __exit__(self, *exc: object) -> None:
        if self.reads is not None:
            _count(-1)
            _current.reads = self.outer
            self.reads.caller = None  # frames are not kept alive


def suspend_watching() -> Reads | None:
    """Stop noting this thread's reads (lwdp's own work, such as a stage called inside a
    stage: hashing it reads raw files); `resume_watching` with what this returns."""
    reads = getattr(_current, "reads", None)
    _current.reads = None
    return reads


def resume_watching(reads: Reads | None) -> None:
    _current.reads = reads
