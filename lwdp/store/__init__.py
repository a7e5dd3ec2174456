"""Where results live: the catalog (SQL) and the artifact store (files).

``lwdp.store`` is also where users find upkeep (`gc`, `verify`, `lineage`, `artifacts`,
`dependents`, `du`, `history`), defined in `lwdp.upkeep`, which sits above the store: those names are
imported when first used, so a run, which needs none of them, never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .connections import close

if TYPE_CHECKING:
    from ..upkeep.gc import GcReport, Removal, gc
    from ..upkeep.history import Change, History, history
    from ..upkeep.lineage import ArtifactList, Dependent, Dependents, LineageNode, artifacts, dependents, lineage
    from ..upkeep.usage import StageUsage, Usage, du
    from ..upkeep.verify import Problem, VerifyReport, verify

_GC = {"gc", "GcReport", "Removal"}
_VERIFY = {"verify", "Problem", "VerifyReport"}
_LINEAGE = {"lineage", "artifacts", "dependents", "ArtifactList", "Dependent", "Dependents", "LineageNode"}
_USAGE = {"du", "StageUsage", "Usage"}
_HISTORY = {"history", "Change", "History"}

__all__ = ["close", *sorted(_GC | _VERIFY | _LINEAGE | _USAGE | _HISTORY)]


def __getattr__(name: str) -> Any:
    if name in _GC:
        from ..upkeep import gc as module
    elif name in _VERIFY:
        from ..upkeep import verify as module  # type: ignore[no-redef]
    elif name in _LINEAGE:
        from ..upkeep import lineage as module  # type: ignore[no-redef]
    elif name in _USAGE:
        from ..upkeep import usage as module  # type: ignore[no-redef]
    elif name in _HISTORY:
        from ..upkeep import history as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module 'lwdp.store' has no attribute {name!r}")
    return _keep(name, module)


def _keep(name: str, module: Any) -> Any:
    """The name's value, kept in this namespace (the next access finds it directly)."""
    value = globals()[name] = getattr(module, name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
