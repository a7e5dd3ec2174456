"""Runs every runner through every scenario in fresh processes, checking each result.

A round is: cold (empty caches), warm, incremental (one CSV rewritten with new contents),
code edit (a new constant in the `derived` stage), then the tiny chain. Within a round
the runners take turns in an order rotated each round, so machine noise hits them alike;
plain pandas is the baseline of each round and the reference every other runner's final
result must equal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import workload

RUNNERS = ("plain", "lwdp", "joblib", "hamilton")
SCENARIOS = ("cold", "warm", "incremental", "code edit")
OVERHEADS = ("same process", "fresh process")


class MismatchError(AssertionError):
    """A runner's final result differs from plain pandas' (or a scenario changed nothing)."""


@dataclass
class Results:
    """Raw measurements, one value per round; keys are (scenario or overhead, runner)."""

    seconds: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    ratios: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    cache_mib: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    per_stage_ms: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    checks: int = 0  # final results found equal to plain pandas'


def runner_env() -> dict[str, str]:
    """This environment without lwdp settings, so caches go where the suite says."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}


def disk_mib(path: Path) -> float:
    """Disk usage of a directory tree, as `du` counts it, in MiB."""
    blocks = 0
    for folder, _, files in os.walk(path):
        blocks += os.lstat(folder).st_blocks
        blocks += sum(os.lstat(os.path.join(folder, name)).st_blocks for name in files)
    return blocks * 512 / 2**20


class Bench:
    """One work directory and the runners being compared in it."""

    def __init__(self, root: Path, runners: tuple[str, ...], files: int, rows: int) -> None:
        self.root, self.runners, self.files, self.rows = root, runners, files, rows
        self.cached = tuple(r for r in runners if r != "plain")
        self.env = runner_env()
        self.results = Results()
        self.reference: pd.DataFrame | None = None

    def _run(self, script: str, *args: str) -> float:
        """Wall time of one fresh process running a pipeline script, imports included."""
        started = time.perf_counter()
        done = subprocess.run([sys.executable, f"pipeline/{script}", *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{script} failed with exit code {done.returncode}:\n{done.stderr[-3000:]}")
        return elapsed

    def _cache(self, runner: str, kind: str = "dag") -> Path:
        return self.root / f"cache-{kind}" / runner

    def _output(self, runner: str) -> Path:
        return self.root / "out" / f"{runner}.pkl"

    def scenario(self, name: str, order: tuple[str, ...], round_no: int) -> None:
        """Run every runner once in the current state and check their results. Plain
        pandas caches nothing, so its warm run would repeat its cold one: that one stands."""
        seconds = {}
        for runner in order:
            if name == "cold":
                shutil.rmtree(self._cache(runner), ignore_errors=True)
            if name == "warm" and runner == "plain":
                seconds[runner] = self.results.seconds["cold", "plain"][-1]
                continue
            seconds[runner] = self._run(f"{runner}_dag.py", str(self._cache(runner)), str(self._output(runner)))
        for runner, value in seconds.items():
            self.results.seconds[name, runner].append(value)
            self.results.ratios[name, runner].append(value / seconds["plain"])
        for runner in self.cached:
            self.results.cache_mib[name, runner].append(disk_mib(self._cache(runner)))
        self._check(name, round_no)

    def _check(self, scenario: str, round_no: int) -> None:
        expected = pd.read_pickle(self._output("plain"))
        where = f"in the {scenario} scenario, round {round_no + 1}"
        if scenario in ("incremental", "code edit") and self.reference is not None and expected.equals(self.reference):
            raise MismatchError(f"plain pandas' result did not change {where}: the scenario made no real change")
        self.reference = expected
        for runner in self.cached:
            try:
                pd.testing.assert_frame_equal(pd.read_pickle(self._output(runner)), expected, check_exact=True)
            except AssertionError as exc:
                raise MismatchError(f"{runner}'s final result differs from plain pandas' {where}:\n{exc}") from None
            self.results.checks += 1

    def warm_chains(self) -> None:
        """Run each chain once so every later chain run is warm."""
        for runner in self.cached:
            shutil.rmtree(self._cache(runner, "chain"), ignore_errors=True)
            self._run(f"{runner}_chain.py", str(self._cache(runner, "chain")), str(self.root / "out" / "chain.json"))

    def chains(self, order: tuple[str, ...]) -> None:
        """Per-stage warm overhead of each runner on the tiny chain, both ways: (warm run
        time - reading the one result it needs) / chain length."""
        timings = {}
        for runner in order:
            if runner == "plain":
                continue
            out = self.root / "out" / f"chain-{runner}.json"
            self._run(f"{runner}_chain.py", str(self._cache(runner, "chain")), str(out))
            timings[runner] = json.loads(out.read_text())
        specs = {runner: f"{t['reader']}={t['artifact']}" for runner, t in timings.items()}
        reads_out = self.root / "out" / "reads.json"
        self._run("read_artifacts.py", str(reads_out), *specs.values())
        reads = json.loads(reads_out.read_text())
        for runner, timing in timings.items():
            read = reads[specs[runner]]
            for overhead, key in zip(OVERHEADS, ("same", "fresh")):
                ms = (timing[key] - read[key]) / timing["stages"] * 1000
                self.results.per_stage_ms[overhead, runner].append(ms)


def run_rounds(bench: Bench, rounds: int, progress: Callable[[str], None]) -> Results:
    """All rounds of all scenarios; each round must leave plain pandas with a new result
    after the incremental and the code-edit step."""
    (bench.root / "out").mkdir(exist_ok=True)
    bench.warm_chains()
    for round_no in range(rounds):
        shift = round_no % len(bench.runners)
        order = bench.runners[shift:] + bench.runners[:shift]
        for name in SCENARIOS:
            if name == "incremental":
                workload.write_orders(bench.root, round_no % bench.files, bench.rows, variant=round_no + 1)
            elif name == "code edit":
                workload.edit_code(bench.root, variant=round_no + 1)
            progress(f"round {round_no + 1}/{rounds}: {name}")
            bench.scenario(name, order, round_no)
        progress(f"round {round_no + 1}/{rounds}: tiny chain")
        bench.chains(order)
    return bench.results
