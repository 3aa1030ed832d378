"""`PolicyAnonymizer`: precedence, modes, extensions, subject, binary data, quarantine."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config import DEFAULT_POLICY_FILE, PrivacySettings
from app.model.events import AnonymizedEvent, Transport
from app.pipeline.anonymize import Anonymizer
from app.privacy import engine
from app.privacy.engine import PolicyAnonymizer
from app.privacy.keyring import Keyring
from app.privacy.policy import load_policy, parse_policy
from tests.unit.privacy.builders import KEY, anonymizer_from, cloud_event, keyring, tagged

DENY = "version: 1\nmode: denylist\n"
ALLOW = "version: 1\nmode: allowlist\n"


def data_after(policy: str, data: Any, event_type: str = "com.example.test") -> Any:
    result = anonymizer_from(policy).anonymize(cloud_event(type=event_type, data=data))
    return None if result.data_json is None else orjson.loads(result.data_json)


def extensions_after(policy: str, extensions: dict[str, Any], event_type: str = "t") -> Any:
    result = anonymizer_from(policy).anonymize(cloud_event(type=event_type, extensions=extensions))
    return orjson.loads(result.extensions_json)


# --- the protocol and the attributes -----------------------------------------------------


def test_is_an_anonymizer() -> None:
    anonymizer: Anonymizer = anonymizer_from(DENY)
    assert anonymizer.policy_version == anonymizer_from(DENY).policy.version
    assert anonymizer.subject_pseudonym("x") == keyring().pseudonym("x")


def test_copies_every_attribute_but_subject_data_and_extensions() -> None:
    event = cloud_event(
        id="e-9",
        source="/s",
        type="com.example.x",
        dataschema="urn:s",
        datacontenttype="application/json",
        size=321,
        transport=Transport.AMQP,
    )
    result = anonymizer_from(DENY).anonymize(event)
    for name in ("specversion", "id", "source", "type", "time", "datacontenttype", "dataschema"):
        assert getattr(result, name) == getattr(event, name), name
    assert (result.size, result.transport) == (321, Transport.AMQP)
    assert result.policy_version == anonymizer_from(DENY).policy_version
    assert result.data_json is None
    assert result.extensions_json == "{}"


def test_from_settings_loads_the_policy_file_and_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(ALLOW)
    privacy = PrivacySettings(
        policy_file=path, pseudonym_key="secret-key", pseudonym_key_id="k7", previous_keys={}
    )
    anonymizer = PolicyAnonymizer.from_settings(privacy)
    assert anonymizer.policy.mode == "allowlist"
    assert (
        anonymizer.subject_pseudonym("x")
        == hmac.new(b"secret-key", b"x", hashlib.sha256).hexdigest()
    )


# --- subject -------------------------------------------------------------------------------


def test_subject_is_pseudonymized_with_its_key_id() -> None:
    result = anonymizer_from(DENY, keyring(key_id="k9")).anonymize(cloud_event(subject="a@b.co"))
    expected = hmac.new(KEY, b"a@b.co", hashlib.sha256).hexdigest()
    assert (result.subject_pseudonym, result.pseudonym_key_id) == (expected, "k9")
    assert result.subject_lookup == expected


def test_subject_lookup_holds_the_pseudonym_under_every_key() -> None:
    ring = Keyring(active_id="new", keys={"old": b"old-key", "new": b"new-key"})
    result = anonymizer_from(DENY, ring).anonymize(cloud_event(subject="a@b.co"))
    assert result.subject_pseudonym == ring.pseudonym("a@b.co")
    assert result.subject_lookup == ring.lookup("a@b.co")
    assert result.subject_lookup is not None
    assert len(result.subject_lookup.split(",")) == 2


def test_subject_drop_and_absent_subject_leave_no_pseudonym() -> None:
    dropped = anonymizer_from(DENY + "subject: drop\n").anonymize(cloud_event(subject="a@b.co"))
    absent = anonymizer_from(DENY).anonymize(cloud_event(subject=None))
    for result in (dropped, absent):
        assert (result.subject_pseudonym, result.pseudonym_key_id, result.subject_lookup) == (
            None,
            None,
            None,
        )


def test_the_raw_subject_is_nowhere_in_the_output() -> None:
    subject = "zebulon@example.com"
    result = anonymizer_from(DENY).anonymize(cloud_event(subject=subject))
    assert all(subject not in str(getattr(result, f.name)) for f in dataclasses.fields(result))


# --- precedence and modes ----------------------------------------------------------------

LAYERED = """\
version: 1
mode: denylist
names:
  - match: [email]
    action: pseudonymize
  - match: [secret*]
    action: drop
