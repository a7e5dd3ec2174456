"""Eviction policies replayed on weeks of a pipeline's life (issue 17): how many seconds of
recomputation LRU and the cost-aware policy (`lwdp.store.eviction`) cause at each budget.

    python benchmarks/eviction.py                    # 8 traces of 8 weeks, 5 budgets
    python benchmarks/eviction.py --traces 2 --plot results-eviction.png

The pipeline is the benchmark DAG's shape with a parameter sweep after it: 25 clean
stages (5 MB, 0.3 s each), their merge (120 MB, 1 s), daily aggregates (0.5 MB, 3 s), a
product join (80 MB, 2 s), derived columns (60 MB, 0.5 s), the final report (1 MB,
1.5 s), and a model fitted for each of 6 parameter values (0.2 MB, 60 s each) with a
report per fit (0.05 MB, 0.5 s). Each day the final report is run three times; five raw
files change daily, ten weekly, ten monthly; one run in ten edits a stage's code (a
third of edits are reverted a few days later); twice a day a few fits are asked for,
old values as often as new ones. A run loads what is cached, as lwdp does (a cached
stage's ancestors are not needed), and after each run the cache is brought under its
budget, never evicting what that run used. Recomputation counts the seconds spent on
results that had been computed before and were evicted. The working set is the size of
one complete evaluation (every stage, every fit); budgets are fractions of it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lwdp.store.eviction import POLICIES, Candidate, Policy, eviction_order, recompute_seconds  # noqa: E402

MB = 1_000_000
FILES = 25
PARAMS = 6
# stage: (size in bytes, compute seconds, upstream stages)
STAGES: dict[str, tuple[int, float, tuple[str, ...]]] = {
    **{f"clean_{i:02d}": (5 * MB, 0.3, ()) for i in range(FILES)},
    "merge": (120 * MB, 1.0, tuple(f"clean_{i:02d}" for i in range(FILES))),
    "daily": (MB // 2, 3.0, ("merge",)),
    "product_join": (80 * MB, 2.0, ("merge",)),
    "derived": (60 * MB, 0.5, ("merge",)),
    "final": (1 * MB, 1.5, ("daily", "product_join", "derived")),
    **{f"model_{p}": (MB // 5, 60.0, ("derived",)) for p in range(PARAMS)},
    **{f"report_{p}": (MB // 20, 0.5, (f"model_{p}",)) for p in range(PARAMS)},
}
EDITABLE = ("daily", "product_join", "derived", "final", *(f"model_{p}" for p in range(PARAMS)))
WORKING_SET = sum(size for size, _, _ in STAGES.values())
BUDGETS = (1 / 6, 1 / 3, 1 / 2, 2 / 3, 1.0)


@dataclass
class Artifact:
    stage: str
    size: int
    seconds: float
    hits: int
    last_access: dt.datetime


@dataclass
class Cache:
    """A cache replayed under one policy and budget: what it holds and what it cost."""

    policy: Policy
    budget: int
    held: dict[str, Artifact] = field(default_factory=dict)
    computed: set[str] = field(default_factory=set)  # every hash ever computed
    inputs: dict[str, list[str]] = field(default_factory=dict)  # lineage: hash -> upstream hashes
    recompute: float = 0.0

    def evaluate(self, stage: str, versions: dict[str, int], raw: list[int], now: dt.datetime, touched: set[str]) -> str:
        """The hash of ``stage``, loaded or computed (its upstreams first, when computed)."""
        stage_hash = self.hash_of(stage, versions, raw)
        if stage_hash in self.held:
            found = self.held[stage_hash]
            found.hits += 1
            found.last_access = now
        else:
            size, seconds, upstreams = STAGES[stage]
            self.inputs[stage_hash] = [self.evaluate(up, versions, raw, now, touched) for up in upstreams]
            if stage_hash in self.computed:
                self.recompute += seconds
            self.computed.add(stage_hash)
            self.held[stage_hash] = Artifact(stage, size, seconds, 0, now)
        touched.add(stage_hash)
        return stage_hash

    @staticmethod
    def hash_of(stage: str, versions: dict[str, int], raw: list[int]) -> str:
        _, _, upstreams = STAGES[stage]
        if stage.startswith("clean_"):
            parts = [f"raw{raw[int(stage[-2:])]}"]
        else:
            parts = [Cache.hash_of(up, versions, raw) for up in upstreams]
        return f"{stage}@{versions.get(stage, 0)}({','.join(parts)})"

    def enforce(self, now: dt.datetime, touched: set[str]) -> None:
        """Evict by the policy until the cache fits, never what the last run touched."""
        excess = sum(a.size for a in self.held.values()) - self.budget
        if excess <= 0:
            return
        own = {h: a.seconds for h, a in self.held.items()}
        stage_of = {h: h.split("@", 1)[0] for h in self.computed}
        typical = {stage: seconds for stage, (_, seconds, _) in STAGES.items()}
        costs = recompute_seconds(own, self.inputs, stage_of, typical)
        candidates = [
            Candidate(h, a.stage, "parquet", a.size, a.hits, a.last_access, costs[h])
            for h, a in self.held.items() if h not in touched
        ]
        for victim in eviction_order(candidates, self.policy, now):
            del self.held[victim.hash]
            excess -= victim.size
            if excess <= 0:
                return


def replay(seed: int, weeks: int, caches: list[Cache]) -> None:
    """One trace, replayed on every cache at once (the same runs, in the same order)."""
    rng = random.Random(seed)
    versions: dict[str, int] = {}
    raw = [0] * FILES
    pending_reverts: list[tuple[int, str, int]] = []  # (day, stage, version to go back to)
    start = dt.datetime(2026, 1, 5, 8)
    for day in range(weeks * 7):
        for i in range(FILES):
            rate = 1 if i < 5 else 7 if i < 15 else 30
            if day % rate == 0 and day:
                raw[i] += 1
        for when, stage, version in [r for r in pending_reverts if r[0] == day]:
            versions[stage] = version
            pending_reverts.remove((when, stage, version))
        runs = [["final"]] * 3 + [[f"report_{p}" for p in rng.sample(range(PARAMS), rng.randint(1, 3))] for _ in range(2)]
        rng.shuffle(runs)
        for run_no, targets in enumerate(runs):
            if rng.random() < 0.1:
                stage = rng.choice(EDITABLE)
                before = versions.get(stage, 0)
                versions[stage] = max(versions.values(), default=0) + 1
                if rng.random() < 1 / 3:
                    pending_reverts.append((day + rng.randint(1, 5), stage, before))
            now = start + dt.timedelta(days=day, hours=2 * run_no)
            for cache in caches:
                touched: set[str] = set()
                for target in targets:
                    cache.evaluate(target, versions, raw, now, touched)
                cache.enforce(now, touched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=8)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--plot", help="write the curve to this PNG (needs matplotlib)")
    args = parser.parse_args()
    seconds: dict[tuple[Policy, float], list[float]] = {(p, b): [] for p in POLICIES for b in BUDGETS}
    for seed in range(args.traces):
        caches = {(p, b): Cache(p, int(b * WORKING_SET)) for p in POLICIES for b in BUDGETS}
        replay(seed, args.weeks, list(caches.values()))
        for key, cache in caches.items():
            seconds[key].append(cache.recompute)
    print(f"working set {WORKING_SET / MB:.0f} MB; recompute seconds caused by eviction, median of {args.traces} traces "
          f"of {args.weeks} weeks\n")
    print("| budget | LRU | cost-aware | cost / LRU |")
    print("| --- | --- | --- | --- |")
    medians = {key: statistics.median(values) for key, values in seconds.items()}
    for b in BUDGETS:
        lru, cost = medians["lru", b], medians["cost", b]
        print(f"| {b:.2f} of the working set ({b * WORKING_SET / MB:.0f} MB) | {lru:,.0f} s | {cost:,.0f} s | "
              f"{cost / lru if lru else float('nan'):.2f}× |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for policy, label in (("lru", "LRU"), ("cost", "cost-aware (GDSF)")):
            ax.plot([b * 100 for b in BUDGETS], [medians[policy, b] for b in BUDGETS], marker="o", label=label)
        ax.set_xlabel("budget, % of the working set")
        ax.set_ylabel("recompute seconds caused")
        ax.set_title(f"Eviction over {args.weeks} weeks of a pipeline's life")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
