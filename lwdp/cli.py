"""The ``lwdp`` command line: parse, call `lwdp.store`, print.

Bad arguments (a size that isn't one, an unknown hash, a module that doesn't import) exit
with status 2 and a one-line message naming the bad value, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from .config import configure
from .errors import LwdpError
from .units import human_age, human_size

WIDTH = 80


class UsageError(Exception):
    """A bad argument: printed as one line, exit status 2."""


def _ls(args: argparse.Namespace) -> int:
    from .store import artifacts

    records = artifacts(stage=args.stage)
    if args.json:
        print(records.to_frame().to_json(orient="records", date_format="iso", indent=2))
        return 0
    now = dt.datetime.now(dt.timezone.utc)
    stage_width = WIDTH - 53
    print(f"{'STAGE':<{stage_width}} {'HASH':<12} {'FORMAT':<7} {'SIZE':>9} {'CREATED':<10} {'ACCESSED':>9}")
    for r in records:
        stage = r.stage if len(r.stage) <= stage_width else "…" + r.stage[-stage_width + 1:]
        print(
            f"{stage:<{stage_width}} {r.hash[:12]} {r.format:<7} {human_size(r.size):>9} "
            f"{r.created_at:%Y-%m-%d} {human_age(now - r.last_access):>9}"
        )
    print(f"{len(records)} artifacts, {human_size(sum(r.size for r in records))}")
    return 0


def _gc(args: argparse.Namespace) -> int:
    from .store import gc

    report = gc(max_age=args.max_age, max_size=args.max_size, dry_run=args.dry_run, policy=args.policy, keep_runs=args.keep_runs)
    if args.json:
        print(json.dumps({**asdict(report), "temp_files": [str(p) for p in report.temp_files],
                          "bytes_freed": report.bytes_freed}, indent=2))
    else:
        print(repr(report))
    return 0


def _du(args: argparse.Namespace) -> int:
    from .store import du

    usage = du(policy=args.policy)
    if args.json:
        print(json.dumps({"policy": usage.policy, "stages": [asdict(u) for u in usage]}, indent=2))
    else:
        print(repr(usage))
    return 0


def _history(args: argparse.Namespace) -> int:
    from .store import history

    runs = history(args.stage, limit=args.limit)
    print(json.dumps(runs.to_json(), indent=2) if args.json else repr(runs))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .store import verify

    if args.recompute is not None:
        return _recompute(args)
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


def _recompute(args: argparse.Namespace) -> int:
    """``verify --recompute [N | STAGE...]``: exit 1 when a stage's result is not reproduced."""
    from . import config
    from .store.catalog import open_catalog
    from .upkeep.reproduce import recompute_cached

    wanted = list(args.recompute)
    count = int(wanted.pop()) if len(wanted) == 1 and wanted[0].isdigit() else 3
    if count < 1:
        raise UsageError("--recompute N: N must be 1 or more")
    names = [_import_stage(name).name if ":" in name else name for name in wanted]
    stages = sorted({record.stage for record in open_catalog(config.settings()).all_artifacts()})
    results = recompute_cached(names, count, stages)
    if args.json:
        print(json.dumps([asdict(found) for found in results], indent=2))
    else:
        for found in results:
            print(found)
        if not results:
            print("no cached stage to recompute here (run from the pipeline's directory)")
    return 1 if any(found.outcome == "differs" for found in results) else 0


def _lineage(args: argparse.Namespace) -> int:
    if args.format == "openlineage":
        from .upkeep.openlineage import openlineage_events

        for event in openlineage_events(args.stage_or_hash, namespace=args.namespace):
            print(json.dumps(event))
        return 0
    from .store import lineage

    tree = lineage(args.stage_or_hash)
    if args.json:
        print(json.dumps(asdict(tree), indent=2))
    else:
        print(repr(tree))
    return 0


def _dependents(args: argparse.Namespace) -> int:
    from .store import dependents

    found = dependents(args.path)
    if args.json:
        print(json.dumps([asdict(d) for d in found], indent=2))
    else:
        print(f"{args.path}: {repr(found)}" if not found else repr(found))
    return 0


