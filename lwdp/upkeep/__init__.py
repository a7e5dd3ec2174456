"""Keeping a cache in shape, and reading its history: eviction (`gc`), checks and repairs
(`verify`), lineage queries (`lineage`). Users call them as ``lwdp.store.gc`` and so on."""
