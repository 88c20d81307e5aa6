"""The long-polled journal: what makes a change on one device appear on the others at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import BACKENDS, RunningServer, backend_args
from tests.helpers_api import Account, cursor, fresh_email, login, make_account, mkdir, serving

#: A generous bound that only catches a poll that did not wake (it would take the full wait).
WAKE_BOUND = 2.0


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serving(tmp_path_factory, *backend_args(request, request.param)) as running:
        yield running


def poll_in_thread(account: Account, since: int, wait: float) -> tuple[threading.Thread, dict[str, Any]]:
    """Start `GET /changes?wait=` in a thread; the dict gets the answer and when it arrived."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        response = account.client.get("/changes", params={"cursor": since, "wait": wait})
        outcome["response"] = response
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_long_poll_wakes_when_another_device_commits(srv: RunningServer) -> None:
    laptop = make_account(srv.url, fresh_email())
    desktop = login(srv.url, laptop.email)
    since = cursor(laptop)
    thread, outcome = poll_in_thread(laptop, since, wait=10)
    # Let the poll reach the server and subscribe; a commit before that is still found by its
    # read of the journal, so this sleep only makes the test exercise the waiting path.
    time.sleep(0.3)
    committed_at = time.monotonic()
    folder = mkdir(desktop, "from the desktop")
    thread.join(timeout=15)
    assert not thread.is_alive(), "the long poll did not answer within its own wait"
    response = outcome["response"]
    assert response.status_code == 200
    assert [c["id"] for c in response.json()["changes"]] == [folder["id"]]
    assert response.json()["cursor"] == folder["rev"]
    assert outcome["at"] - committed_at < WAKE_BOUND


def test_long_poll_returns_empty_after_the_wait_when_nothing_changes(srv: RunningServer) -> None:
    account = make_account(srv.url, fresh_email())
    since = cursor(account)
    started = time.monotonic()
    response = account.client.get("/changes", params={"cursor": since, "wait": 0.5})
    assert response.status_code == 200
    assert response.json() == {"changes": [], "cursor": since, "has_more": False}
    assert time.monotonic() - started >= 0.4


def test_long_poll_is_not_woken_by_another_account(srv: RunningServer) -> None:
    """A commit in one account must neither wake nor leak into another account's poll."""
    watcher = make_account(srv.url, fresh_email())
    stranger = make_account(srv.url, fresh_email())
    since = cursor(watcher)
    thread, outcome = poll_in_thread(watcher, since, wait=1.0)
    time.sleep(0.2)
    mkdir(stranger, "elsewhere")
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert outcome["response"].json()["changes"] == []


def test_long_poll_answers_at_once_when_changes_exist(srv: RunningServer) -> None:
    account = make_account(srv.url, fresh_email())
    since = cursor(account)
    mkdir(account, "already there")
    started = time.monotonic()
    response = account.client.get("/changes", params={"cursor": since, "wait": 10})
    assert len(response.json()["changes"]) == 1
    assert time.monotonic() - started < WAKE_BOUND
