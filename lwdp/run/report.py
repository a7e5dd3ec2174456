"""The pipeline as a picture (``lwdp report``, and a stage's display in Jupyter): one
self-contained HTML page, no script and no network, that shows the DAG with each stage's
state (`lwdp.run.status`), its last computation's time and size, its times over the run
history as a small chart, and the recent runs of the target.

Layout: the stages in columns by their depth (the longest path from a raw input), raw
files in the column before their first consumer, each column ordered by where its
neighbours sit (two sweeps of the barycenter heuristic, as layered graph drawing does),
which for pipelines of tens of stages is what Graphviz's ``dot`` would draw without its
binary. Drawing: HTML boxes (their text is the page's text, to read, find and copy) and
SVG for the edges and charts, written here.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import config
from ..store.catalog import open_catalog
from ..store.records import RunRecord
from ..units import human_size
from ..version import __version__
from .status import StageStatus, pipeline_status

if TYPE_CHECKING:
    from ..stage import Stage

_WIDTH, _HEIGHT, _GAP_X, _GAP_Y, _PAD = 214, 112, 52, 22, 16
_RAW_HEIGHT = 58
_COLORS = {  # border, fill
    "fresh": ("#2e9e4f", "#e6f6ea"), "stale": ("#e07b00", "#fff0dc"), "never computed": ("#8a8a8a", "#f1f1f1"),
    "not cached": ("#5b7fc7", "#eef3fd"), "raw": ("#6b5b95", "#ffffff"),
}
_OUTCOMES = {"succeeded": "#2e9e4f", "failed": "#c62828", "interrupted": "#e07b00"}


@dataclass
class _Node:
    key: str
    label: str
    layer: int
    status: StageStatus | None = None  # None: a raw input
    preds: list[str] = field(default_factory=list)
    row: float = 0.0


def pipeline_html(target: Stage, page: bool = True) -> str:
    """The picture of ``target``'s pipeline: a whole page, or (``page=False``) the block a
    notebook shows."""
    everything = pipeline_status(target)
    statuses = [s for s in everything if s.stage.partition is None]  # partitions: inside their stage
    partitions = {s.stage.name: s for s in everything if s.stage.partition is not None}
    catalog = open_catalog(config.settings())
    computations = catalog.computations([s.stage.name for s in statuses])
    runs = [run for run in catalog.runs(100) if run.target == target.name][:20]
    nodes = _layout(statuses)
    body = "\n".join([
        _header(target, statuses),
        _graph(nodes, computations, partitions),
        _runs_chart(runs),
    ])
    block = f'<div class="lwdp-report">\n<style>{_CSS}</style>\n{body}\n</div>'
    if not page:
        return block
    title = html.escape(f"lwdp: {target.name}")
    return f'<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{title}</title></head>\n<body>\n{block}\n</body>\n</html>\n'


def _layout(statuses: list[StageStatus]) -> list[_Node]:
    nodes: dict[str, _Node] = {}
    for status in statuses:
        stage_preds, raws = [], []
        stage = status.stage
        for inp in stage.declared_inputs if stage.partition_by is not None else stage.inputs:  # a glob, not its partitions
            if inp.kind == "stage":
                stage_preds.append(inp.value.name)
            elif inp.kind == "raw":
                raws.append(os.fspath(inp.value))
        layer = 1 + max((nodes[p].layer for p in stage_preds if p in nodes), default=0)
        nodes[status.stage.name] = _Node(status.stage.name, status.stage.name, layer, status, [*stage_preds, *(f"raw:{r}" for r in raws)])
        for raw in raws:
            key = f"raw:{raw}"
            if key not in nodes or nodes[key].layer > layer - 1:
                nodes[key] = _Node(key, raw, layer - 1)
    layers: dict[int, list[_Node]] = {}
    for node in sorted(nodes.values(), key=lambda n: n.key.startswith("raw:")):
        layers.setdefault(node.layer, []).append(node)
    for column in layers.values():
        for row, node in enumerate(column):
            node.row = row
    succs: dict[str, list[str]] = {}
    for node in nodes.values():
        for pred in node.preds:
            succs.setdefault(pred, []).append(node.key)
    for neighbours, order in ((lambda n: n.preds, sorted(layers)), (lambda n: succs.get(n.key, []), sorted(layers, reverse=True))):
        for layer in order:
            column = layers[layer]
            column.sort(key=lambda n: _barycenter([nodes[k].row for k in neighbours(n) if k in nodes], n.row))
            for row, node in enumerate(column):
                node.row = row
    tallest = max(len(column) for column in layers.values())
    for column in layers.values():
        for node in column:
            node.row += (tallest - len(column)) / 2  # each column centred
    return list(nodes.values())


def _barycenter(rows: list[float], own: float) -> float:
    return sum(rows) / len(rows) if rows else own


def _position(node: _Node) -> tuple[int, int]:
    return _PAD + node.layer * (_WIDTH + _GAP_X), _PAD + int(node.row * (_HEIGHT + _GAP_Y))


def _header(target: Stage, statuses: list[StageStatus]) -> str:
    counts = Counter(s.state for s in statuses)
    states = " · ".join(
        f'<span class="lwdp-dot" style="background:{_COLORS[state][0]}"></span>{n} {html.escape(state)}'
        for state, n in sorted(counts.items())
    )
    made = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M")
    return (f'<h1>{html.escape(target.name)}</h1>\n<p class="lwdp-meta">{len(statuses)} stages: {states} — '
            f"drawn {made} by lwdp {html.escape(__version__)}</p>")


def _graph(nodes: list[_Node], computations: dict[str, list[tuple[float | None, int | None]]],
           partitions: dict[str, StageStatus]) -> str:
    by_key = {node.key: node for node in nodes}
    width = max(_position(n)[0] for n in nodes) + _WIDTH + _PAD
    height = max(_position(n)[1] for n in nodes) + _HEIGHT + _PAD
    edges = []
    for node in nodes:
        x2, y2 = _position(node)
        for pred in node.preds:
            x1, y1 = _position(by_key[pred])
            a, b = (x1 + _WIDTH, y1 + _HEIGHT // 2), (x2, y2 + _HEIGHT // 2)
            bend = max(30, (b[0] - a[0]) // 2)
            edges.append(f'<path d="M{a[0]},{a[1]} C{a[0] + bend},{a[1]} {b[0] - bend},{b[1]} {b[0] - 4},{b[1]}" '
                         f'marker-end="url(#lwdp-arrow)"><title>{html.escape(by_key[pred].label)} → '
                         f"{html.escape(node.label)}</title></path>")
    boxes = [_box(node, computations.get(node.key, []), partitions) for node in nodes]
    return (
        f'<div class="lwdp-dag" style="width:{width}px;height:{height}px">\n'
        f'<svg class="lwdp-edges" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        '<defs><marker id="lwdp-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#777"/></marker></defs>\n' + "\n".join(edges) + "\n</svg>\n"
        + "\n".join(boxes) + "\n</div>"
    )


def _box(node: _Node, done: list[tuple[float | None, int | None]], partitions: dict[str, StageStatus]) -> str:
    x, y = _position(node)
    place = f"left:{x}px;top:{y}px;width:{_WIDTH}px;height:{_HEIGHT}px"
    if node.status is None:
        border, fill = _COLORS["raw"]
        place = f"left:{x}px;top:{y + (_HEIGHT - _RAW_HEIGHT) // 2}px;width:{_WIDTH}px;height:{_RAW_HEIGHT}px"
        return (f'<div class="lwdp-node lwdp-raw" style="{place};border-color:{border};background:{fill}" '
                f'title="raw input {html.escape(node.label)}"><div class="lwdp-kind">raw input</div>'
                f'<div class="lwdp-path">{html.escape(node.label)}</div></div>')
    status = node.status
    border, fill = _COLORS[status.state]
    module, _, name = status.stage.name.rpartition(".")
    lines = []
    if done and done[0][0] is not None:
        size = f" · {human_size(done[0][1])}" if done[0][1] is not None else ""
        lines.append(f"last computed in {done[0][0]:.2f} s{size}")
    elif status.stage.partition_by is None:  # a partitioned stage's computations are its partitions'
        lines.append("no computation in the history")
    if status.stage.partitions:
        states = Counter(s.state for s in partitions.values() if s.stage in status.stage.partitions)
        lines.append(f"{len(status.stage.partitions)} partitions: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    why = "; ".join(status.reasons)
    spark = _sparkline([s for s, _ in reversed(done[:20]) if s is not None])
    text = "".join(f'<div class="lwdp-line">{html.escape(line)}</div>' for line in lines)
    if why:
        text += f'<div class="lwdp-why">why: {html.escape(why)}</div>'
    tip = html.escape(f"{status.stage.name} {status.hash[:12]}: {status.state}" + (f": {why}" if why else ""))
    return (f'<div class="lwdp-node" style="{place};border-color:{border};background:{fill}" title="{tip}">'
            f'<div class="lwdp-top"><span class="lwdp-name">{html.escape(name)}</span>'
            f'<span class="lwdp-state" style="background:{border}">{html.escape(status.state)}</span></div>'
            f'<div class="lwdp-module">{html.escape(module)}</div>{text}{spark}</div>')


def _sparkline(seconds: list[float]) -> str:
    """The stage's compute times, oldest first: a line of its computations in the history."""
    if len(seconds) < 2:
        return ""
    width, height, top = 90, 18, max(seconds) or 1.0
    step = width / (len(seconds) - 1)
    points = " ".join(f"{i * step:.1f},{height - 1 - (value / top) * (height - 2):.1f}" for i, value in enumerate(seconds))
    values = ", ".join(f"{value:.2f}" for value in seconds)
    return (f'<svg class="lwdp-spark" width="{width}" height="{height}"><title>seconds per computation, oldest first: '
            f'{values}</title><polyline points="{points}" fill="none" stroke="#555" stroke-width="1.5"/></svg>')


