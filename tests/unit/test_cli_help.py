"""The command line: every synopsis in the README is what `--help` offers, and back."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

import pytest

from app import cli
from tests.support import PROJECT_ROOT


def _readme_synopses() -> dict[str, str]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme.split("## Commands", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    nested = {name for name, sub in _subparsers(cli._parser()).items() if _subparsers(sub)}
    synopses = {}
    for line in block.splitlines():
        if line.startswith("python -m app "):
            words = line.split("#", 1)[0].split()[3:]
            depth = 2 if words[0] in nested else 1  # `keys create NAME …`
            synopses[" ".join(words[:depth])] = " ".join(words[depth:])
    return synopses


def _subparsers(
    parser: argparse.ArgumentParser | None = None,
) -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser by its words: `serve`, `keys create`, …"""
    top = parser is None
    parser = parser or cli._parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found: dict[str, argparse.ArgumentParser] = {}
    for action in actions:
        for name, sub in action.choices.items():
            inner = _subparsers(sub) if top else {}
            found.update({f"{name} {word}": p for word, p in inner.items()} or {name: sub})
    return found


def _offered(sub: argparse.ArgumentParser) -> set[str]:
    """What `--help` shows: each option with its metavar, each positional as its name."""
    offered = set()
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            flag = action.option_strings[-1]
            takes_value = action.nargs != 0
            offered.add(f"{flag} {action.metavar or action.dest.upper()}" if takes_value else flag)
        elif action.choices:
            offered.update(str(choice) for choice in action.choices)
        else:
            offered.add(str(action.metavar or action.dest.upper()))
    return offered


def _written(synopsis: str) -> set[str]:
    return {
        part.strip("[] ")
        for part in re.findall(r"\[[^\]]+\]|--?[\w-]+(?: [A-Z][A-Z_]*)?|[^\s\[\]]+", synopsis)
    }


def test_the_readme_names_every_command() -> None:
    assert set(_readme_synopses()) == set(_subparsers())


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_each_readme_synopsis_matches_help(command: str) -> None:
    assert _written(_readme_synopses()[command]) == _offered(_subparsers()[command])


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_argument_has_help_and_the_screen_repeats_its_summary(command: str) -> None:
    sub = _subparsers()[command]
    assert sub.description, f"{command} --help shows no description"
    for action in sub._actions:
        assert action.help, f"{command}: {action.option_strings or action.dest} has no help"


NOW = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30T08:00:00Z", datetime(2026, 11, 30, 8, tzinfo=UTC)),
        ("2026-11-30T08:00:00", datetime(2026, 11, 30, 8, tzinfo=UTC)),
        ("2026-11-30T09:00:00+01:00", datetime(2026, 11, 30, 8, tzinfo=UTC)),
        ("90s", NOW - timedelta(seconds=90)),
        ("15m", NOW - timedelta(minutes=15)),
        ("2h", NOW - timedelta(hours=2)),
        ("3d", NOW - timedelta(days=3)),
        ("today", datetime(2026, 12, 1, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 30, tzinfo=UTC)),
    ],
)
def test_times_are_iso_8601_or_relative(text: str, expected: datetime) -> None:
    assert cli.moment(text, now=NOW) == expected


def test_a_time_that_is_neither_says_what_is_expected() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"ISO 8601 .* relative"):
        cli.moment("last tuesday", now=NOW)
