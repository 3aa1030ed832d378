"""Production defaults for the policy: a warning for denylist mode, or a refusal.

A denylist policy keeps what no rule names, so a new field carrying personal data is
stored (its free text after the detectors) until someone writes a rule. That is the
right default for trying Sluice, not for production. `check_posture` is called before
anything starts (`main.pipeline`, and `python -m app serve|consume`):

- with `SLUICE_PRIVACY_REQUIRE_ALLOWLIST=true`, a policy in denylist mode (at the top
  level or in any type rule) raises `PolicyError`: the service does not start;
- in production (`SLUICE_ENV=production`) it returns a warning to log, naming allowlist
  mode and the preview command.
"""

from __future__ import annotations

from app.config import Environment, Settings
from app.privacy.policy import PolicyError
from app.privacy.rules import Policy

PREVIEW_COMMAND = "python -m app privacy preview EVENTS.jsonl --policy DRAFT.yaml"


def denylist_places(policy: Policy) -> list[str]:
    """Where the policy is in denylist mode: `top level`, `types line N`."""
    places = ["top level"] if policy.mode == "denylist" else []
    places += [f"types line {rule.line}" for rule in policy.types if rule.mode == "denylist"]
    return places


def check_posture(policy: Policy, settings: Settings) -> str | None:
    """Raises `PolicyError` when an allowlist is required and the policy is not one;
    returns a warning for a denylist policy in production; else None."""
    places = denylist_places(policy)
    if not places:
        return None
    where = ", ".join(places)
    if settings.privacy.require_allowlist:
        raise PolicyError(
            f"{policy.path}: SLUICE_PRIVACY_REQUIRE_ALLOWLIST=true but the policy is in "
            f"denylist mode ({where}); write an allowlist policy (mode: allowlist) and "
            f"check it with `{PREVIEW_COMMAND}`"
        )
    if settings.env is not Environment.PRODUCTION:
        return None
    return (
        f"the anonymization policy {policy.path} is in denylist mode ({where}): fields no rule "
        "names are stored (free text after the detectors). In production use allowlist mode "
        f"(mode: allowlist); `{PREVIEW_COMMAND}` shows what a draft would store, and "
        "SLUICE_PRIVACY_REQUIRE_ALLOWLIST=true refuses a denylist policy"
    )
