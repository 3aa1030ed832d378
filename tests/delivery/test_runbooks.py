"""Every command in the runbooks exists.

From each fenced code block of docs/runbooks/*.md this takes the lines that run
`python -m app …`, `make …`, `helm …` or `ansible-playbook …` and checks them against the
real thing: the app's own argument parser (a wrong subcommand, flag or value fails as it
would for an operator), make's database of targets, `ansible-playbook --help` and the
playbooks on disk, and `helm <command> --help` of a real Helm 3."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from app.cli import _parser
from tests.delivery.test_workflows import makefile_targets
from tests.delivery.tools import ANSIBLE_DIR, CACHE, ansible_env, require
from tests.support import PROJECT_ROOT

RUNBOOKS = sorted((PROJECT_ROOT / "docs" / "runbooks").glob("*.md"))
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
PROGRAMS = ("python -m app", "make", "helm", "ansible-playbook")


@dataclass(frozen=True)
class Command:
    runbook: str
    line: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.runbook}: {self.line}"


def commands() -> list[Command]:
    found = []
    for runbook in RUNBOOKS:
        for block in _FENCE.findall(runbook.read_text()):
            for raw in block.splitlines():
                line = raw.strip().removeprefix("$ ")
                if not line or line.startswith("#"):
                    continue
                argv = shlex.split(line, comments=True)
                while argv and _ASSIGNMENT.match(argv[0]):
                    argv = argv[1:]  # `DATABASE_URL=… python -m app …`
                if argv and any(" ".join(argv).startswith(p + " ") for p in PROGRAMS):
                    found.append(Command(runbook.name, line, tuple(argv)))
    return found


def _of(program: str) -> list[Command]:
    return [c for c in commands() if " ".join(c.argv).startswith(program + " ")]


def test_the_runbooks_exist_and_carry_commands() -> None:
    names = {path.name for path in RUNBOOKS}
    assert {"deploy.md", "incident-response.md", "database.md", "operations.md"} <= names
    for program in PROGRAMS:
        assert _of(program), f"no `{program}` command in the runbooks"


@pytest.mark.parametrize("command", _of("python -m app"), ids=str)
def test_app_command_parses(command: Command) -> None:
    try:
        _parser().parse_args(list(command.argv[3:]))
    except SystemExit as exc:
        pytest.fail(f"{command}: the CLI refuses it (exit {exc.code})")


@pytest.mark.parametrize("command", _of("make"), ids=str)
def test_make_target_exists(command: Command) -> None:
    targets = [word for word in command.argv[1:] if "=" not in word]
    assert targets, command
    assert set(targets) <= makefile_targets(), (
        f"{command}: no target {set(targets) - makefile_targets()}"
    )


@cache
def _ansible_help() -> str:
    env = ansible_env()
    return subprocess.run(
        ["ansible-playbook", "--help"], env=env, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize("command", _of("ansible-playbook"), ids=str)
def test_ansible_playbook_command_is_real(command: Command) -> None:
    known = set(re.findall(r"(?<![\w-])(-{1,2}[A-Za-z][\w-]*)", _ansible_help()))
    argv = list(command.argv[1:])
    playbooks = [word for word in argv if word.endswith(".yml") and not word.startswith("-")]
    for index, word in enumerate(argv):
        if word.startswith("-"):
            assert word.split("=", 1)[0] in known, f"{command}: ansible-playbook has no {word}"
        if word == "-i":
            inventory = ANSIBLE_DIR / argv[index + 1]
            assert inventory.is_file(), f"{command}: no inventory {inventory}"
    assert playbooks, command
    inventories = {argv[i + 1] for i, word in enumerate(argv) if word == "-i"}
    for playbook in set(playbooks) - inventories:
        assert (ANSIBLE_DIR / playbook).is_file(), f"{command}: no playbook {playbook}"


@pytest.mark.parametrize("command", _of("helm"), ids=str)
def test_helm_command_is_real(command: Command) -> None:
    helm = require(CACHE / "helm" / "helm", "helm")
    subcommand = command.argv[1]
    result = subprocess.run(
        [str(helm), subcommand, "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{command}: helm has no command {subcommand}"
    assert f"helm {subcommand}" in result.stdout, f"{command}: helm has no command {subcommand}"
    for word in command.argv[2:]:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            assert re.search(rf"(?m)^\s+(-\w, )?{re.escape(flag)}\b", result.stdout), (
                f"{command}: `helm {subcommand}` has no {flag}"
            )


def test_the_checks_refuse_what_does_not_exist() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["replay", "--no-such-flag"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["backup-everything"])
    assert "no-such-target" not in makefile_targets()
    assert "--no-such-flag" not in _ansible_help()


def test_extraction_reads_prefixes_and_assignments(tmp_path: Path) -> None:
    line = "DATABASE_URL=postgresql://x python -m app maintain"
    argv = shlex.split(line)
    while argv and _ASSIGNMENT.match(argv[0]):
        argv = argv[1:]
    assert argv == ["python", "-m", "app", "maintain"]
