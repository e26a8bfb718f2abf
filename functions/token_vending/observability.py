"""Logging, tracing and metrics, set up once for the whole function.

Nothing here ever receives a token or a secret: callers pass fingerprints.

- `logger`: Powertools' JSON Logger, for everything that is not on the warm path.
- `tracer`: Powertools' Tracer when detailed tracing is on (`POWERTOOLS_TRACE_DISABLED=false`,
  the template's DetailedTracing parameter); otherwise a stand-in whose decorators do nothing,
  because creating a Tracer imports the X-Ray SDK (100-150 ms of a cold start) even when disabled.
  Lambda's own `Tracing: Active` segments need neither.
- Metrics and the audit record: each invocation writes one CloudWatch EMF line holding its metrics
  and, for an API answer, the audit record (caller, app, scope, outcome, fingerprint) as plain
  properties. Written by hand rather than through Powertools Metrics, whose per-invocation flush
  and the Logger's formatter cost more than the whole rest of a warm vend; the line is the EMF
  format CloudWatch documents (namespace, the one dimension `service`, metric names and units).

Metric names carry the outcome or kind (`Vend_ok`, `CacheTier_memory`, `UpstreamErrors_http_503`) so
every series can be alarmed on and graphed by name; totals sit beside them (`UpstreamErrors`).
template.yaml's alarms and dashboard use these names: keep the two in step.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Protocol, TypeVar, cast

from aws_lambda_powertools.logging.logger import Logger

SERVICE = "token-vending"
NAMESPACE = "SangomaTokenVending"
# At DEBUG, botocore logs request and response bodies (a secret's value, KMS plaintexts) and urllib3
# logs requests: these loggers stay at WARNING whatever the root logger's level.
QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "requests", "s3transfer")
for _name in QUIET_LIBRARIES:
    logging.getLogger(_name).setLevel(logging.WARNING)


logger = Logger(service=SERVICE)
_log_format = logger.registered_formatter  # Logger.append_keys looks it up again on every call

F = TypeVar("F", bound=Callable[..., Any])


class _TracerApi(Protocol):
    def capture_method(self, method: Any = None, **options: Any) -> Callable[[F], F]: ...

    def capture_lambda_handler(self, lambda_handler: Any = None, **options: Any) -> Callable[[F], F]: ...


class _NoTracer:
    """Tracer's decorators, doing nothing (detailed tracing off)."""

    def capture_method(self, method: Any = None, **options: Any) -> Callable[[F], F]:
        return _unchanged

    def capture_lambda_handler(self, lambda_handler: Any = None, **options: Any) -> Callable[[F], F]:
        return _unchanged


def _unchanged(function: F) -> F:
    return function


def detailed_tracing() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("false", "0")


def _tracer() -> _TracerApi:
    if not detailed_tracing():
        return _NoTracer()
    from aws_lambda_powertools.tracing.tracer import Tracer

    # Tracer logs every exception a traced method raises, with its traceback, at ERROR. Ours are
    # expected outcomes (an upstream 503, a degraded cache) that the code logs as one warning line.
    logging.getLogger("aws_lambda_powertools.tracing.tracer").setLevel(logging.CRITICAL)
    return cast(_TracerApi, Tracer(service=SERVICE))


tracer = _tracer()


# -- the invocation's metrics -------------------------------------------------------------------

COUNT, MILLISECONDS, SECONDS = "Count", "Milliseconds", "Seconds"
MAX_VALUES = 100  # EMF takes at most 100 values of one metric in one line

_lock = threading.Lock()  # Lambda runs one invocation at a time; tests and local tools use threads
_counts: dict[str, float] = {}  # this invocation's Count metrics, summed
_series: dict[str, tuple[str, list[float]]] = {}  # its other metrics: the unit and every value
_EMF_JSON = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False)  # flat records


def add_metric(name: str, unit: str, value: float) -> None:
    with _lock:
        if unit == COUNT:
            _counts[name] = _counts.get(name, 0) + value
            return
        values = _series.setdefault(name, (unit, []))[1]
        values.append(value)
        full = len(values) >= MAX_VALUES
    if full:  # a long scheduled run: write what there is before the list outgrows EMF
        write_invocation_line()


def take_metrics() -> tuple[dict[str, float], dict[str, tuple[str, list[float]]]]:
    """The metrics added since the last line was written (and forget them): counts, and the others by unit."""
    global _counts, _series
    with _lock:
        taken = _counts, _series
        _counts, _series = {}, {}
    return taken


