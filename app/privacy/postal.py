"""Postal addresses and person names in free text, found by shape, replaced by a tag.

`redact_addresses(text)` replaces street addresses with `<ADDRESS>`:

- **US style** (also the UK's and Ireland's street lines): a house number, one to four
  street-name words, a street suffix (`12 Main Street`, `1600 Pennsylvania Ave NW`,
  `221B Baker Street`). The rest of the address that follows (unit, city, state, ZIP) is
  found by `usaddress`, the offline CRF tagger for US addresses, run on the candidate
  only; it costs about a millisecond, so it never sees a string the shape did not flag.
- **UK and Irish postcodes** (`SW1A 1AA`, `EC1A 1BB`, `M1 1AE`; Eircodes `D02 X285`).
- **German, Austrian, Swiss**: a street name ending in (or followed by) Straße/Strasse/
  Str./Weg/Platz/Gasse/Allee/Damm/Ring, then a number (`Hauptstraße 5`, `Berliner Straße
  12a`), with an optional postcode and town (`, 10115 Berlin`).
- **French**: a number, then rue/avenue/boulevard/place/allée/impasse/chemin/quai/cours
  and the street's name (`12 rue de la Paix`), with an optional `75002 Paris`.

`redact_names(text)` replaces a person's name with `<NAME>` where the words around it
say it is one: after a salutation (`Dear Ada Lovelace`, `Hi Ada,`), a title (`Mr Smith`),
a signature line (`Regards,\\nAda`) or a label (`Name: Ada Lovelace`). A name with no such
context cannot be told from a product or a city without a model; docs/privacy.md says
what is left.

No library covers the non-US formats offline with a licence and size that fit, so they
are patterns: each country's way of writing a street is regular enough, and the
labelled sample in the tests holds them to a measured precision and recall.

Cost: both functions are gated by checks that run in C before any pattern with
alternations is tried: a digit for addresses (every format above has one), one of a few
trigger words for names.
"""

from __future__ import annotations

import re
from typing import Final

import usaddress  # type: ignore[import-untyped]

ADDRESS: Final = "<ADDRESS>"
NAME: Final = "<NAME>"

