"""`docs/errors.md` lists every `ErrorCode` with its HTTP status, retryable flag and what a
message source answers its broker, exactly."""

from __future__ import annotations

import re

from app.errors import Delivery, ErrorCode
from tests.support import PROJECT_ROOT

_ROW = re.compile(
    r"^\|\s*`(?P<code>[a-z_.]+)`\s*\|\s*(?P<status>\d{3})\s*\|\s*(?P<retry>\w+)\s*\|"
    r"\s*(?P<delivery>[^|]+?)\s*\|"
)
_DELIVERY = {"ack": Delivery.ACKNOWLEDGE, "redeliver": Delivery.REDELIVER, "—": None}

Row = tuple[str, int, bool, Delivery | None]


def _documented_rows() -> list[Row]:
    text = (PROJECT_ROOT / "docs" / "errors.md").read_text()
    rows: list[Row] = []
    for match in map(_ROW.match, text.splitlines()):
        if match is None:
            continue
        retry = match["retry"].lower()
        assert retry in {"yes", "no"}, f"{match['code']}: retryable must be yes or no"
        assert match["delivery"] in _DELIVERY, f"{match['code']}: unknown message-source answer"
        rows.append(
            (match["code"], int(match["status"]), retry == "yes", _DELIVERY[match["delivery"]])
        )
    return rows


def test_every_code_is_documented_once() -> None:
    codes = [code for code, *_ in _documented_rows()]
    assert len(codes) == len(set(codes)), "a code is documented twice"
    assert set(codes) == {code.value for code in ErrorCode}


def test_documented_status_retryable_and_delivery_match_the_code() -> None:
    documented = {code: tuple(rest) for code, *rest in _documented_rows()}
    declared = {code.value: (code.http_status, code.retryable, code.delivery) for code in ErrorCode}
    assert documented == declared


def test_transient_codes_are_redelivered_and_event_codes_acknowledged() -> None:
    for code in ErrorCode:
        if code.retryable:
            assert code.delivery is Delivery.REDELIVER
        elif code.value.startswith(("envelope.", "size.", "contract.", "quality.")):
            assert code.delivery is Delivery.ACKNOWLEDGE
