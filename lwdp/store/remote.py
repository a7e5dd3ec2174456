"""A shared artifact store at any fsspec URL (``s3://bucket/prefix``, ``gs://``, ``file://``...).

Objects are content-addressed like local ones: ``<prefix>/<hash[:2]>/<hash>.<suffix>``, with
``<hash>.manifest.json`` beside each. The manifest is written second and is what makes an
artifact visible: a reader that finds one knows the payload is whole (it also checks size
and checksum). Both are created with one conditional PUT (``If-None-Match: *``) on object
stores, so two machines publishing the same hash end with one complete object; on other
filesystems a temporary name is renamed into place. Nothing here knows about SQL.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import StoreUnavailableError
from ..urls import OBJECT_STORES, url_filesystem
from .artifact_store import MANIFEST_SUFFIX, UNLISTED_GRACE_S, ArtifactStore, artifact_name, linked_by
from .connections import on_close, on_fork

logger = logging.getLogger("lwdp")


class RemoteArtifactStore(ArtifactStore):
    """Artifacts under an fsspec URL; ``storage_options`` go to fsspec (credentials too).
    Every failure to reach the store is a `StoreUnavailableError`."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self._options = storage_options or {}
        protocol = self.url.split("://", 1)[0] if "://" in self.url else "file"
        self.is_object_store = protocol in OBJECT_STORES
        if self.is_object_store:  # fsspec's path of an object: "bucket/key"
            self.prefix = self.url.split("://", 1)[1]
        else:
            self.__dict__["fs"], self.prefix = url_filesystem(self.url, self._options, f"artifact store {self.url}")
        # Downloads from S3 through obstore when it is installed and the environment holds
        # the settings (3x s3fs's throughput; 5 ms to import where s3fs takes 240).
        self._fast = _obstore_store(self.prefix) if protocol in ("s3", "s3a") and not self._options else None

    @functools.cached_property
    def fs(self) -> Any:
        """fsspec's filesystem, made on first need (uploads, deletes, listings)."""
        return url_filesystem(self.url, self._options, f"artifact store {self.url}")[0]

    def key_for(self, stage_hash: str, suffix: str) -> str:
        return f"{self.prefix}/{stage_hash[:2]}/{stage_hash}.{suffix}"

    def describe(self, stage_hash: str, suffix: str) -> str:
        return f"{self.url}/{stage_hash[:2]}/{stage_hash}.{suffix}"

    def put(self, stage_hash: str, suffix: str, payload: bytes) -> None:
        with _store_errors(self.url, f"uploading {self.describe(stage_hash, suffix)}"):
            self._write(self.key_for(stage_hash, suffix), payload, create=False)

    def size(self, stage_hash: str, suffix: str) -> int | None:
        try:
            with _store_errors(self.url, f"reading {self.describe(stage_hash, suffix)}"):
                return int(self.fs.size(self.key_for(stage_hash, suffix)))
        except FileNotFoundError:
            return None

    def publish(self, stage_hash: str, suffix: str, payload: bytes, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the artifact and then its manifest unless they exist; return the manifest
        in force: ``manifest``, or the one of whoever published this hash first.

        :raises StoreUnavailableError: the store refused or could not be reached; no object
            of this call is left behind.
        """
        key = self.key_for(stage_hash, suffix)
        with _store_errors(self.url, f"uploading {self.describe(stage_hash, suffix)}", passing=(FileExistsError,)):
            if not self._write(key, payload, create=True):
                existing = self.read_manifest(stage_hash)
                if existing is not None:
                    return existing
                self._write(key, payload, create=False)  # its publisher died before the manifest
            if not self._write(self.key_for(stage_hash, MANIFEST_SUFFIX), json.dumps(manifest, sort_keys=True).encode(), create=True):
                return self.read_manifest(stage_hash) or manifest
        return manifest

    def _write(self, key: str, payload: bytes, create: bool) -> bool:
        """Write ``payload`` at ``key`` whole or not at all (one PUT, or a rename); with
        ``create``, only if ``key`` doesn't exist yet (False if it does)."""
        if self.is_object_store:
            try:
                self.fs.pipe_file(key, payload, mode="create" if create else "overwrite")
                return True
            except FileExistsError:
                return False
            except OSError as exc:  # SeaweedFS answers If-None-Match with 412 -> EINVAL
                if exc.errno == errno.EINVAL and "pre-condition" in str(exc) and self.fs.exists(key):
                    return False
                raise
        if create and self.fs.exists(key):
            return False
        temp = f"{key}.tmp-{secrets.token_hex(6)}"
        self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        try:
            self.fs.pipe_file(temp, payload)
            self.fs.mv(temp, key)
        except BaseException:
            if self.fs.exists(temp):
                self.fs.rm_file(temp)
            raise
        return True

    def get(self, stage_hash: str, suffix: str) -> bytes | None:
        try:
            with _store_errors(self.url, f"downloading {self.describe(stage_hash, suffix)}"):
                return self._cat(stage_hash, suffix)
        except FileNotFoundError:
            return None

    def _cat(self, stage_hash: str, suffix: str) -> bytes:
        """An object's bytes, through obstore if it can, else through fsspec.

        :raises FileNotFoundError: no such object.
        """
        if self._fast is not None:
            import obstore

            try:
                return bytes(obstore.get(self._fast, f"{stage_hash[:2]}/{stage_hash}.{suffix}").bytes())
            except FileNotFoundError:
                raise
            except Exception as exc:  # noqa: BLE001 - settings obstore can't take (a profile, a region): fsspec's turn
                logger.debug("obstore can't read %s (%s); using fsspec", self.url, exc)
                self._fast = None
        return bytes(self.fs.cat_file(self.key_for(stage_hash, suffix)))

    def delete(self, stage_hash: str, suffix: str) -> None:
        """The manifest goes first: the artifact stops being visible, then its payload."""
        for key in (self.key_for(stage_hash, MANIFEST_SUFFIX), self.key_for(stage_hash, suffix)):
            try:
                with _store_errors(self.url, f"deleting {key}"):
                    self.fs.rm_file(key)
            except FileNotFoundError:
                pass

    def artifacts(self) -> dict[str, str]:
        with _store_errors(self.url, "listing"):
            keys = self.fs.find(self.prefix)
        names = {}
        for key in keys:
            found = self._artifact_name(key)
            if found is not None and found[1] != MANIFEST_SUFFIX:
                names[found[0]] = found[1]
        return names

    def strays(self) -> list[tuple[str, int]]:
        """URLs; a dead publisher's temporary name counts too. An object whose store reports
        no time is left out (it can't be told from one being written)."""
        with _store_errors(self.url, "listing"):
            listing = self.fs.find(self.prefix, detail=True)
        cutoff = time.time() - UNLISTED_GRACE_S
        return sorted(
            (f"{self.url}/{self._relative(key)}", int(info.get("size") or 0)) for key, info in listing.items()
            if self._artifact_name(key) is None and (_modified(info) or float("inf")) <= cutoff
        )

    def delete_stray(self, url: str) -> None:
        key = f"{self.prefix}/{url[len(self.url) + 1:]}"
        try:
            with _store_errors(self.url, f"deleting {url}"):
                self.fs.rm_file(key)
        except FileNotFoundError:
            pass

    def _relative(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if key.startswith(self.prefix + "/") else key

    def _artifact_name(self, key: str) -> tuple[str, str] | None:
        bucket, _, name = self._relative(key).partition("/")
        found = artifact_name(bucket, name) if "/" not in name else None
        return found if found is not None and linked_by(found[1]) is None else None  # links are the local cache's


def _modified(info: dict[str, Any]) -> float | None:
    """When an object was last written, from fsspec's listing (each implementation names
    it its own way), as a POSIX timestamp."""
    for field in ("LastModified", "mtime", "last_modified", "updated", "created"):
        value = info.get(field)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def shared_store(url: str, options: dict[str, Any]) -> RemoteArtifactStore:
    """The store at ``url`` for this process, with these fsspec options."""
    key = (url, json.dumps(options, sort_keys=True, default=repr))
    if key not in _STORES:
        _STORES[key] = RemoteArtifactStore(url, options)
    return _STORES[key]


_STORES: dict[tuple[str, str], RemoteArtifactStore] = {}
on_close(_STORES.clear)
_INHERITED: list[RemoteArtifactStore] = []


@on_fork
def _forget_inherited() -> None:
    """A forked child makes its own clients (their sockets and event loops are the parent's)."""
    _INHERITED.extend(_STORES.values())
    _STORES.clear()


@contextmanager
def _store_errors(url: str, doing: str, passing: tuple[type[OSError], ...] = (FileNotFoundError,)) -> Iterator[None]:
    """Turn a store's failures, but for ``passing`` ("not found" where that is an answer),
    into `StoreUnavailableError` naming what was being done and the store's URL."""
    try:
        yield
    except passing:
        raise
    except OSError as exc:
        raise StoreUnavailableError(
            f"artifact store {url}: {doing} failed ({exc}); check the store URL, that it is "
            "reachable, and your credentials (AWS_* variables or profile)", exc.errno,
        ) from exc


def _obstore_store(prefix: str) -> Any | None:
    """An obstore S3 store for ``bucket/prefix``, configured from the environment as s3fs
    is (AWS_* variables), or None without obstore."""
    try:
        from obstore.store import S3Store
    except ImportError:
        return None
    bucket, _, path = prefix.partition("/")
    plain_http = os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://")
    try:
        return S3Store(bucket, prefix=path or None, client_options={"allow_http": True} if plain_http else None)
    except Exception:  # noqa: BLE001 - settings it can't take: fsspec serves alone
        return None