def _runs_chart(runs: list[RunRecord]) -> str:
    """The target's recent runs, oldest left: a bar each, its height the run's time."""
    if not runs:
        return '<h2>Runs</h2>\n<p class="lwdp-meta">no run of this stage in the history yet</p>'
    ordered = list(reversed(runs))
    took = [(run.ended_at - run.started_at).total_seconds() for run in ordered]
    top, bar, height = max(took) or 1.0, 22, 80
    bars = []
    for i, (run, seconds) in enumerate(zip(ordered, took)):
        tall = max(2.0, seconds / top * height)
        counts = ", ".join(f"{n} {o}" for o, n in sorted(Counter(s.outcome for s in run.stages).items()))
        tip = html.escape(f"{run.started_at.astimezone():%Y-%m-%d %H:%M:%S}: {run.outcome} in {seconds:.2f} s ({counts})")
        bars.append(f'<rect x="{i * (bar + 6)}" y="{height - tall:.1f}" width="{bar}" height="{tall:.1f}" '
                    f'fill="{_OUTCOMES.get(run.outcome, "#888")}"><title>{tip}</title></rect>')
    width = len(ordered) * (bar + 6)
    latest = ordered[-1]
    return (f'<h2>Runs of this stage</h2>\n<svg class="lwdp-runs" width="{width}" height="{height}">{"".join(bars)}</svg>\n'
            f'<p class="lwdp-meta">{len(ordered)} runs, oldest left; the latest: {html.escape(latest.outcome)} in '
            f"{took[-1]:.2f} s on {html.escape(str(latest.host))}</p>")


