"""The explainer behind the preview agrees with the engine, and the preview's report.

The explainer restates the walk's precedence to name the rule behind each value; these
tests hold what it says would be stored to what `PolicyAnonymizer.anonymize` stores,
value for value, on the benchmark's realistic events and on policies that exercise every
precedence step (fields paths, carve-outs inside a taken container, names, both modes).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from app.config import DEFAULT_POLICY_FILE, Environment, PrivacySettings, Settings
from app.privacy.actions import DROPPED
from app.privacy.engine import PolicyAnonymizer
from app.privacy.explain import Explainer
from app.privacy.policy import PolicyError, load_policy
from app.privacy.posture import PREVIEW_COMMAND, check_posture
from app.privacy.preview import preview_lines, render
from bench.anonymization import realistic_events
from tests.unit.privacy.builders import cloud_event, keyring, policy_from

CARVED = """
version: 1
mode: {mode}
names:
  - match: [email, "*_email"]
    action: pseudonymize
  - match: [customer]
    action: {{mask: {{keep_last: 2}}}}
types:
  - match: "com.example.order.*"
    fields:
      customer.loyalty_tier: keep
      lines[*].sku: keep
      lines[*].qty: {{generalize_number: {{width: 2}}}}
      client: keep
      note: redact_text
      shipping.address: drop
"""


def _leaves(value: Any) -> Counter[str]:
    if isinstance(value, dict):
        return sum((_leaves(member) for member in value.values()), Counter())
    if isinstance(value, list):
        return sum((_leaves(item) for item in value), Counter())
    return Counter([orjson.dumps(value).decode()])


def _policies() -> list[Any]:
    return [
        load_policy(DEFAULT_POLICY_FILE),
        policy_from(CARVED.format(mode="denylist")),
        policy_from(CARVED.format(mode="allowlist")),
    ]


@pytest.mark.parametrize("policy", _policies(), ids=["shipped", "denylist", "allowlist"])
def test_what_the_explainer_stores_is_what_the_engine_stores(policy: Any) -> None:
    ring = keyring()
    engine = PolicyAnonymizer(policy, ring)
    explainer = Explainer(policy, ring)
    for event in realistic_events(60):
        stored = engine.anonymize(event)
        expected = _leaves(orjson.loads(stored.data_json)) if stored.data_json else Counter()
        explained = Counter(
            orjson.dumps(leaf.stored).decode()
            for leaf in explainer.leaves(event.type, event.data)
            if leaf.stored is not DROPPED
        )
        assert explained == expected, event.id


def test_the_preview_lists_flagged_unchanged_fields_first_and_masks_values() -> None:
    policy = policy_from(
        """
version: 1
mode: denylist
unnamed_text: keep
names:
  - match: [email]
    action: pseudonymize
"""
    )
    lines = [
        orjson.dumps(
            {
                "type": "com.example.note",
                "id": str(n),
                "source": "/s",
                "specversion": "1.0",
                "subject": "ada@example.com",
                "deliverynote": "ship to 12 Main Street",
                "data": {
                    "email": "ada@example.com",
                    "comment": "call +44 20 7946 0958",
                    "status": "ok",
                },
            }
        )
        for n in range(3)
    ] + [b"not json", b"[1, 2]"]
    report = preview_lines(lines, policy, keyring())
    text = render(report, "sample.jsonl")
    print(text)
    rows = [line for line in text.splitlines() if line.startswith(("!", "  "))][1:]
    assert rows[0].startswith("!")
    assert rows[1].startswith("!")
    assert {rows[0].split()[1], rows[1].split()[1]} == {"comment", "extensions.deliverynote"}
    assert "ADDRESS" in text
    assert "PHONE" in text
    assert "skipped 2 lines (not a CloudEvent): 4, 5" in text
    assert report.flagged == 6
    for value in ("ada@example.com", "7946", "Main Street", "12 Main"):
        assert value not in text
    email = report.types["com.example.note"].paths["email"]
    assert (email.action, email.values, email.unchanged) == ("pseudonymize", 3, 0)


def _settings(**privacy: Any) -> Settings:
    return Settings(
        env=Environment.PRODUCTION,
        privacy=PrivacySettings(pseudonym_key="k" * 32, **privacy),
        pubsub={"enabled": False},
    )


def test_production_with_the_shipped_denylist_policy_warns_naming_allowlist_and_preview() -> None:
    warning = check_posture(load_policy(DEFAULT_POLICY_FILE), _settings())
    assert warning is not None
    assert "allowlist" in warning
    assert PREVIEW_COMMAND in warning


def test_require_allowlist_refuses_a_denylist_policy_and_accepts_an_allowlist() -> None:
    with pytest.raises(PolicyError, match="SLUICE_PRIVACY_REQUIRE_ALLOWLIST=true"):
        check_posture(load_policy(DEFAULT_POLICY_FILE), _settings(require_allowlist=True))
    allowlist = policy_from("version: 1\nmode: allowlist\n")
    assert check_posture(allowlist, _settings(require_allowlist=True)) is None
    mixed = policy_from("version: 1\nmode: allowlist\ntypes:\n  - match: a.*\n    mode: denylist\n")
    with pytest.raises(PolicyError, match="types line 4"):
        check_posture(mixed, _settings(require_allowlist=True))


def test_outside_production_a_denylist_policy_is_quiet() -> None:
    settings = Settings(env=Environment.DEVELOPMENT)
    assert check_posture(load_policy(DEFAULT_POLICY_FILE), settings) is None
    assert cloud_event() is not None