_UPPER = "A-ZÀ-ÖØ-Þ"
_WORD = r"[\wÀ-ÖØ-öø-ÿ'.-]"
# Street suffixes that are seldom anything else: a lower-case street name may precede them.
_PLAIN_SUFFIX = r"street|st|avenue|ave|boulevard|blvd|rd|terrace|parkway|pkwy|hwy|crescent|mews"
# Suffixes that are common words too ("a 5 minute drive", "the 3 way split"): only after
# capitalized street-name words.
_WORD_SUFFIX = (
    r"road|lane|ln|drive|dr|highway|way|place|pl|court|ct|square|sq|circle|cir|close|row"
    r"|grove|gardens|hill|park|walk|green|plaza"
)
_US_STREET = re.compile(
    rf"""
    [0-9](?<![\w.,:/$€£-][0-9])[0-9]{{0,5}}[A-Za-z]?\s+
    (?:[NSEW]\.?\s+)?
    (?:
        (?:{_WORD}+\s+){{0,3}}?{_WORD}+\s+(?i:{_PLAIN_SUFFIX})
        | (?:[{_UPPER}0-9]{_WORD}*\s+){{1,4}}?(?i:{_WORD_SUFFIX})
    )
    \b\.?
    """,
    re.VERBOSE,
)
# UK: outward code (area letters, district digit, optional letter/digit) and inward code.
# Ireland (Eircode): routing key, then four characters with at least one letter.
_POSTCODE = re.compile(
    r"[A-Z](?<![\w-][A-Z])(?:[A-Z]?[0-9][A-Z0-9]?\s?[0-9][ABD-HJLNP-UW-Z]{2}"
    r"|[0-9]{2}\s?(?=[0-9A-Z]{0,3}[A-Z])[0-9AC-FHKNPRTV-Y]{4}|6W\s?[0-9AC-FHKNPRTV-Y]{4})"
    r"(?![\w-])"
)
_DACH_STREET = re.compile(
    rf"""
    [{_UPPER}](?<![\w-][{_UPPER}])[\wÀ-ÖØ-öø-ÿ-]*?
    (?:\s[{_UPPER}][\wÀ-ÖØ-öø-ÿ-]*?)?\s?
    (?:[Ss]tra(?:ß|ss)e|[Ss]tr\.|[Ww]eg|[Pp]latz|[Gg]asse|[Aa]llee|[Dd]amm|[Rr]ing)
    \s*[0-9]{{1,4}}(?:\s?[a-zA-Z](?![\w]))?(?:\s?[-/]\s?[0-9]{{1,4}})?
    (?:,?\s+(?:[ADCH]{{1,2}}-)?[0-9]{{4,5}}\s+[{_UPPER}][\wÀ-ÖØ-öø-ÿ-]+)?
    (?![\w])
    """,
    re.VERBOSE,
)
_FR_STREET = re.compile(
    rf"""
    [0-9](?<![\w.,:/$€£-][0-9])[0-9]{{0,3}}(?:\s?(?:bis|ter|[A-Da-d])(?![\w]))?,?\s+
    (?i:rue|avenue|av\.|boulevard|bd|place|allée|allee|impasse|chemin|quai|cours|route)\s+
    (?:[\wÀ-ÖØ-öø-ÿ'-]+\s?){{1,5}}
    (?:,?\s*[0-9]{{5}}\s+[{_UPPER}][\wÀ-ÖØ-öø-ÿ-]+)?
    """,
    re.VERBOSE,
)
# What must be present for a street pattern to match: a number followed by a word (US,
# UK, FR), or a German street word (which a number follows). `in` on the lower-cased text
# runs in C; a regex alternation would be tried at every position.
_NUMBER_WORD = re.compile(r"[0-9](?=[0-9A-Za-z]{0,5}\s)")
_DACH_WORDS: Final = ("stra", "str.", "weg", "platz", "gasse", "allee", "damm", "ring")
_FR_WORDS: Final = (
    "rue",
    "av",
    "bd",
    "place",
    "all",
    "impasse",
    "chemin",
    "quai",
    "cours",
    "route",
)
_POSTCODE_HINT = re.compile(r"[A-Z][0-9]")
_US_TAIL_LABELS: Final = frozenset(
    {
        "StreetNamePostDirectional",
        "StreetNamePostType",
        "OccupancyType",
        "OccupancyIdentifier",
        "SubaddressType",
        "SubaddressIdentifier",
        "PlaceName",
        "StateName",
        "ZipCode",
    }
)
_US_TAIL_CHARS: Final = 60  # what usaddress sees after a street line
_ZIP = re.compile(r"[0-9]{5}(?:-[0-9]{4})?[,.]?")
_UNIT = re.compile(r"(?i:apt|apartment|suite|ste|unit|#|fl|floor|room|rm|bldg|building)\.?,?")
_UNIT_ID = re.compile(r"#?[0-9A-Za-z]{1,5},?")


def redact_addresses(text: str) -> str:
    """`text` with every street address and postcode found replaced by `<ADDRESS>`."""
    lowered = text.lower()
    if _has_any(lowered, _DACH_WORDS):
        text = _DACH_STREET.sub(ADDRESS, text)
    if _NUMBER_WORD.search(text) is not None:
        if _has_any(lowered, _FR_WORDS):
            text = _FR_STREET.sub(ADDRESS, text)
        text = _us_streets(text)
    if _POSTCODE_HINT.search(text) is not None:
        text = _POSTCODE.sub(ADDRESS, text)
    return text


def _us_streets(text: str) -> str:
    pieces: list[str] = []
    position = 0
    for match in _US_STREET.finditer(text):
        if match.start() < position:
            continue  # inside the tail of the previous address
        pieces += (text[position : match.start()], ADDRESS)
        position = _tail_end(text, match.end())
    if not pieces:
        return text
    pieces.append(text[position:])
    return "".join(pieces)


