"""Where results live: the catalog (SQL) and the artifact store (files), and their upkeep."""

from .connections import close
from .gc import GcReport, Removal, gc
from .lineage import ArtifactList, Dependent, Dependents, LineageNode, artifacts, dependents, lineage
from .verify import Problem, VerifyReport, verify

__all__ = [
    "ArtifactList", "Dependent", "Dependents", "GcReport", "LineageNode", "Problem", "Removal",
    "VerifyReport", "artifacts", "close", "dependents", "gc", "lineage", "verify",
]
