"""Wake long-polls when an account's journal moves.

Commits happen in worker threads; waiters are asyncio tasks. A waiter subscribes *before* it
reads the journal, so a commit that lands between the read and the wait still wakes it.
The store calls `publish` for every commit it hears of: its own and, on PostgreSQL, those of
the other server processes (LISTEN/NOTIFY, see `store/postgres.py`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Subscription:
    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    async def wait(self, timeout: float) -> bool:
        """True if the account changed since subscribing, False after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True


class LocalNotifier:
    """In-process notifications: enough for one server process."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, account_id: int, cursor: int) -> None:
        """Called from any thread after a commit."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, account_id)

    def _wake(self, account_id: int) -> None:
        with self._lock:
            events = list(self._waiters.get(account_id, ()))
        for event in events:
            event.set()

    @asynccontextmanager
    async def subscribe(self, account_id: int) -> AsyncIterator[Subscription]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(account_id, set()).add(event)
        try:
            yield Subscription(event)
        finally:
            with self._lock:
                waiters = self._waiters.get(account_id)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[account_id]
