"""The Terraform wiring, checked by parsing the HCL (python-hcl2): `terraform validate`
needs the Google provider, which cannot be fetched here (deploy/terraform/README.md).

For each root (staging, production) and each module it calls: the inputs passed exist,
the required ones are all passed, every `module.X.Y` read is an output of X, every `var.Z`
used is declared, every declared variable is used. The two roots call the same modules
with the same inputs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.support import PROJECT_ROOT

TERRAFORM = PROJECT_ROOT / "deploy" / "terraform"
ROOTS = ("staging", "production")
_VAR = re.compile(r"\bvar\.([A-Za-z0-9_]+)")
_MODULE_OUTPUT = re.compile(r"\bmodule\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)")


def _unquote(name: str) -> str:
    return name.strip('"')


@dataclass
class Config:
    """One directory of .tf files: what it declares, calls and references."""

    path: Path
    variables: dict[str, bool]  # name -> required (no default)
    outputs: set[str]
    modules: dict[str, dict[str, Any]]  # call name -> its arguments (source included)
    text: str

    @classmethod
    def load(cls, path: Path) -> Config:
        variables: dict[str, bool] = {}
        outputs: set[str] = set()
        modules: dict[str, dict[str, Any]] = {}
        texts = []
        for file in sorted(path.glob("*.tf")):
            texts.append(file.read_text())
            with file.open() as handle:
                parsed = hcl2.load(handle)
            for block in parsed.get("variable", []):
                for name, body in block.items():
                    variables[_unquote(name)] = "default" not in body
            for block in parsed.get("output", []):
                outputs.update(_unquote(name) for name in block)
            for block in parsed.get("module", []):
                for name, body in block.items():
                    modules[_unquote(name)] = {
                        key: value for key, value in body.items() if not key.startswith("__")
                    }
        return cls(path, variables, outputs, modules, "\n".join(texts))

    def module_dir(self, call: str) -> Path:
        return (self.path / _unquote(self.modules[call]["source"])).resolve()


def _configs() -> list[Path]:
    return [TERRAFORM / root for root in ROOTS] + sorted((TERRAFORM / "modules").iterdir())


@pytest.mark.parametrize("root", ROOTS)
def test_each_module_call_passes_existing_and_all_required_inputs(root: str) -> None:
    config = Config.load(TERRAFORM / root)
    assert config.modules, f"{root} calls no module"
    for call, arguments in config.modules.items():
        module = Config.load(config.module_dir(call))
        passed = set(arguments) - {"source", "providers", "depends_on", "count", "for_each"}
        assert passed <= set(module.variables), (
            f"{root}/{call}: unknown {passed - set(module.variables)}"
        )
        required = {name for name, is_required in module.variables.items() if is_required}
        assert required <= passed, f"{root}/{call}: missing {required - passed}"


@pytest.mark.parametrize("root", ROOTS)
def test_every_module_output_read_exists(root: str) -> None:
    config = Config.load(TERRAFORM / root)
    reads = set(_MODULE_OUTPUT.findall(config.text))
    assert reads, f"{root} reads no module output"
    for call, output in reads:
        assert call in config.modules, f"{root}: module.{call} is not called"
        module = Config.load(config.module_dir(call))
        assert output in module.outputs, f"{root}: module.{call} has no output {output}"


@pytest.mark.parametrize("path", _configs(), ids=lambda path: path.name)
def test_variables_used_are_declared_and_declared_are_used(path: Path) -> None:
    config = Config.load(path)
    used = set(_VAR.findall(config.text))
    assert used <= set(config.variables), f"{path.name}: undeclared {used - set(config.variables)}"
    assert set(config.variables) <= used, f"{path.name}: unused {set(config.variables) - used}"


def test_staging_and_production_are_the_same_modules_with_the_same_inputs() -> None:
    staging, production = (Config.load(TERRAFORM / root) for root in ROOTS)
    assert {call: set(arguments) for call, arguments in staging.modules.items()} == {
        call: set(arguments) for call, arguments in production.modules.items()
    }
    assert staging.variables.keys() == production.variables.keys()
    assert staging.outputs == production.outputs


def test_the_database_is_highly_available_and_recoverable() -> None:
    text = Config.load(TERRAFORM / "modules" / "cloudsql").text
    for setting in (
        'availability_type           = "REGIONAL"',
        "point_in_time_recovery_enabled = true",
        "ipv4_enabled    = false",
        "deletion_protection = true",
        "master_instance_name",
    ):
        assert setting in text, setting


def test_the_wiring_check_catches_a_wrong_output(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "main.tf").write_text('variable "a" {\n  type = string\n}\n')
    (tmp_path / "root" / "main.tf").write_text(
        'module "m" {\n  source = "../mod"\n  a = "x"\n}\n'
        'output "o" {\n  value = module.m.missing\n}\n'
    )
    config = Config.load(tmp_path / "root")
    module = Config.load(config.module_dir("m"))
    assert module.variables == {"a": True}
    assert ("m", "missing") in set(_MODULE_OUTPUT.findall(config.text))
    assert "missing" not in module.outputs
