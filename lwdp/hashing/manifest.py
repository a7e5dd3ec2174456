"""A stage hash's manifest (what went into it), and the difference between two manifests in
words: why a stage must rerun.

The manifest names every part of the hash: each function and class of the stage's code
with a digest per part (code, constants read, captured values, defaults), and each input
with its digest and what a user recognizes it by (path, upstream stage, parameter value,
package version). The catalog keeps one per evaluated stage hash.
"""

from __future__ import annotations

import reprlib
from typing import TYPE_CHECKING, Any

from .stage_hash import HASH_SCHEME, InputRow
from .tracked import TRACKED_FILE, TRACKED_KINDS, TRACKED_LISTING, WATCHED

if TYPE_CHECKING:
    from .references import NodeDigest
    from ..graph import StageNode

Manifest = dict[str, Any]

_VALUE_REPR = reprlib.Repr()
_VALUE_REPR.maxstring = _VALUE_REPR.maxother = 60


def stage_manifest(stage: StageNode, rows: list[InputRow]) -> Manifest:
    """The manifest of ``stage``'s hash, given its input rows from `lwdp.hashing.stage_hashes`."""
    inputs: dict[str, dict[str, str]] = {}
    by_name = {inp.name: inp for inp in stage.inputs}
    for name, kind, digest, detail in rows:
        if kind == WATCHED:  # a mark for early cutoff, not an input
            continue
        entry = {"kind": kind, "digest": digest}
        if kind == "raw" and detail is not None:
            entry["path"] = detail
        elif kind == "stage":
            entry["stage"] = by_name[name].value.name
        elif kind == "param":
            entry["value"] = _VALUE_REPR.repr(by_name[name].value)
        elif kind == "package" and detail is not None:
            entry["version"] = detail
        elif kind in TRACKED_KINDS and detail is not None:
            entry["path"] = detail
        inputs[name] = entry
    code: dict[str, Any]
    if stage.code.version is not None:
        code = {"digest": stage.code_digest, "version": stage.code.version}
    else:
        (own, *_), helpers = stage.code.nodes.values(), stage.code.nodes
        code = {"digest": stage.code_digest, "own": own, "helpers": {name: helpers[name] for name in stage.code.helpers}}
    return {"scheme": HASH_SCHEME, "code": code, "inputs": inputs}


def why_rerun(stored_before: bool, before: Manifest | None, now: Manifest) -> list[str]:
    """Why a stage has no result for its current hash: evicted (``stored_before``), else what
    differs between the manifest of its previous hash (``before``) and the current one
    ``now``, or "never computed" without a previous one."""
    if stored_before:
        return ["its result was cached before and is gone (evicted by gc or deleted)"]
    if before is None:
        return ["never computed"]
    reasons = _input_changes(before.get("inputs", {}), now["inputs"])
    reasons += _code_changes(before.get("code", {}), now["code"])
    if not reasons and before.get("scheme") != now["scheme"]:
        reasons.append(f"lwdp's hash scheme changed ({before.get('scheme')} -> {now['scheme']})")
    return reasons or ["code changed"]


