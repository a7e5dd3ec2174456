"""Process-wide options: where the cache lives (`configure(cache_dir=...)`, else
``LWDP_CACHE_DIR``, else ``./.lwdp``) and which installed packages' versions every stage
hash covers (`configure(hash_packages=[...])`, else ``LWDP_HASH_PACKAGES``)."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import UnknownPackageError

ENV_CACHE_DIR = "LWDP_CACHE_DIR"
ENV_HASH_PACKAGES = "LWDP_HASH_PACKAGES"
DEFAULT_CACHE_DIR = ".lwdp"

_UNCHANGED: Any = object()
_configured_cache_dir: Path | None = None
_configured_hash_packages: tuple[str, ...] | None = None


def configure(
    *,
    cache_dir: str | os.PathLike[str] | None = _UNCHANGED,
    hash_packages: Iterable[str] | None = _UNCHANGED,
) -> None:
    """Set process-wide options; an option not passed keeps its value, and ``None`` goes
    back to the environment/default rule.

    ``cache_dir``: a relative one is resolved against the working directory now, so a
    later ``os.chdir`` does not move the cache.

    ``hash_packages``: installed distributions (``["pandas", "numpy"]``) whose versions
    become part of every stage hash, so that upgrading one recomputes; lwdp otherwise
    names library functions without hashing their code.

    :raises UnknownPackageError: a name in ``hash_packages`` is not installed.
    """
    global _configured_cache_dir, _configured_hash_packages
    if cache_dir is not _UNCHANGED:
        _configured_cache_dir = None if cache_dir is None else Path(cache_dir).absolute()
    if hash_packages is not _UNCHANGED:
        if isinstance(hash_packages, str):
            hash_packages = [hash_packages]
        names = None if hash_packages is None else tuple(sorted(set(hash_packages)))
        for name in names or ():
            _installed_version(name, "lwdp.configure(hash_packages=...)")
        _configured_hash_packages = names


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory in force at this moment (absolute; not created here): ``override``
    when given (a ``cache_dir=`` argument), else the configured one, else the environment's."""
    if override is not None:
        return Path(override).absolute()
    if _configured_cache_dir is not None:
        return _configured_cache_dir
    from_env = os.environ.get(ENV_CACHE_DIR)
    return Path(from_env or DEFAULT_CACHE_DIR).absolute()


def package_versions() -> dict[str, str]:
    """{package: installed version} of the packages every stage hash covers (read now, so
    an upgrade between runs is seen).

    :raises UnknownPackageError: a package named in ``LWDP_HASH_PACKAGES`` or configured
        earlier is not installed (any more).
    """
    if _configured_hash_packages is not None:
        names, where = _configured_hash_packages, "lwdp.configure(hash_packages=...)"
    else:
        names = tuple(sorted({n.strip() for n in os.environ.get(ENV_HASH_PACKAGES, "").split(",") if n.strip()}))
        where = ENV_HASH_PACKAGES
    return {name: _installed_version(name, where) for name in names}


def _installed_version(name: str, where: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        raise UnknownPackageError(
            f"{where}: no installed package is named {name!r}; give distribution names "
            "as pip knows them (pip list shows them)"
        ) from None
