"""Per-account reader/writer locks between chunk uploads and garbage collection.

An upload writes a blob (a pack), then records it; collection deletes or moves records, then
deletes blobs. Were the two to interleave, a chunk could end up recorded with its blob deleted.
Uploads hold the shared side, collection the exclusive side, so they never overlap for one
account.
Within a process this is a reader/writer lock; across the processes sharing one database the
store adds its own (`SqlStore.account_exclusion`: PostgreSQL advisory locks; nothing for SQLite,
which serves one process). Waits are bounded (`LOCK_WAIT_SECONDS`): past it the request is
refused with 503 `busy` and Retry-After (`store.base.busy`), so a long collection never holds
requests open until a proxy or client gives up; clients retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from tandem.server.store.base import busy

#: How long an upload waits for a collection of its account to end, or a collection for the
#: uploads in flight, before it is refused (503 busy).
LOCK_WAIT_SECONDS = 30.0

Exclusion = Callable[[int, bool, float], AbstractContextManager[None]]


class _ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def shared(self, wait: float) -> Iterator[None]:
        with self._cond:
            if not self._cond.wait_for(lambda: not self._writer, timeout=wait):
                raise busy()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self, wait: float) -> Iterator[None]:
        deadline = time.monotonic() + wait
        with self._cond:
            if not self._cond.wait_for(lambda: not self._writer, timeout=wait):
                raise busy()
            self._writer = True  # new readers now wait: a stream of uploads cannot starve GC
            if not self._cond.wait_for(lambda: self._readers == 0,
                                       timeout=max(deadline - time.monotonic(), 0)):
                self._writer = False
                self._cond.notify_all()
                raise busy()
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class AccountLocks:
    def __init__(self, across_processes: Exclusion = lambda account_id, exclusive, wait: nullcontext(),
                 wait: float = LOCK_WAIT_SECONDS) -> None:
        self._locks: dict[int, _ReadWriteLock] = {}
        self._guard = threading.Lock()
        self._across = across_processes
        self.wait = wait

    def _lock(self, account_id: int) -> _ReadWriteLock:
        with self._guard:
            return self._locks.setdefault(account_id, _ReadWriteLock())

    @contextmanager
    def uploading(self, account_id: int) -> Iterator[None]:
        with self._lock(account_id).shared(self.wait), self._across(account_id, False, self.wait):
            yield

    @contextmanager
    def collecting(self, account_id: int) -> Iterator[None]:
        with self._lock(account_id).exclusive(self.wait), self._across(account_id, True, self.wait):
            yield

