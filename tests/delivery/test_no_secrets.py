"""Nothing secret in the repository: no private keys, cloud credentials or tokens, and no
secret setting given a literal value in the deploy configuration (inventories, values,
Terraform, workflows), where only references (vault variables, `${{ secrets.X }}`,
`*_FILE` paths) belong."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from app.secret_files import SECRET_SETTINGS
from tests.support import PROJECT_ROOT

_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    "GCP service-account key": re.compile(r'"type":\s*"service_account"'),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),
    "password in a URL": re.compile(r"\b(?:postgres(?:ql)?|amqps?)://[^\s:/@'\"]+:[^\s@'\"]{6,}@"),
}
# Test fixtures and documentation examples that look like credentials on purpose.
_ALLOWED = {"guest:guest@", "user:password@"}
_DEPLOY_CONFIG = ("deploy/", "charts/", ".github/")


def _tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [PROJECT_ROOT / name for name in listed if (PROJECT_ROOT / name).is_file()]


def _findings(path: Path, text: str) -> list[str]:
    found = []
    for kind, pattern in _PATTERNS.items():
        for match in pattern.finditer(text):
            if not any(allowed in match.group(0) for allowed in _ALLOWED):
                found.append(f"{path.relative_to(PROJECT_ROOT)}: {kind}")
    return found


def _literal_secret_settings(path: Path, text: str) -> list[str]:
    """`SLUICE_ADMIN_TOKEN: abc` / `=abc` in deploy configuration: a value, not a reference."""
    found = []
    for name in SECRET_SETTINGS:
        for match in re.finditer(rf"\b{name}\b\s*[:=]\s*(\S+)", text):
            value = match.group(1).strip("'\",")
            is_reference = value == "" or "{{" in value or "${" in value or value.endswith("_FILE")
            if not is_reference:
                found.append(f"{path.relative_to(PROJECT_ROOT)}: {name} = {value[:4]}…")
    return found


def test_no_secret_looking_values_in_the_repository() -> None:
    found: list[str] = []
    for path in _tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found += _findings(path, text)
        if str(path.relative_to(PROJECT_ROOT)).startswith(_DEPLOY_CONFIG):
            found += _literal_secret_settings(path, text)
    assert not found, found


def test_the_scan_finds_what_it_looks_for() -> None:
    sample = PROJECT_ROOT / "deploy" / "x.yml"
    # Assembled here so that this file itself holds nothing the scan would report.
    begin = "-----BEGIN " + "PRIVATE KEY-----"
    text = (
        "DATABASE_URL: postgresql://sluice:" + "hunter2hunter2@db/sluice\n"
        "SLUICE_ADMIN_TOKEN: 5f2b9c\n"
        'SLUICE_PRIVACY_PSEUDONYM_KEY: "{{ vault_key }}"\n'
        "SLUICE_DB_PASSWORD_FILE: /run/secrets/db\n" + begin + "\n"
    )
    assert sorted(f.split(": ", 1)[1] for f in _findings(sample, text)) == [
        "password in a URL",
        "private key",
    ]
    literal = sorted(f.split(": ", 1)[1] for f in _literal_secret_settings(sample, text))
    assert literal == ["DATABASE_URL = post…", "SLUICE_ADMIN_TOKEN = 5f2b…"]
