"""Choose a blob store by URL: `file:///PATH` (the default) or
`s3://[KEY:SECRET@]BUCKET[/PREFIX]?endpoint=URL&region=REGION`.

For S3, credentials and region not in the URL come from the standard AWS_* environment
variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, ...).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from tandem.server.blobs.base import KEY_RE, BlobStore, BlobStoreUnavailable, UnsupportedBlobURL
from tandem.server.blobs.local import LocalBlobStore

if TYPE_CHECKING:
    from tandem.server.blobs.s3 import S3Location

__all__ = ["BlobStoreUnavailable", "UnsupportedBlobURL", "open_blob_store"]

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_OPTIONS = ("endpoint", "region")
_USAGE = "use file:///PATH or s3://BUCKET?endpoint=URL&region=REGION"


def open_blob_store(url: str) -> BlobStore:
    """The store at `url`, checked usable (an S3 bucket is listed once)."""
    parsed = urlsplit(url)
    if parsed.scheme == "file" and parsed.path and not parsed.query:
        return LocalBlobStore(Path(parsed.path))
    if parsed.scheme == "s3":
        from tandem.server.blobs.s3 import S3BlobStore

        return S3BlobStore(parse_s3_url(url))
    raise UnsupportedBlobURL(f"unsupported blob store URL {_redacted(url)!r}: {_USAGE}")


def parse_s3_url(url: str) -> S3Location:
    """The bucket, prefix, endpoint, region and credentials an s3:// URL names; refuses
    anything it does not understand (a typo must not silently mean a default)."""
    from tandem.server.blobs.s3 import S3Location

    parsed = urlsplit(url)
    userinfo, _, bucket = parsed.netloc.rpartition("@")
    if not _BUCKET_RE.match(bucket):
        raise UnsupportedBlobURL(f"bad S3 bucket name {bucket!r} in the blob store URL: {_USAGE}")
    prefix = parsed.path.strip("/")
    if prefix and not KEY_RE.match(prefix):
        raise UnsupportedBlobURL(f"bad key prefix {prefix!r} in the blob store URL"
                                 " (letters, digits, '-', '_', separated by '/')")
    try:
        options = parse_qs(parsed.query, strict_parsing=bool(parsed.query))
    except ValueError:
        raise UnsupportedBlobURL(f"bad query in the blob store URL: {_USAGE}") from None
    unknown = sorted(set(options) - set(_S3_OPTIONS))
    if unknown or any(len(values) != 1 for values in options.values()):
        raise UnsupportedBlobURL(f"unknown or repeated option(s) {', '.join(unknown) or 'given twice'}"
                                 f" in the blob store URL: {_USAGE}")
    endpoint = options.get("endpoint", [None])[0]
    if endpoint is not None:
        target = urlsplit(endpoint)
        try:
            _ = target.port
        except ValueError:
            target = target._replace(netloc="")
        if target.scheme not in ("http", "https") or not target.hostname or target.path.strip("/"):
            raise UnsupportedBlobURL(f"bad S3 endpoint {endpoint!r}: use http(s)://HOST[:PORT]")
    key_id, _, secret = userinfo.partition(":")
    if userinfo and not (key_id and secret):
        raise UnsupportedBlobURL("S3 credentials in the blob store URL go as KEY:SECRET@BUCKET")
    return S3Location(bucket=bucket, prefix=prefix, endpoint=endpoint,
                      region=options.get("region", [None])[0],
                      access_key_id=unquote(key_id) or None, secret_access_key=unquote(secret) or None)


def _redacted(url: str) -> str:
    """The URL without a password, for messages."""
    head, at, rest = url.partition("@")
    return f"{head.partition('://')[0]}://***@{rest}" if at and "://" in head else url
