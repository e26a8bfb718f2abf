"""Child-process side of the benchmarks: `python -m bench.worker NAME RESULT_FILE ARGS_JSON`.

Each figure that needs a clean interpreter (cold imports, its own peak RSS, its own
memory cache) runs here. Stdout is discarded by the parent: the function's log lines
and EMF metrics go there, as they would to CloudWatch. Results go to RESULT_FILE as JSON.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # before anything else: the cold-start clock

import json  # noqa: E402 - after the clock on purpose
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.lambda_env import vend_event  # noqa: E402
from devstack.lambda_context import LocalLambdaContext  # noqa: E402

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _timed_calls(handler: Handler, event: dict[str, Any], count: int) -> list[float]:
    context = LocalLambdaContext()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(count):
        started = clock()
        handler(event, context)
        samples.append((clock() - started) / 1000)  # microseconds
    return samples


def _ok(answer: dict[str, Any]) -> dict[str, Any]:
    if answer["statusCode"] != 200:
        raise RuntimeError(f"vend answered {answer['statusCode']}: {answer.get('body')}")
    return json.loads(answer["body"])  # type: ignore[no-any-return]


def cold_deps(_: dict[str, Any]) -> dict[str, Any]:
    """Import the dependencies alone: boto3, requests, and Powertools set up as the function sets it up."""
    import boto3  # noqa: F401
    import requests  # noqa: F401

    import bench.baseline  # noqa: F401 - Logger, Tracer (loads aws_xray_sdk), Metrics, REST resolver

    return {"import_ms": (time.perf_counter() - T0) * 1000}


def cold_handler(args: dict[str, Any]) -> dict[str, Any]:
    """Import the handler and answer the first request (a table hit: what a new container usually sees)."""
    from token_vending.app import lambda_handler

    imported = time.perf_counter()
    answer = lambda_handler(vend_event(args["app"], args["scope"]), LocalLambdaContext())
    answered = time.perf_counter()
    _ok(answer)
    result: dict[str, Any] = {"import_ms": (imported - T0) * 1000, "first_ms": (answered - imported) * 1000,
                              "total_ms": (answered - T0) * 1000}
    if args.get("compile_cost"):
        result["compile_ms"] = _compile_cost()
    return result


def _compile_cost() -> dict[str, float]:
    """What compiling every non-stdlib module loaded so far costs: Lambda pays it on each cold
    start when the code and layer carry no bytecode for its Python (they are read-only there)."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    costs: dict[str, float] = {}
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py"):
            continue
        path = Path(source).resolve()
        if path.is_relative_to(stdlib) and "site-packages" not in path.parts:
            continue
        text = path.read_bytes()
        started = time.perf_counter()
        compile(text, str(path), "exec")
        top = module.__name__.split(".")[0]
        costs[top] = costs.get(top, 0.0) + (time.perf_counter() - started) * 1000
    return costs


def warm(args: dict[str, Any]) -> dict[str, Any]:
    """Memory hits of the vend against the constant baseline, in alternating blocks in one process.

    Two more sides explain the ratio: the baseline plus the vend's audit line and metrics
    ("observed"), and TokenVendor.vend() called directly ("logic": config, authorization, cache).
    """
    from token_vending import container
    from token_vending.app import lambda_handler as vend
    from token_vending.request_input import parse_token_request

    from bench.baseline import lambda_handler as baseline
    from bench.baseline import observed_handler

    event = vend_event(args["app"], args["scope"])
    context = LocalLambdaContext()
    request = parse_token_request(args["app"], [args["scope"]])
    caller = event["requestContext"]["identity"]["userArn"]

    def logic(_: dict[str, Any], __: Any) -> dict[str, Any]:
        container.current().vendor.vend(request, caller)
        return {}

    sides: list[tuple[str, Handler]] = [("vend", vend), ("baseline", baseline), ("observed", observed_handler),
                                        ("logic", logic)]
    for _ in range(200):  # fill the caches, settle allocations
        _ok(vend(event, context))
        _ok(baseline(event, context))
        _ok(observed_handler(event, context))
    runs = []
    for run in range(args["runs"]):
        order = sides[run % len(sides):] + sides[:run % len(sides)]  # no side always runs first
        samples = {name: _timed_calls(handler, event, args["requests"]) for name, handler in order}
        runs.append({name: {"median": _percentile(values, 0.5), "p99": _percentile(values, 0.99)}
                     for name, values in samples.items()})
    return {"runs": runs}


