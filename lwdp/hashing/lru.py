"""A cache that forgets its least recently used entries beyond a size: code digests are
kept per function and per file, and a long notebook session makes new ones with every
cell it runs again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

CODE_CACHE_SIZE = 4096  # functions: far more than a pipeline has, a bound for a day of notebook cells
K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``size`` entries; thread-safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)
