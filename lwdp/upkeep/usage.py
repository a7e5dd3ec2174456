"""What the cache holds, by stage, and what its budget would give up first (``lwdp du``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import cast

from .. import config
from ..errors import InvalidSettingError
from ..store.catalog import open_catalog
from ..store.eviction import POLICIES, Policy
from ..units import human_size


@dataclass(frozen=True)
class StageUsage:
    """One stage's artifacts: how many, their bytes, how often they were loaded, what
    computing them took, and where the first of them stands in the eviction order (1: the
    first to go)."""

    stage: str
    artifacts: int
    bytes: int
    hits: int
    compute_seconds: float
    evicted_from: int


class Usage(list[StageUsage]):
    """Stages, those the budget gives up first first."""

    policy: Policy = "cost"

    def __repr__(self) -> str:
        width = max([len(u.stage) for u in self] + [5])
        lines = [f"{'STAGE':<{width}} {'ARTIFACTS':>9} {'SIZE':>9} {'HITS':>6} {'COMPUTE':>9}  EVICTED FROM ({self.policy})"]
        lines += [
            f"{u.stage:<{width}} {u.artifacts:>9} {human_size(u.bytes):>9} {u.hits:>6} {u.compute_seconds:>8.1f}s  #{u.evicted_from}"
            for u in self
        ]
        total = sum(u.bytes for u in self)
        lines.append(f"{sum(u.artifacts for u in self)} artifacts, {human_size(total)}")
        return "\n".join(lines)


def du(policy: str = "cost", cache_dir: str | os.PathLike[str] | None = None) -> Usage:
    """The cache's artifacts by stage, ordered by when a budget would first evict one of
    theirs under ``policy`` ("cost" or "lru").

    :raises InvalidSettingError: ``policy`` is neither (a ValueError).
    """
    if policy not in POLICIES:
        raise InvalidSettingError(f"du: policy must be \"lru\" or \"cost\", not {policy!r}")
    chosen = cast(Policy, policy)
    catalog = open_catalog(config.settings(cache_dir))
    order = [row.hash for row, _ in catalog.eviction_victims(None, 0, set(), chosen)]
    rank = {stage_hash: position for position, stage_hash in enumerate(order, start=1)}
    by_stage: dict[str, list[tuple[int, int, int, float]]] = {}
    for record in catalog.all_artifacts():
        by_stage.setdefault(record.stage, []).append((rank.get(record.hash, len(rank) + 1), record.size, record.hits, record.compute_seconds or 0.0))
    usage = Usage(sorted(
        (StageUsage(stage, len(rows), sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows), min(r[0] for r in rows))
         for stage, rows in by_stage.items()),
        key=lambda u: (u.evicted_from, u.stage),
    ))
    usage.policy = chosen
    return usage
