"""Failed-login throttling, per account (email) and per client address, in memory.

Each key may fail a few times freely; after that every failure blocks the key for a delay that
doubles with each further failure, up to a cap. While either key of a login is blocked the
server answers 429 with Retry-After *before* looking at the credentials, so a blocked attacker
learns nothing, not even from the right password. A success clears only its own account's
count: not its address's (an attacker must not reset an address by logging in to an account
of their own), and never another account's. Keys with no failure for `forget_after` seconds
are forgotten, and each table holds at most `max_keys` keys (least recently failed dropped
first), so memory is bounded whatever an attacker sends.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    free_failures: int
    base_delay: float = 10.0
    max_delay: float = 900.0
    forget_after: float = 3600.0
    max_keys: int = 10_000


#: A person mistyping a password a few times is not slowed; an address may be shared (NAT).
ACCOUNT_POLICY = Policy(free_failures=5)
ADDRESS_POLICY = Policy(free_failures=50)


@dataclass
class _Failures:
    count: int
    last: float
    blocked_until: float


class _Table:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.keys: OrderedDict[str, _Failures] = OrderedDict()

    def wait(self, key: str, now: float) -> float:
        entry = self.keys.get(key)
        if entry is None:
            return 0.0
        if now - entry.last > self.policy.forget_after:
            del self.keys[key]
            return 0.0
        return max(0.0, entry.blocked_until - now)

    def fail(self, key: str, now: float) -> None:
        entry = self.keys.pop(key, None)
        if entry is None or now - entry.last > self.policy.forget_after:
            entry = _Failures(0, now, now)
        entry.count += 1
        entry.last = now
        extra = entry.count - self.policy.free_failures
        if extra >= 0:
            delay = min(self.policy.max_delay, self.policy.base_delay * 2.0 ** min(extra, 32))
            entry.blocked_until = now + delay
        self.keys[key] = entry
        while len(self.keys) > self.policy.max_keys:
            self.keys.popitem(last=False)

    def clear(self, key: str) -> None:
        self.keys.pop(key, None)


class LoginThrottle:
    """Thread-safe (logins run in the server's thread pool)."""

    def __init__(self, account: Policy = ACCOUNT_POLICY, address: Policy = ADDRESS_POLICY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._accounts = _Table(account)
        self._addresses = _Table(address)
        self._clock = clock
        self._lock = threading.Lock()

    def retry_after(self, email: str, address: str) -> int:
        """Whole seconds to wait before this login may be tried (0: go ahead)."""
        with self._lock:
            now = self._clock()
            wait = max(self._accounts.wait(email, now), self._addresses.wait(address, now))
        return math.ceil(wait)

    def failed(self, email: str, address: str) -> None:
        with self._lock:
            now = self._clock()
            self._accounts.fail(email, now)
            self._addresses.fail(address, now)

    def succeeded(self, email: str) -> None:
        with self._lock:
            self._accounts.clear(email)
