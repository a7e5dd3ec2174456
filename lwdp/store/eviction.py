"""Which artifacts go first when a cache is over its budget: the least recently used
("lru"), or those that cost least to have again per byte kept ("cost").

The cost policy is GreedyDual-Size-Frequency (Cherkasova, 1998), the classic answer for
caches of objects of very different sizes and costs, with the inflation clock GDSF keeps
in memory replaced by the time since the last use, which a catalog has:

    keep value = (1 + hits) x recompute seconds / bytes x 2 ^ (-idle / half-life)

``hits``: how often the artifact was loaded; ``recompute seconds``: its own compute
time plus that of the ancestors that would have to run again for it (those whose
artifacts are gone or were never cached); ``idle``: time since its last use, halving the
value every `HALF_LIFE`, a day (a result unused for days is worth little however costly:
an edit has usually made it unreachable). The lowest value goes first. An artifact without
a recorded compute time counts a millisecond. benchmarks/eviction.py measures the policy
against LRU, and how little the half-life changes at tight budgets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Policy = Literal["lru", "cost"]
POLICIES: tuple[Policy, ...] = ("lru", "cost")
HALF_LIFE = dt.timedelta(days=1)
_LEAST_SECONDS = 0.001


@dataclass(frozen=True)
class Candidate:
    """An artifact as eviction weighs it."""

    hash: str
    stage: str
    format: str
    size: int
    hits: int
    last_access: dt.datetime  # naive UTC, as the catalog keeps it
    recompute_seconds: float

    def keep_value(self, now: dt.datetime) -> float:
        """What keeping it is worth per byte (the cost policy's score; higher stays longer)."""
        idle = max((now - self.last_access).total_seconds(), 0.0)
        decay = 0.5 ** (idle / HALF_LIFE.total_seconds())
        return (1 + self.hits) * max(self.recompute_seconds, _LEAST_SECONDS) / max(self.size, 1) * decay


def eviction_order(candidates: Iterable[Candidate], policy: Policy, now: dt.datetime) -> list[Candidate]:
    """``candidates``, the first to evict first."""
    if policy == "lru":
        return sorted(candidates, key=lambda c: (c.last_access, c.hash))
    return sorted(candidates, key=lambda c: (c.keep_value(now), c.last_access, c.hash))


def recompute_seconds(
    own: dict[str, float | None], inputs: dict[str, list[str]], stage_of: dict[str, str], typical: dict[str, float],
) -> dict[str, float]:
    """{hash: seconds to have it again} of every artifact in ``own`` (its compute seconds,
    None when unknown): its own time, plus, for each upstream hash (``inputs``) that has no
    artifact, that upstream's time in turn, estimated by its stage's typical time
    (``typical``, by ``stage_of``) when it has no artifact to say."""
    memo: dict[str, float] = {}
    for start in own:
        stack, entered = [start], set()
        while stack:  # a loop, not recursion: a chain may be longer than Python's stack
            stage_hash = stack[-1]
            missing = [up for up in inputs.get(stage_hash, []) if up not in own and up not in memo and up not in entered]
            if stage_hash not in entered and missing:
                entered.add(stage_hash)  # a damaged catalog's loop is cut here, never followed twice
                stack += missing
                continue
            stack.pop()
            seconds = own[stage_hash] if stage_hash in own else typical.get(stage_of.get(stage_hash, ""))
            memo[stage_hash] = (seconds or 0.0) + sum(memo.get(up, 0.0) for up in inputs.get(stage_hash, []) if up not in own)
    return {stage_hash: memo[stage_hash] for stage_hash in own}