def _import_stage(spec: str) -> Any:
    from .stage import Stage

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"{spec!r} is not MODULE:STAGE (e.g. pipeline:stg_report)")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    target = getattr(module, attribute, None)
    if not isinstance(target, Stage):
        raise UsageError(f"{attribute!r} in module {module_name!r} is not an @stage")
    return target


def _status(args: argparse.Namespace) -> int:
    from .run.status import pipeline_status

    statuses = pipeline_status(_import_stage(args.target))
    if args.json:
        print(json.dumps([{"stage": s.stage.name, "hash": s.hash, "state": s.state, "reasons": s.reasons,
                           "undeclared": s.undeclared} for s in statuses], indent=2))
        return 0
    for s in statuses:
        why = f": {'; '.join(s.reasons)}" if s.reasons else ""
        print(f"{s.state:<15} {s.stage.name} {s.hash[:12]}{why}{s.undeclared_note}")
    return 0


def _stage_named(pipeline: list[Any], name: str, target: str) -> Any:
    """The stage of ``pipeline`` named ``name`` (qualified, or its function's name)."""
    found = [stage for stage in pipeline if name in (stage.name, stage.name.rsplit(".", 1)[-1])]
    if len(found) != 1:
        names = ", ".join(stage.name.rsplit(".", 1)[-1] for stage in pipeline)
        what = "names several stages" if found else "is not a stage"
        raise UsageError(f"--force {name!r} {what} of {target}'s pipeline ({names})")
    return found[0]


def _run(args: argparse.Namespace) -> int:
    import logging
    import traceback

    from .graph import dependency_order
    from .progress import Progress, live_view
    from .run.call import run_stage

    from . import config

    target = _import_stage(args.target)
    if args.jobs is not None:
        configure(jobs=args.jobs)
    if args.dask is not None:
        from .run.executors import dask_client

        configure(executor=dask_client(args.dask))
    config.settings()  # a bad LWDP_* value is a bad argument, before anything runs
    pipeline = dependency_order(target)
    forced = frozenset(_stage_named(pipeline, name, args.target) for name in args.force or ())
    progress = Progress([stage.name for stage in pipeline], sys.stdout)
    logger = logging.getLogger("lwdp")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(progress)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # the progress view prints what matters
    failed = None
    try:
        live = progress.live = live_view(progress)
        with live if live is not None else _nothing():
            try:
                run_stage(target, forced) if forced else target()
            except Exception as exc:
                failed = exc
    finally:
        logger.removeHandler(progress)
        logger.setLevel(level)
        logger.propagate = propagate
    print("\n".join(progress.summary()))
    if failed is not None:
        if isinstance(failed, LwdpError):
            print(f"lwdp run: error: {failed}", file=sys.stderr)
        else:
            traceback.print_exception(type(failed), failed, failed.__traceback__, file=sys.stderr)
        return 1
    return 0


def _nothing() -> Any:
    from contextlib import nullcontext

    return nullcontext()


def _graph(args: argparse.Namespace) -> int:
    from .run.status import pipeline_status

    statuses = pipeline_status(_import_stage(args.target))
    ids = {s.stage: f"s{i}" for i, s in enumerate(statuses)}
    raws: dict[str, str] = {}
    edges: list[tuple[str, str, str]] = []
    for s in statuses:
        for inp in s.stage.inputs:
            if inp.kind == "stage":
                edges.append((ids[inp.value], ids[s.stage], inp.name))
            elif inp.kind == "raw":
                raw_id = raws.setdefault(os.fspath(inp.value), f"r{len(raws)}")
                edges.append((raw_id, ids[s.stage], inp.name))
    render = _mermaid if args.format == "mermaid" else _dot
    print(render(statuses, ids, raws, edges))
    return 0


