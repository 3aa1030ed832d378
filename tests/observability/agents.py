"""Real receivers the observability tests talk to: the Datadog test agent (also an OTLP
receiver), Prometheus and promtool. Each is found where `make tools-observability` puts
it; when missing, a test skips with the reason, or fails under `CI=true`."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import in_ci
from tests.support import free_port

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sluice"
DDAGENT = CACHE / "ddagent-venv" / "bin" / "ddapm-test-agent"


def require(path: str | Path | None, what: str) -> str:
    """The tool's path, or skip (fail under CI) naming the make target that installs it."""
    if path is not None and Path(path).exists():
        return str(path)
    message = f"{what} is missing: run `make tools-observability`"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def tool(name: str) -> str:
    return require(shutil.which(name), name)


@dataclass(frozen=True)
class TraceAgent:
    """A running `ddapm-test-agent`: Datadog intake on `url`, OTLP/HTTP on `otlp_url`."""

    url: str
    otlp_url: str
    token: str

    def datadog_traces(self) -> list[list[dict[str, Any]]]:
        response = httpx.get(
            f"{self.url}/test/session/traces", params={"test_session_token": self.token}
        )
        response.raise_for_status()
        traces: list[list[dict[str, Any]]] = response.json()
        return traces

    def otlp_spans(self) -> list[dict[str, Any]]:
        """Every span received over OTLP, ids as hex, attributes as a plain dict."""
        response = httpx.get(
            f"{self.otlp_url}/test/session/traces", params={"test_session_token": self.token}
        )
        response.raise_for_status()
        spans: list[dict[str, Any]] = []
        for request in response.json():
            for resource in request.get("resource_spans", []):
                resource_attributes = _attributes(resource.get("resource", {}).get("attributes"))
                for scope in resource.get("scope_spans", []):
                    for span in scope.get("spans", []):
                        spans.append(_span(span, resource_attributes))
        return spans

    def wait_for(self, predicate: Any, timeout_s: float = 20.0) -> Any:
        """Poll until `predicate(self)` is truthy (exporters flush about once a second)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = predicate(self)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)


def _hex(value: str | None) -> str | None:
    return base64.b64decode(value).hex() if value else None


def _value(value: dict[str, Any]) -> Any:
    for kind in ("string_value", "int_value", "bool_value", "double_value"):
        if kind in value:
            return value[kind]
    if "array_value" in value:
        return [_value(v) for v in value["array_value"].get("values", [])]
    return None


def _attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items or []}


def _span(span: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": span["name"],
        "trace_id": _hex(span.get("trace_id")),
        "span_id": _hex(span.get("span_id")),
        "parent_span_id": _hex(span.get("parent_span_id")),
        "attributes": _attributes(span.get("attributes")),
        "links": [
            {"trace_id": _hex(link.get("trace_id")), "span_id": _hex(link.get("span_id"))}
            for link in span.get("links", [])
        ],
        "resource": resource,
        "raw": span,
    }


@contextlib.contextmanager
def trace_agent() -> Iterator[TraceAgent]:
    binary = require(DDAGENT, "ddapm-test-agent")
    port, otlp, grpc = free_port(), free_port(), free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(  # noqa: S603 - the test agent from its own venv
            [
                binary,
                "--host=127.0.0.1",
                f"--port={port}",
                f"--otlp-http-port={otlp}",
                f"--otlp-grpc-port={grpc}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": f"{DDAGENT.parent}:{os.environ['PATH']}"},
        )
        agent = TraceAgent(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{otlp}", uuid.uuid4().hex)
        try:
            _start_session(agent, process, log)
            yield agent
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _start_session(agent: TraceAgent, process: subprocess.Popen[bytes], log: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"test agent exited:\n{log.read().decode(errors='replace')}")
        with contextlib.suppress(httpx.TransportError):
            for url in (agent.url, agent.otlp_url):
                httpx.get(
                    f"{url}/test/session/start", params={"test_session_token": agent.token}
                ).raise_for_status()
            return
        time.sleep(0.2)
    raise TimeoutError("the test agent did not start in 30 s")
