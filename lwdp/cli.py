"""The ``lwdp`` command line: parse, call `lwdp.store`, print.

Bad arguments exit with status 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from . import configure
from .errors import LwdpError


def _verify(args: argparse.Namespace) -> int:
    from .store import verify

    report = verify(repair=args.repair)
    if args.json:
        print(json.dumps({
            "checked": report.checked,
            "ok": report.ok,
            "problems": [{**asdict(p), "path": str(p.path)} for p in report.problems],
            "dead_temp_files": [str(p) for p in report.dead_temp_files],
        }, indent=2))
    else:
        print(repr(report))
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lwdp", description="Inspect and maintain an lwdp cache.")
    parser.add_argument("--cache-dir", help="cache directory (default: LWDP_CACHE_DIR, else ./.lwdp)")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check every artifact's file and checksum")
    verify.add_argument("--repair", action="store_true", help="drop damaged artifacts, adopt or remove unlisted files")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(handler=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cache_dir:
        configure(cache_dir=args.cache_dir)
    try:
        return int(args.handler(args))
    except LwdpError as exc:
        print(f"lwdp: error: {exc}", file=sys.stderr)
        return 2