def _mermaid(statuses: list[Any], ids: dict[Any, str], raws: dict[str, str], edges: list[tuple[str, str, str]]) -> str:
    lines = ["flowchart LR"]
    lines += [f'  {raw_id}[/"{path}"/]' for path, raw_id in raws.items()]
    lines += [f'  {ids[s.stage]}["{s.stage.name}<br/>{s.state}"]:::{s.state.replace(" ", "_")}' for s in statuses]
    lines += [f"  {a} -->|{name}| {b}" for a, b, name in edges]
    lines += [
        "  classDef fresh fill:#d4f7d4,stroke:#2a2",
        "  classDef stale fill:#fde2c8,stroke:#e80",
        "  classDef never_computed fill:#eee,stroke:#888",
        "  classDef not_cached fill:#fff,stroke:#888,stroke-dasharray:3",
    ]
    return "\n".join(lines)


def _dot(statuses: list[Any], ids: dict[Any, str], raws: dict[str, str], edges: list[tuple[str, str, str]]) -> str:
    colors = {"fresh": "#d4f7d4", "stale": "#fde2c8", "never computed": "#eeeeee", "not cached": "#ffffff"}
    lines = ["digraph lwdp {", "  rankdir=LR;", '  node [shape=box, style=filled, fontname="Helvetica"];']
    lines += [f'  {raw_id} [label="{path}", shape=note, fillcolor="#ffffff"];' for path, raw_id in raws.items()]
    lines += [f'  {ids[s.stage]} [label="{s.stage.name}\\n{s.state}", fillcolor="{colors[s.state]}"];' for s in statuses]
    lines += [f'  {a} -> {b} [label="{name}"];' for a, b, name in edges]
    lines.append("}")
    return "\n".join(lines)


def _report(args: argparse.Namespace) -> int:
    from .run.report import pipeline_html

    page = pipeline_html(_import_stage(args.target))
    with open(args.output, "w", encoding="utf-8") as out:
        out.write(page)
    print(f"wrote {args.output} ({human_size(len(page.encode()))}): open it in a browser")
    return 0


