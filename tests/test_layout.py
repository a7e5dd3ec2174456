"""The package's layout: folders in the order of the flow, each module importing only what
sits below it, and no import cycle among lwdp's modules, lazy imports (inside functions)
included. Imports only for type checking (``if TYPE_CHECKING:``) don't count: they never run.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import lwdp

PACKAGE = Path(lwdp.__file__).parent
# The flow, lowest first: a module may import from its own layer (without a cycle) and below.
LAYERS = (
    ("lwdp.version", "lwdp.errors", "lwdp.units", "lwdp.config", "lwdp.urls", "lwdp.graph"),
    ("lwdp.formats",),
    ("lwdp.hashing",),
    ("lwdp.store",),
    ("lwdp.run",),
    ("lwdp.partitions", "lwdp.stage"),
    ("lwdp.upkeep",),
    ("lwdp.progress",),
    ("lwdp.cli", "lwdp.__main__"),
)
# Public namespaces: they name what users call, wherever it is defined (lazily where it sits higher).
NAMESPACES = {"lwdp", "lwdp.store"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("lwdp", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth, but those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            pending += node.orelse
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        pending += ast.iter_child_nodes(node)
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the lwdp modules it imports}."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # ``from X import y``: the module X.y if there is one, else X itself.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _layer(module: str) -> int:
    if module == "lwdp":
        return len(LAYERS)  # the package's namespace: above everything
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def test_no_import_cycle_among_lwdps_modules():
    graph = import_graph()
    assert len(graph) > 30 and "lwdp.store.catalog" in graph["lwdp.store.cache"] | graph["lwdp.run.context"]
    assert {"lwdp.upkeep.gc", "lwdp.upkeep.verify", "lwdp.upkeep.lineage", "lwdp.upkeep.history"} <= graph["lwdp.store"]  # its lazy names
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' imports '.join(reversed(exc.args[1]))}") from None


def test_each_module_imports_only_what_sits_below_it():
    upward = sorted(
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in import_graph().items()
        if module not in NAMESPACES
        for target in targets
        if _layer(target) > _layer(module)
    )
    assert not upward, "\n".join(upward)


def test_the_checker_sees_lazy_imports_and_skips_type_checking_ones(tmp_path):
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\nelse:\n    import b\n"
        "def f():\n    from .c import C\nif not TYPE_CHECKING:\n    import d\n"
    )
    found = [ast.unparse(node) for node in _runtime_imports(tree)]
    assert sorted(found) == ["from .c import C", "from typing import TYPE_CHECKING", "import b", "import d"]


def test_import_lwdp_loads_no_upkeep_and_no_sqlalchemy():
    code = (
        "import sys, lwdp, lwdp.store\n"
        "print(sorted(m for m in sys.modules if m.startswith(('lwdp.upkeep', 'lwdp.cli', 'sqlalchemy', 'alembic'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
