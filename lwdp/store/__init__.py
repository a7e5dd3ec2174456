"""Where results live: the catalog (SQL) and the artifact store (files), and their upkeep."""

from .verify import Problem, VerifyReport, verify

__all__ = ["Problem", "VerifyReport", "verify"]
