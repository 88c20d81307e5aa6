"""Blobs as objects in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, ...), via obstore.

obstore (Python bindings of Rust's `object_store`) does what this contract needs without code
of ours: create-only PUT (`If-None-Match: *`, mode "create"), ranged GET, listing, retries
with exponential backoff on 5xx answers (S3 throttles with 503 SlowDown) and connection
errors, and a thread-safe client that releases the GIL, so `put_many` sends in parallel from
a thread pool. boto3 can do the same with more code and no parallelism without the GIL.

Whole objects, one PUT each: a pack is at most 12 MiB (8 MiB + one chunk) and S3's single
PUT takes up to 5 GiB; multipart would add two round trips per pack and parts left behind by
a crash, for nothing at this size. A create-only PUT that finds the key taken (412) is a
success: same key, same content. Durability is the store's: S3 answers 200 only once the
object is stored.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, GenericError
from obstore.store import S3Store

from tandem.server.blobs.base import KEY_RE, BlobStoreUnavailable, check_key

#: Blobs `put_many` sends at once (8 parallel PUTs were 1.6x one for 8 MiB packs and 2.7x for
#: small blobs against a local SeaweedFS; more added nothing).
PUT_WORKERS = 8
#: A PUT is retried by obstore on 5xx and failed connections; a transport error it does not
#: retry (a reply lost after the request was sent: a GenericError) is retried here, since
#: create-only makes a replay harmless.
_PUT_ATTEMPTS = 3


@dataclass(frozen=True)
class S3Location:
    """Where the blobs live: a bucket (and key prefix inside it) on an endpoint. Credentials
    given here win over the standard AWS_* environment variables."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    def describe(self) -> str:
        """The location for messages: never the credentials."""
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {self.endpoint}" if self.endpoint else where


def _one_line(exc: BaseException) -> str:
    """obstore's messages carry a multi-line debug dump after the first line."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first[:400]


def _open(location: S3Location, retries: int, retry_seconds: float) -> S3Store:
    config: dict[str, Any] = {}
    for name in ("endpoint", "region", "access_key_id", "secret_access_key"):
        if getattr(location, name):
            config[name] = getattr(location, name)
    allow_http = bool(location.endpoint and location.endpoint.startswith("http://"))
    return S3Store(
        location.bucket, prefix=location.prefix or None, config=config,  # type: ignore[arg-type]
        client_options={"allow_http": allow_http, "connect_timeout": timedelta(seconds=5),
                        "timeout": timedelta(seconds=120)},
        retry_config={"max_retries": retries, "retry_timeout": timedelta(seconds=retry_seconds),
                      "backoff": {"init_backoff": timedelta(milliseconds=100),
                                  "max_backoff": timedelta(seconds=5), "base": 2}},
    )


class S3BlobStore:
    """A failure the retries did not cure raises `BlobStoreUnavailable` with one line (the
    server answers 503 with Retry-After); a missing key is a KeyError, as everywhere."""

    def __init__(self, location: S3Location, retries: int = 10) -> None:
        self.location = location
        self._store = _open(location, retries=retries, retry_seconds=60)
        self._check_usable()
        self._senders = ThreadPoolExecutor(PUT_WORKERS, thread_name_prefix="tandem-s3-put")

    @contextmanager
    def _failing_as_unavailable(self) -> Iterator[None]:
        try:
            yield
        except BaseError as exc:
            raise BlobStoreUnavailable(f"blob store {self.location.describe()}: {_one_line(exc)}"
                                       ) from exc

    def _check_usable(self) -> None:
        """List one key with few retries, so a wrong endpoint, bucket or credentials stops the
        server at start in seconds, with the store's own words."""
        probe = _open(self.location, retries=1, retry_seconds=10)
        try:
            next(iter(obstore.list(probe, chunk_size=1)), None)
        except (BaseError, OSError) as exc:
            hint = ""
            if not self.location.access_key_id and not os.environ.get("AWS_ACCESS_KEY_ID"):
                hint = (" (no credentials given: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,"
                        " or write s3://KEY:SECRET@BUCKET)")
            raise BlobStoreUnavailable(f"cannot use the blob store {self.location.describe()}:"
                                       f" {_one_line(exc)}{hint}") from None

    def put(self, key: str, data: bytes) -> None:
        path = check_key(key)
        for attempt in range(_PUT_ATTEMPTS):
            try:
                # AlreadyExists: a retry or a race stored it first: same key, same content.
                with self._failing_as_unavailable(), contextlib.suppress(AlreadyExistsError):
                    obstore.put(self._store, path, data, mode="create")
                return
            except BlobStoreUnavailable as exc:
                if attempt == _PUT_ATTEMPTS - 1 or not isinstance(exc.__cause__, GenericError):
                    raise
                time.sleep(0.2 * 2**attempt)

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        """Send the blobs in parallel; returns once all are stored (the first failure raised)."""
        for key, _ in items:
            check_key(key)
        for done in [self._senders.submit(self.put, key, data) for key, data in items]:
            done.result()

    def get(self, key: str) -> bytes:
        path = check_key(key)
        try:
            with self._failing_as_unavailable():
                return bytes(obstore.get(self._store, path).bytes())
        except FileNotFoundError:
            raise KeyError(key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"invalid range {offset}+{length}")
        path = check_key(key)
        if length == 0:
            self._size(key)  # KeyError when missing, as a read of any length
            return b""
        try:
            with self._failing_as_unavailable():
                return bytes(obstore.get_range(self._store, path, start=offset, length=length))
        except FileNotFoundError:
            raise KeyError(key) from None
        except BlobStoreUnavailable:
            # S3 answers a range starting at or past the end with 416, not an empty body.
            if offset >= self._size(key):
                return b""
            raise

    def _size(self, key: str) -> int:
        path = check_key(key)
        try:
            with self._failing_as_unavailable():
                return int(obstore.head(self._store, path)["size"])
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        try:
            self._size(key)
        except KeyError:
            return False
        return True

    def delete(self, key: str) -> None:
        # S3 answers 204 for a missing key too; some compatible stores say 404.
        path = check_key(key)
        with contextlib.suppress(FileNotFoundError), self._failing_as_unavailable():
            obstore.delete(self._store, path)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return (key for key, _ in self.sizes(prefix))

    def sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        # obstore lists by whole path segments: list the prefix's folder, filter the rest.
        head = prefix.rpartition("/")[0]
        if head and not KEY_RE.match(head):
            return
        with self._failing_as_unavailable():
            for batch in obstore.list(self._store, prefix=head or None, chunk_size=1000):
                for meta in batch:
                    key = meta["path"]
                    if key.startswith(prefix) and KEY_RE.match(key):
                        yield key, int(meta["size"])

    def local_path(self, key: str) -> Path | None:
        return None
