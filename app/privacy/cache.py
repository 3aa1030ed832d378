"""The one bounded cache of the privacy engine.

Key names, event types and subjects come from the sender, so nothing remembered about
them may grow with them. `BoundedCache` is a dict that holds at most `limit` entries:
when full, it is emptied before the next one goes in. That is cruder than LRU and
cheaper on the hot path (a hit is a plain dict lookup, with no bookkeeping), and the
values that matter (the names every event carries) come straight back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(dict[K, V]):
    """A dict of at most `limit` entries; `cache[key]` computes a missing value with
    `compute` (when given) and remembers it. Without `compute`, a missing key raises
    KeyError as in any dict, and entries go in through `remember`."""

    __slots__ = ("_compute", "limit")

    def __init__(self, limit: int, compute: Callable[[K], V] | None = None) -> None:
        super().__init__()
        self.limit = limit
        self._compute = compute

    def __missing__(self, key: K) -> V:
        if self._compute is None:
            raise KeyError(key)
        value = self._compute(key)
        self.remember(key, value)
        return value

    def remember(self, key: K, value: V) -> None:
        """Store `value` under `key`, emptying the cache first when it is full."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
