"""Time, injected: monotonic seconds for deadlines, UTC wall time for rows and partitions.

Components take these as arguments so tests can drive time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

MonotonicClock = Callable[[], float]
WallClock = Callable[[], datetime]

monotonic: MonotonicClock = time.monotonic


def utc_now() -> datetime:
    return datetime.now(UTC)
