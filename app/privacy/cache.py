"""The one bounded cache of the privacy engine.

Key names, event types and subjects come from the sender, so nothing remembered about
them may grow with them. `BoundedCache` holds at most `limit` entries: when full, it is
emptied before the next one goes in. That is cruder than LRU and cheaper on the hot
path (a hit is one lookup in a plain dict, with no bookkeeping), and the values that
matter (the names every event carries) come straight back.

On the hot path, read `entries` directly and `remember` what a miss computes::

    try:
        value = entries[key]  # entries = cache.entries, fetched once
    except KeyError:
        value = cache.remember(key, compute(key))

A plain dict is used, not a dict subclass: CPython routes `[]` and `in` on a subclass
through its type's slots, which costs a third more per lookup.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `limit` entries, in `entries`: a plain dict, the same one for the cache's
    life (so a caller may hold it), which only `remember` should write to."""

    __slots__ = ("entries", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def remember(self, key: K, value: V) -> V:
        """Store `value` under `key`, emptying the cache first when it is full; returns
        `value`."""
        if len(self.entries) >= self.limit:
            self.entries.clear()
        self.entries[key] = value
        return value
