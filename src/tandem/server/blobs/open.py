"""Choose a blob store by URL: `file:///PATH` (the default) or, later, `s3://`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from tandem.server.blobs.base import BlobStore
from tandem.server.blobs.local import LocalBlobStore


class UnsupportedBlobURL(ValueError):
    """A --blobs URL this server cannot open."""


def open_blob_store(url: str) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "file" and parsed.path:
        return LocalBlobStore(Path(parsed.path))
    raise UnsupportedBlobURL(f"unsupported blob store URL {url!r}: use file:///PATH")
