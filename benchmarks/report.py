"""Tables of the suite's results, and RESULTS.md with the machine and versions they came from."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path
from statistics import median
from typing import Any

from scenarios import OVERHEADS, SCENARIOS, START_VIEWS, STARTUPS, Results

LABELS = {"plain": "plain pandas", "lwdp": "lwdp", "joblib": "joblib.Memory", "hamilton": "Hamilton"}
SCENARIO_TARGETS = {"cold": 1.5, "warm": 0.25, "incremental": 1.0, "code edit": 0.5}  # lwdp ÷ plain pandas
OVERHEAD_TARGETS_MS = {"same process": 0.1, "fresh process": 0.4}
STARTUP_REPEATS = 3  # start-up passes per round (`scenarios.run_rounds`)
STARTUP_TARGETS_MS = {"first run in a new cache directory": 60, "warm call in a fresh process": 12}  # lwdp's call
START_VIEW_LABELS = {
    "call": "the call (in-process, after importing pandas and the library)",
    "beyond": "whole process, beyond plain pandas' with the library imported",
    "process": "whole process, imports included",
}
CACHE_TARGET = 0.35  # lwdp's cache ÷ joblib's, after the cold run
REPO = Path(__file__).resolve().parents[1]


def _met(value: float, target: float) -> str:
    return "met" if value <= target else "**not met**"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join([_row(header), _row(["---"] * len(header)), *map(_row, rows)])


def scenario_table(results: Results, runners: tuple[str, ...]) -> str:
    """Median seconds and ratio to plain pandas per scenario, then per-stage overheads."""
    rows = []
    for name in SCENARIOS:
        cells = [name]
        for runner in runners:
            seconds = median(results.seconds[name, runner])
            cells.append(f"{seconds:.2f} s" if runner == "plain" else f"{seconds:.2f} s ({median(results.ratios[name, runner]):.2f}×)")
        target = SCENARIO_TARGETS[name]
        met = _met(median(results.ratios[name, "lwdp"]), target) if "lwdp" in runners else ""
        rows.append([*cells, f"≤ {target}×", met])
    for overhead in OVERHEADS:
        cells = [f"per-stage warm overhead, {overhead}"]
        cells += ["" if runner == "plain" else f"{median(results.per_stage_ms[overhead, runner]):.3f} ms" for runner in runners]
        target = OVERHEAD_TARGETS_MS[overhead]
        met = _met(median(results.per_stage_ms[overhead, "lwdp"]), target) if "lwdp" in runners else ""
        rows.append([*cells, f"≤ {target} ms", met])
    return _table(["scenario", *(LABELS[r] for r in runners), "lwdp target", "lwdp"], rows)


def startup_table(results: Results, runners: tuple[str, ...]) -> str:
    """Median milliseconds of the tiny chain's start-up, each measure seen three ways; the
    lwdp target applies to the call."""
    rows = []
    for measure in STARTUPS:
        for view in START_VIEWS:
            cells = [f"{measure}: {START_VIEW_LABELS[view]}"]
            for runner in runners:
                values = results.startup_s[measure, view, runner]
                cells.append(f"{median(values) * 1000:.0f} ms" if values else "")
            target, met = "", ""
            if view == "call":
                target = f"≤ {STARTUP_TARGETS_MS[measure]} ms"
                if "lwdp" in runners:
                    met = _met(median(results.startup_s[measure, view, "lwdp"]) * 1000, STARTUP_TARGETS_MS[measure])
            rows.append([*cells, target, met])
    return _table(["tiny chain's start-up", *(LABELS[r] for r in runners), "lwdp target", "lwdp"], rows)


def cache_table(results: Results, runners: tuple[str, ...]) -> str:
    """Cache size on disk after each scenario, and lwdp's against joblib's after the cold run."""
    cached = [r for r in runners if r != "plain"]
    rows = [[name, *(f"{median(results.cache_mib[name, r]):.0f}" for r in cached)] for name in SCENARIOS]
    text = _table(["MiB after", *(LABELS[r] for r in cached)], rows)
    if "lwdp" in cached and "joblib" in cached:
        ratio = median(results.cache_mib["cold", "lwdp"]) / median(results.cache_mib["cold", "joblib"])
        text += f"\n\nlwdp's cache ÷ joblib's after the cold run: {ratio:.2f}× (target ≤ {CACHE_TARGET}×: {_met(ratio, CACHE_TARGET)})"
    return text


def micro_table(rows: list[dict[str, Any]]) -> str:
    """The rows of `micro.measure`."""
    shown = {True: "met", False: "**not met**", None: ""}
    return _table(["what", "value", "target", "met"], [[r["what"], r["value"], r["target"], shown[r["met"]]] for r in rows])


# Where lwdp's start-up time goes (issue 13), measured by `startup_phases.py` on 2026-12-03;
# kept with every regenerated table until a change moves it (then measure again).
STARTUP_CAUSES = """\
Where lwdp's time goes (`python benchmarks/startup_phases.py`, 2026-12-03: the same calls in
fresh processes that first import every module a run uses, then also use pyarrow's parquet
writer and reader once): a warm call is ~15 ms of work (code digests of the 25 stages and
loading the last result) plus first-use imports, ~18 ms for pyarrow's parquet reader
(`pyarrow.parquet` imports `pyarrow.fs` and `ssl`; pandas' Arrow conversion its extension
types) and ~21 ms for lwdp's run path (catalog, cache, `sqlite3`, frozen dataclasses at
0.3-0.5 ms each). A first run is ~130 ms of work even with every import done: each of the
25 artifacts costs ~8 ms of writer-thread time (the parquet file, three fsyncs so a
published artifact survives a power cut, its manifest and catalog row) on two threads that
share the GIL with the stages; joblib.Memory neither fsyncs nor keeps a manifest or a catalog."""


def tables(results: Results, runners: tuple[str, ...], micro_rows: list[dict[str, Any]]) -> str:
    return "\n\n".join([
        "## Scenarios\n\n" + scenario_table(results, runners),
        "## Start-up on the tiny chain\n\n" + startup_table(results, runners) + "\n\n" + STARTUP_CAUSES,
        "## Cache size on disk\n\n" + cache_table(results, runners),
        "## Micro-benchmarks of lwdp internals (`benchmarks/micro.py`)\n\n" + micro_table(micro_rows),
    ])


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def _lwdp_revision() -> str:
    try:
        dirty = " with uncommitted changes in lwdp/" if _git("status", "--porcelain", "--", "lwdp") else ""
        return _git("rev-parse", "--short", "HEAD") + dirty
    except subprocess.CalledProcessError:  # a copy of the tree, not a checkout: the tables must not be lost
        return "unknown (not run from a git checkout)"


def _proc_field(path: str, key: str) -> str:
    with open(path) as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith(key))


def environment() -> list[str]:
    """Machine and versions, as Markdown list items."""
    ram_gib = int(_proc_field("/proc/meminfo", "MemTotal").split()[0]) / 2**20
    return [
        f"Machine: {os.cpu_count()} CPUs ({_proc_field('/proc/cpuinfo', 'model name')}), {ram_gib:.0f} GiB RAM, {platform.system()} {platform.release()}",
        f"Python {platform.python_version()}, pandas {version('pandas')}, pyarrow {version('pyarrow')}, "
        f"joblib {version('joblib')}, Hamilton (apache-hamilton) {version('apache-hamilton')}",
        f"lwdp at {_lwdp_revision()}",
    ]


METHOD = """\
How it was measured:

