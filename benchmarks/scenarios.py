"""Runs every runner through every scenario in fresh processes, checking each result.

A round is: cold (empty caches), warm, incremental (one CSV rewritten with new contents),
code edit (a new constant in the `derived` stage), then the tiny chain: its per-stage warm
overhead, and its start-up (a first run in a new cache directory, a warm call in a fresh
process). Every process runs with bytecode caching on, as on users' machines. Within a round
the runners take turns in an order rotated each round, so machine noise hits them alike;
plain pandas is the baseline of each round and the reference every other runner's final
result must equal.
"""

from __future__ import annotations

import argparse
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
STARTUPS = ("first run in a new cache directory", "warm call in a fresh process")
# How each start-up is seen: the call, clocked inside the process after `import pandas` and
# `import <library>`; the whole process beyond plain pandas' with that library imported;
# the whole process, imports included.
START_VIEWS = ("call", "beyond", "process")


class MismatchError(AssertionError):
    """A runner's final result differs from plain pandas' (or a scenario changed nothing)."""


@dataclass
class Results:
    """Raw measurements, one value per round; keys are (scenario or overhead, runner)."""

    seconds: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    ratios: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    cache_mib: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    per_stage_ms: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    startup_s: dict[tuple[str, str, str], list[float]] = field(default_factory=lambda: defaultdict(list))  # (startup, view, runner)
    checks: int = 0  # final results found equal to plain pandas'


def runner_env() -> dict[str, str]:
    """This environment without lwdp settings, so caches go where the suite says, and
    without PYTHONDONTWRITEBYTECODE: these machines set it, users don't, and a process
    that recompiles every module it imports pays ~15-20 ms more for lwdp's alone."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LWDP_") and k != "PYTHONDONTWRITEBYTECODE"}


def run_timed(root: Path, script: str, cache: Path, out: Path, **settings: str) -> tuple[float, str]:
    """(wall seconds, stderr) of ``python pipeline/SCRIPT CACHE OUT`` in a fresh process in
    the work directory ``root``, with lwdp ``settings`` as environment variables.

    :raises RuntimeError: the script failed (the end of its stderr says how).
    """
    started = time.perf_counter()
    done = subprocess.run([sys.executable, f"pipeline/{script}", str(cache), str(out)], cwd=root,
                          env={**runner_env(), **settings}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stderr


def dag_arguments(description: str) -> argparse.Namespace:
    """``--rounds`` (5), ``--files`` (25) and ``--rows`` (100,000) of a DAG benchmark."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=25)
    parser.add_argument("--rows", type=int, default=100_000)
    return parser.parse_args()


def disk_mib(path: Path) -> float:
    """Disk usage of a directory tree, as `du` counts it (a file with several names, hard
    links, once), in MiB."""
    seen: dict[tuple[int, int], int] = {}
    for folder, _, files in os.walk(path):
        for found in (os.lstat(folder), *(os.lstat(os.path.join(folder, name)) for name in files)):
            seen[found.st_dev, found.st_ino] = found.st_blocks
    return sum(seen.values()) * 512 / 2**20


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

    def startup(self, order: tuple[str, ...], round_no: int, repeats: int, prime: bool) -> None:
        """The tiny chain's start-up, `repeats` times (each in a rotated order), after an
        untimed pass if `prime`: this round's code edit deleted the scripts' bytecode."""
        if prime:
            self._startup_pass(order, None)
        for repeat in range(repeats):
            self._startup_pass(order[repeat % len(order):] + order[:repeat % len(order)], round_no)

    def _startup_pass(self, order: tuple[str, ...], round_no: int | None) -> None:
        """Plain pandas with each library imported (the baseline), then each runner's first
        run in an empty cache directory, then its warm call; every result checked. A pass
        with no `round_no` records nothing."""
        base = {runner: self._start("plain" if runner == "plain" else f"plain+{runner}", None)[0] for runner in order}
        for measure in STARTUPS:
            runs = {}
            for runner in order:
                cache = self._cache(runner, "start")
                if measure == STARTUPS[0]:
                    shutil.rmtree(cache, ignore_errors=True)
                runs[runner] = self._start(runner, cache)
            self._check_startup(measure, {r: info for r, (_, info) in runs.items()}, round_no)
            if round_no is None:
                continue
            for runner, (wall, info) in runs.items():
                self.results.startup_s[measure, "call", runner].append(info["seconds"])
                self.results.startup_s[measure, "process", runner].append(wall)
                if runner != "plain":
                    self.results.startup_s[measure, "beyond", runner].append(wall - base[runner])

    def _start(self, spec: str, cache: Path | None) -> tuple[float, dict]:
        """Whole-process wall time of `chain_start.py` and what it reported."""
        out = self.root / "out" / f"start-{spec}.pkl"
        wall = self._run("chain_start.py", spec, str(cache or self._cache("plain", "start")), str(out))
        return wall, json.loads(Path(f"{out}.json").read_text())

    def _check_startup(self, measure: str, infos: dict[str, dict], round_no: int | None) -> None:
        """Each runner's result equals plain pandas' (`_start` left them in out/); lwdp's
        first run computed all 25 stages and its warm call none."""
        where = f"in the start-up measure '{measure}'" + ("" if round_no is None else f", round {round_no + 1}")
        expected = pd.read_pickle(self.root / "out" / "start-plain.pkl")
        for runner in self.runners:
            if runner == "plain":
                continue
            try:
                pd.testing.assert_frame_equal(pd.read_pickle(self.root / "out" / f"start-{runner}.pkl"), expected, check_exact=True)
            except AssertionError as exc:
                raise MismatchError(f"{runner}'s chain result differs from plain pandas' {where}:\n{exc}") from None
            self.results.checks += 1
        if "lwdp" in infos:
            outcomes, stages = infos["lwdp"]["outcomes"], infos["lwdp"]["stages"]
            first = measure == STARTUPS[0]
            if outcomes != {"computed": stages} if first else ("computed" in outcomes or not outcomes.get("hit")):
                raise MismatchError(f"lwdp's stage events {where} were {outcomes}: "
                                    + ("every stage should be computed" if first else "a warm call computes none"))


def run_rounds(bench: Bench, rounds: int, progress: Callable[[str], None], startup_repeats: int = 3) -> Results:
    """All rounds of all scenarios; each round must leave plain pandas with a new result
    after the incremental and the code-edit step. With one start-up repeat (`--quick`)
    the start-up pass is not primed: it checks results, its times mean nothing."""
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
        progress(f"round {round_no + 1}/{rounds}: tiny chain's start-up")
        bench.startup(order, round_no, startup_repeats, prime=startup_repeats > 1)
    return bench.results
