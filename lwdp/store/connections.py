"""What this process holds open for lwdp: catalog engines and connections, shared-store
clients, and which once-per-process warnings were given. Each module that keeps such a
registry registers how to empty it, so one call releases them all without importing
what this process never loaded."""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable

_closers: list[Callable[[], None]] = []


def on_close(closer: Callable[[], None]) -> Callable[[], None]:
    """Register ``closer`` (a registry's emptying) to run on `close`; usable as a decorator."""
    _closers.append(closer)
    return closer


def close() -> None:
    """Close every catalog connection and shared-store client this process holds, and
    forget which once-per-process warnings were given; each is made again when next
    needed (a notebook releasing its files, a test that must not leak into the next)."""
    for closer in _closers:
        closer()


def on_fork(forget: Callable[[], None]) -> Callable[[], None]:
    """Register ``forget`` to empty a registry in a forked child, which must not use (nor
    close) what its parent opened; usable as a decorator."""
    os.register_at_fork(after_in_child=forget)
    return forget


# At exit too: closing the last connection to a SQLite catalog checkpoints its write-ahead
# log into the file and removes it, so a finished run leaves the catalog whole in one file.
atexit.register(close)
