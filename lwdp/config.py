"""Process-wide options, each set by `configure`, else by an environment variable:

- ``cache_dir`` (``LWDP_CACHE_DIR``, else ``./.lwdp``): the local cache and its SQLite catalog;
- ``store_url`` (``LWDP_STORE_URL``): a shared artifact store, any fsspec URL (``s3://...``);
- ``catalog_url`` (``LWDP_CATALOG_URL``): a shared catalog, a SQLAlchemy URL (PostgreSQL);
- ``trust_pickle`` (``LWDP_TRUST_PICKLE=1``): load pickle artifacts from a shared store;
- ``hash_packages`` (``LWDP_HASH_PACKAGES=a,b``): packages whose versions every stage hash covers.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import UnknownPackageError

ENV_CACHE_DIR = "LWDP_CACHE_DIR"
ENV_HASH_PACKAGES = "LWDP_HASH_PACKAGES"
ENV_STORE_URL = "LWDP_STORE_URL"
ENV_CATALOG_URL = "LWDP_CATALOG_URL"
ENV_TRUST_PICKLE = "LWDP_TRUST_PICKLE"
DEFAULT_CACHE_DIR = ".lwdp"

_UNCHANGED: Any = object()
_configured_cache_dir: Path | None = None
_configured_hash_packages: tuple[str, ...] | None = None
_configured_urls: dict[str, str | None] = {"store_url": None, "catalog_url": None}
_configured_trust_pickle: bool | None = None
_configured_storage_options: dict[str, Any] = {}


def configure(
    *,
    cache_dir: str | os.PathLike[str] | None = _UNCHANGED,
    hash_packages: Iterable[str] | None = _UNCHANGED,
    store_url: str | None = _UNCHANGED,
    catalog_url: str | None = _UNCHANGED,
    trust_pickle: bool | None = _UNCHANGED,
    storage_options: dict[str, Any] | None = _UNCHANGED,
) -> None:
    """Set process-wide options; an option not passed keeps its value, and ``None`` goes
    back to the environment/default rule.

    ``cache_dir``: a relative one is resolved against the working directory now, so a
    later ``os.chdir`` does not move the cache.

    ``hash_packages``: installed distributions (``["pandas", "numpy"]``) whose versions
    become part of every stage hash, so that upgrading one recomputes; lwdp otherwise
    names library functions without hashing their code.

    ``store_url``: where a team's artifacts live (``"s3://team-bucket/lwdp"``), read
    through the local cache; ``catalog_url``: the catalog the team shares
    (``"postgresql+psycopg://analytics@db/lwdp"``). Credentials come from the usual
    places (AWS variables and profiles, ``~/.pgpass``), never from lwdp.

    ``storage_options``: fsspec options for the store and for remote raw inputs (e.g.
    ``{"profile": "team"}``); `storage_options()` gives them back for ``pd.read_csv``.

    ``trust_pickle``: pickle artifacts found in a shared store are loaded only when True
    (loading a pickle runs code); otherwise lwdp recomputes them.

    :raises UnknownPackageError: a name in ``hash_packages`` is not installed.
    """
    global _configured_cache_dir, _configured_hash_packages, _configured_trust_pickle, _configured_storage_options
    if storage_options is not _UNCHANGED:
        _configured_storage_options = dict(storage_options or {})
    for name, url in (("store_url", store_url), ("catalog_url", catalog_url)):
        if url is not _UNCHANGED:
            _configured_urls[name] = None if url is None else str(url)
    if trust_pickle is not _UNCHANGED:
        _configured_trust_pickle = None if trust_pickle is None else bool(trust_pickle)
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


def store_url() -> str | None:
    """The shared artifact store's URL, or None for the local cache only."""
    return _configured_urls["store_url"] or os.environ.get(ENV_STORE_URL) or None


def catalog_url() -> str | None:
    """The shared catalog's SQLAlchemy URL, or None for the SQLite catalog in the cache dir."""
    return _configured_urls["catalog_url"] or os.environ.get(ENV_CATALOG_URL) or None


def storage_options() -> dict[str, Any]:
    """The fsspec options lwdp uses for URLs (a copy): pass them to pandas as
    ``pd.read_csv(url, storage_options=lwdp.storage_options())``."""
    return dict(_configured_storage_options)


def trust_pickle() -> bool:
    if _configured_trust_pickle is not None:
        return _configured_trust_pickle
    return os.environ.get(ENV_TRUST_PICKLE, "").strip().lower() in ("1", "true", "yes")


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
