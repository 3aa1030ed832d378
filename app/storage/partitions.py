"""Partition arithmetic for the `events` table: pure functions of a timestamp and a width."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Width = Literal["day", "week", "month"]


@dataclass(frozen=True, slots=True)
class PartitionRange:
    start: datetime  # inclusive
    end: datetime  # exclusive

    @property
    def name(self) -> str:
        return f"events_p{self.start:%Y%m%d}"


def partition_containing(moment: datetime, width: Width) -> PartitionRange:
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if width == "day":
        return PartitionRange(day, day + timedelta(days=1))
    if width == "week":
        monday = day - timedelta(days=day.weekday())
        return PartitionRange(monday, monday + timedelta(days=7))
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return PartitionRange(first, following)


def partitions_ahead(moment: datetime, width: Width, ahead: int) -> list[PartitionRange]:
    """The partition holding `moment` and the `ahead` partitions after it."""
    ranges = [partition_containing(moment, width)]
    for _ in range(ahead):
        ranges.append(partition_containing(ranges[-1].end, width))
    return ranges
