"""The S3 blob store beyond the shared contract (`test_blobs.py`): URLs it refuses in one clear
line, a store it cannot use stopping `tandem serve` at start, and retries: through a proxy
that refuses, drops or fails requests in front of a real SeaweedFS, every blob still lands
once and reads back whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tandem.server.blobs import open_blob_store
from tandem.server.blobs.open import BlobStoreUnavailable, UnsupportedBlobURL, parse_s3_url
from tandem.server.blobs.s3 import S3BlobStore
from tests import seaweed
from tests.conftest import free_port
from tests.faults import FaultProxy
from tests.seaweed import SeaweedS3


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://host/x", "unsupported blob store URL"),
    ("s3://", "bad S3 bucket name"),
    ("s3://Bad_Bucket", "bad S3 bucket name"),
    ("s3://bucket/../x", "bad key prefix"),
    ("s3://bucket?endpoint=localhost:9000", "bad S3 endpoint"),
    ("s3://bucket?endpoint=http://h:notaport", "bad S3 endpoint"),
    ("s3://bucket?endpoint=http://h&endpoint=http://g", "repeated"),
    ("s3://bucket?regoin=eu-west-1", "regoin"),
    ("s3://keyonly@bucket", "KEY:SECRET@BUCKET"),
])
def test_bad_urls_are_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(UnsupportedBlobURL, match=says):
        open_blob_store(url)


def test_an_s3_url_names_bucket_prefix_endpoint_region_and_credentials() -> None:
    location = parse_s3_url("s3://AK:se%2Fcret@my-bucket/tandem/prod"
                            "?endpoint=https://s3.example.net:8443&region=eu-west-1")
    assert (location.bucket, location.prefix, location.endpoint, location.region) == (
        "my-bucket", "tandem/prod", "https://s3.example.net:8443", "eu-west-1")
    assert (location.access_key_id, location.secret_access_key) == ("AK", "se/cret")
    assert "se/cret" not in location.describe() and "AK" not in location.describe()
    bare = parse_s3_url("s3://bucket")
    assert (bare.prefix, bare.endpoint, bare.access_key_id) == ("", None, None)


def _serve(tmp_path: Path, blobs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tandem", "serve", "--data", str(tmp_path / "d"),
                           "--port", str(free_port()), "--blobs", blobs],
                          capture_output=True, text=True, timeout=60)


def test_serve_refuses_a_blob_store_it_cannot_use_in_one_line(tmp_path: Path, weed: SeaweedS3) -> None:
    wrong_secret = weed.url().replace(seaweed.SECRET_KEY, "wrong-secret")
    closed = f"s3://k:s@tandem?endpoint=http://127.0.0.1:{free_port()}&region=us-east-1"
    for blobs, says in ((wrong_secret, "cannot use the blob store s3://tandem/"),
                        (closed, "cannot use the blob store"),
                        ("s3://tandem?endpoint=nohost", "bad S3 endpoint")):
        result = _serve(tmp_path, blobs)
        assert result.returncode == 1, result.stderr
        assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "wrong-secret" not in result.stderr


def test_requests_refused_or_lost_on_the_way_are_retried(weed: SeaweedS3) -> None:
    """A proxy in front of SeaweedFS answers a third of the requests with a 5xx, or drops the
    answer of a PUT that was stored: obstore retries the 5xx, the store retries what obstore
    does not and takes the 412 of a replayed create-only PUT as the success it is."""
    proxy = FaultProxy(weed.endpoint, seed=7, rate=0.33,
                       kinds=("refuse", "error_after", "drop_response"))
    try:
        parsed = urlsplit(weed.url())
        url = parsed._replace(query=f"endpoint={proxy.url}&region={seaweed.REGION}").geturl()
        with pytest.raises(BlobStoreUnavailable):
            open_blob_store(url.replace(seaweed.SECRET_KEY, "wrong"))
        store = open_blob_store(url)
        blobs = {f"3/p/{i:032x}": os.urandom(1000 * i + 1) for i in range(12)}
        store.put_many(list(blobs.items()))
        for key, data in blobs.items():
            store.put(key, b"a replay never replaces")
            assert store.get(key) == data
            assert store.get_range(key, 1, 10) == data[1:11]
        assert dict(store.sizes("3/")) == {key: len(data) for key, data in blobs.items()}
        for key in blobs:
            store.delete(key)
        assert list(store.keys("3/")) == []
        faults = {kind: n for kind, n in proxy.injected.items() if kind != "passed"}
        assert sum(faults.values()) >= 10, faults
    finally:
        proxy.close()


def test_a_store_failing_for_good_raises_one_line_unavailable(weed: SeaweedS3) -> None:
    """When retries do not cure it (here: every request refused with a 5xx, no retries), each
    operation raises `BlobStoreUnavailable` with one line (the server answers 503), while a
    missing key stays a KeyError."""
    proxy = FaultProxy(weed.endpoint, seed=1, rate=1.0, kinds=("refuse",))
    try:
        proxy.enabled = False
        parsed = urlsplit(weed.url())
        location = parse_s3_url(parsed._replace(query=f"endpoint={proxy.url}").geturl())
        store = S3BlobStore(location, retries=0)
        with pytest.raises(KeyError):
            store.get("1/" + "a" * 64)
        proxy.enabled = True
        for attempt in (lambda: store.get("1/" + "a" * 64), lambda: store.put("1/" + "b" * 64, b"x"),
                        lambda: list(store.keys("1/")), lambda: store.delete("1/" + "a" * 64)):
            with pytest.raises(BlobStoreUnavailable) as failed:
                attempt()
            assert "\n" not in str(failed.value) and "blob store s3://tandem/" in str(failed.value)
    finally:
        proxy.close()
