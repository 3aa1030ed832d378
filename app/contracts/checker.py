"""The contract and quality stage: an anonymized event in, a verdict out.

It runs after anonymization, on `data` as it would be stored: a contract describes the
rows downstream readers get, and the payload quarantine keeps (and replay re-checks) is
the anonymized one, so ingest and replay judge exactly the same thing.

Checks, each with its own code:

- the contract: `contract.unknown_type` / `contract.unknown_schema` (handled by
  `SLUICE_CONTRACTS_UNKNOWN_TYPE`), `contract.violation` (a JSON Schema keyword failed);
- quality: `quality.time_skew` (`time` too far ahead), `quality.too_old`,
  `quality.empty_data` (no `data` where the contract requires content),
  `quality.field_too_large` (a string in `data` over `SLUICE_QUALITY_MAX_FIELD_CHARS`).

In `strict` mode any violation refuses the event. In `lenient` mode the event is stored:
the violating members of `data` are dropped (a root that is not even the right type
drops `data` whole) and every violation is recorded with the row. Violations name paths
and keywords, never values: the schema library's messages quote the instance and are
never kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema_rs
import orjson

from app.config import ContractMode, ContractSettings, QualitySettings, UnknownTypePolicy
from app.contracts.registry import Contract, ContractRegistry, load_contracts
from app.errors import ErrorCode
from app.model.events import AnonymizedEvent
from app.model.outcomes import Rejection, Violation, violations_json
from app.observability import metrics

Path = tuple[str | int, ...]

_EMPTY_JSON = frozenset({"null", '""', "{}", "[]"})
# Dropping a member can break another keyword (`required`, `minItems`); a few passes
# settle it, and what still fails after them is recorded without further drops.
_REPAIR_PASSES = 3
_MEMBER_KEYWORDS = frozenset({"additionalProperties", "unevaluatedProperties"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """The stage's judgement of one event."""

    rejection: Rejection | None  # None: the event may be stored
    violations: tuple[Violation, ...]  # rejecting, or (lenient mode) recorded with the row


PASSED = Verdict(None, ())


class ContractChecker:
    @classmethod
    def from_settings(
        cls, contracts: ContractSettings, quality: QualitySettings
    ) -> ContractChecker:
        """Loads and compiles the contracts; raises `ContractError` naming a bad file."""
        return cls(load_contracts(contracts), contracts, quality)

    def __init__(
        self,
        registry: ContractRegistry,
        contracts: ContractSettings,
        quality: QualitySettings,
    ) -> None:
        self._registry = registry
        self._unknown_type = contracts.unknown_type
        self._default_mode = contracts.default_mode
        self._max_future_skew = quality.max_future_skew
        self._max_age = quality.max_age
        self._max_field_chars = quality.max_field_chars

    @property
    def registry(self) -> ContractRegistry:
        return self._registry

    def check(self, event: AnonymizedEvent, now: datetime) -> Verdict:
        """An event that may be stored carries its `contract_version` afterwards and, in
        lenient mode, its `violations_json` and the repaired `data_json`."""
        contract = self._resolve(event)
        if isinstance(contract, Rejection):
            return Verdict(contract, contract.violations)
        violations = self._data_checks(event, contract)
        if event.time is not None:
            late = self._time_check(event.time, now)
            if late is not None:
                violations.insert(0, late)
        version = contract.name if contract is not None else None
        event.contract_version = version
        if not violations:
            return PASSED
        label = metrics.type_label(event.type, known=contract is not None)
        metrics.count_violations(label, (v.code for v in violations))
        mode = contract.mode if contract is not None else self._default_mode
        if mode is ContractMode.STRICT:
            rejection = _first_rejection(violations, version)
            return Verdict(rejection, rejection.violations)
        self._repair(event, contract, violations)
        return Verdict(None, tuple(violations))

    def _resolve(self, event: AnonymizedEvent) -> Contract | Rejection | None:
        """The contract for the event; None when it has none and unknown types pass."""
        if event.dataschema is not None and event.type in self._registry.types:
            contract = self._registry.by_schema_id(event.type, event.dataschema)
            if contract is not None:
                return contract
            return self._unknown(
                ErrorCode.UNKNOWN_SCHEMA,
                "dataschema",
                f"no contract of type '{event.type}' has this dataschema as its $id",
            )
        contract = self._registry.latest(event.type)
        if contract is not None:
            return contract
        return self._unknown(ErrorCode.UNKNOWN_TYPE, "type", "no contract for this event type")

    def _unknown(self, code: ErrorCode, field: str, message: str) -> Rejection | None:
        if self._unknown_type is UnknownTypePolicy.ACCEPT:
            return None
        metrics.count_violations(metrics.OTHER_TYPES, (code,))
        return Rejection(
            code,
            field,
            message,
            violations=(Violation(code, field),),
            held=self._unknown_type is UnknownTypePolicy.QUARANTINE,
        )

    def _time_check(self, time: datetime, now: datetime) -> Violation | None:
        ahead = time - now
        if ahead > self._max_future_skew:
            return Violation(ErrorCode.TIME_SKEW, "time")
        if -ahead > self._max_age:
            return Violation(ErrorCode.TOO_OLD, "time")
        return None

    def _data_checks(self, event: AnonymizedEvent, contract: Contract | None) -> list[Violation]:
        text = event.data_json
        if text is None or text in _EMPTY_JSON:
            if contract is not None and contract.requires_content:
                return [Violation(ErrorCode.EMPTY_DATA, "data")]
            return []
        oversized = len(text) > self._max_field_chars
        if contract is None and not oversized:
            return []  # nothing to check: spare the parse
        data = orjson.loads(text)
        violations = (
            [Violation(ErrorCode.FIELD_TOO_LARGE, _field(p)) for p in self._long_strings(data)]
            if oversized
            else []
        )
        if contract is not None and not contract.validator.is_valid(data):
            violations += [_violation(error) for error in contract.validator.iter_errors(data)]
        return violations

    def _long_strings(self, value: Any, path: Path = ()) -> Iterator[Path]:
        if isinstance(value, str):
            if len(value) > self._max_field_chars:
                yield path
        elif isinstance(value, dict):
            for key, member in value.items():
                yield from self._long_strings(member, (*path, key))
        elif isinstance(value, list):
            for index, member in enumerate(value):
                yield from self._long_strings(member, (*path, index))

    def _repair(
        self, event: AnonymizedEvent, contract: Contract | None, violations: list[Violation]
    ) -> None:
        """Lenient mode: drop what violates, record every violation on the event."""
        text = event.data_json
        if text is not None and text not in _EMPTY_JSON:
            data: Any = orjson.loads(text)
            drops = {tuple(p) for p in self._long_strings(data)}
            for _ in range(_REPAIR_PASSES):
                errors = list(contract.validator.iter_errors(data)) if contract else []
                violations += [v for v in map(_violation, errors) if v not in violations]
                drops |= {path for error in errors for path in _droppable(error)}
                if not drops:
                    break
                data = _without(data, drops)
                if data is _DROPPED:
                    break
                drops = set()
            event.data_json = None if data is _DROPPED else orjson.dumps(data).decode()
        event.violations_json = violations_json(violations)