types:
  - match: "com.example.order.*"
    fields:
      user.email: keep
      items[*].card: {mask: {keep_last: 4}}
    names:
      - match: [secret_hint]
        action: keep
      - match: [email]
        action: {mask: {keep_last: 3}}
"""


def test_an_exact_path_beats_the_type_names_which_beat_the_top_level_names() -> None:
    data = {
        "user": {"email": "kept@example.com"},
        "billing": {"email": "masked@example.com"},
        "secret_hint": "hint",
        "secret_answer": "blue",
    }
    assert data_after(LAYERED, data, "com.example.order.created") == {
        "user": {"email": "kept@example.com"},
        "billing": {"email": "***************com"},
        "secret_hint": "hint",
    }


def test_top_level_rules_apply_to_types_no_rule_matches() -> None:
    data = {"user": {"email": "a@b.co"}, "secret_hint": "hint", "note": "x"}
    assert data_after(LAYERED, data, "com.example.user.created") == {
        "user": {"email": tagged("a@b.co")},
        "note": "x",
    }


def test_name_rules_match_at_any_depth_and_in_arrays() -> None:
    data = {"a": [{"b": {"EMAIL": "x@y.co"}}, [{"email": 42}]]}
    assert data_after(DENY + "names:\n  - match: email\n    action: pseudonymize\n", data) == {
        "a": [{"b": {"EMAIL": tagged("x@y.co")}}, [{"email": tagged("42")}]]
    }


def test_array_paths_reach_every_element() -> None:
    data = {"items": [{"card": "4111111111111111", "sku": "A"}, {"sku": "B"}, "loose"]}
    assert data_after(LAYERED, data, "com.example.order.x") == {
        "items": [{"card": "************1111", "sku": "A"}, {"sku": "B"}, "loose"]
    }


ALLOW_ORDER = """\
version: 1
mode: allowlist
types:
  - match: order
    fields:
      amount: keep
      user.email: pseudonymize
      items[*].sku: keep
      tags[*]: keep
      "[*].id": keep
"""


def test_allowlist_keeps_only_what_a_rule_names() -> None:
    data = {
        "amount": 42,
        "note": "free text",
        "flag": True,
        "nothing": None,
        "user": {"email": "a@b.co", "name": "Ada"},
        "items": [{"sku": "A", "price": 3}],
        "tags": ["x", "y"],
        "meta": {"inner": "dropped", "deeper": {"x": 1}},
    }
    assert data_after(ALLOW_ORDER, data, "order") == {
        "amount": 42,
        "user": {"email": tagged("a@b.co")},
        "items": [{"sku": "A"}],
        "tags": ["x", "y"],
        "meta": {"deeper": {}},  # containers that end up empty stay, empty
    }


def test_allowlist_and_denylist_on_the_same_event() -> None:
    data = {"amount": 42, "note": "call +44 20 7946 0958", "user": {"email": "a@b.co"}}
    deny = ALLOW_ORDER.replace("mode: allowlist", "mode: denylist")
    assert data_after(deny, data, "order") == {
        "amount": 42,
        "note": "call <PHONE>",
        "user": {"email": tagged("a@b.co")},
    }
    assert data_after(ALLOW_ORDER, data, "order") == {
        "amount": 42,
        "user": {"email": tagged("a@b.co")},
    }


def test_a_type_can_override_the_mode_and_unnamed_text() -> None:
    policy = ALLOW + "types:\n  - match: loose\n    mode: denylist\n    unnamed_text: keep\n"
    data = {"note": "mail a@b.co", "n": 1}
    assert data_after(policy, data, "loose") == data
    assert data_after(policy, data, "other") == {}


def test_arrays_at_the_root() -> None:
    assert data_after(ALLOW_ORDER, [{"id": 1, "x": 2}, {"id": 3}], "order") == [
        {"id": 1},
        {"id": 3},
    ]


def test_denylist_unnamed_handling() -> None:
    data = {"s": "mail a@b.co", "i": 4111111111111111, "f": 1.5, "b": False, "n": None}
    assert data_after(DENY, data) == {**data, "s": "mail <EMAIL>"}
    assert data_after(DENY + "unnamed_text: keep\n", data) == data


@pytest.mark.parametrize(
    ("data", "deny", "allow"),
    [
        ("text a@b.co", "text <EMAIL>", None),
        (42, 42, None),
        ([], [], []),
        ({}, {}, {}),
        (False, False, None),
    ],
)
def test_data_that_is_not_an_object(data: Any, deny: Any, allow: Any) -> None:
    assert data_after(DENY, data) == deny
    assert data_after(ALLOW, data) == allow


# --- containers ----------------------------------------------------------------------------

CONTAINERS = """\
version: 1
mode: denylist
names:
  - match: [kept]
    action: keep
  - match: [gone]
    action: drop
  - match: [hidden]
    action: pseudonymize
  - match: [coarse]
    action: {generalize_number: {width: 10}}
