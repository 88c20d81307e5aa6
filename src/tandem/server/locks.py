"""Per-account reader/writer locks between chunk uploads and garbage collection.

An upload writes a blob (a pack), then records it; collection deletes or moves records, then
deletes blobs. Were the two to interleave, a chunk could end up recorded with its blob deleted.
Uploads hold the shared side, collection the exclusive side, so they never overlap for one
account.
(One process only; a multi-process server needs the same from its database.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager


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
    def __init__(self) -> None:
        self._locks: dict[int, _ReadWriteLock] = {}
        self._guard = threading.Lock()

    def _lock(self, account_id: int) -> _ReadWriteLock:
        with self._guard:
            return self._locks.setdefault(account_id, _ReadWriteLock())

    def uploading(self, account_id: int) -> AbstractContextManager[None]:
        return self._lock(account_id).shared()

    def collecting(self, account_id: int) -> AbstractContextManager[None]:
        return self._lock(account_id).exclusive()

