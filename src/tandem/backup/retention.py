"""Which snapshots a backup keeps: every one of the last days, one a day for a month, one a
month after that (each rule configurable). Pure: times in, ids out; the clock and the time
zone are arguments.

As restic's `forget`, each rule picks snapshots independently and a snapshot stays if any
rule picks it; the newest snapshot always stays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

DAY_NS = 86400 * 10**9


@dataclass(frozen=True)
class Policy:
    """`within_days`: keep all younger than this. `daily_days`: of those younger than this, the
    newest of each calendar day. `monthly`: the newest of each of the last N calendar months
    (None: every month, forever; 0: none)."""

    within_days: int = 7
    daily_days: int = 30
    monthly: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {"within_days": self.within_days, "daily_days": self.daily_days,
                "monthly": self.monthly}

    @classmethod
    def from_dict(cls, data: Mapping[str, int | None]) -> Policy:
        within, daily = data.get("within_days"), data.get("daily_days")
        return cls(within_days=7 if within is None else within,
                   daily_days=30 if daily is None else daily, monthly=data.get("monthly"))


def kept(times_ns: Mapping[str, int], now_ns: int, policy: Policy,
         tz: dt.tzinfo | None = None) -> set[str]:
    """The ids (snapshot id -> time taken, ns) the policy keeps; the others may be deleted.
    `tz` decides where calendar days and months begin (None: this machine's local time)."""
    if not times_ns:
        return set()
    newest_first = sorted(times_ns, key=lambda s: (times_ns[s], s), reverse=True)
    keep = {newest_first[0]}
    keep.update(s for s in newest_first if now_ns - times_ns[s] < policy.within_days * DAY_NS)

    def date(snapshot: str) -> dt.date:
        return dt.datetime.fromtimestamp(times_ns[snapshot] / 1e9, tz).date()

    recent = [s for s in newest_first if now_ns - times_ns[s] < policy.daily_days * DAY_NS]
    keep.update(_newest_per(recent, date))
    now_date = dt.datetime.fromtimestamp(now_ns / 1e9, tz).date()

    def month(snapshot: str) -> int:
        day = date(snapshot)
        return day.year * 12 + day.month

    months = _newest_per(newest_first, month)
    limit = now_date.year * 12 + now_date.month - (policy.monthly if policy.monthly is not None else 0)
    keep.update(s for s in months if policy.monthly is None or month(s) > limit)
    return keep


def _newest_per(newest_first: list[str], bucket: Callable[[str], Hashable]) -> list[str]:
    """The first (newest) snapshot of each bucket."""
    seen: set[Hashable] = set()
    chosen = []
    for snapshot in newest_first:
        key = bucket(snapshot)
        if key not in seen:
            seen.add(key)
            chosen.append(snapshot)
    return chosen

