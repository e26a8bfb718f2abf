"""Child-process side of the benchmarks: `python -m bench.worker NAME RESULT_FILE ARGS_JSON`.

Each figure that needs a process of its own (its own peak RSS, its own memory cache) runs here:
`warm` and `first_answer` on the runtime's 3.13 from the built artifact (bench/artifact.py), the
others in the dev venv from the source tree. Stdout is discarded by the parent: the function's
log lines and EMF metrics go there, as they would to CloudWatch. Results go to RESULT_FILE as JSON.
Only the standard library and the function's own imports: it runs on both interpreters.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.lambda_env import vend_event
from devstack.lambda_context import LocalLambdaContext

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


def warm(args: dict[str, Any]) -> dict[str, Any]:
    """Memory hits of the vend against the baseline function, in alternating blocks in one process.

    Run on the runtime's 3.13 from the artifact (bench/artifact.py): handler time only, in-process,
    since the Runtime API's HTTP round trip (about a millisecond) would swamp microseconds.
    """
    from baseline import lambda_handler as baseline  # type: ignore[import-not-found]
    from token_vending.app import lambda_handler as vend

    event = vend_event(args["app"], args["scope"])
    context = LocalLambdaContext()
    sides: list[tuple[str, Handler]] = [("vend", vend), ("baseline", baseline)]
    for _ in range(200):  # fill the caches, settle allocations
        _ok(vend(event, context))
        _ok(baseline(event, context))
    runs = []
    for run in range(args["runs"]):
        order = sides[run % len(sides):] + sides[:run % len(sides)]  # no side always runs first
        samples = {name: _timed_calls(handler, event, args["requests"]) for name, handler in order}
        runs.append({name: {"median": _percentile(values, 0.5), "p99": _percentile(values, 0.99)}
                     for name, values in samples.items()})
    return {"runs": runs, "profile": _profile(lambda: vend(event, context), args["requests"])}


def first_answer(args: dict[str, Any]) -> dict[str, Any]:
    """A new container's first answer (a table hit), profiled: where its time goes, by package."""
    from token_vending.app import lambda_handler

    event = vend_event(args["app"], args["scope"])
    started = time.perf_counter()
    profile = _profile(lambda: _ok(lambda_handler(event, LocalLambdaContext())), 1)
    return {"profile": profile, "ms": (time.perf_counter() - started) * 1000}


def _profile(call: Callable[[], Any], count: int) -> dict[str, float]:
    """Microseconds per call spent in each package's own code (cProfile's tottime, so with its overhead)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        call()
    profiler.disable()
    roots = sorted((str(Path(entry).resolve()) for entry in sys.path if entry), key=len, reverse=True)
    totals: dict[str, float] = {}
    for (filename, _, function), row in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        where = _package_of(filename, function, roots)
        totals[where] = totals.get(where, 0.0) + row[2] * 1e6 / count
    return totals


def _package_of(filename: str, function: str, roots: list[str]) -> str:
    if filename == "~":  # a built-in (C) function: named by what it does
        kinds = {"socket": "socket I/O", "ssl": "socket I/O", "posix.": "file system calls", "zlib": "zlib",
                 "json": "json", "write": "writes (log lines, metrics)"}
        return next((kind for marker, kind in kinds.items() if marker in function), "other built-ins")
    if filename.startswith("<frozen "):  # a standard library module frozen into the interpreter
        return filename.removeprefix("<frozen ").removesuffix(">")
    path = str(Path(filename).resolve())
    for root in roots:
        if path.startswith(root + "/"):
            return path[len(root) + 1:].split("/")[0].removesuffix(".py")
    return filename


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
    """One cold container: import, say ready, wait for the parent's go, then miss the key with the others
    (as `caller`: sessions of one role share its key, other roles have keys of their own)."""
    from token_vending.app import lambda_handler

    event = vend_event(args["app"], args["scope"], args["caller"])
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
    "warm": warm, "first_answer": first_answer, "memory": memory, "stampede": stampede,
}

if __name__ == "__main__":
    name, result_file, raw_args = sys.argv[1:4]
    Path(result_file).write_text(json.dumps(FIGURES[name](json.loads(raw_args))))