"""


def test_keep_and_drop_take_a_container_whole() -> None:
    data = {"kept": {"email": "a@b.co", "x": [1, "+44 20 7946 0958"]}, "gone": {"a": 1}}
    assert data_after(CONTAINERS, data) == {"kept": data["kept"]}


def test_value_actions_apply_to_every_leaf_of_a_container() -> None:
    data = {"hidden": {"a": "x", "b": [1, None, {"c": True}]}, "coarse": [12, "n/a", {"d": 57}]}
    assert data_after(CONTAINERS, data) == {
        "hidden": {"a": tagged("x"), "b": [tagged("1"), None, {"c": tagged("true")}]},
        "coarse": [10, {"d": 50}],  # "n/a" is not a number: dropped
    }


CARVED = """\
version: 1
mode: denylist
names:
  - match: [address]
    action: drop
  - match: [profile]
    action: pseudonymize
types:
  - match: t
    fields:
      address.country: keep
      profile.age: {generalize_number: {buckets: [0, 18, 65]}}
      profile.links[*].kind: keep
      record: keep
      record.ssn: drop
"""


def test_a_path_inside_a_taken_container_carves_out_only_what_it_names() -> None:
    data = {
        "address": {"street": "1 Main St", "line2": "Flat 3", "country": "DE"},
        "profile": {
            "name": "Ada",
            "age": 36,
            "links": [{"kind": "blog", "url": "https://ada.example"}],
        },
        "record": {"ssn": "078-05-1120", "plan": "pro"},
    }
    assert data_after(CARVED, data, "t") == {
        "address": {"country": "DE"},
        "profile": {
            "name": tagged("Ada"),
            "age": 18,
            "links": [{"kind": "blog", "url": tagged("https://ada.example")}],
        },
        "record": {"plan": "pro"},
    }


def test_a_path_that_meets_a_scalar_where_it_expected_a_container() -> None:
    # Paths are exact: `record.ssn` names a member of an object, not of array elements.
    data = {"address": "1 Main St", "profile": "Ada", "record": ["x", {"ssn": "1"}]}
    assert data_after(CARVED, data, "t") == {"profile": tagged("Ada"), "record": data["record"]}


# --- extensions ----------------------------------------------------------------------------

EXTENSIONS = """\
version: 1
mode: denylist
names:
  - match: [email, "*email"]
    action: pseudonymize
  - match: [age]
    action: {generalize_number: {buckets: [0, 18, 3000000000]}}
  - match: [tenant]
    action: {mask: {keep_last: 2}}
  - match: [ip]
    action: truncate_ip
extensions:
  traceparent: keep
  useremail: keep
types:
  - match: special
    extensions:
      traceparent: drop
