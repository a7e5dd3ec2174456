"""URLs lwdp reads and writes through fsspec: a shared artifact store (``store_url``) and raw
inputs given as URLs. fsspec and its drivers are extras, imported only when a URL is used."""

from __future__ import annotations

from typing import Any

from .errors import MissingExtraError

OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl"})
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}


def url_filesystem(url: str, storage_options: dict[str, Any], who: str) -> tuple[Any, str]:
    """fsspec's filesystem and the path for ``url`` (listings never cached on object stores,
    which others write to); ``who`` names what needs it, for the error.

    :raises MissingExtraError: fsspec or the protocol's implementation is not installed.
    """
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    if protocol in OBJECT_STORES:
        storage_options = {"use_listings_cache": False, **storage_options}
    try:
        import fsspec

        fs, path = fsspec.url_to_fs(url, **storage_options)
    except ImportError as exc:
        extra = _EXTRAS.get(protocol, "s3")
        raise MissingExtraError(f"{who} needs {exc.name or 'an fsspec driver'}: pip install 'lwdp[{extra}]'") from None
    return fs, path.rstrip("/")
