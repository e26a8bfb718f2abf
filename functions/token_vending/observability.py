"""Logger, Tracer and Metrics, created once for the whole function.

Nothing here ever receives a token or a secret: callers pass fingerprints.

Metrics are CloudWatch EMF lines (no PutMetricData call, so no IAM permission),
in one namespace with the one dimension `service`. An outcome or kind is part
of the metric name (`Vend_ok`, `CacheTier_memory`, `UpstreamErrors_http_503`) so
every series can be alarmed on and graphed by name; totals sit beside them
(`UpstreamErrors`) for the alarms. template.yaml's alarms and dashboard use
these names: keep the two in step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "token-vending"
NAMESPACE = "SangomaTokenVending"

def _json_message(text: Any) -> Any:
    # Powertools tries json.loads on every str message; a plain message would raise and be caught each time.
    return json.loads(text) if isinstance(text, str) and text[:1] in "{[" else text


# Tracer logs every exception a traced method raises, with its traceback, at ERROR. Ours are
# expected outcomes (an upstream 503, a degraded cache) that the code logs as one warning line.
logging.getLogger("aws_lambda_powertools.tracing.tracer").setLevel(logging.CRITICAL)

logger = Logger(service=SERVICE, json_deserializer=_json_message)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# Pre-warm outcomes and the metric each is counted in.
PREWARM_METRICS = {"refreshed": "PrewarmRefreshed", "minted": "PrewarmMinted", "skipped": "PrewarmSkipped",
                   "failed": "PrewarmFailed"}


def record_degraded(dependency: str) -> None:
    """A backing service failed and the vend went on without it."""
    metrics.add_metric(name=f"Degraded_{dependency}", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="DegradedDependency", unit=MetricUnit.Count, value=1)


def record_vend(outcome: str, tier: str | None = None) -> None:
    """One API answer: `outcome` is `ok` or the error code; `tier` where the token came from."""
    metrics.add_metric(name=f"Vend_{outcome}", unit=MetricUnit.Count, value=1)
    if tier:
        metrics.add_metric(name=f"CacheTier_{tier}", unit=MetricUnit.Count, value=1)


def record_upstream(outcome: str, latency_ms: float | None = None) -> None:
    """One request to the token endpoint: `ok`, or the error kind (`unreachable`, `http_503`, `unusable`...)."""
    metrics.add_metric(name="UpstreamRequests", unit=MetricUnit.Count, value=1)
    if outcome != "ok":
        metrics.add_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=f"UpstreamErrors_{outcome}", unit=MetricUnit.Count, value=1)
    if latency_ms is not None:
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=latency_ms)


def record_single_flight_wait() -> None:
    metrics.add_metric(name="SingleFlightWaits", unit=MetricUnit.Count, value=1)


def record_invalidation(dropped: bool) -> None:
    metrics.add_metric(name="InvalidationReports", unit=MetricUnit.Count, value=1)
    if dropped:
        metrics.add_metric(name="InvalidationsApplied", unit=MetricUnit.Count, value=1)


def record_prewarm(counts: Mapping[str, int], soonest_expiry_seconds: float | None, cached_tokens: int) -> None:
    """One scheduled run. Zeros are emitted too, so graphs and alarms see every run."""
    for outcome, name in PREWARM_METRICS.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=counts.get(outcome, 0))
    metrics.add_metric(name="CachedTokens", unit=MetricUnit.Count, value=cached_tokens)
    if soonest_expiry_seconds is not None:
        # The dashboard's "soonest token expiry": what the next caller of the worst key would face.
        metrics.add_metric(name="SoonestTokenExpiry", unit=MetricUnit.Seconds,
                           value=max(0.0, round(soonest_expiry_seconds)))
