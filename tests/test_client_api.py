"""The HTTP client's retries: connection errors and 5xx answers are retried, then reported."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tandem.client.api import ApiClient, ApiError, Backoff, ServerUnreachable
from tests.conftest import free_port

NO_WAIT = Backoff(attempts=4, sleep=lambda _: None)


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first `failures` requests, then 200."""

    failures = 0
    seen = 0

    def do_GET(self) -> None:
        type(self).seen += 1
        if type(self).seen <= type(self).failures:
            self.send_response(503)
            self.end_headers()
            return
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"failures": 0, "seen": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_5xx_is_retried_until_success(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.failures = 2
    with ApiClient(url, backoff=NO_WAIT) as client:
        assert client.health() == {"status": "ok"}
    assert handler.seen == 3


def test_persistent_5xx_becomes_an_api_error(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.failures = 100
    with ApiClient(url, backoff=NO_WAIT) as client, pytest.raises(ApiError) as caught:
        client.health()
    assert caught.value.status == 503
    assert handler.seen == NO_WAIT.attempts


def test_unreachable_server_is_reported_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with ApiClient(url, backoff=NO_WAIT) as client, pytest.raises(ServerUnreachable, match="reach"):
        client.health()
