"""The pipeline as a graph: what every layer needs to know of a stage (its name, inputs and
upstreams, `StageNode`) and the order to take a pipeline in, without the `lwdp.stage`
decorator that makes stages (which sits above the run, the hash and the store)."""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import StageNameCollisionError

if TYPE_CHECKING:
    from .formats import Format
    from .hashing.code import CodeDigest


@dataclass(frozen=True, eq=False)
class Input:
    """One input of a stage: a raw path as written, an upstream `Stage`, or a parameter."""

    name: str
    kind: str  # "raw" | "stage" | "param"
    value: Any
    digest: str | None = None  # parameters only; raw and stage digests depend on the run


def qualified_name(func: Callable[..., Any]) -> str:
    """``module.qualname``; a script run as ``__main__`` is named after its file (also in
    the worker processes of a parallel run, which import it as ``__mp_main__``)."""
    module = func.__module__
    if module in ("__main__", "__mp_main__"):
        main_file = getattr(sys.modules.get(module), "__file__", None)
        if main_file:
            module = Path(main_file).stem
    return f"{module}.{func.__qualname__}"


class StageNode:
    """A stage as the layers below the decorator see it (`lwdp.stage.Stage` is one)."""

    name: str
    inputs: tuple[Input, ...]
    func: Callable[..., Any]
    cache: bool
    format: Format | None
    code: CodeDigest  # what its code digest is made of (`lwdp.hashing.code`)
    code_digest: str
    passed_inputs: frozenset[str]  # the inputs the function takes
    module: str  # where worker processes find it: the module that makes it when imported
    partitions: tuple[StageNode, ...] = ()  # a partitioned stage's: one per file (`lwdp.partitions`)
    partition: str | None = None  # a partition's: its file's path as matched
    env: tuple[str, ...] = ()  # environment variables whose values its hash covers

    def refresh(self) -> None:
        """Bring the inputs up to date before a run orders the pipeline (a partitioned
        stage lists its files); nothing for others."""

    def inputs_of_kind(self, kind: str) -> list[Input]:
        return [inp for inp in self.inputs if inp.kind == kind]

    @property
    def upstreams(self) -> list[Any]:
        """The stages this one reads (of the same class as it)."""
        return [inp.value for inp in self.inputs_of_kind("stage")]


_registry: weakref.WeakValueDictionary[str, StageNode] = weakref.WeakValueDictionary()


def register(node: StageNode) -> None:
    """Remember the stage by name (the last one made wins), so that a worker process that
    imports its module finds it, wherever the module keeps it (a factory's dict, a class)."""
    _registry[node.name] = node


def registered(name: str) -> StageNode | None:
    """The stage of that name, or the partition ``STAGE[PATH]`` of a partitioned one."""
    found = _registry.get(name)
    if found is None and name.endswith("]") and "[" in name:
        parent = _registry.get(name[: name.index("[")])
        if parent is not None:
            parent.refresh()
            found = next((p for p in parent.partitions if p.name == name), None)
    return found


NodeT = TypeVar("NodeT", bound=StageNode)


def dependency_order(target: NodeT) -> list[NodeT]:
    """``target`` and its ancestors, each after its upstreams (a loop, not recursion: a
    pipeline may be deeper than Python's recursion limit).

    :raises StageNameCollisionError: two different stages share a qualified name.
    """
    order: list[NodeT] = []
    by_name: dict[str, NodeT] = {}
    expanded: set[NodeT] = set()
    stack = [target]
    while stack:
        stage = stack[-1]
        if stage in expanded:
            stack.pop()
            if stage not in order:
                order.append(stage)
            continue
        expanded.add(stage)
        stage.refresh()
        other = by_name.setdefault(stage.name, stage)
        if other is not stage:
            raise StageNameCollisionError(
                f"two different stages are named '{stage.name}' in the pipeline of "
                f"'{target.name}'; rename one of the functions (a stage factory: set each "
                "function's __qualname__ before applying @stage)"
            )
        stack.extend(up for up in reversed(stage.upstreams) if up not in expanded)
    return order
