"""results.png: scenario ratios per runner as grouped bars, and per-stage overheads."""

from __future__ import annotations

from pathlib import Path
from statistics import median

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from report import LABELS, OVERHEAD_TARGETS_MS, SCENARIO_TARGETS  # noqa: E402
from scenarios import OVERHEADS, SCENARIOS, Results  # noqa: E402


def plot(results: Results, runners: tuple[str, ...], path: Path) -> None:
    """Log-scale bars with lwdp's targets marked; plain pandas is the line at 1×."""
    cached = [r for r in runners if r != "plain"]
    width = 0.8 / len(cached)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    for panel, groups, values, targets, unit in (
        (left, SCENARIOS, results.ratios, SCENARIO_TARGETS, "× plain pandas (fresh process per run)"),
        (right, OVERHEADS, results.per_stage_ms, OVERHEAD_TARGETS_MS, "ms per stage, warm"),
    ):
        for i, runner in enumerate(cached):
            xs = [g + (i - (len(cached) - 1) / 2) * width for g in range(len(groups))]
            heights = [median(values[name, runner]) for name in groups]
            panel.bar(xs, heights, width, label=LABELS[runner])
            if runner == "lwdp":
                panel.scatter(xs, [targets[name] for name in groups], marker="_", s=400, color="red",
                              zorder=3, label="lwdp target")
        panel.set_xticks(range(len(groups)), groups)
        panel.set_yscale("log")
        panel.set_ylabel(unit)
    left.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    left.set_title("Scenario time ÷ plain pandas (median)")
    right.set_title("Per-stage overhead, tiny chain")
    left.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
