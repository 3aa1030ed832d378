"""What the preview and the residual scan report about a value, without the value.

`tags_in(text)`: the detector tags (`EMAIL`, `ADDRESS`, …) `detectors.redact` would put
into `text`. `masked(value)`: the value's shape only (letters become `x`/`X`, digits `9`,
everything else kept, at most 32 characters): enough to recognise "an e-mail address"
or "a UK phone number" in a report, nothing of the value itself.
"""

from __future__ import annotations

import re
from typing import Any, Final

from app.privacy.detectors import redact

_TAG = re.compile(r"<(EMAIL|PHONE|IP|CARD|IBAN|ADDRESS|NAME)>")
_MASK_CHARS: Final = 32


def tags_in(text: str) -> tuple[str, ...]:
    """The tags `redact` puts into `text` that were not there already, sorted, once each."""
    redacted = redact(text)
    if redacted == text:
        return ()
    before = set(_TAG.findall(text))
    return tuple(sorted(set(_TAG.findall(redacted)) - before))


def masked(value: Any) -> str:
    """The shape of a scalar's text; never a character of a letter or a digit."""
    text = value if isinstance(value, str) else repr(value)
    shape = []
    for char in text[:_MASK_CHARS]:
        if char.isdigit():
            shape.append("9")
        elif char.isalpha():
            shape.append("X" if char.isupper() else "x")
        else:
            shape.append(char)
    return "".join(shape) + ("…" if len(text) > _MASK_CHARS else "")
