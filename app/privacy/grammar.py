"""The two small languages a policy rule names things in: field paths and globs.

- A **field path** (`user.email`, `items[*].card`, `[*].id`) names one exact place in
  `data`: keys separated by dots, `[*]` for every element of an array.
- A **glob** (`*_email`, `com.example.order.*`) is an `fnmatch` pattern matching key
  names, extension attribute names or event types.

Both are checked when the policy is read (`parse_path`, `check_glob` raise ValueError
saying what is wrong), so a rule that could never mean what it says stops the start.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Final

_PATH_TOKEN = re.compile(r"\.|\[[^\]]*\]|[^.\[\]]+|[\[\]]")


class Each(Enum):
    """The `[*]` path segment: every element of an array."""

    EACH = "[*]"


EACH: Final = Each.EACH
Segment = str | Each


def parse_path(text: str) -> tuple[Segment, ...]:
    """`user.email` → ("user", "email"); `items[*].card` → ("items", EACH, "card").

    Keys are separated by dots and cannot contain `.`, `[` or `]`; `[*]` stands for every
    element of an array and may follow a key, another `[*]`, or start the path (data that
    is itself an array). Raises ValueError saying what is wrong.
    """
    if not text:
        raise ValueError("empty path")
    segments: list[Segment] = []
    after_dot = False
    for piece in _PATH_TOKEN.findall(text):
        if piece == ".":
            if not segments or after_dot:
                raise ValueError("empty key (a path cannot start with '.' or hold '..')")
            after_dot = True
            continue
        segment = _segment(piece)
        if segment is EACH and after_dot:
            raise ValueError("'[*]' must follow a key directly, as in 'items[*]'")
        if segment is not EACH and segments and not after_dot:
            raise ValueError("a key must follow '.'")
        segments.append(segment)
        after_dot = False
    if after_dot:
        raise ValueError("empty key (a path cannot end with '.')")
    return tuple(segments)


def _segment(piece: str) -> Segment:
    if piece == "[*]":
        return EACH
    if piece in ("[", "]"):
        raise ValueError(f"unbalanced '{piece}'")
    if piece.startswith("["):
        raise ValueError(f"only '[*]' selects array elements, not '{piece}'")
    if piece != piece.strip():
        raise ValueError(f"key '{piece}' has leading or trailing spaces")
    return piece


def check_glob(pattern: str) -> None:
    """Raises ValueError for a glob that cannot mean what it says: empty, or a `[` set
    that never closes (fnmatch would silently take the `[` literally)."""
    if not pattern:
        raise ValueError("empty pattern")
    position = 0
    while (start := pattern.find("[", position)) != -1:
        # fnmatch: `]` right after `[` (or `[!`) is a member, not the end of the set.
        first = start + 2 if pattern[start + 1 : start + 2] == "!" else start + 1
        end = pattern.find("]", first + 1)
        if end == -1:
            raise ValueError(f"'[' at {start} is never closed")
        position = end + 1
