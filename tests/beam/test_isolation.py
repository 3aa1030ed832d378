"""Issue 19: Beam stays out of the service. The service's environment has no
apache-beam, and no module of `app/` imports Beam or the pipelines."""

from __future__ import annotations

import ast
import importlib.util

from tests.support import PROJECT_ROOT

FOREIGN = ("apache_beam", "sluice_beam")


def test_the_service_environment_has_no_beam() -> None:
    assert importlib.util.find_spec("apache_beam") is None


def test_no_app_module_imports_beam() -> None:
    offenders = []
    for path in sorted((PROJECT_ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path}: {n}" for n in names if n.split(".")[0] in FOREIGN]
    assert offenders == []
