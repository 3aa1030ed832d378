"""`docs/errors.md` lists every `ErrorCode` with its HTTP status and retryable flag, exactly."""

from __future__ import annotations

import re

from app.errors import ErrorCode
from tests.support import PROJECT_ROOT

_ROW = re.compile(r"^\|\s*`(?P<code>[a-z_.]+)`\s*\|\s*(?P<status>\d{3})\s*\|\s*(?P<retry>\w+)\s*\|")


def _documented_rows() -> list[tuple[str, int, bool]]:
    text = (PROJECT_ROOT / "docs" / "errors.md").read_text()
    rows: list[tuple[str, int, bool]] = []
    for match in map(_ROW.match, text.splitlines()):
        if match is None:
            continue
        retry = match["retry"].lower()
        assert retry in {"yes", "no"}, f"{match['code']}: retryable must be yes or no"
        rows.append((match["code"], int(match["status"]), retry == "yes"))
    return rows


def test_every_code_is_documented_once() -> None:
    codes = [code for code, _, _ in _documented_rows()]
    assert len(codes) == len(set(codes)), "a code is documented twice"
    assert set(codes) == {code.value for code in ErrorCode}


def test_documented_status_and_retryable_match_the_code() -> None:
    documented = {code: (status, retry) for code, status, retry in _documented_rows()}
    declared = {code.value: (code.http_status, code.retryable) for code in ErrorCode}
    assert documented == declared