_CSS = """
.lwdp-report { font: 13px/1.35 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; }
.lwdp-report h1 { font-size: 18px; margin: 4px 0; }
.lwdp-report h2 { font-size: 15px; margin: 18px 0 6px; }
.lwdp-report .lwdp-meta { color: #555; margin: 2px 0 10px; }
.lwdp-report .lwdp-dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin: 0 4px 0 2px; }
.lwdp-report .lwdp-dag { position: relative; }
.lwdp-report .lwdp-edges { position: absolute; left: 0; top: 0; }
.lwdp-report .lwdp-edges path { fill: none; stroke: #999; stroke-width: 1.5; }
.lwdp-report .lwdp-node { position: absolute; box-sizing: border-box; border: 2px solid; border-radius: 8px;
  padding: 6px 8px; overflow: hidden; }
.lwdp-report .lwdp-raw { border-style: dashed; }
.lwdp-report .lwdp-top { display: flex; justify-content: space-between; gap: 6px; align-items: center; }
.lwdp-report .lwdp-name { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.lwdp-report .lwdp-state { color: #fff; border-radius: 9px; padding: 0 7px; font-size: 11px; white-space: nowrap; }
.lwdp-report .lwdp-module, .lwdp-report .lwdp-kind { color: #666; font-size: 11px; }
.lwdp-report .lwdp-path { font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all; margin-top: 4px; }
.lwdp-report .lwdp-line { font-size: 11.5px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.lwdp-report .lwdp-why { font-size: 11.5px; color: #8a4b00; display: -webkit-box; -webkit-line-clamp: 2;
  -webkit-box-orient: vertical; overflow: hidden; }
.lwdp-report .lwdp-spark { display: block; margin-top: 2px; }
"""
