"""What happened to each stage of a call, as one INFO line on the ``lwdp`` logger each; the
record carries the `StageEvent` itself (``record.lwdp_event``) for programs that watch a
run (``lwdp run``'s progress display, the tests)."""

from __future__ import annotations

import logging
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


def log_event(event: StageEvent) -> None:
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