"""


def test_extensions_go_through_exact_rules_then_names_then_the_mode() -> None:
    extensions = {
        "traceparent": "00-abc-01",
        "useremail": "kept@example.com",
        "workemail": "w@example.com",
        "note": "mail a@b.co",
        "attempt": 3,
        "sampled": True,
    }
    assert extensions_after(EXTENSIONS, extensions) == {
        "traceparent": "00-abc-01",
        "useremail": "kept@example.com",
        "workemail": tagged("w@example.com"),
        "note": "mail <EMAIL>",
        "attempt": 3,
        "sampled": True,
    }
    assert "traceparent" not in extensions_after(EXTENSIONS, extensions, "special")
    allow = EXTENSIONS.replace("mode: denylist", "mode: allowlist")
    assert extensions_after(allow, extensions) == {
        "traceparent": "00-abc-01",
        "useremail": "kept@example.com",
        "workemail": tagged("w@example.com"),
    }


def test_extension_values_stay_valid_cloudevents_values() -> None:
    result = extensions_after(
        EXTENSIONS, {"age": 44, "tenant": 12345, "ip": "203.0.113.9", "email": True}
    )
    assert result == {"age": 18, "tenant": "***45", "ip": "203.0.113.0", "email": tagged("true")}
    assert extensions_after(EXTENSIONS, {"age": 2**31 - 1}) == {"age": 18}
    assert extensions_after(EXTENSIONS, {"age": -5, "ip": "nope"}) == {}


def test_an_extension_value_that_is_no_cloudevents_type_becomes_text() -> None:
    # A float, or an integer beyond 32 bits, is not a CloudEvents Integer.
    policy = DENY + "names:\n  - match: n\n    action: {generalize_number: {width: 0.5}}\n"
    assert extensions_after(policy, {"n": 7}) == {"n": "7.0"}
    policy = DENY + "names:\n  - match: n\n    action: {generalize_number: {width: 4294967296}}\n"
    assert extensions_after(policy, {"n": -1}) == {"n": "-4294967296"}


# --- binary data ---------------------------------------------------------------------------


def test_base64_data_is_dropped_unless_the_policy_keeps_it() -> None:
    event = cloud_event(data="aGVsbG8=", data_is_base64=True)
    dropped = anonymizer_from(DENY).anonymize(event)
    assert (dropped.data_json, dropped.data_is_base64) == (None, False)
    kept = anonymizer_from(DENY + "binary_data: keep\n").anonymize(event)
    assert (kept.data_json, kept.data_is_base64) == ('"aGVsbG8="', True)
    per_type = anonymizer_from(DENY + "types:\n  - match: bin\n    binary_data: keep\n")
    assert per_type.anonymize(dataclasses.replace(event, type="bin")).data_is_base64
    assert per_type.anonymize(event).data_json is None


# --- robustness ----------------------------------------------------------------------------


def test_data_too_deep_to_store_is_not_stored_and_nothing_raises() -> None:
    deep: Any = "leaf"
    for _ in range(300):
        deep = [deep]
    result = anonymizer_from(DENY).anonymize(cloud_event(data={"deep": deep}))
    assert result.data_json is None


def test_the_input_event_is_not_changed() -> None:
    data = {"email": "a@b.co", "nested": {"note": "call 555-123-4567"}, "list": ["a@b.co"]}
    before = orjson.dumps(data)
    event = cloud_event(data=data, extensions={"email": "a@b.co"})
    anonymizer_from(CONTAINERS + "  - match: email\n    action: pseudonymize\n").anonymize(event)
    anonymizer_from(ALLOW).anonymize(event)
    assert orjson.dumps(data) == before
    assert event.extensions == {"email": "a@b.co"}


def test_lookup_caches_stay_bounded() -> None:
    anonymizer = anonymizer_from(DENY + "names:\n  - match: x*\n    action: drop\n")
    for n in range(engine._NAME_CACHE_LIMIT + 10):
        anonymizer.anonymize(cloud_event(type=f"type-{n}", data={f"key-{n}": 1, f"x{n}": 2}))
        anonymizer.quarantine_data("t" * 10_000 + str(n), {"a": 1})
    assert len(anonymizer._by_type) <= engine._TYPE_CACHE_LIMIT
    assert len(anonymizer._default._name_cache) <= engine._NAME_CACHE_LIMIT
    # Still right after the caches were emptied.
    assert data_after(DENY + "names:\n  - match: x*\n    action: drop\n", {"xy": 1, "y": 2}) == {
        "y": 2
    }


# --- quarantine ----------------------------------------------------------------------------

QUARANTINE = """\
version: 1
mode: denylist
names:
  - match: email
    action: pseudonymize
types:
  - match: order
    mode: allowlist
    fields:
      amount: keep