def _is_tail(token: str, label: str) -> bool:
    """Whether usaddress's tag continues the address: the tagger labels almost anything
    after a street line as a place, so places and states must be capitalized words and a
    ZIP code five digits (or ZIP+4)."""
    if label not in _US_TAIL_LABELS:
        return False
    if label == "ZipCode":
        return _ZIP.fullmatch(token) is not None
    if label in ("PlaceName", "StateName"):
        return token[:1].isupper() and token.rstrip(",.").isalpha()
    if label.endswith("Type"):
        return label == "StreetNamePostType" or _UNIT.fullmatch(token) is not None
    if label.endswith("Identifier"):
        return _UNIT_ID.fullmatch(token) is not None
    return True


def _tail_end(text: str, start: int) -> int:
    """Where the address whose street line ends at `start` ends: usaddress tags what
    follows, and the run of unit, city, state and ZIP tokens is taken."""
    window = text[start : start + _US_TAIL_CHARS]
    if not window.strip(" ,"):
        return start
    end = start
    cursor = 0
    for token, label in usaddress.parse(window):
        found = window.find(token, cursor)
        if found < 0 or not _is_tail(token, label):
            break
        cursor = found + len(token)
        end = start + len(window[:cursor].rstrip(",."))  # the comma after belongs to the text
    return end


_NAME_WORD = r"[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ'-]+"
_FULL_NAME = rf"{_NAME_WORD}(?:[ -]{_NAME_WORD}){{0,2}}"
_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Herr|Frau|Mme|Mlle|M)\.?"
_NAMES = re.compile(
    rf"""
    (?P<before>
        (?:Dear|Dearest|Liebe|Lieber|Cher|Chère)\s+(?:{_TITLE}\s+)?
        | (?:Hi|Hello|Hey|Hallo|Bonjour)\s+(?:{_TITLE}\s+)?(?={_FULL_NAME}\s*[,!\n])
        | (?<![\w])(?:Mr|Mrs|Ms|Mx|Dr|Herr|Frau|Mme)\.?\s+
        | (?:[Rr]egards|[Tt]hanks|[Tt]hank\ you|[Cc]heers|[Ss]incerely|[Bb]est|[Gg]rüße
           |[Gg]ruß|[Cc]ordialement)[,!.]?[ \t]*\r?\n[ \t]*(?:--?[ \t]*)?
        | (?<![\w])(?:[Nn]ame|[Ff]ull\ name|[Cc]ontact|[Cc]ustomer|[Rr]ecipient|[Aa]ttn\.?
           |[Aa]ttention|[Cc]ardholder)[ \t]*:[ \t]*(?:{_TITLE}\s+)?
    )
    {_FULL_NAME}
    """,
    re.VERBOSE,
)
# Every context of `_NAMES` holds a line break (signatures), a colon (labels) or one of
# these capitalized words, which the first character set lets `re` skip ahead to.
_SALUTATION = re.compile(
    r"[DLCHBMF](?<![\w][DLCHBMF])"
    r"(?:ear|iebe|her|hère|i\s|ello|ey|allo|onjour|rs?\b|s\b|x\b|me\b|r\.?\s|err|rau)"
)


_LABEL = re.compile(
    r"[NnFfCcRrAa](?<![\w][NnFfCcRrAa])"
    r"(?:ame|ull\ name|ontact|ustomer|ecipient|ttn\.?|ttention|ardholder)[ \t]*:"
)


def _has_any(text: str, fragments: tuple[str, ...]) -> bool:
    return any(fragment in text for fragment in fragments)


def redact_names(text: str) -> str:
    """`text` with every name found in a salutation, title, signature or label context
    replaced by `<NAME>` (the context words stay)."""
    if (
        "\n" not in text
        and _SALUTATION.search(text) is None
        and (":" not in text or _LABEL.search(text) is None)
    ):
        return text
    return _NAMES.sub(_name, text)


def _name(match: re.Match[str]) -> str:
    return match.group("before") + NAME