- Workload: {files} CSVs x {rows:,} rows (order_id, ts, region, product, qty, price). DAG of
  30 stages: 25 clean stages (read_csv with parse_dates, drop qty <= 0, add amount), a merge,
  then daily aggregates, a join with a 50-product table, derived columns, and a final stage
  combining the three (`benchmarks/runners/steps.py`, `downstream.py`; one script per runner
  under `benchmarks/runners/`). lwdp: `@stage(cache=True)` everywhere, default format;
  joblib: `Memory.cache` on every stage, called eagerly; Hamilton: `.with_cache()`. joblib and
  Hamilton get each CSV's mtime and size as arguments (they hash arguments, not files).
- Every run is a fresh process (`sys.executable`), timed from the parent as whole-process wall
  time, imports included. {rounds} rounds; in each, every runner runs each scenario once, in
  an order rotated each round; a ratio is runner ÷ plain pandas in the same round and
  scenario; tables show medians over rounds. Each runner's final result is checked equal to
  plain pandas' (`assert_frame_equal`, exact) in every scenario and round.
- Scenarios: cold = empty cache; warm = everything cached; incremental = from warm, one CSV
  rewritten with new random contents (a different file and variant each round); code edit =
  from there, the constant in the `derived` stage changed to a new value each round. Plain
  pandas caches nothing, so its warm run would repeat its cold one: its cold run of the same
  round is the warm baseline.