class _Dropped:
    """Marks `data` dropped whole (its root violated the contract)."""


_DROPPED: Any = _Dropped()


def _violation(error: jsonschema_rs.ValidationError) -> Violation:
    return Violation(ErrorCode.CONTRACT_VIOLATION, _field(error.instance_path), error.kind.name)


def _droppable(error: jsonschema_rs.ValidationError) -> Iterator[Path]:
    path = tuple(error.instance_path)
    if error.kind.name in _MEMBER_KEYWORDS:
        unexpected = getattr(error.kind, "unexpected", None) or []
        for name in unexpected:
            yield (*path, name)
    elif path or error.kind.name == "type":
        yield path  # the empty path: `data` itself is of the wrong type


def _without(data: Any, drops: set[Path]) -> Any:
    """`data` minus the members at `drops`; later list indexes go first so earlier ones
    stay valid, and a path under another dropped path is skipped."""
    if () in drops:
        return _DROPPED
    kept = sorted(
        (p for p in drops if not any(p[:n] in drops for n in range(1, len(p)))), reverse=True
    )
    for path in kept:
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        del parent[path[-1]]
    return data


def _field(path: Any) -> str:
    field = "data"
    for step in path:
        field += f"[{step}]" if isinstance(step, int) else f".{step}"
    return field


def _first_rejection(violations: list[Violation], version: str | None) -> Rejection:
    first = violations[0]
    if first.code is ErrorCode.CONTRACT_VIOLATION:
        message = f"{first.field} fails '{first.keyword}' of contract {version}"
    else:
        message = _QUALITY_MESSAGES[first.code]
    if len(violations) > 1:
        message += f" (and {len(violations) - 1} more violations)"
    return Rejection(
        first.code, first.field, message, violations=tuple(violations), contract_version=version
    )


_QUALITY_MESSAGES = {
    ErrorCode.TIME_SKEW: "time is further in the future than the allowed clock skew",
    ErrorCode.TOO_OLD: "time is older than the accepted event age",
    ErrorCode.EMPTY_DATA: "the contract for this type requires data",
    ErrorCode.FIELD_TOO_LARGE: "a string in data exceeds the field size limit",
}