def write_invocation_line(properties: Mapping[str, Any] | None = None) -> None:
    """The invocation's one EMF line: its metrics, plus `properties` (the audit record) when given."""
    counts, series = take_metrics()
    if not counts and not series and not properties:
        return
    record: dict[str, Any] = {"service": SERVICE, **counts}
    for name, (_, values) in series.items():
        record[name] = values[0] if len(values) == 1 else values
    if properties:
        record.update(properties)
    others = tuple((name, unit) for name, (unit, _) in series.items()) if series else ()
    directive = _directive(tuple(counts), others)
    # Assembled from two serialized parts: the metric directive is the same for every vend of a kind.
    sys.stdout.write(f'{{"_aws":{{"Timestamp":{int(time.time() * 1000)},"CloudWatchMetrics":{directive}}},'
                     f'{_EMF_JSON.encode(record)[1:]}\n')


@lru_cache(maxsize=128)
def _directive(counts: tuple[str, ...], others: tuple[tuple[str, str], ...]) -> str:
    """EMF's CloudWatchMetrics directive for these metric names and units, serialized."""
    metrics = [{"Name": name, "Unit": COUNT} for name in counts]
    metrics += [{"Name": name, "Unit": unit} for name, unit in others]
    return _EMF_JSON.encode([{"Namespace": NAMESPACE, "Dimensions": [["service"]], "Metrics": metrics}])


_request_ids: dict[str, str | None] = {"function_request_id": None, "correlation_id": None}


def start_invocation(request_id: str | None, correlation_id: str | None) -> None:
    """Tag this invocation's log lines with its ids (what Logger.inject_lambda_context would do, at
    a fraction of its cost: it runs a JMESPath search and rebuilds the context on every call)."""
    _request_ids.update(function_request_id=request_id, correlation_id=correlation_id)
    _log_format.append_keys(**_request_ids)


def invocation_ids() -> Mapping[str, str | None]:
    """This invocation's ids: the function's request id and API Gateway's (the correlation id)."""
    return _request_ids


# -- what the function records ------------------------------------------------------------------

# Pre-warm outcomes and the metric each is counted in.
PREWARM_METRICS = {"refreshed": "PrewarmRefreshed", "minted": "PrewarmMinted", "skipped": "PrewarmSkipped",
                   "failed": "PrewarmFailed"}


def record_degraded(dependency: str) -> None:
    """A backing service failed and the vend went on without it."""
    add_metric(f"Degraded_{dependency}", COUNT, 1)
    add_metric("DegradedDependency", COUNT, 1)


def record_store_degraded(dependency: str, reason: str) -> None:
    """The shared cache (DynamoDB or KMS) failed and the work goes on without it."""
    record_degraded(dependency)
    logger.warning("shared cache unavailable, going on without it", extra={"dependency": dependency, "reason": reason})


def record_vend(outcome: str, tier: str | None = None) -> None:
    """One answer to a GET: `outcome` is `ok` or the error code; `tier` where the token came from."""
    add_metric(f"Vend_{outcome}", COUNT, 1)
    if tier:
        add_metric(f"CacheTier_{tier}", COUNT, 1)


def record_report(outcome: str) -> None:
    """One answer to a DELETE: `dropped`, `kept` (no longer the cached token) or the error code."""
    add_metric(f"Report_{outcome}", COUNT, 1)


def record_upstream(outcome: str, latency_ms: float | None = None) -> None:
    """One request to the token endpoint: `ok`, or the error kind (`unreachable`, `http_503`, `unusable`...)."""
    add_metric("UpstreamRequests", COUNT, 1)
    if outcome != "ok":
        add_metric("UpstreamErrors", COUNT, 1)
        add_metric(f"UpstreamErrors_{outcome}", COUNT, 1)
    if latency_ms is not None:
        add_metric("UpstreamLatency", MILLISECONDS, latency_ms)


def record_mint_limit_reached() -> None:
    add_metric("MintLimitReached", COUNT, 1)


def record_single_flight_wait() -> None:
    add_metric("SingleFlightWaits", COUNT, 1)


def record_unsealable_entry() -> None:
    """A table entry whose seal or metadata did not check out (edited, or written by an older version)."""
    add_metric("UnsealableEntries", COUNT, 1)


def record_prewarm(counts: Mapping[str, int], soonest_expiry_seconds: float | None, cached_tokens: int) -> None:
    """One scheduled run. Zeros are emitted too, so graphs and alarms see every run."""
    for outcome, name in PREWARM_METRICS.items():
        add_metric(name, COUNT, counts.get(outcome, 0))
    add_metric("CachedTokens", COUNT, cached_tokens)
    if soonest_expiry_seconds is not None:
        # The dashboard's "soonest token expiry": what the next caller of the worst key would face.
        add_metric("SoonestTokenExpiry", SECONDS, max(0.0, round(soonest_expiry_seconds)))
