"""Contract loading (every defect is one `file: reason` line) and the checker's verdicts."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.config import ContractMode, ContractSettings, QualitySettings, UnknownTypePolicy
from app.contracts.checker import ContractChecker
from app.contracts.registry import ContractError, ContractRegistry
from app.errors import ErrorCode
from tests.support import anonymized_event, run_app

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TYPE = "com.example.test"


def _write(directory: Path, relative: str, content: Any) -> None:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else orjson.dumps(content))


def _load(directory: Path) -> ContractRegistry:
    return ContractRegistry.load(directory, default_mode=ContractMode.STRICT)


@pytest.mark.parametrize(
    ("relative", "content", "reason"),
    [
        (f"{TYPE}/1.json", b"{not json", "not valid JSON"),
        (f"{TYPE}/1.json", [1, 2], "must be a JSON object"),
        (f"{TYPE}/v1.json", {"type": "object"}, "must be a version number"),
        (f"{TYPE}/1.json", {"type": "strin"}, "not a valid JSON Schema"),
        (f"{TYPE}/1.json", {"$schema": "http://json-schema.org/draft-07/schema#"}, "$schema"),
        (f"{TYPE}/1.json", {"$ref": "https://elsewhere.example/x.json"}, "cannot compile"),
        ("contracts.yaml", b"types:\n  nope.type: {mode: lenient}\n", "no contract for nope.type"),
        ("contracts.yaml", b"types:\n  x: {mode: sloppy}\n", "types.x.mode"),
    ],
)
def test_a_defective_contract_stops_the_load_with_its_file_and_reason(
    tmp_path: Path, relative: str, content: Any, reason: str
) -> None:
    _write(tmp_path, f"{TYPE}/2.json", {"type": "object"})
    _write(tmp_path, relative, content)
    with pytest.raises(ContractError) as raised:
        _load(tmp_path)
    message = str(raised.value)
    assert message.startswith(str(tmp_path / relative) + ":")
    assert reason in message


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "a.type/1.json", {"$id": "https://s.example/x", "type": "object"})
    _write(tmp_path, "b.type/1.json", {"$id": "https://s.example/x", "type": "object"})
    with pytest.raises(ContractError, match="unique"):
        _load(tmp_path)


def test_latest_version_by_default_and_refs_between_contracts(tmp_path: Path) -> None:
    _write(tmp_path, "common/1.json", {"$id": "https://s.example/money", "type": "integer"})
    _write(tmp_path, f"{TYPE}/1.json", {"$id": "https://s.example/t/1", "type": "object"})
    _write(
        tmp_path,
        f"{TYPE}/2.json",
        {"type": "object", "properties": {"amount": {"$ref": "https://s.example/money"}}},
    )
    _write(tmp_path, "contracts.yaml", f"types:\n  {TYPE}: {{mode: lenient}}\n".encode())
    registry = _load(tmp_path)
    latest = registry.latest(TYPE)
    assert latest is not None
    assert (latest.name, latest.mode) == (f"{TYPE}@2", ContractMode.LENIENT)
    assert latest.validator.is_valid({"amount": 3})
    assert not latest.validator.is_valid({"amount": "3"})
    first = registry.by_schema_id(TYPE, "https://s.example/t/1")
    assert first is not None
    assert first.version == 1
    assert registry.by_schema_id("common", "https://s.example/t/1") is None


def _checker(
    tmp_path: Path, schema: dict[str, Any], *, mode: str = "strict", unknown: str = "accept"
) -> ContractChecker:
    _write(tmp_path, f"{TYPE}/1.json", schema)
    settings = ContractSettings(dir=tmp_path, default_mode=mode, unknown_type=unknown)
    registry = ContractRegistry.load(tmp_path, default_mode=settings.default_mode)
    return ContractChecker(registry, settings, QualitySettings(max_field_chars=10))


NESTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"qty": {"type": "integer"}}},
        },
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


def test_lenient_repair_drops_violating_members_deep_in_arrays(tmp_path: Path) -> None:
    checker = _checker(tmp_path, NESTED, mode="lenient")
    data = {"items": [{"qty": 1}, {"qty": "x"}, {"qty": 2}], "tags": ["a", 1, "b", 2]}
    event = anonymized_event("/s", "1", data_json=orjson.dumps(data).decode())
    event.type = TYPE
    verdict = checker.check(event, NOW)
    assert verdict.rejection is None
    assert orjson.loads(event.data_json or "null") == {
        "items": [{"qty": 1}, {}, {"qty": 2}],
        "tags": ["a", "b"],
    }
    assert {v.field for v in verdict.violations} == {
        "data.items[1].qty",
        "data.tags[1]",
        "data.tags[3]",
    }
    recorded = orjson.loads(event.violations_json or "[]")
    assert all(set(v) == {"code", "field", "keyword"} for v in recorded)
    assert "x" not in (event.violations_json or "")


def test_lenient_repair_drops_data_whose_root_has_the_wrong_type(tmp_path: Path) -> None:
    checker = _checker(tmp_path, NESTED, mode="lenient")
    event = anonymized_event("/s", "1", data_json='"just text"')
    event.type = TYPE
    assert checker.check(event, NOW).rejection is None
    assert event.data_json is None


def test_time_checks_use_the_given_clock(tmp_path: Path) -> None:
    checker = _checker(tmp_path, {"type": "object"})
    codes = []
    for offset in (timedelta(minutes=4), timedelta(minutes=6), -timedelta(days=32)):
        event = anonymized_event("/s", "1")
        event.time = NOW + offset
        verdict = checker.check(event, NOW)
        codes.append(verdict.rejection.code if verdict.rejection else None)
    assert codes == [None, ErrorCode.TIME_SKEW, ErrorCode.TOO_OLD]


def test_unknown_type_policies(tmp_path: Path) -> None:
    outcomes = []
    for policy in UnknownTypePolicy:
        checker = _checker(tmp_path / policy, {"type": "object"}, unknown=policy)
        verdict = checker.check(anonymized_event("/s", "1"), NOW)  # type com.example.test
        rejection = verdict.rejection
        outcomes.append(None if rejection is None else (rejection.code, rejection.held))
    # anonymized_event's type has a contract here; an unknown one:
    assert outcomes == [None, None, None]
    for policy, expected in [
        (UnknownTypePolicy.ACCEPT, None),
        (UnknownTypePolicy.QUARANTINE, (ErrorCode.UNKNOWN_TYPE, True)),
        (UnknownTypePolicy.REJECT, (ErrorCode.UNKNOWN_TYPE, False)),
    ]:
        checker = _checker(tmp_path / f"u-{policy}", {"type": "object"}, unknown=policy)
        event = anonymized_event("/s", "1")
        event.type = "com.example.unknown"
        rejection = checker.check(event, NOW).rejection
        assert (None if rejection is None else (rejection.code, rejection.held)) == expected


def test_contracts_check_command(tmp_path: Path) -> None:
    _write(tmp_path / "good", f"{TYPE}/1.json", {"type": "object"})
    _write(tmp_path / "bad", f"{TYPE}/1.json", {"type": 5})

    def check(directory: Path) -> subprocess.CompletedProcess[str]:
        return run_app("contracts", "check", "--dir", str(directory))

    good, bad = check(tmp_path / "good"), check(tmp_path / "bad")
    assert (good.returncode, good.stdout.strip()) == (0, "1 contracts for 1 types: OK")
    assert bad.returncode == 2
    assert f"{tmp_path / 'bad' / TYPE / '1.json'}: not a valid JSON Schema" in bad.stderr


def test_serve_refuses_to_start_with_a_defective_contract(tmp_path: Path) -> None:
    _write(tmp_path, f"{TYPE}/1.json", b"{")
    env = {"SLUICE_CONTRACTS_DIR": str(tmp_path), "DATABASE_URL": "postgresql://x/y"}
    done = run_app("serve", "--port", "0", env=env)
    assert done.returncode == 2
    assert f"invalid contract: {tmp_path / TYPE / '1.json'}: not valid JSON" in done.stderr


def test_contracts_check_without_contracts_says_so_and_passes(tmp_path: Path) -> None:
    """`serve` runs with no contracts; so must the check of them (issue 11)."""
    done = run_app("contracts", "check", env={"SLUICE_CONTRACTS_DIR": ""})
    assert done.returncode == 0
    assert "no contracts configured" in done.stdout


def test_contracts_check_of_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    done = run_app("contracts", "check", "--dir", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert f"contracts directory {tmp_path / 'nowhere'} does not exist" in done.stderr


@pytest.mark.parametrize(
    ("manifest", "line", "reason"),
    [
        (b"types:\n  com.example.test: {mode: lenient}\n  x: {mode: sloppy}\n", 3, "types.x.mode"),
        (b"types:\n  com.example.test:\n    mode: lenient\n    when: always\n", 4, "types."),
        (
            b"types:\n  com.example.test: {mode: strict}\n  nope.type: {mode: lenient}\n",
            3,
            "types: no contract for nope.type",
        ),
        (
            b"types:\n  com.example.test: {mode: strict}\n  com.example.test: {mode: lenient}\n",
            3,
            "duplicate key 'com.example.test' in types (first at line 2)",
        ),
        (b"types:\n  com.example.test: {mode: [strict\n", 3, "invalid YAML"),
        (b"[1, 2]\n", 1, "valid dictionary"),
    ],
)
def test_a_defective_manifest_entry_is_reported_with_its_line(
    tmp_path: Path, manifest: bytes, line: int, reason: str
) -> None:
    _write(tmp_path, f"{TYPE}/1.json", {"type": "object"})
    _write(tmp_path, "contracts.yaml", manifest)
    with pytest.raises(ContractError) as raised:
        _load(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'contracts.yaml'}:{line}: "), message
    assert reason in message, message


def test_an_empty_manifest_means_the_default_modes(tmp_path: Path) -> None:
    _write(tmp_path, f"{TYPE}/1.json", {"type": "object"})
    _write(tmp_path, "contracts.yaml", b"# nothing yet\n")
    latest = _load(tmp_path).latest(TYPE)
    assert latest is not None
    assert latest.mode == ContractMode.STRICT
