"""The cache's budget (``max_cache_size``), kept at the end of every run that wrote.

A run that wrote artifacts ends by bringing the cache under its budget: one SUM over an
index when nothing must go, else the cost policy's victims (`lwdp.store.eviction`),
never what the run produced or loaded (``keep``), nor what another process is reading or
computing (its lock). When what the run itself needs exceeds the budget, it keeps it and
says so once. With a shared catalog, the team's rows are not this cache's to remove: the
budget then applies to the shared store (``max_store_size``).
"""

from __future__ import annotations

import logging

from ..formats import FORMATS
from ..units import human_size
from .cache import ResultCache

logger = logging.getLogger("lwdp")


def bring_under_budget(cache: ResultCache, budget: int, keep: frozenset[str]) -> None:
    """Evict the cache's artifacts the cost policy gives up first until it fits ``budget``
    bytes, keeping those in ``keep``."""
    if cache.settings.catalog_url is not None or cache.catalog.total_size() <= budget:
        return
    victims = cache.catalog.eviction_victims(None, budget, set(), "cost", keep)
    removed = [row for row, _ in victims if cache.evict(row.hash, FORMATS[row.format].suffix)]
    total = cache.catalog.total_size()
    if removed:
        logger.info(
            "cache over its budget of %s: removed %d artifacts (%s) that cost least to have again; %s now",
            human_size(budget), len(removed), human_size(sum(row.size for row in removed)), human_size(total),
        )
    if total > budget:
        logger.warning(
            "the cache holds %s, over its budget of %s (max_cache_size): what this run produced and loaded, and "
            "what other processes are using, is kept; raise the budget or run fewer stages at once",
            human_size(total), human_size(budget),
        )
