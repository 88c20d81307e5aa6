"""Per-account reader/writer locks between chunk uploads and garbage collection.

An upload writes a blob (a pack), then records it; collection deletes or moves records, then
deletes blobs. Were the two to interleave, a chunk could end up recorded with its blob deleted.
Uploads hold the shared side, collection the exclusive side, so they never overlap for one
account.
Within a process this is a reader/writer lock; across the processes sharing one database the
store adds its own (`SqlStore.account_exclusion`: PostgreSQL advisory locks; nothing for SQLite,
which serves one process).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext


class _ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writer)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writer)
            self._writer = True
            self._cond.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class AccountLocks:
    def __init__(self, across_processes: Callable[[int, bool], AbstractContextManager[None]]
                 = lambda account_id, exclusive: nullcontext()) -> None:
        self._locks: dict[int, _ReadWriteLock] = {}
        self._guard = threading.Lock()
        self._across = across_processes

    def _lock(self, account_id: int) -> _ReadWriteLock:
        with self._guard:
            return self._locks.setdefault(account_id, _ReadWriteLock())

    @contextmanager
    def uploading(self, account_id: int) -> Iterator[None]:
        with self._lock(account_id).shared(), self._across(account_id, False):
            yield

    @contextmanager
    def collecting(self, account_id: int) -> Iterator[None]:
        with self._lock(account_id).exclusive(), self._across(account_id, True):
            yield