- Per-stage warm overhead: a linear chain of 25 tiny stages (1,000 rows) run warm. Inside
  the process, after importing every library (for lwdp, every module it ships), the script
  times defining the chain and calling its last stage ("fresh process": this includes
  lwdp's code hashing and catalog opening, joblib's `Memory` setup, Hamilton's driver build)
  and then a second call in the same process ("same process"). From each is subtracted the
  time to read the one result the call needs, measured in a separate fresh process that
  imports the same libraries and reads that file once (subtracted from "fresh") and then 5
  more times (median, subtracted from "same"). Both processes first write and read a small
  scratch file in that format, before any clock starts: pandas' first parquet read in a
  process costs ~10 ms of lazy imports, which is import time, not reading. For lwdp the file is the last stage's real
  artifact (`<cache>/artifacts/<h[:2]>/<h>.parquet`, `h` = the stage's `.hash`), read with
  `pandas.read_parquet`; joblib's and Hamilton's paths are private, so the same frame written
  by `joblib.dump` (read with `joblib.load`) and by `pickle` stands in for theirs. The
  difference is divided by 25.
- Start-up on the same tiny chain (issue 13), `runners/chain_start.py`: "first run in a new
  cache directory" is a fresh process calling the chain's last stage with an empty cache
  directory; "warm call in a fresh process" is the next such process on that directory.
  Each is seen three ways: (1) the call, clocked inside the process from after `import
  pandas` and `import <library>` (lwdp, joblib, hamilton.driver: what the micro-benchmark
  "import lwdp on top of pandas" times) until the call returns: importing the chain's module
  (Hamilton's nodes too), defining the stages, setting up the cache, the lazy imports the
  call triggers, computing or reading, and, on a first run, waiting for lwdp's background
  writes; lwdp's targets (60 ms, 12 ms) apply to this. (2) The whole process's wall time,
  timed from the parent, minus that of a fresh process that imports pandas and the same
  library and computes the chain with pandas alone, in the same pass: what the run adds
  beyond the library's import, exit included (noisier: a difference of two processes).
  (3) The whole process, imports included. Plain pandas computes the chain every time; its
  "call" is that. {repeats} passes per round, each in a rotated runner order (baselines,
  then every first run, then every warm call), after an untimed pass that writes bytecode;
  medians over all passes. Each result is checked equal to plain pandas', and lwdp's stage
  events show 25 stages computed on the first run and none on the warm call.
- Every fresh process runs without `PYTHONDONTWRITEBYTECODE` (this machine sets it; users
  don't), so imports read cached bytecode as they would on a user's machine.
- Cache size: disk usage of each runner's cache directory (as `du`) after each scenario,
  median over rounds.
- The suite's time includes writing the data (~7 s), the micro-benchmarks (~45 s) and
  Hamilton's runs (~60 s of each ~90 s round), and the tiny chain's start-up (~35 s a round). `--rounds`, `--rows`, `--files` and
  `--runners plain,lwdp` make shorter runs; `--quick` checks correctness only.
"""


def results_md(text: str, command: str, elapsed: float, files: int, rows: int, rounds: int) -> str:
    """The whole of RESULTS.md."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env = "\n".join(f"- {item}" for item in environment())
    return (
        f"# Benchmark results\n\nGenerated by `{command}` on {now}; the suite took {elapsed / 60:.1f} min.\n\n"
        f"{env}\n\n{METHOD.format(files=files, rows=rows, rounds=rounds, repeats=STARTUP_REPEATS)}\n"
        f"![ratios to plain pandas](results.png)\n\n{text}\n"
    )
