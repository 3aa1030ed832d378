"""Loading the policy file: what it means, and every way it can be wrong, by line."""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

import pytest

from app.config import DEFAULT_POLICY_FILE
from app.privacy.actions import (
    Drop,
    GeneralizeNumber,
    GeneralizeTime,
    Keep,
    Mask,
    Pseudonymize,
    RedactText,
    TruncateIp,
)
from app.privacy.grammar import EACH, check_glob, parse_path
from app.privacy.policy import PolicyError, load_policy
from tests.unit.privacy.builders import policy_from

FULL = """\
version: 1
mode: denylist
subject: drop
binary_data: keep
unnamed_text: keep
names:
  - match: ["email", "*_email"]
    action: pseudonymize
  - match: ip
    action: {truncate_ip: {ipv4_prefix: 16, ipv6_prefix: 32}}
  - match: [card]
    action: {mask: {keep_last: 2}}
  - match: [dob]
    action: {generalize_time: {to: month}}
  - match: [age]
    action: {generalize_number: {buckets: [0, 18, 30.5]}}
  - match: [lat]
    action: {generalize_number: {width: 0.5}}
  - match: [note]
    action: redact_text
  - match: [secret]
    action: drop
  - match: [plain]
    action: {keep: {}}
  - match: [nulled]
    action: {mask: null}
types:
  - match: ["com.example.order.*", "com.example.cart.*"]
    mode: allowlist
    unnamed_text: redact_text
    binary_data: drop
    fields:
      user.email: pseudonymize
      items[*].card: {mask: {keep_last: 4}}
      "[*].id": keep
      matrix[*][*]: drop
    names:
      - match: "*_id"
        action: keep
    extensions:
      tenant: keep
  - match: com.example.other
extensions:
  traceparent: keep
  tracestate: drop
"""


def test_a_full_policy_reads_as_written() -> None:
    policy = policy_from(FULL)
    assert policy.mode == "denylist"
    assert policy.subject == Drop()
    assert policy.binary_data == Keep()
    assert policy.unnamed_text == Keep()
    assert [rule.action for rule in policy.names] == [
        Pseudonymize(),
        TruncateIp(ipv4_prefix=16, ipv6_prefix=32),
        Mask(keep_last=2),
        GeneralizeTime(to="month"),
        GeneralizeNumber(buckets=(0, 18, 30.5)),
        GeneralizeNumber(width=0.5),
        RedactText(),
        Drop(),
        Keep(),
        Mask(keep_last=4),
    ]
    assert policy.names[0].patterns == ("email", "*_email")
    assert policy.names[0].line == 7
    assert dict(policy.extensions) == {"traceparent": Keep(), "tracestate": Drop()}
    order, other = policy.types
    assert order.patterns == ("com.example.order.*", "com.example.cart.*")
    assert order.mode == "allowlist"
    assert order.unnamed_text == RedactText()
    assert order.binary_data == Drop()
    assert [(rule.path, rule.action) for rule in order.fields] == [
        (("user", "email"), Pseudonymize()),
        (("items", EACH, "card"), Mask(keep_last=4)),
        ((EACH, "id"), Keep()),
        (("matrix", EACH, EACH), Drop()),
    ]
    assert order.names[0].patterns == ("*_id",)
    assert dict(order.extensions) == {"tenant": Keep()}
    assert other.mode is None
    assert other.fields == ()


def test_type_rules_resolve_over_the_top_level() -> None:
    policy = policy_from(FULL)
    assert policy.type_rule("com.example.cart.updated") is policy.types[0]
    assert policy.type_rule("com.example.other") is policy.types[1]
    assert policy.type_rule("com.example.Order.created") is None  # types are case-sensitive
    rules = policy.rules(policy.types[0])
    assert rules.mode == "allowlist"
    assert rules.binary_data == Drop()
    assert [rule.patterns for rule in rules.names][:2] == [("*_id",), ("email", "*_email")]
    assert dict(rules.extensions) == {"traceparent": Keep(), "tracestate": Drop(), "tenant": Keep()}
    inherited = policy.rules(policy.types[1])
    assert (inherited.mode, inherited.unnamed_text, inherited.binary_data) == (
        "denylist",
        Keep(),
        Keep(),
    )
    top = policy.rules()
    assert top.fields == ()
    assert top.names == policy.names


