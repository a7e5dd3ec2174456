"""The cache's budgets, kept at the end of every run that computed: ``max_cache_size`` for
this machine's cache directory, ``max_store_size`` for a team's shared store.

One SUM over an index when nothing must go; else the cost policy's victims
(`lwdp.store.eviction`), never what the run produced or loaded (``keep``), nor what
another process is reading or computing (its lock). When what must stay exceeds a
budget, the run keeps it and says so once.

Where an artifact lives decides what a budget removes (`lwdp.store.placement`). Without a
shared store, the local budget removes artifacts. With one, local files are copies: the
local budget removes copies only (a later run downloads again), and the store's budget,
kept only with a shared catalog (whose use times are the team's), removes artifacts from
the store and the catalog. With a shared catalog and no store, the local budget weighs
this member's own artifacts, never a teammate's rows.
"""

from __future__ import annotations

import logging

from ..formats import FORMATS
from ..units import human_size
from .cache import ResultCache

logger = logging.getLogger("lwdp")


def keep_budgets(cache: ResultCache, keep: frozenset[str]) -> None:
    """Bring the cache, then the shared store, under their budgets, keeping ``keep``."""
    settings, placement = cache.settings, cache.placement
    if settings.max_cache_size is not None:
        # Alone, every row is a local file (one SUM); shared, only the rows of local files count.
        shared = placement.local_copy_optional or placement.shared_catalog
        others = set(cache.catalog.listed_formats()) - set(cache.store.artifacts()) if shared else set()
        _bring_under(cache, settings.max_cache_size, "max_cache_size", keep, others, copies=placement.local_copy_optional)
    if settings.max_store_size is not None and placement.evicts_from_shared_store:
        _bring_under(cache, settings.max_store_size, "max_store_size", keep, set(), copies=False)


def _bring_under(cache: ResultCache, budget: int, setting: str, keep: frozenset[str], others: set[str], copies: bool) -> None:
    """Evict what the cost policy gives up first until the artifacts not in ``others`` fit
    ``budget`` bytes: their local ``copies`` only, or the artifacts (from the shared store
    too when the budget is the store's)."""
    if cache.catalog.total_size(others) <= budget:
        return
    where = "shared store" if setting == "max_store_size" else "cache"
    victims = cache.catalog.eviction_victims(None, budget, others, "cost", keep)
    shared = cache.remote if setting == "max_store_size" else None
    removed = [row for row, _ in victims if cache.evict(row.hash, FORMATS[row.format].suffix, shared=shared, copy_only=copies)]
    if removed:
        logger.info(
            "%s over its budget of %s: removed %d %s (%s) that cost least to have again", where, human_size(budget),
            len(removed), "local copies" if copies else "artifacts", human_size(sum(row.size for row in removed)),
        )
    left = cache.catalog.total_size(others | {row.hash for row in removed} if copies else others)
    if left > budget:
        logger.warning(
            "the %s holds %s, over its budget of %s (%s): what this run produced and loaded, and what other "
            "processes are using, is kept; raise the budget or run fewer stages at once",
            where, human_size(left), human_size(budget), setting,
        )
