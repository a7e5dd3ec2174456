"""Where results live: the catalog (SQL) and the artifact store (files).

``lwdp.store`` is also where users find upkeep (`gc`, `verify`, `lineage`, `artifacts`,
`dependents`), defined in `lwdp.upkeep`, which sits above the store: those names are
imported when first used, so a run, which needs none of them, never loads them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .connections import close

if TYPE_CHECKING:
    from ..upkeep.gc import GcReport, Removal, gc
    from ..upkeep.lineage import ArtifactList, Dependent, Dependents, LineageNode, artifacts, dependents, lineage
    from ..upkeep.verify import Problem, VerifyReport, verify

_UPKEEP = {
    "gc": "gc", "GcReport": "gc", "Removal": "gc",
    "verify": "verify", "Problem": "verify", "VerifyReport": "verify",
    "lineage": "lineage", "artifacts": "lineage", "dependents": "lineage",
    "ArtifactList": "lineage", "Dependent": "lineage", "Dependents": "lineage", "LineageNode": "lineage",
}

__all__ = ["close", *sorted(_UPKEEP)]


def __getattr__(name: str) -> Any:
    module = _UPKEEP.get(name)
    if module is None:
        raise AttributeError(f"module 'lwdp.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lwdp.upkeep.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_UPKEEP})
