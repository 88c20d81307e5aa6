"""Failed-login throttling: the policy with a fake clock, then 429 + Retry-After from a real
server (per account and per address; a success clears only its own account)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tandem.core.crypto import b64encode
from tandem.server.throttle import LoginThrottle, Policy
from tests.conftest import RunningServer, start_server, stop_server
from tests.helpers_api import TIMEOUT, error_code, fresh_email, login_response, make_account


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **address: float) -> LoginThrottle:
    return LoginThrottle(Policy(free_failures=3, base_delay=10, max_delay=60, forget_after=600,
                                max_keys=100),
                         Policy(free_failures=int(address.get("free", 10)), base_delay=10,
                                max_delay=60, forget_after=600, max_keys=int(address.get("keys", 100))),
                         clock)


def test_free_failures_then_a_doubling_delay_up_to_the_cap() -> None:
    clock = Clock()
    limits = throttle(clock)
    delays = []
    for _ in range(7):
        limits.failed("victim", "10.0.0.1")
        delays.append(limits.retry_after("victim", "10.0.0.1"))
    assert delays == [0, 0, 10, 20, 40, 60, 60]
    clock.now += 59.5
    assert limits.retry_after("victim", "10.0.0.1") == 1
    clock.now += 0.5
    assert limits.retry_after("victim", "10.0.0.1") == 0


def test_a_success_clears_its_own_account_only() -> None:
    clock = Clock()
    limits = throttle(clock)
    for _ in range(3):
        limits.failed("victim", "10.0.0.1")
        limits.failed("attacker", "10.0.0.1")
    limits.succeeded("attacker")
    assert limits.retry_after("attacker", "10.0.0.2") == 0
    assert limits.retry_after("victim", "10.0.0.2") == 10
    # The address's count (6 failures) survived the success: 4 more and it is blocked.
    for index in range(4):
        limits.failed(f"guess-{index}", "10.0.0.1")
    assert limits.retry_after("anyone", "10.0.0.1") == 10
    assert limits.retry_after("anyone", "10.0.0.9") == 0


def test_failures_are_forgotten_and_memory_is_bounded() -> None:
    clock = Clock()
    limits = throttle(clock, keys=50)
    for _ in range(3):
        limits.failed("victim", "10.0.0.1")
    clock.now += 601
    limits.failed("victim", "10.0.0.1")
    assert limits.retry_after("victim", "10.0.0.1") == 0  # counting started again
    for index in range(10_000):
        limits.failed(f"user-{index}", f"10.1.{index // 256}.{index % 256}")
    assert len(limits._accounts.keys) <= 100 and len(limits._addresses.keys) <= 50


def wrong_login(url: str, email: str) -> httpx.Response:
    return httpx.post(f"{url}/auth/login", timeout=TIMEOUT, json={
        "email": email, "auth_secret": b64encode(b"\x00" * 32), "device_name": "guess"})


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "data")
    try:
        yield running
    finally:
        stop_server(running)


def test_an_account_is_throttled_and_other_accounts_are_not(fresh: RunningServer) -> None:
    victim, bystander = make_account(fresh.url, fresh_email("victim")), make_account(
        fresh.url, fresh_email("bystander"))
    answers = [wrong_login(fresh.url, victim.email) for _ in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    blocked = answers[-1]
    assert error_code(blocked) == "too_many_attempts"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 10
    # Even the right password waits: a blocked guesser learns nothing.
    assert login_response(fresh.url, victim.email, "pw").status_code == 429
    # The same address logs in to another account; that clears nothing of the victim's.
    assert login_response(fresh.url, bystander.email, "pw").status_code == 200
    assert login_response(fresh.url, victim.email, "pw").status_code == 429
    assert "Traceback" not in fresh.log()


def test_an_address_is_throttled_across_accounts(fresh: RunningServer) -> None:
    account = make_account(fresh.url, fresh_email("user"))
    codes = [wrong_login(fresh.url, fresh_email("guess")).status_code for _ in range(51)]
    assert codes == [401] * 50 + [429]
    response = login_response(fresh.url, account.email, "pw")
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
