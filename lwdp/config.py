"""Where the cache lives: `configure(cache_dir=...)`, else ``LWDP_CACHE_DIR``, else ``./.lwdp``."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE_DIR = "LWDP_CACHE_DIR"
DEFAULT_CACHE_DIR = ".lwdp"

_configured_cache_dir: Path | None = None


def configure(*, cache_dir: str | os.PathLike[str] | None = None) -> None:
    """Set process-wide options; ``cache_dir=None`` goes back to the environment/default rule.

    A relative ``cache_dir`` is resolved against the working directory now, so a later
    ``os.chdir`` does not move the cache.
    """
    global _configured_cache_dir
    _configured_cache_dir = None if cache_dir is None else Path(cache_dir).absolute()


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory in force at this moment (absolute; not created here): ``override``
    when given (a ``cache_dir=`` argument), else the configured one, else the environment's."""
    if override is not None:
        return Path(override).absolute()
    if _configured_cache_dir is not None:
        return _configured_cache_dir
    from_env = os.environ.get(ENV_CACHE_DIR)
    return Path(from_env or DEFAULT_CACHE_DIR).absolute()