def _input_changes(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> list[str]:
    reasons = [f"{_input_label(name, new[name])} added" for name in sorted(set(new) - set(old))]
    reasons += [f"{_input_label(name, old[name])} removed" for name in sorted(set(old) - set(new))]
    for name in sorted(set(old) & set(new)):
        was, now = old[name], new[name]
        if was == now:
            continue
        kind = now["kind"]
        if kind != was.get("kind"):
            reasons.append(f"input `{name}` is now a {_KIND_WORDS.get(kind, kind)} (was a {_KIND_WORDS.get(was.get('kind', ''), '?')})")
        elif kind == "raw" and was.get("path") != now.get("path"):
            reasons.append(f"raw input `{name}` now reads {now.get('path')} (was {was.get('path')})")
        elif kind == "raw":
            reasons.append(raw_content_changed(name, now.get("path")))
        elif kind == "stage":
            reasons.append(f"upstream `{name}` changed" + _also_named(name, now.get("stage")))
        elif kind == "param":
            reasons.append(f"parameter `{name}` changed {was.get('value')} → {now.get('value')}")
        elif kind == "package":
            reasons.append(f"{_input_label(name, now)} changed {was.get('version')} → {now.get('version')}")
        elif kind == TRACKED_LISTING:
            reasons.append(f"{_input_label(name, now)}: its listing changed")
        else:
            reasons.append(f"{_input_label(name, now)} changed")
    return reasons


def raw_content_changed(name: str, path: str | None) -> str:
    """Why a stage reruns when a raw input's bytes changed."""
    return f"raw input `{name}` ({path}) content changed"


_KIND_WORDS = {"raw": "raw input", "stage": "upstream", "param": "parameter", "package": "package", "env": "environment variable"}


def _input_label(name: str, entry: dict[str, str]) -> str:
    kind = entry["kind"]
    if kind in ("package", "env"):
        return f"{_KIND_WORDS[kind]} `{name.removeprefix(kind + ' ')}`"
    if kind == TRACKED_FILE:
        return f"tracked file {entry.get('path')}"
    if kind == TRACKED_LISTING:
        return f"tracked directory {entry.get('path')}"
    return f"{_KIND_WORDS.get(entry['kind'], 'input')} `{name}`"


def _also_named(input_name: str, stage_name: str | None) -> str:
    short = (stage_name or "").rsplit(".", 1)[-1]
    return f" (stage {short})" if short and short != input_name else ""


def _code_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Which functions and classes changed, and which part of each; the stage's own first
    (or how its version pin changed)."""
    if "version" in old or "version" in new:
        if old.get("version") == new.get("version"):
            return []
        if "version" not in old:
            return [f"version pinned to {new['version']} (its code no longer counts)"]
        if "version" not in new:
            return [f"version pin {old['version']} removed (its code counts again)"]
        return [f"version changed {old['version']} → {new['version']}"]
    if "own" not in old:
        return []
    reasons = _part_changes(old["own"]["parts"], new["own"]["parts"], None)
    helpers_before, helpers_now = old.get("helpers", {}), new["helpers"]
    for name in sorted(set(helpers_now) - set(helpers_before)):
        reasons.append(f"now uses {_helper_label(name, helpers_now[name])}")
    for name in sorted(set(helpers_before) - set(helpers_now)):
        reasons.append(f"no longer uses {_helper_label(name, helpers_before[name])}")
    for name in sorted(set(helpers_now) & set(helpers_before)):
        if helpers_now[name]["digest"] != helpers_before[name]["digest"]:
            reasons += _part_changes(helpers_before[name]["parts"], helpers_now[name]["parts"], _helper_label(name, helpers_now[name]))
    return reasons


def _helper_label(name: str, node: NodeDigest) -> str:
    return f"helper `{node.get('qualname', name)}` in {node['file']}"


def _part_changes(old: dict[str, str], new: dict[str, str], helper: str | None) -> list[str]:
    """Sentences for the parts of one function or class that differ; ``helper`` is its
    label, None for the stage function itself."""
    reasons = []
    for what in sorted(set(old) | set(new), key=_code_first):
        if old.get(what) == new.get(what):
            continue
        kind, _, name = what.partition(" ")
        if kind == "code":
            reasons.append("code changed" if helper is None else f"{helper} changed")
            continue
        if kind == "constant":
            sentence = f"module constant `{name}` changed"
        elif kind == "closure":
            sentence = f"captured value `{name}` changed"
        elif kind == "default":
            sentence = f"default of argument `{name}` changed"
        elif kind in ("method", "attribute", "base"):
            sentence = f"{kind} `{name}` changed"
        else:
            sentence = f"`{name}` now refers to something else"
        reasons.append(sentence if helper is None else f"{sentence} (in {helper})")
    return reasons


def _code_first(what: str) -> tuple[bool, str]:
    return what != "code", what
