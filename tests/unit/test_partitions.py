"""Partition arithmetic for the `events` table: ranges, names, and the run ahead."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.storage.partitions import PartitionRange, partition_containing, partitions_ahead


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type]


# --- day -----------------------------------------------------------------------------------


def test_day_partition_of_a_utc_moment() -> None:
    part = partition_containing(utc(2024, 3, 5, 13, 45, 10, 123), "day")
    assert part == PartitionRange(utc(2024, 3, 5), utc(2024, 3, 6))
    assert part.name == "events_p20240305"


def test_day_partition_starts_are_inclusive_and_ends_exclusive() -> None:
    midnight = utc(2024, 3, 5)
    assert partition_containing(midnight, "day").start == midnight
    just_before = midnight - timedelta(microseconds=1)
    assert partition_containing(just_before, "day") == PartitionRange(utc(2024, 3, 4), midnight)


def test_non_utc_moment_is_normalized_to_utc() -> None:
    # 01:30 on 5 March in UTC+02:00 is 23:30 on 4 March in UTC.
    moment = datetime(2024, 3, 5, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    part = partition_containing(moment, "day")
    assert part == PartitionRange(utc(2024, 3, 4), utc(2024, 3, 5))
    assert part.start.tzinfo is UTC
    assert part.end.tzinfo is UTC
    assert part.name == "events_p20240304"


def test_negative_offset_pushes_into_the_next_utc_day() -> None:
    # 20:00 on 31 December in UTC-05:00 is 01:00 on 1 January in UTC.
    moment = datetime(2023, 12, 31, 20, tzinfo=timezone(timedelta(hours=-5)))
    assert partition_containing(moment, "day").name == "events_p20240101"
    assert partition_containing(moment, "month").name == "events_p20240101"
    assert partition_containing(moment, "week").name == "events_p20240101"  # a Monday


def test_day_rolls_over_month_and_year() -> None:
    assert partition_containing(utc(2024, 12, 31, 23, 59), "day").end == utc(2025, 1, 1)
    assert partition_containing(utc(2024, 2, 29, 12), "day").end == utc(2024, 3, 1)


# --- week ----------------------------------------------------------------------------------


@pytest.mark.parametrize("day", range(4, 11))  # Monday 4 March 2024 through Sunday 10 March
def test_week_partitions_start_on_monday(day: int) -> None:
    part = partition_containing(utc(2024, 3, day, 23, 59, 59), "week")
    assert part == PartitionRange(utc(2024, 3, 4), utc(2024, 3, 11))
    assert part.start.weekday() == 0
    assert part.name == "events_p20240304"


def test_week_across_a_year_boundary() -> None:
    # Wednesday 1 January 2025 belongs to the week starting Monday 30 December 2024.
    part = partition_containing(utc(2025, 1, 1, 8), "week")
    assert part == PartitionRange(utc(2024, 12, 30), utc(2025, 1, 6))
    assert part.name == "events_p20241230"


def test_week_normalizes_to_utc_before_finding_monday() -> None:
    # Monday 00:30 at UTC+01:00 is still Sunday in UTC: the previous week.
    moment = datetime(2024, 3, 11, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert partition_containing(moment, "week").start == utc(2024, 3, 4)


# --- month ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "start", "end"),
    [
        (utc(2024, 1, 31, 23), utc(2024, 1, 1), utc(2024, 2, 1)),
        (utc(2024, 2, 29, 23, 59), utc(2024, 2, 1), utc(2024, 3, 1)),  # leap February
        (utc(2023, 2, 28), utc(2023, 2, 1), utc(2023, 3, 1)),
        (utc(2024, 4, 30), utc(2024, 4, 1), utc(2024, 5, 1)),  # 30-day month
        (utc(2024, 12, 15), utc(2024, 12, 1), utc(2025, 1, 1)),  # December → January
        (utc(2024, 12, 31, 23, 59, 59), utc(2024, 12, 1), utc(2025, 1, 1)),
        (utc(2025, 1, 1), utc(2025, 1, 1), utc(2025, 2, 1)),
    ],
)
def test_month_partitions(moment: datetime, start: datetime, end: datetime) -> None:
    assert partition_containing(moment, "month") == PartitionRange(start, end)


def test_month_name_is_the_first_day() -> None:
    assert partition_containing(utc(2024, 2, 17), "month").name == "events_p20240201"


# --- partitions_ahead ----------------------------------------------------------------------


@pytest.mark.parametrize("width", ["day", "week", "month"])
@pytest.mark.parametrize("ahead", [0, 1, 3, 14])
def test_partitions_ahead_count_and_contiguity(width: str, ahead: int) -> None:
    moment = utc(2024, 12, 20, 17)
    ranges = partitions_ahead(moment, width, ahead)  # type: ignore[arg-type]
    assert len(ranges) == ahead + 1
    assert ranges[0] == partition_containing(moment, width)  # type: ignore[arg-type]
    assert ranges[0].start <= moment < ranges[0].end
    for current, following in itertools.pairwise(ranges):
        assert current.end == following.start
    for part in ranges:
        assert part.start < part.end
        assert part.start.tzinfo is UTC
    assert len({part.name for part in ranges}) == len(ranges)


def test_days_ahead_names() -> None:
    names = [part.name for part in partitions_ahead(utc(2024, 2, 27, 9), "day", 3)]
    assert names == ["events_p20240227", "events_p20240228", "events_p20240229", "events_p20240301"]


def test_weeks_ahead_are_seven_days() -> None:
    ranges = partitions_ahead(utc(2024, 3, 6), "week", 4)
    assert [part.name for part in ranges] == [
        "events_p20240304",
        "events_p20240311",
        "events_p20240318",
        "events_p20240325",
        "events_p20240401",
    ]
    assert all(part.end - part.start == timedelta(days=7) for part in ranges)


def test_months_ahead_roll_over_the_year() -> None:
    ranges = partitions_ahead(utc(2024, 11, 30, 23), "month", 3)
    assert [(part.start, part.end) for part in ranges] == [
        (utc(2024, 11, 1), utc(2024, 12, 1)),
        (utc(2024, 12, 1), utc(2025, 1, 1)),
        (utc(2025, 1, 1), utc(2025, 2, 1)),
        (utc(2025, 2, 1), utc(2025, 3, 1)),
    ]
    assert [part.name for part in ranges] == [
        "events_p20241101",
        "events_p20241201",
        "events_p20250101",
        "events_p20250201",
    ]


def test_name_format() -> None:
    part = PartitionRange(utc(2031, 1, 2), utc(2031, 1, 3))
    assert part.name == "events_p20310102"
