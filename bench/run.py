"""Runs every figure of issue 6 against the embedded local stack and prints one table.

    python -m bench [--only 1,3]

Timing figures are medians over several runs; every ratio compares two things
measured in the same run. Figures that need a clean interpreter run in child
processes (bench/worker.py) whose stdout (the function's logs and metrics) is discarded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.importtime import by_package, import_times
from bench.lambda_env import CALLER_ROLE, ROOT, function_env
from bench.sizes import BUILD, built_artifacts
from devstack.stack import DEFAULT_SCOPES, LocalStack

APP = "bench"
SCOPE = " ".join(DEFAULT_SCOPES)
KEY_SCOPES = [f"bench.s{number:03d}" for number in range(100)]  # one key per scope: 100 distinct keys

WARM_RUNS, WARM_REQUESTS = 5, 2000
TABLE_RUNS, TABLE_KEYS = 3, 30
COLD_RUNS = 7
STAMPEDE_SIZES, STAMPEDE_RUNS, STAMPEDE_DELAY = (8, 16, 32), 2, 0.5
MEMORY_CHECKPOINTS = (1_000, 10_000)
# The Lambda Python runtime brings these, with bytecode (layers/dependencies/requirements.txt).
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six"})
BENCH_ONLY = frozenset({"bench", "devstack", "__main__"})

# Targets (issue 6).
WARM_MAX_RATIO = 2.0
COLD_MAX_RATIO = 1.25
TABLE_HIT_CALLS = ["dynamodb.GetItem", "kms.Decrypt"]
FUNCTION_MAX_BYTES = 100_000
DEPENDENCY_LAYER = "DependenciesLayer"
DEPENDENCY_LAYER_MAX_BYTES = 3_000_000
MEMORY_MAX_GROWTH_KB = 1024  # "no growth": allow allocator noise of one MiB


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    target: str
    status: str  # PASS | MISS | info


class Bench:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.env = function_env(stack.env)
        self.notes: list[str] = []

    def worker(self, name: str, args: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
            result = Path(scratch) / "result.json"
            done = subprocess.run([sys.executable, "-m", "bench.worker", name, str(result), json.dumps(args)],
                                  env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, timeout=timeout, check=False)
            if done.returncode:
                raise RuntimeError(f"bench worker {name} failed:\n{done.stderr[-3000:]}")
            return json.loads(result.read_text())  # type: ignore[no-any-return]

    # 1
    def warm(self) -> list[Row]:
        runs = self.worker("warm", {"app": APP, "scope": SCOPE, "runs": WARM_RUNS,
                                    "requests": WARM_REQUESTS})["runs"]

        def median_of(side: str, stat: str) -> float:
            return statistics.median(run[side][stat] for run in runs)

        ratio = statistics.median(run["vend"]["median"] / run["baseline"]["median"] for run in runs)
        p99_ratio = statistics.median(run["vend"]["p99"] / run["baseline"]["p99"] for run in runs)
        measured = (f"vend {median_of('vend', 'median'):.0f} µs (p99 {median_of('vend', 'p99'):.0f}); "
                    f"baseline {median_of('baseline', 'median'):.0f} µs (p99 {median_of('baseline', 'p99'):.0f}); "
                    f"ratio {ratio:.2f}x (p99 {p99_ratio:.2f}x)")
        observed, logic = median_of("observed", "median"), median_of("logic", "median")
        self.notes.append(
            f"1. Where the vend's time goes (medians): Powertools plumbing (the baseline) "
            f"{median_of('baseline', 'median'):.0f} µs; plus the audit log line and two EMF metrics every vend "
            f"emits {observed - median_of('baseline', 'median'):.0f} µs; TokenVendor.vend() itself (app config, "
            f"authorization, memory cache) {logic:.0f} µs; the rest (input parsing, answer body) "
            f"{median_of('vend', 'median') - observed - logic:.0f} µs. Against the baseline with the same log line and "
            f"metrics the vend is {median_of('vend', 'median') / observed:.2f}x.")
        return [Row("1. Warm memory hit, handler time per request", measured, f"≤ {WARM_MAX_RATIO:.2f}x baseline",
                    _status(ratio <= WARM_MAX_RATIO))]

    # 2
    def table_hit(self) -> list[Row]:
        result = self.worker("table_hit", {"app": APP, "scopes": KEY_SCOPES[:TABLE_KEYS], "runs": TABLE_RUNS})
        per_request = [sorted(calls) for calls in result["per_request"]]
        counts = Counter(call for calls in per_request for call in calls)
        requests = len(per_request)
        exact = all(calls == TABLE_HIT_CALLS for calls in per_request) and all(
            sent == len(TABLE_HIT_CALLS) for sent in result["attempts"])
        calls_text = " + ".join(f"{count / requests:g} {call}" for call, count in sorted(counts.items()))
        times = result["times_ms"]
        measured = (f"{calls_text} per request ({requests} requests, {sum(result['attempts'])} HTTP attempts); "
                    f"median {statistics.median(times):.1f} ms (p99 {_percentile(times, 0.99):.1f}) vs local moto")
        self.notes.append("2. A new container's very first vend also reads the app secret: "
                          + " + ".join(sorted(result["first_vend_calls"])) + " (then cached SECRET_CACHE_SECONDS).")
        return [Row("2. Table hit (new container, token in DynamoDB)", measured,
                    "1 GetItem + 1 KMS Decrypt, nothing else", _status(exact))]

    # 3
    def cold(self) -> list[Row]:
        handler_args = {"app": APP, "scope": SCOPE}
        self.worker("cold_handler", handler_args)  # stores the token in the table; warms the OS file cache
        self.worker("cold_deps", {})
        ratios, totals, deps, imports, firsts = [], [], [], [], []
        for run in range(COLD_RUNS):
            pair = [("deps", "cold_deps", {}), ("handler", "cold_handler", handler_args)]
            if run % 2:
                pair.reverse()
            measured = {label: self.worker(name, args) for label, name, args in pair}
            ratios.append(measured["handler"]["total_ms"] / measured["deps"]["import_ms"])
            totals.append(measured["handler"]["total_ms"])
            imports.append(measured["handler"]["import_ms"])
            firsts.append(measured["handler"]["first_ms"])
            deps.append(measured["deps"]["import_ms"])
        ratio = statistics.median(ratios)
        text = (f"import + first answer {statistics.median(totals):.0f} ms (import {statistics.median(imports):.0f}"
                f" + answer {statistics.median(firsts):.0f}) vs dependencies {statistics.median(deps):.0f} ms: "
                f"{ratio:.2f}x")
        self._import_notes()
        compile_costs = self.worker("cold_handler", {**handler_args, "compile_cost": True})["compile_ms"]
        shipped = {name: ms for name, ms in compile_costs.items() if name not in RUNTIME_PROVIDED | BENCH_ONLY}
        self.notes.append(
            f"3. Compiling the modules we ship (function and layer) that a cold start loads costs "
            f"{sum(shipped.values()):.0f} ms here ({_listing(sorted(shipped.items(), key=lambda item: -item[1])[:4])}"
            f"). Lambda pays it on every cold start, since neither artifact carries bytecode for Python 3.13 and "
            f"/opt and /var/task are read-only; boto3/botocore come from the runtime with their bytecode.")
        return [Row(f"3. Cold start, fresh process (median of {COLD_RUNS})", text, f"≤ {COLD_MAX_RATIO:.2f}x",
                    _status(ratio <= COLD_MAX_RATIO))]

    def _import_notes(self) -> None:
        handler = import_times("from token_vending.app import lambda_handler", self.env)
        deps = import_times("import boto3, requests, bench.baseline", self.env)
        self.notes.append("3. Costliest imports of the handler (self time per package, -X importtime): "
                          + _listing(by_package(handler)[:6]))
        extra = {module: micros for module, micros in handler.items() if module not in deps}
        costly = sorted(extra.items(), key=lambda item: -item[1])[:5]
        self.notes.append(f"3. Imported by the handler but not by the dependencies alone: {len(extra)} modules, "
                          f"{sum(extra.values()) / 1000:.0f} ms ({_listing((m, us / 1000) for m, us in costly)})")

    # 4
    def stampede(self) -> list[Row]:
        rows = []
        endpoint = self.stack.token_endpoint
        for size in STAMPEDE_SIZES:
            upstream, waits, answers, aws_calls, cpu = [], [], [], [], []
            for run in range(STAMPEDE_RUNS):
                calls_before = len(self.stack.moto.calls)
                app = f"stampede-{size}-{run}"
                self.stack.add_app(app, allowed_callers=[CALLER_ROLE])
                endpoint.delay = STAMPEDE_DELAY
                try:
                    results, went = self._stampede_once(app, size)
                finally:
                    endpoint.delay = 0.0
                upstream.append(sum(1 for seen in endpoint.received if seen.client_id == f"{app}-client"))
                waits.append(max(result["done_at"] for result in results) - went)
                aws_calls.append(len(self.stack.moto.calls) - calls_before)
                cpu.append(sum(result["cpu_seconds"] for result in results))
                answers.append((sum(result["status"] == 200 for result in results),
                                len({result["fingerprint"] for result in results})))
            ok = all(count == 1 for count in upstream) and all(
                served == size and tokens == 1 for served, tokens in answers)
            measured = (f"upstream requests {'/'.join(map(str, upstream))} (per run); slowest caller waited "
                        f"{statistics.median(waits):.2f} s (stub answers in {STAMPEDE_DELAY} s); "
                        f"{min(served for served, _ in answers)}/{size} served one token")
            self.notes.append(
                f"4. N={size}: {statistics.median(aws_calls):.0f} AWS calls to moto (which serves one at a time, in "
                f"the bench process), {statistics.median(cpu):.1f} CPU-seconds in the {size} vends on "
                f"{os.cpu_count()} CPUs: the wait beyond the stub's {STAMPEDE_DELAY} s is mostly queueing for this "
                f"machine's CPUs, which separate Lambda containers do not share.")
            rows.append(Row(f"4. Stampede: {size} cold processes miss one key", measured,
                            "1 upstream request for every N", _status(ok)))
        return rows

    def _stampede_once(self, app: str, size: int) -> tuple[list[dict[str, Any]], float]:
        with tempfile.TemporaryDirectory(prefix="bench-stampede-") as scratch:
            folder = Path(scratch)
            children = []
            for index in range(size):
                args = {"app": app, "scope": SCOPE, "ready_file": str(folder / f"ready-{index}")}
                errors = (folder / f"stderr-{index}").open("w")
                children.append((subprocess.Popen(
                    [sys.executable, "-m", "bench.worker", "stampede", str(folder / f"result-{index}"),
                     json.dumps(args)], env=self.env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=errors, text=True), errors))
            try:
                _wait_for(lambda: all((folder / f"ready-{index}").exists() for index in range(size)), 180,
                          "stampede processes never got ready")
                went = time.time()
                for child, _ in children:
                    assert child.stdin is not None
                    child.stdin.write("go\n")
                    child.stdin.flush()
                for child, _ in children:
                    child.wait(timeout=120)
            finally:
                for child, errors in children:
                    if child.poll() is None:
                        child.kill()
                    errors.close()
            failed = [index for index, (child, _) in enumerate(children) if child.returncode]
            if failed:
                raise RuntimeError("stampede worker failed:\n" + (folder / f"stderr-{failed[0]}").read_text()[-3000:])
            return [json.loads((folder / f"result-{index}").read_text()) for index in range(size)], went

    # 6
    def memory(self) -> list[Row]:
        marks = self.worker("memory", {"app": APP, "scopes": KEY_SCOPES, "checkpoints": list(MEMORY_CHECKPOINTS)})[
            "marks"]
        first, last = marks[0], marks[-1]
        growth = last["peak_rss_kb"] - first["peak_rss_kb"]
        measured = (f"peak RSS {last['peak_rss_kb'] / 1024:.1f} MiB after {last['requests']:,} vends vs "
                    f"{first['peak_rss_kb'] / 1024:.1f} MiB after {first['requests']:,} ({growth:+,} KiB; "
                    f"{len(KEY_SCOPES)} keys)")
        return [Row(f"6. Memory: {len(KEY_SCOPES)} keys, {last['requests']:,} warm vends", measured,
                    "no growth (≤ 1 MiB)", _status(growth <= MEMORY_MAX_GROWTH_KB))]


# 5 (needs no stack: reads what `make build` left in .aws-sam/build)
def sizes() -> list[Row]:
    artifacts = built_artifacts()
    if not artifacts:
        return [Row("5. Sizes after sam build", f"nothing in {BUILD.relative_to(ROOT)}: run `make build`",
                    "function < 100 KB, layer < 3 MB", "MISS")]
    rows = []
    for artifact in artifacts:
        limit = FUNCTION_MAX_BYTES if artifact.kind == "function" else (
            DEPENDENCY_LAYER_MAX_BYTES if artifact.logical_id == DEPENDENCY_LAYER else None)
        measured = f"{_size(artifact.zipped_bytes)} zipped ({_size(artifact.unzipped_bytes)} unzipped)"
        rows.append(Row(f"5. Size: {artifact.logical_id} ({artifact.kind})", measured,
                        f"< {_size(limit)} zipped" if limit else "(no target)",
                        _status(artifact.zipped_bytes < limit) if limit else "info"))
    return rows


def _status(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _size(count: float) -> str:
    return f"{count / 1e6:.2f} MB" if count >= 1e6 else f"{count / 1e3:.0f} KB"


def _listing(items: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{name} {value:.0f} ms" for name, value in items)


def _wait_for(condition: Callable[[], bool], seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.05)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}")


def render(rows: list[Row]) -> str:
    header = Row("Figure", "Measured", "Target", "Result")
    widths = [max(len(getattr(row, name)) for row in [header, *rows]) for name in Row.__dataclass_fields__]

    def line(row: Row) -> str:
        cells = [getattr(row, name).ljust(width) for name, width in zip(Row.__dataclass_fields__, widths, strict=True)]
        return "| " + " | ".join(cells) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (width + 2) for width in widths) + "|",
                      *(line(row) for row in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="1,2,3,4,5,6", help="comma-separated figure numbers")
    wanted = set(parser.parse_args(argv).only.split(","))
    started = time.monotonic()
    rows: list[Row] = []
    notes: list[str] = []
    with LocalStack() as stack:
        stack.add_app(APP, allowed_callers=[CALLER_ROLE], allowed_scopes=[*DEFAULT_SCOPES, *KEY_SCOPES])
        bench = Bench(stack)
        steps: list[tuple[str, Callable[[], list[Row]]]] = [
            ("1", bench.warm), ("2", bench.table_hit), ("3", bench.cold), ("4", bench.stampede),
            ("5", sizes), ("6", bench.memory)]
        for number, step in steps:
            if number in wanted:
                print(f"bench: figure {number}...", file=sys.stderr, flush=True)
                rows.extend(step())
        notes = bench.notes
    print(f"Machine: {machine()}; local stack on 127.0.0.1 (moto server, stub token endpoint); "
          f"ran in {time.monotonic() - started:.0f} s\n")
    print(render(rows))
    if notes:
        print()
        print("\n".join(f"- {note}" for note in notes))
    return 0  # a benchmark prints; MISS rows are findings, not failures
