"""Process-wide options, each set by `configure`, else by an environment variable:

- ``cache_dir`` (``LWDP_CACHE_DIR``, else ``./.lwdp``): the local cache and its SQLite catalog;
- ``store_url`` (``LWDP_STORE_URL``): a shared artifact store, any fsspec URL (``s3://...``);
- ``catalog_url`` (``LWDP_CATALOG_URL``): a shared catalog, a SQLAlchemy URL (PostgreSQL);
- ``trust_pickle`` (``LWDP_TRUST_PICKLE=1``): load pickle artifacts from a shared store;
- ``hash_packages`` (``LWDP_HASH_PACKAGES=a,b``): packages whose versions every stage hash covers;
- ``jobs`` (``LWDP_JOBS``, else 1): how many stages compute at once, in worker processes;
- ``executor`` (``LWDP_DASK_SCHEDULER=tcp://host:port``): where stages compute instead, a
  ``concurrent.futures.Executor`` or a Dask ``distributed.Client``;
- ``undeclared_inputs`` (``LWDP_UNDECLARED_INPUTS``, else "warn"): what to do when a stage
  reads a file it does not declare (`lwdp.run.undeclared`);
- ``max_cache_size`` (``LWDP_MAX_CACHE_SIZE``), ``max_store_size`` (``LWDP_MAX_STORE_SIZE``):
  the budgets of the local cache and of the shared store, kept at the end of every run
  that computed (`lwdp.store.quota`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidSettingError, UnknownPackageError
from .units import parse_size

ENV_CACHE_DIR = "LWDP_CACHE_DIR"
ENV_HASH_PACKAGES = "LWDP_HASH_PACKAGES"
ENV_STORE_URL = "LWDP_STORE_URL"
ENV_CATALOG_URL = "LWDP_CATALOG_URL"
ENV_TRUST_PICKLE = "LWDP_TRUST_PICKLE"
ENV_JOBS = "LWDP_JOBS"
ENV_DASK_SCHEDULER = "LWDP_DASK_SCHEDULER"
ENV_UNDECLARED_INPUTS = "LWDP_UNDECLARED_INPUTS"
ENV_MAX_CACHE_SIZE = "LWDP_MAX_CACHE_SIZE"
ENV_MAX_STORE_SIZE = "LWDP_MAX_STORE_SIZE"
UNDECLARED_INPUT_MODES = ("warn", "track", "error", "ignore")
DEFAULT_CACHE_DIR = ".lwdp"
_CONFIGURED_PACKAGES = "lwdp.configure(hash_packages=...)"  # where packages were named, for errors

_UNCHANGED: Any = object()
_configured: dict[str, Any] = {}  # what `configure` set; an option absent here comes from the environment


@dataclass(frozen=True)
class Settings:
    """The options in force, read once: a run, a `.hash`, an ``explain()`` or an upkeep
    call works with one snapshot, whatever `configure` does meanwhile."""

    cache_dir: Path
    store_url: str | None = None
    catalog_url: str | None = None
    trust_pickle: bool = False
    storage_options: dict[str, Any] = field(default_factory=dict)
    hash_packages: tuple[str, ...] = ()
    hash_packages_from: str = ENV_HASH_PACKAGES  # where they were named, for errors
    jobs: int = 1
    executor: Any = field(default=None, compare=False, repr=False)  # a live object: never sent to workers
    dask_scheduler: str | None = None
    undeclared_inputs: str = "warn"  # one of UNDECLARED_INPUT_MODES
    max_cache_size: int | None = None  # bytes
    max_store_size: int | None = None  # bytes

    @property
    def parallel(self) -> bool:
        """Whether a run computes stages elsewhere than in its own thread, at once."""
        return self.jobs > 1 or self.executor is not None or self.dask_scheduler is not None

    def package_versions(self) -> dict[str, str]:
        """{package: installed version} of the packages every stage hash covers (read now,
        so an upgrade between runs is seen).

        :raises UnknownPackageError: a package named is not installed (any more).
        """
        return {name: _installed_version(name, self.hash_packages_from) for name in self.hash_packages}


def settings(cache_dir_override: str | os.PathLike[str] | None = None) -> Settings:
    """The options in force now (a ``cache_dir=`` argument overrides the cache directory)."""
    env = os.environ
    if "hash_packages" in _configured:
        packages, packages_from = _configured["hash_packages"], _CONFIGURED_PACKAGES
    else:
        packages = tuple(sorted({n.strip() for n in env.get(ENV_HASH_PACKAGES, "").split(",") if n.strip()}))
        packages_from = ENV_HASH_PACKAGES
    trust = _configured.get("trust_pickle")
    return Settings(
        cache_dir=cache_dir(cache_dir_override),
        store_url=_configured.get("store_url") or env.get(ENV_STORE_URL) or None,
        catalog_url=_configured.get("catalog_url") or env.get(ENV_CATALOG_URL) or None,
        trust_pickle=trust if trust is not None else env.get(ENV_TRUST_PICKLE, "").strip().lower() in ("1", "true", "yes"),
        storage_options=storage_options(),
        hash_packages=packages,
        hash_packages_from=packages_from,
        jobs=_configured["jobs"] if "jobs" in _configured else _jobs(env.get(ENV_JOBS, "").strip() or 1, ENV_JOBS),
        executor=_configured.get("executor"),
        dask_scheduler=None if "executor" in _configured else env.get(ENV_DASK_SCHEDULER) or None,
        undeclared_inputs=_configured.get("undeclared_inputs")
        or _undeclared_inputs(env.get(ENV_UNDECLARED_INPUTS, "").strip() or "warn", ENV_UNDECLARED_INPUTS),
        max_cache_size=_configured["max_cache_size"] if "max_cache_size" in _configured
        else _size(env.get(ENV_MAX_CACHE_SIZE, "").strip() or None, ENV_MAX_CACHE_SIZE),
        max_store_size=_configured["max_store_size"] if "max_store_size" in _configured
        else _size(env.get(ENV_MAX_STORE_SIZE, "").strip() or None, ENV_MAX_STORE_SIZE),
    )


def configure(
    *,
    cache_dir: str | os.PathLike[str] | None = _UNCHANGED,
    hash_packages: Iterable[str] | None = _UNCHANGED,
    store_url: str | None = _UNCHANGED,
    catalog_url: str | None = _UNCHANGED,
    trust_pickle: bool | None = _UNCHANGED,
    storage_options: dict[str, Any] | None = _UNCHANGED,
    jobs: int | str | None = _UNCHANGED,
    executor: Any = _UNCHANGED,
    undeclared_inputs: str | None = _UNCHANGED,
    max_cache_size: int | str | None = _UNCHANGED,
    max_store_size: int | str | None = _UNCHANGED,
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

    ``jobs``: how many stages may compute at once, each in a worker process (``"auto"``:
    one per core); 1 computes them one after another in this process.

    ``executor``: compute stages there instead: any ``concurrent.futures.Executor`` or a
    Dask ``distributed.Client`` (its workers must see the cache directory, or a
    ``store_url`` and ``catalog_url`` the team shares). Setting it, even to ``None``,
    overrides ``LWDP_DASK_SCHEDULER``.

    ``undeclared_inputs``: what to do when a stage opens a file or lists a directory that
    is not one of its inputs, which its hash can't see: ``"warn"`` (once per stage and
    path), ``"track"`` (the file becomes an input of the cached result, as a compiler's
    dependency files are for ``make``), ``"error"`` (the call fails, nothing is cached) or
    ``"ignore"``.

    ``max_cache_size``: the local cache's budget (bytes, or ``"20GB"``): a run that
    computed ends by evicting what costs least to have again until the cache fits, never
    what it produced or loaded (`lwdp.store.eviction`); with a shared store, local copies.
    ``max_store_size``: the same for the shared store, with a shared catalog (whose
    record of use is the team's).

    :raises UnknownPackageError: a name in ``hash_packages`` is not installed.
    :raises InvalidSettingError: ``jobs`` is not a positive number or ``"auto"``,
        ``undeclared_inputs`` is not one of the four modes, or a budget is not a size.
    """
    for name, size in (("max_cache_size", max_cache_size), ("max_store_size", max_store_size)):
        if size is None:
            _configured.pop(name, None)
        elif size is not _UNCHANGED:
            _configured[name] = _size(size, f"lwdp.configure({name}=...)")
    if undeclared_inputs is not _UNCHANGED:
        _configured["undeclared_inputs"] = None if undeclared_inputs is None else _undeclared_inputs(
            undeclared_inputs, "lwdp.configure(undeclared_inputs=...)"
        )
    if jobs is not _UNCHANGED:
        if jobs is None:
            _configured.pop("jobs", None)
        else:
            _configured["jobs"] = _jobs(jobs, "lwdp.configure(jobs=...)")
    if executor is not _UNCHANGED:
        _configured["executor"] = executor
    if storage_options is not _UNCHANGED:
        _configured["storage_options"] = dict(storage_options or {})
    for name, url in (("store_url", store_url), ("catalog_url", catalog_url)):
        if url is not _UNCHANGED:
            _configured[name] = None if url is None else str(url)
    if trust_pickle is not _UNCHANGED:
        _configured["trust_pickle"] = None if trust_pickle is None else bool(trust_pickle)
    if cache_dir is not _UNCHANGED:
        _configured["cache_dir"] = None if cache_dir is None else Path(cache_dir).absolute()
    if hash_packages is not _UNCHANGED:
        if isinstance(hash_packages, str):
            hash_packages = [hash_packages]
        if hash_packages is None:
            _configured.pop("hash_packages", None)
        else:
            names = tuple(sorted(set(hash_packages)))
            for name in names:
                _installed_version(name, _CONFIGURED_PACKAGES)
            _configured["hash_packages"] = names


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory in force at this moment (absolute; not created here): ``override``
    when given (a ``cache_dir=`` argument), else the configured one, else the environment's."""
    if override is not None:
        return Path(override).absolute()
    configured: Path | None = _configured.get("cache_dir")
    return configured or Path(os.environ.get(ENV_CACHE_DIR) or DEFAULT_CACHE_DIR).absolute()


