"""Personal data in free text: found by shape, confirmed by checksum, replaced by a tag.

`redact(text)` replaces e-mail addresses with `<EMAIL>`, phone numbers with `<PHONE>`,
IPv4 and IPv6 addresses with `<IP>`, payment-card numbers that pass the Luhn check with
`<CARD>`, IBANs that pass the ISO 13616 mod-97 check with `<IBAN>`, and (`postal.py`)
street addresses and postcodes with `<ADDRESS>` and names in salutations, signatures and
`Name:` labels with `<NAME>`. Everything else is returned unchanged, character for
character.

It is a heuristic, deliberately biased towards redacting: a false positive costs a few
characters of an analytics field, a false negative puts personal data on disk. What it
knowingly leaves alone (documented in docs/privacy.md):

- names outside a salutation, signature or label, addresses in formats `postal.py` does
  not list, and anything else with no recognisable shape;
- digit runs with no separator and no leading `+` (`5558675309`): indistinguishable from
  order numbers and timestamps, so they are not taken for phone numbers;
- phone numbers written with fewer than 9 digits unless they start with `+`;
- ISO dates and times (`2026-11-25`, `2026-11-25 10:30:00`) and `dd.mm.yyyy` dates, which
  are matched first precisely so that they are *not* taken for phone numbers;
- digits other than ASCII `0-9`.

Cost matters (this runs on most strings of most events), so the work is gated by
checks that run in C: `@` for e-mail addresses, `::` or seven `:` for IPv6, and for
everything with digits a run of six digits-or-separators; a string that is a whole RFC
3339 timestamp is left alone at once. Every pattern starts with a character set, which
lets `re` skip ahead to candidates instead of trying a match at every position, and
can start only at the beginning of a run of its own characters (a look-behind), so a
scan is linear in the length of the text. Candidates are confirmed in Python
(`ipaddress`, Luhn, mod-97) only when the shape matched.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from app.privacy.postal import ADDRESS, NAME, redact_addresses, redact_names

EMAIL: Final = "<EMAIL>"
PHONE: Final = "<PHONE>"
IP: Final = "<IP>"
CARD: Final = "<CARD>"
IBAN: Final = "<IBAN>"
__all__ = ["ADDRESS", "CARD", "EMAIL", "IBAN", "IP", "NAME", "PHONE", "redact"]

_CARD_DIGITS = range(13, 20)  # ISO/IEC 7812: 13 to 19 digits
_PHONE_DIGITS_INTERNATIONAL = range(8, 16)  # E.164: at most 15 digits, country code included
_PHONE_DIGITS_NATIONAL = range(9, 16)
_IBAN_LENGTH = range(15, 35)  # Norway's 15 characters to Saint Lucia's 32, with room

# Python's `re` can skip ahead quickly only to a character of a pattern's *first* set, so
# every pattern below starts with one; the look-behind that keeps a match from starting
# in the middle of a word comes right after that first character (`(?<![…].)`).
_EMAIL = re.compile(r"[\w.%+'-](?<![\w.%+'-][\w.%+'-])[\w.%+'-]*@[\w-]+(?:\.[\w-]+)+")
_IPV6 = re.compile(
    r"[0-9A-Fa-f:](?<![\w:.][0-9A-Fa-f:])[0-9A-Fa-f]{0,3}(?::[0-9A-Fa-f]{0,4}){1,7}"
    r"(?:(?<=:)[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?:%[\w.]+)?(?![\w:]|\.[0-9])"
)
_IBAN = re.compile(
    r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}"
    r"(?:[A-Z0-9]{11,30}|(?:\ [A-Z0-9]{4}){2,7}(?:\ [A-Z0-9]{1,4})?)(?![A-Za-z0-9])"
)
# Dates, IPv4 addresses, card numbers and phone numbers, told apart by the first
# character and tried in that order: a date is matched only so that it is *not* taken
# for a phone number, an IPv4 address or a card number must not be either.
# The shortest phone number is 9 characters after its first (8 with a `+`): the look-aheads
# spare a call into Python for every decimal number in the text.
_PHONE_TAIL = r"[0-9]{1,5}(?:[ .-][0-9]{1,5}){0,6}(?![\w])"
_INTERNATIONAL_TAIL = r"[0-9]{1,14}(?:[ .-][0-9]{1,5}){0,6}(?![\w])"
_NUMBERS = re.compile(
    rf"""
    [+(0-9](?<![\w+.][+(0-9])
    (?:
        (?<=[0-9])(?:
            (?P<date>[0-9]{{3}}-[0-9]{{2}}-[0-9]{{2}}
                (?:[Tt\ ][0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}}(?:\.[0-9]+)?)?
                (?:[Zz]|[+-][0-9]{{2}}:?[0-9]{{2}})?)?(?![\w])
            | [0-9]?[./][0-9]{{1,2}}[./][0-9]{{4}}(?![\w]))
            | (?P<ipv4>[0-9]{{0,2}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}(?![\w]|\.[0-9]))
            | (?P<card>(?:[\ -]?[0-9]){{12,}}(?![\w]))
            | (?=[0-9\ .-]{{8}})[0-9]{{0,4}}(?:[ .-][0-9]{{1,5}}){{1,6}}(?![\w])
        )
        | (?<=\+)(?=[0-9\ .()-]{{7}})[0-9]{{1,3}}[ .-]?(?:\([0-9]{{1,5}}\)[ .-]?)?
            {_INTERNATIONAL_TAIL}
        | (?<=\()(?=[0-9\ .()-]{{8}})[0-9]{{1,5}}\)[ .-]?{_PHONE_TAIL}
    )
    """,
    re.VERBOSE,
)
# What must be present for `_NUMBERS` or `_IBAN` to find anything: a digit followed by
# five more digits or separators (the shortest phone, card, IBAN or IPv4 address has
# such a run). `@` and `::` are looked for with `in`, which is cheaper still.
_NUMBER_RUN = re.compile(r"[0-9](?=[0-9 ().\-/]{5})")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2}))?"
)
_DIGIT = re.compile(r"[0-9]")
_NOT_DIGIT = re.compile(r"[^0-9]")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_MIN_IBAN_CHARS = 15


def redact(text: str) -> str:
    """`text` with every detected e-mail, phone, IP, card number and IBAN replaced by its
    tag. Pure and total: any string in, a string out."""
    if "@" in text:
        text = _EMAIL.sub(EMAIL, text)
    if ":" in text and ("::" in text or text.count(":") >= 7):
        text = _IPV6.sub(_ip_or_text, text)
    if _RFC3339.fullmatch(text) is not None:
        return text
    text = redact_names(text)
    if _DIGIT.search(text) is None:
        return text
    if _NUMBER_RUN.search(text) is not None:
        if len(text) >= _MIN_IBAN_CHARS:
            text = _IBAN.sub(_iban_or_text, text)
        text = _NUMBERS.sub(_number, text)
        if _DIGIT.search(text) is None:
            return text  # the digits were a phone or a card: no house number is left
    return redact_addresses(text)


def _ip_or_text(match: re.Match[str]) -> str:
    text = match.group()
    return IP if _is_ip(text) else text


def _iban_or_text(match: re.Match[str]) -> str:
    return _redact_iban(match.group())


def _number(match: re.Match[str]) -> str:
    text = match.group()
    if match.group("date") is not None:
        return text
    if match.group("ipv4") is not None:
        return IP if _is_ip(text) else text
    if match.group("card") is not None:
        return _redact_cards(text)
    return PHONE if is_phone(text) else text


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_phone(text: str) -> bool:
    """Whether `text` (a whole phone-shaped match) has the digits of a phone number.

    With a leading `+`: 8 to 15 digits. Without: 9 to 15 digits and at least one
    separator or parenthesis, since a bare digit run is as likely an order number.
    """
    digits = len(_NOT_DIGIT.sub("", text))
    if text.startswith("+"):
        return digits in _PHONE_DIGITS_INTERNATIONAL
    return digits in _PHONE_DIGITS_NATIONAL and not text.isdigit()


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a string of ASCII digits; False for an empty string."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """ISO 13616: two letters, two check digits, 11 to 30 alphanumerics; mod 97 == 1.

    Spaces are ignored; letters must be upper case, as IBANs are printed.
    """
    compact = text.replace(" ", "")
    if len(compact) not in _IBAN_LENGTH or not compact.isascii() or not compact.isalnum():
        return False
    if not (compact[:2].isalpha() and compact[:2].isupper() and compact[2:4].isdigit()):
        return False
    rearranged = compact[4:] + compact[:4]
    # Each letter becomes two digits, A=10 … Z=35.
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def _redact_iban(text: str) -> str:
    if iban_valid(text):
        return IBAN
    # A printed IBAN followed by an unrelated 4-character group: try shorter prefixes
    # that end on a group boundary; what follows is scanned again.
    cut = text.rfind(" ")
    while cut > 0:
        if iban_valid(text[:cut]):
            return IBAN + redact(text[cut:])
        cut = text.rfind(" ", 0, cut)
    return text


def _redact_cards(text: str) -> str:
    """A run of digit groups with at least 13 digits (the `card` shape).

    Cards are looked for as they are written: one group of 13 to 19 digits, or groups
    that start with 4 digits and continue with groups of 4 to 6 (4-4-4-4, 4-6-5, 4-4-4-4-3),
    13 to 19 digits in all, passing Luhn; the longest such window wins, left to right, so
    a phone number or a count written next to a card neither hides it nor is taken with
    it. A run with no such window that has 13 to 19 digits and passes Luhn as a whole is
    a card written some other way. What is left is checked for phone numbers.
    """
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP.finditer(text)]
    pieces: list[str] = []
    position = 0  # in `text`: everything before it is already in `pieces`
    start = 0
    while start < len(groups):
        end = _card_window(text, groups, start)
        if end is None:
            start += 1
            continue
        pieces += (_phones(text[position : groups[start][0]]), CARD)
        position = groups[end][1]
        start = end + 1
    if not pieces:
        digits = _NOT_DIGIT.sub("", text)
        if len(digits) in _CARD_DIGITS and luhn_valid(digits):
            return CARD
    pieces.append(_phones(text[position:]))
    return "".join(pieces)


def _card_window(text: str, groups: list[tuple[int, int]], start: int) -> int | None:
    """The last group of the longest card-shaped, Luhn-valid window from `start`."""
    digits = text[groups[start][0] : groups[start][1]]
    best = start if len(digits) in _CARD_DIGITS and luhn_valid(digits) else None
    if len(digits) != 4:
        return best
    for end in range(start + 1, len(groups)):
        if end - 1 > start and not 4 <= groups[end - 1][1] - groups[end - 1][0] <= 6:
            break
        digits += text[groups[end][0] : groups[end][1]]
        if len(digits) >= _CARD_DIGITS.stop:
            break
        if len(digits) in _CARD_DIGITS and luhn_valid(digits):
            best = end
    return best


def _phones(text: str) -> str:
    """Phone numbers in what is left of a digit run after its cards were taken out."""
    return _NUMBERS.sub(_phone_or_text, text)


def _phone_or_text(match: re.Match[str]) -> str:
    text = match.group()
    if match.group("date") is not None or match.group("ipv4") is not None:
        return text
    return PHONE if is_phone(text) else text
