"""The post-deploy smoke check behind `python -m app smoke URL`.

Both deploy targets (the Ansible VM role and the Kubernetes path, `deploy/smoke-check`)
run it after a release is switched on; a failure makes them roll back. It proves, against
the running service, in this order:

1. **ready**: `GET /health/ready` answers `200` within `ready_timeout_s` (polled: a
   freshly started process needs a moment for its pool and migrations check);
2. **stored**: one synthetic CloudEvent with a unique id, posted to `/ingest`, is answered
   `200` with the result `stored` (so it was committed);
3. **metrics**: `sluice_events_stored_total` on `/metrics` grew by at least one across the
   send (other traffic may add more; under gunicorn the exposition sums the workers);
4. **duplicate**: the same event sent again is answered `200` with `duplicate`.

The event stays in the database like any other (type `io.sluice.smoke` and source
`/sluice/smoke` by default, no subject, so nothing personal); a deployment whose contracts
refuse unknown types needs a contract for that type, or other `event_type`/`source` values.
Every failure raises `SmokeFailure` naming the step; nothing is retried beyond the
readiness wait, because a deploy must not pass on a flaky release.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

STORED_METRIC = "sluice_events_stored"  # the parser drops a counter's `_total` suffix
DEFAULT_SOURCE = "/sluice/smoke"
DEFAULT_TYPE = "io.sluice.smoke"


class SmokeFailure(Exception):
    """One step of the smoke check did not hold; `step` names it."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


@dataclass
class SmokeReport:
    """What a passing check saw, printed as one JSON line by the CLI."""

    url: str
    event_id: str
    ready_after_s: float
    stored_before: float
    stored_after: float
    steps: list[str] = field(default_factory=list)


async def run_smoke(
    client: httpx.AsyncClient,
    *,
    ready_timeout_s: float = 60.0,
    source: str = DEFAULT_SOURCE,
    event_type: str = DEFAULT_TYPE,
) -> SmokeReport:
    """Run the four steps against `client`'s base URL; raise `SmokeFailure` on the first
    that fails. Transport errors after readiness are failures too."""
    event_id = f"smoke-{uuid.uuid4()}"
    report = SmokeReport(str(client.base_url), event_id, 0.0, 0.0, 0.0)
    report.ready_after_s = await _wait_ready(client, ready_timeout_s)
    report.steps.append("ready")
    try:
        report.stored_before = await _stored_count(client)
        event = _event(event_id, source, event_type)
        await _send_expecting(client, event, "stored")
        report.steps.append("stored")
        report.stored_after = await _stored_count(client)
        if report.stored_after < report.stored_before + 1:
            raise SmokeFailure(
                "metrics",
                f"{STORED_METRIC}_total went from {report.stored_before} to "
                f"{report.stored_after}; expected at least one more",
            )
        report.steps.append("metrics")
        await _send_expecting(client, event, "duplicate")
        report.steps.append("duplicate")
    except httpx.HTTPError as exc:
        raise SmokeFailure("transport", f"{type(exc).__name__}: {exc}") from exc
    return report


def _event(event_id: str, source: str, event_type: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "datacontenttype": "application/json",
        "data": {"check": "post-deploy smoke"},
    }


async def _wait_ready(client: httpx.AsyncClient, timeout_s: float) -> float:
    """Poll readiness until 200; the seconds it took, or `SmokeFailure("ready")`."""
    started = time.monotonic()
    last = "no answer"
    while True:
        try:
            response = await client.get("/health/ready")
            if response.status_code == 200:
                return round(time.monotonic() - started, 3)
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - started >= timeout_s:
            raise SmokeFailure("ready", f"not ready after {timeout_s:g} s; last answer: {last}")
        await asyncio.sleep(0.5)


async def _stored_count(client: httpx.AsyncClient) -> float:
    """`sluice_events_stored_total` summed over its labels (absent before the first event)."""
    response = await client.get("/metrics")
    if response.status_code != 200:
        raise SmokeFailure("metrics", f"/metrics answered {response.status_code}")
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == STORED_METRIC
        for sample in family.samples
        if sample.name == f"{STORED_METRIC}_total"
    )


async def _send_expecting(client: httpx.AsyncClient, event: dict[str, Any], status: str) -> None:
    response = await client.post(
        "/ingest", json=event, headers={"content-type": "application/cloudevents+json"}
    )
    step = status
    if response.status_code != 200:
        raise SmokeFailure(step, f"/ingest answered {response.status_code}: {response.text[:300]}")
    results = response.json().get("results") or [{}]
    got = results[0].get("status")
    if got != status:
        raise SmokeFailure(step, f"/ingest answered {got!r} for event {event['id']}")


def add_smoke_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`python -m app smoke URL [--ready-timeout S] [--timeout S] [--source S] [--type T]`."""
    summary = "post-deploy smoke check of a running service"
    smoke = commands.add_parser("smoke", help=summary, description=summary)
    smoke.add_argument(
        "url", metavar="URL", help="base URL of the service, e.g. http://127.0.0.1:8000"
    )
    smoke.add_argument(
        "--ready-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for readiness",
    )
    smoke.add_argument(
        "--timeout", type=float, default=15.0, metavar="S", help="seconds per request"
    )
    smoke.add_argument("--source", default=DEFAULT_SOURCE, help="the synthetic event's source")
    smoke.add_argument("--type", default=DEFAULT_TYPE, help="the synthetic event's type")


def smoke_command(args: argparse.Namespace, _settings: object) -> int:
    """Run the check; print its report as one JSON line (exit 0) or the failed step on
    stderr (exit 1)."""

    async def run() -> SmokeReport:
        async with httpx.AsyncClient(base_url=args.url, timeout=args.timeout) as client:
            return await run_smoke(
                client,
                ready_timeout_s=args.ready_timeout,
                source=args.source,
                event_type=args.type,
            )

    try:
        report = asyncio.run(run())
    except SmokeFailure as exc:
        print(f"sluice: smoke check failed at {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(asdict(report)).decode())
    return 0