def storage_options() -> dict[str, Any]:
    """The fsspec options lwdp uses for URLs (a copy): pass them to pandas as
    ``pd.read_csv(url, storage_options=lwdp.storage_options())``."""
    return dict(_configured.get("storage_options") or {})


def _jobs(value: int | str, where: str) -> int:
    """A number of jobs: a positive integer, or "auto" for one per core."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        jobs = int(value)
    except (TypeError, ValueError):
        jobs = 0
    if jobs < 1 or isinstance(value, (bool, float)):
        raise InvalidSettingError(f"{where}: jobs must be a positive whole number or \"auto\", not {value!r}")
    return jobs


def _size(value: int | str | None, where: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise InvalidSettingError(f"{where}: {exc}") from None


def _undeclared_inputs(value: str, where: str) -> str:
    mode = value.strip().lower() if isinstance(value, str) else value
    if mode not in UNDECLARED_INPUT_MODES:
        modes = ", ".join(f'"{m}"' for m in UNDECLARED_INPUT_MODES)
        raise InvalidSettingError(f"{where}: undeclared_inputs must be one of {modes}, not {value!r}")
    return mode


def _installed_version(name: str, where: str) -> str:
    import importlib.metadata  # 10 ms: only when packages are named

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        raise UnknownPackageError(
            f"{where}: no installed package is named {name!r}; give distribution names "
            "as pip knows them (pip list shows them)"
        ) from None
