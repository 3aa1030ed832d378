"""Traces of a served process, read back from real receivers.

- OTLP: `python -m app serve --workers 2` exports over OTLP/HTTP into the Datadog test
  agent's OTLP receiver: request, steps, flush with links both ways and database spans,
  every span from a worker (the provider is built after the fork, never in the master),
  and the access log line carrying the request's `trace_id`.
- Datadog: `ddtrace-run python -m app serve` with `DD_SERVICE`/`DD_ENV`/`DD_VERSION` into
  the test agent: service, env, version, resource names, the span tree, and the access log
  line carrying the request's real `dd.trace_id`/`dd.span_id` and `trace_id`/`span_id`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import httpx
import orjson

from tests.observability.agents import TraceAgent, require, trace_agent
from tests.support import (
    make_event,
    read_log,
    served,
    unique_source,
)

REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{REMOTE_TRACE}-00f067aa0ba902b7-01"


def otlp_env(agent: TraceAgent, database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": agent.otlp_url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_SERVICE_NAME": "sluice-test",
    }


def _post_events(base_url: str, source: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for n in range(4):
            response = client.post(
                "/ingest",
                json=[make_event(source, f"{n}-{i}") for i in range(5)],
                headers={"traceparent": TRACEPARENT},
            )
            assert response.status_code == 200, response.text


def _by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [span for span in spans if span["name"] == name]


def test_otlp_export_from_gunicorn_workers(database_url: str) -> None:
    source = unique_source("otlp")
    with trace_agent() as agent, tempfile.TemporaryFile() as log:
        with served(otlp_env(agent, database_url), "--workers", "2", log=log) as (url, master):
            _post_events(url, source)
            spans = agent.wait_for(
                lambda a: (s := a.otlp_spans()) and len(_by_name(s, "POST /ingest")) >= 4 and s
            )
            logs = read_log(log)
        master_pid = master.pid

    requests = _by_name(spans, "POST /ingest")
    assert len(requests) >= 4
    assert all(r["trace_id"] == REMOTE_TRACE for r in requests)
    assert {s["resource"]["service.name"] for s in spans} == {"sluice-test"}
    pids = {s["resource"]["process.pid"] for s in spans}
    assert master_pid not in {int(p) for p in pids}  # every provider lives in a worker

    by_id = {span["span_id"]: span for span in spans}
    for name, parent in (
        ("sluice.validate", "POST /ingest"),
        ("sluice.anonymize", "sluice.validate"),
        ("sluice.contract", "sluice.anonymize"),
        ("sluice.buffer", "sluice.contract"),
        ("sluice.commit_wait", "POST /ingest"),
    ):
        found = _by_name(spans, name)
        assert found, name
        assert all(by_id[s["parent_span_id"]]["name"] == parent for s in found), name

    flushes = {f["trace_id"]: f for f in _by_name(spans, "sluice.flush")}
    for request in requests:
        flush = flushes[request["attributes"]["sluice.flush.trace_id"]]
        assert request["span_id"] in {link["span_id"] for link in flush["links"]}
        assert flush["span_id"] in {link["span_id"] for link in request["links"]}
    database = [s for s in spans if s["attributes"].get("db.system") == "postgresql"]
    assert database
    assert all(
        by_id.get(s["parent_span_id"], {}).get("name") == "sluice.flush"
        for s in database
        if s["trace_id"] in flushes
    )
    assert any(s["trace_id"] in flushes for s in database)

    access = _access_lines(logs)
    assert access
    assert {line["trace_id"] for line in access} == {REMOTE_TRACE}
    assert all(line["dd.trace_id"] == str(int(REMOTE_TRACE, 16) & (2**64 - 1)) for line in access)


def test_ddtrace_run_reports_to_the_datadog_agent(database_url: str) -> None:
    source = unique_source("ddtrace")
    with trace_agent() as agent, tempfile.TemporaryFile() as log:
        env = {
            "DATABASE_URL": database_url,
            "DD_SERVICE": "sluice",
            "DD_ENV": "ci",
            "DD_VERSION": "1.2.3",
            "DD_TRACE_AGENT_URL": agent.url,
            "DD_TRACE_OTEL_ENABLED": "true",
            "DD_LOGS_INJECTION": "true",
            "DD_TRACE_PROPAGATION_STYLE": "tracecontext,datadog",
            "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
            "DD_REMOTE_CONFIGURATION_ENABLED": "false",
            "DD_TRACE_STARTUP_LOGS": "false",
        }
        bin_dir = os.path.dirname(sys.executable)
        env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"  # ddtrace-run finds its venv first
        wrapper = (require(os.path.join(bin_dir, "ddtrace-run"), "ddtrace-run"),)
        with served(env, log=log, wrapper=wrapper, timeout_s=60) as (url, _):
            _post_events(url, source)
            traces = agent.wait_for(lambda a: _ingest_traces(a.datadog_traces()), timeout_s=30)
            logs = read_log(log)
        spans = [span for trace in agent.datadog_traces() for span in trace]

    assert traces, logs[-3000:]
    assert {s["service"] for s in spans} >= {"sluice"}
    for span in spans:
        assert span["meta"].get("env") == "ci", span
        assert span["meta"].get("version") == "1.2.3", span
    for trace in traces:
        by_id = {s["span_id"]: s for s in trace}
        requests = [s for s in trace if s["name"] == "fastapi.request"]
        assert requests
        assert all(r["resource"] == "POST /ingest" for r in requests)
        for child, parent in (
            ("sluice.validate", "fastapi.request"),
            ("sluice.anonymize", "sluice.validate"),
            ("sluice.contract", "sluice.anonymize"),
            ("sluice.buffer", "sluice.contract"),
        ):
            steps = [s for s in trace if s["resource"] == child]
            assert steps, child
            assert all(
                by_id[s["parent_id"]]["name"] == parent
                or by_id[s["parent_id"]]["resource"] == parent
                for s in steps
            ), child
        # The W3C traceparent was continued: the trace id's low 64 bits are the caller's.
        assert trace[0]["trace_id"] == int(REMOTE_TRACE, 16) & (2**64 - 1)
        for request in requests:  # each request names the flush that committed it
            assert request["meta"]["sluice.flush.trace_id"]
    flushes = [s for s in spans if s["resource"] == "sluice.flush"]
    assert flushes
    flush_ids = {f["span_id"] for f in flushes}
    assert any(s["name"] == "postgres.query" and s.get("parent_id") in flush_ids for s in spans)
    for span in spans:  # the scrubber dropped what could carry a path or a client
        assert not {"http.url", "url.path", "http.useragent"} & set(span["meta"]), span

    access = _access_lines(logs)
    assert access
    assert all(
        (line["dd.service"], line["dd.env"], line["dd.version"]) == ("sluice", "ci", "1.2.3")
        for line in access
    )
    # Logs join traces: the access line is written while the request span is current, so
    # it names the request's trace (ddtrace writes a 128-bit id in hex, a 64-bit one in
    # decimal) and the request span itself, never "0".
    request_ids = {s["span_id"] for t in traces for s in t if s["name"] == "fastapi.request"}
    low64 = str(int(REMOTE_TRACE, 16) & (2**64 - 1))
    for line in access:
        assert line["dd.trace_id"] in {REMOTE_TRACE, low64}, line
        assert line["trace_id"] == REMOTE_TRACE, line
        assert int(line["dd.span_id"]) == int(line["span_id"], 16), line
        assert int(line["dd.span_id"]) in request_ids, line


def _ingest_traces(traces: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    return [t for t in traces if any(s.get("resource") == "POST /ingest" for s in t)]


def _access_lines(logs: str) -> list[dict[str, Any]]:
    """The access log's lines for `POST /ingest` among a process's JSON log lines."""
    lines = [orjson.loads(line) for line in logs.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("route") == "/ingest"]
