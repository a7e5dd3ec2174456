"""Raw inputs given as URLs (``s3://bucket/raw/orders.csv``, ``s3://bucket/raw/*.csv``).

An object is digested from what the store says about it, not from its bytes: its ETag,
size and version id (where the bucket keeps versions), so a warm run downloads nothing
and an overwrite (a new ETag) invalidates. A glob costs one listing, whose entries carry
the same fields. A store that reports no ETag (``file://``, ``memory://``) has its
objects' bytes hashed instead.
"""

from __future__ import annotations

import re
from typing import Any

import xxhash

from ..errors import RawInputNotFoundError, RawInputUnreadableError
from ..urls import url_filesystem

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(raw: object) -> bool:
    return isinstance(raw, str) and _URL.match(raw) is not None


def url_input_digests(url: str, stage: str, input_name: str, storage_options: dict[str, Any]) -> dict[str, str]:
    """{name: digest} of the objects behind ``url``: ``""`` for one object, else each
    match of the glob named relative to its literal prefix.

    :raises RawInputNotFoundError: no object (or no match).
    :raises RawInputUnreadableError: the store refused or could not be reached.
    """
    where = f"stage '{stage}', input '{input_name}'"
    fs, path = url_filesystem(url, storage_options, f"{where}: reading {url}")
    protocol = url.split("://", 1)[0]
    try:
        if any(ch in path for ch in "*?["):
            try:
                found = fs.glob(path, detail=True)
            except FileNotFoundError:  # some stores say so when the prefix holds nothing
                found = {}
            matches = {key: info for key, info in found.items() if info.get("type") != "directory"}
            if not matches:
                raise RawInputNotFoundError(f"{where}: {url!r} matches no object; fix the pattern in @stage")
            root = path[: min(path.find(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0]
            return {key[len(root):].lstrip("/"): _object_digest(fs, key, info) for key, info in sorted(matches.items())}
        return {"": _object_digest(fs, path, fs.info(path))}
    except RawInputNotFoundError:
        raise
    except FileNotFoundError:
        raise RawInputNotFoundError(f"{where}: {protocol}://{path} not found; fix the URL in @stage") from None
    except OSError as exc:
        raise RawInputUnreadableError(
            f"{where}: cannot read {url} ({exc}); check that the store is reachable and your credentials"
        ) from exc


def _object_digest(fs: Any, key: str, info: dict[str, Any]) -> str:
    etag = info.get("ETag") or info.get("etag")
    if etag is None:  # no metadata to trust: the bytes
        hasher = xxhash.xxh3_128()
        with fs.open(key, "rb") as f:
            while chunk := f.read(4 * 1024 * 1024):
                hasher.update(chunk)
        return hasher.hexdigest()
    version = info.get("VersionId") or ""
    return xxhash.xxh3_128_hexdigest(f"lwdp-url-v1\0{etag}\0{info.get('size')}\0{version}".encode())
