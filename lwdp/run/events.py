"""What happened to each stage of a call, as one INFO line on the ``lwdp`` logger each; the
record carries the `StageEvent` itself (``record.lwdp_event``) for programs that watch a
run (``lwdp run``'s progress display, the tests). The run in progress keeps each stage's
first outcome for its history (`recording`), whatever the logger's level."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..store.outcomes import MissReason

logger = logging.getLogger("lwdp")


@dataclass(frozen=True)
class StageEvent:
    """What happened to one stage in one call; attached to its log record as ``lwdp_event``.

    "started" (a DEBUG record, parallel runs only) says a stage began computing; the others
    are the stage's outcome.
    """

    stage: str
    hash: str
    outcome: str  # "hit" | "computed" | "computed-uncached" | "reused" | "not-needed" | "started"
    seconds: float
    bytes: int | None
    reason: str | None = None  # why a cached stage was computed or reused; where a hit came from


_RECORDING: list[dict[str, StageEvent]] = []  # the runs in progress in this process, innermost last


@contextmanager
def recording() -> Iterator[dict[str, StageEvent]]:
    """Each stage's outcome in the run this block is (its first event), by stage name, in
    the order they came (a stage called inside a stage is a run of its own)."""
    events: dict[str, StageEvent] = {}
    _RECORDING.append(events)
    try:
        yield events
    finally:
        _RECORDING.remove(events)


def note(event: StageEvent) -> None:
    """Keep ``event`` for the history of the run in progress (a worker's too, once received)."""
    if _RECORDING and event.outcome != "started":
        _RECORDING[-1].setdefault(event.stage, event)  # computed by a worker, then read back here: computed


_STAGE_NOTE = "raised in lwdp stage '{}'"


def stage_note(stage: str) -> str:
    """The note an exception gets when a stage's function raised it."""
    return _STAGE_NOTE.format(stage)


def raising_stage(error: BaseException) -> str | None:
    """The stage whose function raised ``error``, from its note (a worker's survives pickling)."""
    pattern = re.escape(_STAGE_NOTE).replace(r"\{\}", "(.+)")
    for text in getattr(error, "__notes__", ()):
        if (found := re.fullmatch(pattern, str(text))) is not None:
            return found.group(1)
    return None


def log_event(event: StageEvent) -> None:
    note(event)
    short = event.hash[:12]
    if event.outcome == "started":
        logger.debug("stage %s: started %s", event.stage, short, extra={"lwdp_event": event})
        return
    if event.outcome == "reused":  # early cutoff (`lwdp.run.cutoff`)
        logger.info("stage %s: %s: reused as %s (%s bytes), not recomputed", event.stage, event.reason, short, f"{event.bytes:,}", extra={"lwdp_event": event})
        return
    if event.outcome == "hit":
        text = f"cache hit {short}, read {event.bytes:,} bytes in {event.seconds:.3f} s"
    elif event.outcome == "computed":
        text = f"computed {short} in {event.seconds:.3f} s, cached {event.bytes:,} bytes"
    elif event.outcome == "computed-uncached":
        text = f"computed {short} in {event.seconds:.3f} s (not cached)"
    else:
        text = f"{short} not loaded: a later stage's cached result covers it"
    if event.reason and event.reason != MissReason.NEVER_COMPUTED.value:
        text += f" ({event.reason})"
    logger.info("stage %s: %s", event.stage, text, extra={"lwdp_event": event})
