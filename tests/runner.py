"""Run a user's pipeline script in this (fresh) process, reporting lwdp's stage events.

Usage: python runner.py SCRIPT [ARGS...]. Each `StageEvent` is printed to stderr as one
``LWDP_EVENT {json}`` line, so tests assert what ran from events, not from timings.
"""

import dataclasses
import json
import logging
import os
import runpy
import sys


class _EventPrinter(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "lwdp_event", None)
        if event is not None:
            # One write, newline included: print() writes the line and its newline apart, and a
            # log line another handler writes from another thread could land in between.
            sys.stderr.write("LWDP_EVENT " + json.dumps(dataclasses.asdict(event)) + "\n")
            sys.stderr.flush()


logger = logging.getLogger("lwdp")
logger.addHandler(_EventPrinter())
logger.setLevel(logging.INFO)
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))  # as `python SCRIPT` sets it
runpy.run_path(sys.argv[0], run_name="__main__")