def test_name_rules_are_case_insensitive_first_match_wins() -> None:
    rules = policy_from(FULL).rules()
    assert rules.name_action("EMAIL") == Pseudonymize()
    assert rules.name_action("Work_Email") == Pseudonymize()
    assert rules.name_action("emails") is None


def test_defaults_when_optional_keys_are_absent() -> None:
    policy = policy_from("version: 1\nmode: allowlist\n")
    assert policy.subject == Pseudonymize()
    assert policy.binary_data == Drop()
    assert policy.unnamed_text == RedactText()
    assert (policy.names, policy.types, dict(policy.extensions)) == ((), (), {})


def test_short_and_long_action_forms_mean_the_same() -> None:
    for form in ("mask", "{mask: {}}", "{mask: null}", "{mask: {keep_last: 4}}"):
        policy = policy_from(
            f"version: 1\nmode: denylist\nnames:\n  - match: x\n    action: {form}\n"
        )
        assert policy.names[0].action == Mask(keep_last=4), form
    policy = policy_from(
        "version: 1\nmode: denylist\nnames:\n  - match: x\n    action: truncate_ip\n"
    )
    assert policy.names[0].action == TruncateIp(ipv4_prefix=24, ipv6_prefix=48)
    policy = policy_from(
        "version: 1\nmode: denylist\nnames:\n  - match: x\n    action: generalize_time\n"
    )
    assert policy.names[0].action == GeneralizeTime(to="day")


def test_version_is_a_short_hash_of_the_bytes() -> None:
    text = "version: 1\nmode: denylist\n"
    assert policy_from(text).version == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert policy_from(text + "# a comment\n").version != policy_from(text).version
    assert re.fullmatch(r"[0-9a-f]{16}", policy_from(text).version)


def test_yaml_1_1_booleans_are_names_here() -> None:
    # `on`, `no`, `yes` are keys and patterns in a policy, never booleans.
    policy = policy_from(
        "version: 1\nmode: denylist\nnames:\n  - match: [on, no]\n    action: drop\n"
        "types:\n  - match: t\n    fields:\n      on.yes: keep\n"
    )
    assert policy.names[0].patterns == ("on", "no")
    assert policy.types[0].fields[0].path == ("on", "yes")


def test_the_shipped_policy_loads() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    assert policy.mode == "denylist"
    assert policy.subject == Pseudonymize()
    assert policy.binary_data == Drop()
    assert policy.unnamed_text == RedactText()
    assert policy.path == DEFAULT_POLICY_FILE
    assert policy.version == hashlib.sha256(DEFAULT_POLICY_FILE.read_bytes()).hexdigest()[:16]


# --- errors, each with its line ------------------------------------------------------------


