"""What ``lwdp run`` shows while a pipeline runs, from the stage events on the ``lwdp`` logger.

On a terminal, one live line (with ``rich``, from ``lwdp[cli]``): stages done, running,
cached and still to do, and the time so far; elsewhere (a log file, CI) one line per
stage as it ends. At the end, a table: each stage's outcome, seconds and bytes.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

from .units import human_size

_OUTCOMES = {"hit": "cached", "computed": "computed", "computed-uncached": "computed", "reused": "reused", "not-needed": "not needed"}


class Progress(logging.Handler):
    """Collects a run's stage events; prints them as they come unless a live view shows them."""

    def __init__(self, stages: list[str], out: IO[str]) -> None:
        super().__init__(logging.DEBUG)
        self.stages = stages
        self.out = out
        self.started = time.perf_counter()
        self.running: dict[str, float] = {}
        self.ended: dict[str, Any] = {}  # stage -> its last StageEvent
        self.live: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "lwdp_event", None)
        if event is None:
            if record.levelno >= logging.WARNING:
                self._print(f"{record.levelname.lower()}: {record.getMessage()}")
            return
        if event.outcome == "started":
            self.running[event.stage] = time.perf_counter()
        else:
            self.running.pop(event.stage, None)
            self.ended[event.stage] = event
            if self.live is None:
                self._print(record.getMessage())

    def _print(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.out, flush=True)

    def status_line(self) -> str:
        cached = sum(1 for e in self.ended.values() if e.outcome in ("hit", "reused"))
        done = len(self.ended)
        running = ", ".join(name.rsplit(".", 1)[-1] for name in self.running)
        to_do = max(0, len(self.stages) - done - len(self.running))
        return (
            f"{done}/{len(self.stages)} stages done ({cached} cached), {len(self.running)} running"
            f"{': ' + running if running else ''}, {to_do} to do, {time.perf_counter() - self.started:.1f} s"
        )

    def summary(self) -> list[str]:
        width = max([len(name) for name in self.stages] + [5])
        lines = [f"{'STAGE':<{width}}  {'OUTCOME':<10} {'SECONDS':>8} {'BYTES':>9}"]
        for name in self.stages:
            event = self.ended.get(name)
            if event is None:
                lines.append(f"{name:<{width}}  {'not run':<10} {'':>8} {'':>9}")
                continue
            size = human_size(event.bytes) if event.bytes is not None else ""
            lines.append(f"{name:<{width}}  {_OUTCOMES[event.outcome]:<10} {event.seconds:>8.2f} {size:>9}")
        lines.append(f"{len(self.stages)} stages in {time.perf_counter() - self.started:.1f} s")
        return lines


def live_view(progress: Progress) -> Any:
    """A live one-line view on a terminal (None elsewhere, or without ``rich``)."""
    if not sys.stdout.isatty():
        return None
    try:
        from rich.live import Live
    except ImportError:
        return None
    return Live(get_renderable=progress.status_line, refresh_per_second=8, transient=True, redirect_stderr=False)