def _show(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import config
    from .store.cache import Hit, ResultCache
    from .store.catalog import open_catalog
    from .upkeep.lineage import resolve_hash

    settings = config.settings()
    catalog = open_catalog(settings)
    stage_hash, stage = resolve_hash(catalog, args.hash)
    found = ResultCache(settings, catalog).peek(stage, stage_hash)
    if not isinstance(found, Hit):
        raise UsageError(f"no readable artifact for {args.hash!r} ({stage}): {found}")
    value = found.value
    print(f"{stage} {stage_hash}  {human_size(found.size)}")
    if isinstance(value, pd.DataFrame):
        print(f"shape: {value.shape[0]:,} rows x {value.shape[1]} columns")
        print(value.dtypes.to_string())
        with pd.option_context("display.width", WIDTH, "display.max_columns", 20):
            print(value.head(args.rows).to_string(max_colwidth=20))
    else:
        print(_described(value, args.rows))
    return 0


def _described(value: Any, rows: int) -> str:
    """Shape, schema and first rows of a polars, Arrow or NumPy result; a short repr else."""
    from .formats import native

    kind = native.kind_of(value)
    if kind == native.POLARS_LAZY:
        head = value.head(rows).collect()
        return _lines(f"shape: (lazy) {len(head.columns)} columns; the first {rows} rows:", head.schema, head)
    if kind == native.POLARS_FRAME:
        return _lines(f"shape: {value.height:,} rows x {value.width} columns", value.schema, value.head(rows))
    if kind == native.POLARS_SERIES:
        return _lines(f"shape: {len(value):,} values", {value.name: value.dtype}, value.head(rows))
    if kind in (native.ARROW_TABLE, native.ARROW_BATCH):
        return "\n".join([f"shape: {value.num_rows:,} rows x {value.num_columns} columns", str(value.schema),
                          str(value.slice(0, rows).to_pydict())])
    if kind == native.NUMPY_ARRAY:
        return f"shape: {value.shape}, dtype {value.dtype}\n{value[:rows]!r}"
    return f"{type(value).__qualname__}: {repr(value)[:2000]}"


def _lines(shape: str, schema: Any, head: Any) -> str:
    return "\n".join([shape, *(f"{name}  {dtype}" for name, dtype in schema.items()), str(head)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lwdp", description="Run pipelines; inspect and maintain an lwdp cache.")
    parser.add_argument("--cache-dir", help="cache directory (default: LWDP_CACHE_DIR, else ./.lwdp)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str, json_flag: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        if json_flag:
            sub.add_argument("--json", action="store_true", help="print JSON for scripts")
        sub.set_defaults(handler=handler)
        return sub

    command("ls", _ls, "list artifacts, newest first").add_argument("--stage", help="only this stage")
    gc = command("gc", _gc, "remove expired, least recently used and stray artifacts")
    gc.add_argument("--max-age", help="remove what was not used for this long: 90s, 30m, 12h, 7d, 2w")
    gc.add_argument("--max-size", help="then keep the most recently used within this size: 500MB, 10GB, 1.5GiB")
    gc.add_argument("--dry-run", action="store_true", help="report what would go; change nothing")
    gc.add_argument("--keep-runs", type=int, default=1000, help="the run history keeps this many newest runs (default 1000)")
    gc.add_argument(
        "--policy", choices=["lru", "cost"], default="lru",
        help="beyond --max-size, evict the least recently used (lru) or what costs least to have again per byte (cost)",
    )
    du = command("du", _du, "bytes by stage: artifacts, hits, compute seconds, and what a budget would evict first")
    du.add_argument("--policy", choices=["cost", "lru"], default="cost", help="the eviction order shown (default: cost)")
    history = command("history", _history, "recent runs, or one stage's outcomes and times; notes stages markedly slower or larger than usual")
    history.add_argument("stage", metavar="STAGE", nargs="?", help="only the runs of this stage (module.stage, or its name)")
    history.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    verify = command("verify", _verify, "check every artifact's file and checksum")
    verify.add_argument("--repair", action="store_true", help="drop damaged artifacts, adopt or remove unlisted files")
    verify.add_argument(
        "--recompute", nargs="*", metavar="N_OR_STAGE",
        help="recompute N cached stages chosen at random (default 3), or the stages named, from their cached "
        "inputs, and compare with their artifacts (writes nothing; exit 1 when one differs)",
    )
    lineage = command("lineage", _lineage, "where a stage's result came from, as a tree or as OpenLineage run events")
    lineage.add_argument("stage_or_hash", metavar="STAGE_OR_HASH")
    lineage.add_argument(
        "--format", choices=["tree", "openlineage"], default="tree",
        help="openlineage: one OpenLineage run event per stage evaluation, a JSON object per line (for Marquez, DataHub, ...)",
    )
    lineage.add_argument("--namespace", default="lwdp", help="the OpenLineage namespace of the jobs and stage datasets (default lwdp)")
    command("dependents", _dependents, "every stage derived from a raw file").add_argument("path", metavar="PATH")
    command("status", _status, "fresh, stale (and why) or never computed, for each stage").add_argument(
        "target", metavar="MODULE:STAGE")
    run = command("run", _run, "run a pipeline: compute or load MODULE:STAGE and its ancestors", json_flag=False)
    run.add_argument("target", metavar="MODULE:STAGE")
    run.add_argument("-j", "--jobs", help="stages computed at once, in worker processes (a number, or auto: one per core)")
    run.add_argument("--dask", metavar="ADDRESS", help="compute stages on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786)")
    run.add_argument(
        "--force", metavar="STAGE", action="append",
        help="compute this stage even if cached and replace its artifact (repeatable); the stages below it rerun only if its result changed",
    )
    graph = command("graph", _graph, "the pipeline as a Mermaid or Graphviz graph", json_flag=False)
    graph.add_argument("target", metavar="MODULE:STAGE")
    graph.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    report = command("report", _report, "the pipeline as one self-contained HTML page: states, times, sizes, history", json_flag=False)
    report.add_argument("target", metavar="MODULE:STAGE")
    report.add_argument("-o", "--output", default="report.html", help="the file to write (default report.html)")
    show = command("show", _show, "shape, schema and first rows of an artifact", json_flag=False)
    show.add_argument("hash", metavar="HASH")
    show.add_argument("--rows", type=int, default=5)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cache_dir:
        configure(cache_dir=args.cache_dir)
    try:
        return int(args.handler(args))
    except (UsageError, LwdpError) as exc:
        print(f"lwdp {args.command}: error: {exc}", file=sys.stderr)
        return 2