def _error(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        policy_from(textwrap.dedent(text))
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: email
                action: pseudonymise
            """,
            5,
            "unknown action 'pseudonymise' (did you mean 'pseudonymize'? expected one of keep, "
            "drop, pseudonymize, mask, truncate_ip, generalize_time, generalize_number, "
            "redact_text)",
        ),
        (
            "version: 1\nmode: denylist\nmodes: allowlist\n",
            3,
            "unknown key 'modes' in the policy (did you mean 'mode'?",
        ),
        ("version: 1\nmode: blocklist\n", 2, "unknown mode 'blocklist'"),
        ("version: 2\nmode: denylist\n", 1, "unsupported format version '2'; expected 1"),
        ("version: '1'\nmode: denylist\n", 1, "unsupported format version"),
        ("mode: denylist\n", 1, "the policy needs 'version'"),
        ("version: 1\n", 1, "the policy needs 'mode'"),
        ("version: 1\nmode: denylist\nsubject: keep\n", 3, "subject: keep is not allowed"),
        ("version: 1\nmode: denylist\nsubject: mask\n", 3, "subject: 'mask' is not allowed"),
        ("version: 1\nmode: denylist\nbinary_data: redact_text\n", 3, "binary_data: 'redact_text'"),
        ("version: 1\nmode: denylist\nunnamed_text: drop\n", 3, "unnamed_text: 'drop'"),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: card
                action: {mask: {keep_last: -1}}
            """,
            5,
            "mask: keep_last must be between 0 and 1000, not -1",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: card
                action:
                  mask:
                    keep_last: four
            """,
            7,
            "mask: keep_last must be an integer",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: card
                action: {mask: {keep_first: 4}}
            """,
            5,
            "unknown key 'keep_first' in the parameters of mask (did you mean 'keep_last'?",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: age
                action:
                  generalize_number:
                    buckets: [0, 30, 18]
            """,
            7,
            "generalize_number: buckets must be strictly ascending",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: age
                action: {generalize_number: {buckets: []}}
            """,
            5,
            "buckets must not be empty",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: age
                action: {generalize_number: {buckets: [0, ten]}}
            """,
            5,
            "a bucket bound must be a number",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: age
                action: generalize_number
            """,
            5,
            "generalize_number needs exactly one of buckets and width",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: age
                action: {generalize_number: {buckets: [0], width: 5}}
            """,
            5,
            "generalize_number needs exactly one of buckets and width",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: age
                action:
                  generalize_number:
                    width: 0
            """,
            7,
            "width must be greater than 0",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: age
                action: {generalize_number: {width: .inf}}
            """,
            5,
            "width must be a finite number",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: ip
                action:
                  truncate_ip: {ipv4_prefix: 33}
            """,
            6,
            "ipv4_prefix must be between 0 and 32, not 33",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: ip
                action: {truncate_ip: {ipv6_prefix: 129}}
            """,
            5,
            "ipv6_prefix must be between 0 and 128, not 129",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: when
                action: {generalize_time: {to: week}}
            """,
            5,
            "generalize_time: unknown unit 'week'",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: x
                action: {keep: {}, drop: {}}
            """,
            5,
            "an action is one name",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: x
                action: [keep]
            """,
            5,
            "an action is a name such as 'keep', not a list",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: x
                action:
            """,
            5,
            "an action is missing",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: x
            """,
            4,
            "a names rule needs 'match' and 'action'",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: []
                action: drop
            """,
            4,
            "match needs at least one pattern",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match:
                  - email
                  - "email["
                action: drop
            """,
            6,
            "invalid pattern 'email[': '[' at 5 is never closed",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: ""
                action: drop
            """,
            4,
            "invalid pattern '': empty pattern",
        ),
        ("version: 1\nmode: denylist\nnames: {match: x}\n", 3, "names must be a list"),
        (
            """\
            version: 1
            mode: denylist
            types:
              - match: t
                fields:
                  items[0].card: drop
            """,
            6,
            "invalid path 'items[0].card': only '[*]' selects array elements, not '[0]'",
        ),
        (
            """\
            version: 1
            mode: denylist
            types:
              - match: t
                fields:
                  user.email: keep
                  a..b: drop
            """,
            7,
            "invalid path 'a..b': empty key",
        ),
        (
            """\
            version: 1
            mode: denylist
            types:
              - match: t
                fields:
                  user.email: keep
                  user.email: drop
            """,
            7,
            "duplicate key 'user.email' in fields (first at line 6)",
        ),
        (
            """\
            version: 1
            mode: denylist
            mode: allowlist
            """,
            3,
            "duplicate key 'mode' in the policy (first at line 2)",
        ),
        (
            """\
            version: 1
            mode: denylist
            types:
              - fields: {}
            """,
            4,
            "a types rule needs 'match'",
        ),
        (
            """\
            version: 1
            mode: denylist
            types:
              - match: t
                mode: strict
            """,
            5,
            "unknown mode 'strict'",
        ),
        (
            """\
            version: 1
            mode: denylist
            types:
              - match: t
                subject: drop
            """,
            5,
            "unknown key 'subject' in a types rule",
        ),
        (
            """\
            version: 1
            mode: denylist
            extensions:
              traceparent: keep
              TraceState: keep
            """,
            5,
            "invalid extension attribute name 'TraceState'",
        ),
        (
            """\
            version: 1
            mode: denylist
            extensions: [traceparent]
            """,
            3,
            "extensions must be a mapping",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: x
                action: keep
                when: always
            """,
            6,
            "unknown key 'when' in a names rule",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: [x]
                action: drop
              - match: *_email
                action: drop
            """,
            6,
            "invalid YAML: found undefined alias '_email'",
        ),
        (
            """\
            version: 1
            mode: denylist
            names:
              - match: [x
                action: drop
            """,
            5,
            "invalid YAML:",
        ),
        ("version: 1\n\tmode: denylist\n", 2, "invalid YAML:"),
        ("[1, 2]\n", 1, "the policy must be a mapping"),
        ("", 1, "the policy is empty"),
        ("# only a comment\n", 1, "the policy is empty"),
        ("version: 1\nmode: denylist\n---\nversion: 1\n", 3, "invalid YAML: "),
    ],
)
def test_errors_name_the_file_and_line(text: str, line: int, message: str) -> None:
    error = _error(text)
    assert error.startswith(f"policy.yaml:{line}: "), error
    assert message in error, error


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(PolicyError, match=rf"^{re.escape(str(missing))}: cannot read the policy"):
        load_policy(missing)


def test_a_directory_is_not_a_policy(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path)


def test_bytes_that_are_not_text_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"version: 1\nmode: \xff\xfe\n")
    with pytest.raises(PolicyError, match=r"binary\.yaml.*invalid YAML"):
        load_policy(path)


def test_load_policy_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nmode: allowlist\n")
    policy = load_policy(path)
    assert (policy.path, policy.mode) == (path, "allowlist")


# --- paths and globs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("email", ("email",)),
        ("user.email", ("user", "email")),
        ("items[*].card", ("items", EACH, "card")),
        ("items[*]", ("items", EACH)),
        ("matrix[*][*].x", ("matrix", EACH, EACH, "x")),
        ("[*].id", (EACH, "id")),
        ("[*]", (EACH,)),
        ("a-b.c_d.$e", ("a-b", "c_d", "$e")),
        ("Ünïcode.名前", ("Ünïcode", "名前")),
        ("with space.x", ("with space", "x")),
    ],
)
def test_parse_path(text: str, path: tuple[object, ...]) -> None:
    assert parse_path(text) == path


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty path"),
        ("a..b", "empty key"),
        (".a", "empty key"),
        ("a.", "empty key"),
        ("items[0].x", "only '[*]' selects array elements, not '[0]'"),
        ("items[].x", "not '[]'"),
        ("items[*", "unbalanced '['"),
        ("items*].x", "unbalanced ']'"),
        ("a.[*]", "'[*]' must follow a key"),
        ("a[*]b", "a key must follow '.'"),
        ("a. b", "leading or trailing spaces"),
    ],
)
def test_bad_paths(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_path(text)


@pytest.mark.parametrize("pattern", ["email", "*_email", "e?mail", "[ab]c", "[!a]b", "[]]x", "*"])
def test_good_globs(pattern: str) -> None:
    check_glob(pattern)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [("", "empty pattern"), ("email[", "never closed"), ("[ab", "never closed"), ("x[!]", "never")],
)
def test_bad_globs(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_glob(pattern)