"""


def test_quarantine_applies_the_type_rules_or_the_top_level_ones() -> None:
    anonymizer = anonymizer_from(QUARANTINE)
    data = {"amount": 3, "email": "a@b.co", "note": "call 555-123-4567"}
    assert orjson.loads(anonymizer.quarantine_data("order", data) or "null") == {
        "amount": 3,
        "email": tagged("a@b.co"),  # top-level names apply under every type
    }
    for event_type in (None, "", "other"):
        assert orjson.loads(anonymizer.quarantine_data(event_type, data) or "null") == {
            "amount": 3,
            "email": tagged("a@b.co"),
            "note": "call <PHONE>",
        }


def test_quarantine_drops_nul_and_what_json_cannot_hold() -> None:
    anonymizer = anonymizer_from(DENY)
    data = {
        "ok": "fine",
        "nul": "a\x00b",
        "key\x00": "x",
        "list": ["\x00", 1, 2**70, -(2**70), object(), (1, 2), b"bytes"],
        3: "not a string key",
        "nested": {"deeper": {"nul": "\x00"}},
    }
    assert orjson.loads(anonymizer.quarantine_data("t", data) or "null") == {
        "ok": "fine",
        "list": [1],
        "nested": {"deeper": {}},
    }


@pytest.mark.parametrize("data", [None, "\x00", b"bytes", object()])
def test_quarantine_returns_none_when_nothing_can_be_kept(data: Any) -> None:
    assert anonymizer_from(DENY).quarantine_data("t", data) is None


def test_quarantine_returns_none_for_data_nested_too_deep() -> None:
    deep: Any = {}
    for _ in range(engine.QUARANTINE_MAX_DEPTH + 1):
        deep = {"d": deep}
    assert anonymizer_from(DENY).quarantine_data("t", deep) is None
    shallow: Any = {}
    for _ in range(engine.QUARANTINE_MAX_DEPTH - 1):
        shallow = {"d": shallow}
    assert anonymizer_from(DENY).quarantine_data("t", shallow) is not None


@pytest.mark.parametrize("event_type", [7, ["order"], {"t": 1}, "\x00", "order\x00"])
def test_quarantine_takes_any_event_type(event_type: Any) -> None:
    assert anonymizer_from(QUARANTINE).quarantine_data(event_type, {"email": "a@b.co"}) == (
        orjson.dumps({"email": tagged("a@b.co")}).decode()
    )


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(data=_JSON, event_type=st.none() | st.text(max_size=20))
def test_quarantine_never_raises_and_returns_json(data: Any, event_type: str | None) -> None:
    for policy in (QUARANTINE, CARVED, ALLOW):
        result = anonymizer_from(policy).quarantine_data(event_type, data)
        if result is not None:
            assert "\\u0000" not in result
            orjson.loads(result)


@settings(max_examples=200, deadline=None)
@given(data=_JSON)
def test_anonymize_never_raises_on_json(data: Any) -> None:
    result = anonymizer_from(CARVED).anonymize(cloud_event(type="t", data=data))
    assert isinstance(result, AnonymizedEvent)


def test_subject_pseudonym_is_none_when_the_policy_drops_subjects() -> None:
    policy = parse_policy(b"version: 1\nmode: denylist\nsubject: drop\n", Path("drop.yaml"))
    assert PolicyAnonymizer(policy, keyring()).subject_pseudonym("a@b.co") is None


def test_the_edges_serialized_data_is_reused_only_when_the_policy_changed_nothing() -> None:
    anonymizer = PolicyAnonymizer(load_policy(DEFAULT_POLICY_FILE), keyring())
    clean = {"order": 7, "currency": "EUR"}
    personal = {"email": "planted@example.com", "order": 7}
    untouched = anonymizer.anonymize(
        cloud_event(data=clean, data_serialized=b'{"order":7,"currency":"EUR"}')
    )
    changed = anonymizer.anonymize(
        cloud_event(data=personal, data_serialized=orjson.dumps(personal))
    )
    assert untouched.data_json == '{"order":7,"currency":"EUR"}'
    assert changed.data_json is not None
    assert "planted@example.com" not in changed.data_json


def test_repeated_subjects_get_the_same_pseudonym_and_lookup() -> None:
    ring = Keyring(active_id="k2", keys={"k2": b"new", "k1": b"old"})
    anonymizer = PolicyAnonymizer(load_policy(DEFAULT_POLICY_FILE), ring)
    first = anonymizer.anonymize(cloud_event(subject="s@example.com"))
    again = anonymizer.anonymize(cloud_event(subject="s@example.com"))
    assert (first.subject_pseudonym, first.subject_lookup) == (
        again.subject_pseudonym,
        again.subject_lookup,
    )
    assert first.subject_lookup == ring.lookup("s@example.com")
    assert first.subject_pseudonym == ring.pseudonym("s@example.com")
