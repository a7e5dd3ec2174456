"""The runs a catalog remembers (``lwdp history``): what each loaded and computed, how long
it took, and which stages got markedly slower or larger than their usual.

A stage's usual is the median of its earlier computations (at least three): loads are not
compared, since a hit's time is a file read, not the stage's work.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from .. import config
from ..errors import InvalidSettingError
from ..store.catalog import Catalog, open_catalog
from ..store.records import RunRecord
from ..units import human_size
from .lineage import stages_named

SLOWER, LARGER = 2.0, 1.5  # what "markedly" means: times vary more than sizes
_MIN_EARLIER = 3
_MIN_SECONDS, _MIN_BYTES = 0.1, 1024  # below these, a change is noise, whatever its ratio
_USUAL_OF = 20  # earlier computations a usual is the median of
_ERROR_WIDTH = 100


@dataclass(frozen=True)
class Change:
    """A stage's newest computation, markedly slower or larger than its usual."""

    stage: str
    what: str  # "slower" | "larger"
    now: float
    usual: float
    earlier: int  # computations the usual is the median of

    def __str__(self) -> str:
        if self.what == "slower":
            now, usual = f"took {self.now:.2f} s", f"{self.usual:.2f} s"
        else:
            now, usual = f"cached {human_size(int(self.now))}", human_size(int(self.usual))
        return (f"stage {self.stage} {now}, {self.now / self.usual:.1f}× its usual {usual} "
                f"(the median of its {self.earlier} computations before)")


class History(list[RunRecord]):
    """Runs, newest first (each with only ``stage``'s row when one was asked for), and the
    stages whose newest computation was markedly slower or larger than usual."""

    stage: str | None = None
    changes: list[Change]

    def __repr__(self) -> str:
        lines = [_stage_table(self, self.stage) if self.stage else _runs_table(self)]
        lines += [f"note: {change}" for change in self.changes]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        runs = [{**asdict(run), "started_at": run.started_at.isoformat(), "ended_at": run.ended_at.isoformat(),
                 "stages": [stage._asdict() for stage in run.stages]} for run in self]
        return {"stage": self.stage, "runs": runs, "changes": [asdict(change) for change in self.changes]}


def history(stage: str | None = None, limit: int = 20, cache_dir: str | os.PathLike[str] | None = None) -> History:
    """The newest ``limit`` runs, or those that loaded or computed ``stage`` (its recorded
    name, ``module.stage`` or ``module:stage``, or the stage's name alone where that is one
    stage's), and the changes worth a note: of ``stage``, or of the stages the newest run
    computed.

    :raises InvalidSettingError: no recorded stage has that name, or several do (a ValueError).
    """
    if limit < 1:
        raise InvalidSettingError(f"history: limit must be at least 1, not {limit}")
    catalog = open_catalog(config.settings(cache_dir))
    name = _recorded_name(catalog, stage) if stage is not None else None
    found = History(catalog.runs(limit, name))
    found.stage = name
    if name is not None:
        watched = [name]
    else:
        watched = [s.stage for s in (found[0].stages if found else ()) if s.outcome == "computed"]
    found.changes = _changes(catalog.computations(watched)) if watched else []
    return found


def _recorded_name(catalog: Catalog, stage: str) -> str:
    names = catalog.run_stage_names()
    matches = stages_named(names, stage.replace(":", "."))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InvalidSettingError(f"history: {stage!r} names several stages: {', '.join(matches)}; give its module too")
    raise InvalidSettingError(
        f"history: no run recorded a stage {stage!r}; stages in the history: {', '.join(names) or 'none yet'}"
    )


def _changes(computations: dict[str, list[tuple[float | None, int | None]]]) -> list[Change]:
    changes = []
    for stage, done in sorted(computations.items()):
        seconds = [float(s) for s, _ in done if s is not None]
        sizes = [float(b) for _, b in done if b is not None]
        for what, values, ratio, floor in (("slower", seconds, SLOWER, _MIN_SECONDS), ("larger", sizes, LARGER, _MIN_BYTES)):
            earlier = values[1:_USUAL_OF + 1]
            if len(earlier) < _MIN_EARLIER:
                continue
            usual = statistics.median(earlier)
            if usual > 0 and values[0] >= ratio * usual and values[0] - usual >= floor:
                changes.append(Change(stage, what, values[0], usual, len(earlier)))
    return changes


def _local(moment: dt.datetime) -> str:
    return f"{moment.astimezone():%Y-%m-%d %H:%M:%S}"


def _runs_table(runs: list[RunRecord]) -> str:
    lines = [f"{'RUN':<8}  {'STARTED':<19}  {'TOOK':>8}  {'OUTCOME':<11}  {'TARGET':<28}  STAGES"]
    for run in runs:
        took = (run.ended_at - run.started_at).total_seconds()
        counts = Counter(stage.outcome for stage in run.stages)
        stages = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "none"
        lines.append(f"{run.id[:8]:<8}  {_local(run.started_at)}  {took:>7.2f}s  {run.outcome:<11}  {run.target:<28}  {stages}")
        if run.error:
            lines.append(f"{'':<8}  {run.error.splitlines()[0][:_ERROR_WIDTH]}")
    lines.append(f"{len(runs)} runs" if runs else "no runs recorded yet")
    return "\n".join(lines)


def _stage_table(runs: list[RunRecord], stage: str | None) -> str:
    lines = [f"stage {stage}", f"{'RUN':<8}  {'STARTED':<19}  {'OUTCOME':<18}  {'SECONDS':>8}  {'SIZE':>9}  WHY"]
    for run in runs:
        for row in run.stages:
            size = human_size(row.bytes) if row.bytes is not None else "-"
            seconds = f"{row.seconds:.3f}" if row.seconds is not None else "-"
            lines.append(f"{run.id[:8]:<8}  {_local(run.started_at)}  {row.outcome:<18}  {seconds:>8}  {size:>9}  {row.reason or ''}")
    return "\n".join(lines)

