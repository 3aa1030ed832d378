"""Data contracts on disk, loaded and compiled once: one JSON Schema per type and version.

The directory (`SLUICE_CONTRACTS_DIR`)::

    contracts.yaml                      optional: per-type mode (strict | lenient)
    com.example.order.created/1.json    JSON Schema (draft 2020-12) of `data`, version 1
    com.example.order.created/2.json    version 2: the default for events of this type

An event names its version with `dataschema`, matched against the schemas' `$id`; with no
`dataschema` it is checked against the type's highest version. Schemas may `$ref` one
another by `$id`; nothing is fetched over the network. Any defect (bad JSON, a schema the
2020-12 meta-schema refuses, a duplicate `$id`, a file name that is not a version) stops
the load with `ContractError("file: reason")`: a service must not start, and CI must
not pass, with a contract that silently checks nothing.

`contracts.yaml` is read with `app.kit.yaml_reader`, as the privacy policy is: its errors
read `contracts.yaml:<line>: reason`, and a duplicate key is an error, not the last one
silently winning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from app.config import ContractMode, ContractSettings
from app.kit.yaml_reader import Node, YamlReader

MANIFEST = "contracts.yaml"
_DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


class ContractError(Exception):
    """A contract file is unusable; the message reads `file: reason`."""


@dataclass(frozen=True, slots=True)
class Contract:
    type: str
    version: int
    schema_id: str | None
    validator: jsonschema_rs.Validator
    mode: ContractMode
    # Whether an event of this type must carry `data`: true unless the schema accepts null.
    requires_content: bool

    @property
    def name(self) -> str:
        """How rows and metrics name the contract: `type@version`."""
        return f"{self.type}@{self.version}"


class _TypeRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: ContractMode


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    types: dict[str, _TypeRules] = {}


@dataclass(frozen=True, slots=True)
class _SchemaFile:
    path: Path
    type: str
    version: int
    schema: dict[str, Any]


class ContractRegistry:
    """Lookup of compiled contracts by type (latest version) and by `$id`."""

    def __init__(self, contracts: list[Contract]) -> None:
        self._latest: dict[str, Contract] = {}
        self._by_id: dict[str, Contract] = {}
        for contract in sorted(contracts, key=lambda c: (c.type, c.version)):
            self._latest[contract.type] = contract
            if contract.schema_id is not None:
                self._by_id[contract.schema_id] = contract
        self._count = len(contracts)
        self._types = frozenset(self._latest)

    @classmethod
    def empty(cls) -> ContractRegistry:
        return cls([])

    @classmethod
    def load(cls, directory: Path | None, *, default_mode: ContractMode) -> ContractRegistry:
        if directory is None:
            return cls.empty()
        if not directory.is_dir():
            raise ContractError(f"{directory}: not a directory")
        manifest = _manifest(directory / MANIFEST)
        modes = manifest.types
        files = list(_schema_files(directory))
        _check_modes_name_contracts(manifest, {f.type for f in files})
        registry = _reference_registry(files)
        return cls(
            [
                _compile(file, registry, modes.get(file.type, _TypeRules(mode=default_mode)))
                for file in files
            ]
        )

    def __len__(self) -> int:
        return self._count

    @property
    def types(self) -> frozenset[str]:
        return self._types

    def latest(self, event_type: str) -> Contract | None:
        return self._latest.get(event_type)

    def by_schema_id(self, event_type: str, schema_id: str) -> Contract | None:
        """The contract whose `$id` is `schema_id`, when it belongs to `event_type`."""
        contract = self._by_id.get(schema_id)
        return contract if contract is not None and contract.type == event_type else None


def load_contracts(settings: ContractSettings) -> ContractRegistry:
    return ContractRegistry.load(settings.dir, default_mode=settings.default_mode)


@dataclass(frozen=True, slots=True)
class _ManifestFile:
    types: dict[str, _TypeRules]
    reader: YamlReader
    root: Node | None


def _manifest(path: Path) -> _ManifestFile:
    reader = YamlReader(path, ContractError)
    if not path.exists():
        return _ManifestFile({}, reader, None)
    root = reader.compose(path.read_bytes())
    try:
        types = _Manifest.model_validate(reader.plain(root, "the manifest") or {}).types
    except PydanticValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        location = [part for part in error["loc"] if isinstance(part, str | int)]
        where = ".".join(str(part) for part in location)
        line = reader.line_at(root, location)
        raise reader.error_at(line, f"{where}: {error['msg']}" if where else error["msg"]) from None
    return _ManifestFile(types, reader, root)


def _check_modes_name_contracts(manifest: _ManifestFile, types: set[str]) -> None:
    # A mode for a type with no schema is almost always a typo in the type's name.
    stray = sorted(set(manifest.types) - types)
    if stray:
        line = manifest.reader.line_at(manifest.root, ("types", stray[0]))
        raise manifest.reader.error_at(line, f"types: no contract for {', '.join(stray)}")


def _schema_files(directory: Path) -> Iterator[_SchemaFile]:
    for type_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        for path in sorted(type_dir.glob("*.json")):
            yield _SchemaFile(path, type_dir.name, _version(path), _read_schema(path))


def _version(path: Path) -> int:
    if not path.stem.isdigit() or int(path.stem) < 1:
        raise ContractError(f"{path}: the file name must be a version number, e.g. 1.json")
    return int(path.stem)


def _read_schema(path: Path) -> dict[str, Any]:
    try:
        schema = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(schema, dict):
        raise ContractError(f"{path}: a schema must be a JSON object")
    declared = schema.get("$schema", _DRAFT_2020_12)
    if declared != _DRAFT_2020_12:
        raise ContractError(f"{path}: $schema must be {_DRAFT_2020_12}")
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        where = "/".join(str(part) for part in exc.instance_path) or "(root)"
        raise ContractError(f"{path}: not a valid JSON Schema at {where}: {exc.message}") from None
    return schema


def _reference_registry(files: list[_SchemaFile]) -> jsonschema_rs.Registry:
    resources: dict[str, dict[str, Any]] = {}
    for file in files:
        schema_id = file.schema.get("$id")
        if schema_id is None:
            continue
        if not isinstance(schema_id, str) or schema_id in resources:
            raise ContractError(f"{file.path}: $id must be a string unique across contracts")
        resources[schema_id] = file.schema
    return jsonschema_rs.Registry(list(resources.items()))


def _compile(file: _SchemaFile, registry: jsonschema_rs.Registry, rules: _TypeRules) -> Contract:
    try:
        validator = jsonschema_rs.Draft202012Validator(file.schema, registry=registry, offline=True)
    except (jsonschema_rs.ReferencingError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        raise ContractError(f"{file.path}: cannot compile: {reason}") from None
    schema_id = file.schema.get("$id")
    return Contract(
        type=file.type,
        version=file.version,
        schema_id=schema_id if isinstance(schema_id, str) else None,
        validator=validator,
        mode=rules.mode,
        requires_content=not validator.is_valid(None),
    )
