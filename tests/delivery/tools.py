"""Where the delivery checks' tools live (installed by `make tools-delivery`), and the rule
for a missing one: under `CI=true` a failure, otherwise a skip that says how to install it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import in_ci
from tests.support import PROJECT_ROOT

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sluice"
ANSIBLE_BIN = CACHE / "ansible-venv" / "bin"
DEPLOY = PROJECT_ROOT / "deploy"
ANSIBLE_DIR = DEPLOY / "ansible"


def require(path: Path | str | None, what: str) -> Path:
    """`path` if it exists (a file, or a command on PATH); else fail under CI, skip outside."""
    found = None
    if path is not None:
        candidate = Path(path)
        found = candidate if candidate.exists() else shutil.which(str(path))
    if found is None:
        message = f"{what} is not installed ({path}); run `make tools-delivery`"
        if in_ci():
            pytest.fail(f"{message}; under CI=true that is a failure")
        pytest.skip(message)
    return Path(found)


def ansible_env() -> dict[str, str]:
    """The environment for ansible-* commands: the tool venv first on PATH, no cowsay."""
    require(ANSIBLE_BIN / "ansible-playbook", "ansible-core")
    return {
        **os.environ,
        "PATH": f"{ANSIBLE_BIN}{os.pathsep}{os.environ['PATH']}",
        "ANSIBLE_NOCOWS": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOME": str(CACHE / "ansible-home"),
    }