class CallCounter:
    """Counts AWS API calls (and HTTP attempts, retries included) through botocore's event hooks."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.attempts = 0

    def attach(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.register("before-call", self._on_call)
            client.meta.events.register("before-send", self._on_send)

    def _on_call(self, model: Any, **_: Any) -> None:
        self.calls.append(f"{model.service_model.service_name}.{model.name}")

    def _on_send(self, **_: Any) -> None:
        self.attempts += 1

    def take(self) -> tuple[list[str], int]:
        taken = (self.calls, self.attempts)
        self.calls, self.attempts = [], 0
        return taken


def table_hit(args: dict[str, Any]) -> dict[str, Any]:
    """A warm container (its app secret in memory) meeting keys it has not cached: each is a table hit."""
    from token_vending import container
    from token_vending.app import lambda_handler

    context = LocalLambdaContext()
    events = [vend_event(args["app"], scope) for scope in args["scopes"]]
    for event in events:  # make sure every key is in the table
        _ok(lambda_handler(event, context))
    per_request: list[list[str]] = []
    attempts: list[int] = []
    times: list[float] = []
    first_vend_calls: list[str] = []
    clock = time.perf_counter_ns
    for _ in range(args["runs"]):
        fresh = container.start_new_container()  # a new container: empty memory caches
        counter = CallCounter()
        counter.attach(fresh.secretsmanager, fresh.dynamodb, fresh.kms)
        _ok(lambda_handler(events[0], context))  # the container's first vend also reads the app secret
        first_vend_calls = counter.take()[0]
        for event in events[1:]:
            started = clock()
            _ok(lambda_handler(event, context))
            times.append((clock() - started) / 1e6)
            calls, sent = counter.take()
            per_request.append(calls)
            attempts.append(sent)
    return {"per_request": per_request, "attempts": attempts, "times_ms": times,
            "first_vend_calls": first_vend_calls}


def memory(args: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS after warm vends over many keys, at each checkpoint (cumulative request counts)."""
    import resource

    from token_vending.app import lambda_handler

    context = LocalLambdaContext()
    events = [vend_event(args["app"], scope) for scope in args["scopes"]]
    for event in events:  # every key in this container's memory first
        _ok(lambda_handler(event, context))
    marks = []
    done = 0
    for checkpoint in args["checkpoints"]:
        while done < checkpoint:
            lambda_handler(events[done % len(events)], context)
            done += 1
        marks.append({"requests": done, "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "rss_kb": _current_rss_kb()})
    return {"marks": marks}


def _current_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stampede(args: dict[str, Any]) -> dict[str, Any]:
    """One cold container: import, say ready, wait for the parent's go, then miss the key with the others."""
    from token_vending.app import lambda_handler

    event = vend_event(args["app"], args["scope"])
    context = LocalLambdaContext()
    Path(args["ready_file"]).touch()
    sys.stdin.readline()
    cpu_started = time.process_time()
    answer = lambda_handler(event, context)
    done_at = time.time()
    cpu_seconds = time.process_time() - cpu_started
    body = json.loads(answer["body"]) if answer["statusCode"] == 200 else {}
    return {"status": answer["statusCode"], "fingerprint": body.get("fingerprint"), "done_at": done_at,
            "cpu_seconds": cpu_seconds}


FIGURES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "cold_deps": cold_deps, "cold_handler": cold_handler, "warm": warm, "table_hit": table_hit,
    "memory": memory, "stampede": stampede,
}

if __name__ == "__main__":
    name, result_file, raw_args = sys.argv[1:4]
    Path(result_file).write_text(json.dumps(FIGURES[name](json.loads(raw_args))))
