"""Runs every benchmark figure against the embedded local stack and prints one table.

    python -m bench [--only 1,3]

Figures 1-3 measure what deploys: `sam build`'s output after a zip round trip, on the Lambda
runtime's CPython 3.13 with its own packages (.venv-lambda), beside a baseline function that
imports the same dependencies from the same layer and answers a constant (bench/baseline.py).
Cold starts and table hits run under the Runtime Interface Client against a local Runtime API
(one process per execution environment); the warm figure runs in one process (bench/worker.py).
Figures 4, 6 and 7 run the source tree in the dev venv, 5 reads .aws-sam/build. Timing figures are
medians over several runs, and every ratio compares two things measured in the same run.
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

from devstack.lambda_container import Artifact, ArtifactMissing, runtime_python
from devstack.stack import DEFAULT_SCOPES, LocalStack

from .artifact import Deployment
from .importtime import by_package, import_times
from .lambda_env import ACCOUNT, CALLER_ROLE, CALLER_SESSION, ROOT, bench_stack_env, function_env, vend_event
from .sizes import BUILD, built_artifacts

APP = "bench"
SCOPE = " ".join(DEFAULT_SCOPES)
KEY_SCOPES = [f"bench.s{number:03d}" for number in range(100)]  # one key per scope: 100 distinct keys

WARM_RUNS, WARM_REQUESTS = 5, 2000
TABLE_RUNS, TABLE_KEYS = 3, 30
COLD_RUNS = 7
STAMPEDE_SIZES, STAMPEDE_RUNS, STAMPEDE_DELAY = (8, 16, 32), 2, 0.5
MEMORY_CHECKPOINTS = (1_000, 10_000)
HOLDER_PROCESSES, HOLDER_RUNS = 8, 2

# Targets.
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
    def __init__(self, stack: LocalStack, deployment: Deployment | None, missing: str = "") -> None:
        self.stack = stack
        self.env = function_env(stack.env)  # figures 4 and 6: the source tree in the dev venv
        self.deployment = deployment  # figures 1-3: the built artifact on 3.13
        self.missing = missing
        self.notes: list[str] = []

    def worker(self, name: str, args: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
        """A bench.worker figure in the dev venv, from the source tree."""
        with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
            result = Path(scratch) / "result.json"
            done = subprocess.run([sys.executable, "-m", "bench.worker", name, str(result), json.dumps(args)],
                                  env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, timeout=timeout, check=False)
            if done.returncode:
                raise RuntimeError(f"bench worker {name} failed:\n{done.stderr[-3000:]}")
            return json.loads(result.read_text())  # type: ignore[no-any-return]

    def _unavailable(self, figure: str, target: str) -> list[Row]:
        return [Row(figure, f"not measured: {self.missing}", target, "MISS")]

    # 1
    def warm(self) -> list[Row]:
        figure, target = "1. Warm memory hit, handler time per request", f"≤ {WARM_MAX_RATIO:.2f}x baseline"
        if self.deployment is None:
            return self._unavailable(figure, target)
        result, _ = self.deployment.run_worker("warm", {"app": APP, "scope": SCOPE, "runs": WARM_RUNS,
                                                        "requests": WARM_REQUESTS})
        runs = result["runs"]

        def median_of(side: str, stat: str) -> float:
            return statistics.median(run[side][stat] for run in runs)

        ratio = statistics.median(run["vend"]["median"] / run["baseline"]["median"] for run in runs)
        p99_ratio = statistics.median(run["vend"]["p99"] / run["baseline"]["p99"] for run in runs)
        measured = (f"vend {median_of('vend', 'median'):.0f} µs (p99 {median_of('vend', 'p99'):.0f}); "
                    f"baseline {median_of('baseline', 'median'):.0f} µs (p99 {median_of('baseline', 'p99'):.0f}); "
                    f"ratio {ratio:.2f}x (p99 {p99_ratio:.2f}x)")
        self.notes.append("1. Where a warm vend's time goes (cProfile, own time by package, share of the profiled "
                          "time): " + _shares(result["profile"]))
        return [Row(figure, measured, target, _status(ratio <= WARM_MAX_RATIO))]

    # 2
    def table_hit(self) -> list[Row]:
        figure, target = "2. Table hit (new container, token in DynamoDB)", "1 GetItem + 1 KMS Decrypt, nothing else"
        if self.deployment is None:
            return self._unavailable(figure, target)
        function = self.deployment.function
        events = [vend_event(APP, scope) for scope in KEY_SCOPES[:TABLE_KEYS]]
        with self.deployment.container(function) as container:
            for event in events:  # every key in the table
                _ok(container.invoke(event).result())
        per_request: list[list[str]] = []
        times: list[float] = []
        first_vend_calls: list[str] = []
        for _ in range(TABLE_RUNS):
            with self.deployment.container(function) as container:  # a new container: nothing in memory
                self.stack.moto.calls.clear()
                _ok(container.invoke(events[0]).result())  # its first vend also reads the app secret
                first_vend_calls = list(self.stack.moto.calls)
                for event in events[1:]:
                    self.stack.moto.calls.clear()
                    answer = container.invoke(event)
                    _ok(answer.result())
                    per_request.append(sorted(self.stack.moto.calls))  # every HTTP request moto served
                    times.append(answer.duration_ms)
        counts = Counter(call for calls in per_request for call in calls)
        requests = len(per_request)
        exact = all(calls == TABLE_HIT_CALLS for calls in per_request)
        calls_text = " + ".join(f"{count / requests:g} {call}" for call, count in sorted(counts.items()))
        measured = (f"{calls_text} per request ({requests} requests, {sum(counts.values())} AWS requests); "
                    f"Duration median {statistics.median(times):.1f} ms (p99 {_percentile(times, 0.99):.1f}) "
                    "vs local moto")
        self.notes.append("2. A new container's very first vend also reads the app secret: "
                          + " + ".join(sorted(first_vend_calls)) + " (then cached SECRET_CACHE_SECONDS). Counted "
                          "as the HTTP requests moto served, so a retry would show.")
        return [Row(figure, measured, target, _status(exact))]

    # 3
    def cold(self) -> list[Row]:
        figure, target = f"3. Cold start on the artifact (median of {COLD_RUNS})", f"≤ {COLD_MAX_RATIO:.2f}x"
        if self.deployment is None:
            return self._unavailable(figure, target)
        deployed = self.deployment
        modes = {"with bytecode": (deployed.function, deployed.baseline),
                 "bytecode removed": (deployed.function_without_bytecode, deployed.baseline_without_bytecode)}
        event = vend_event(APP, SCOPE)
        for function, baseline in modes.values():  # the token into the table; every file into the OS cache
            self._cold_once(function, event)
            self._cold_once(baseline, event)
        measured: dict[str, dict[str, list[dict[str, float]]]] = {mode: {"vend": [], "baseline": []}
                                                                   for mode in modes}
        for run in range(COLD_RUNS):
            for mode, (function, baseline) in modes.items():
                pair = [("vend", function), ("baseline", baseline)]
                for side, artifact in pair[::-1] if run % 2 else pair:  # alternating order
                    measured[mode][side].append(self._cold_once(artifact, event))
        rows = []
        for mode, sides in measured.items():
            ratio = statistics.median(vend["total_ms"] / base["total_ms"]
                                      for vend, base in zip(sides["vend"], sides["baseline"], strict=True))
            vend, base = _medians(sides["vend"]), _medians(sides["baseline"])
            text = (f"{mode}: spawn to first answer {vend['total_ms']:.0f} ms (Init Duration {vend['init_ms']:.0f} "
                    f"+ answer {vend['first_ms']:.0f}) vs baseline {base['total_ms']:.0f} ms "
                    f"({base['init_ms']:.0f} + {base['first_ms']:.0f}): {ratio:.2f}x")
            shipped = mode == "with bytecode"
            rows.append(Row(figure if shipped else "3. Cold start, the artifact's bytecode removed", text,
                            target if shipped else "(for comparison)", _status(ratio <= COLD_MAX_RATIO)
                            if shipped else "info"))
        with_, without = _medians(measured["with bytecode"]["vend"]), _medians(measured["bytecode removed"]["vend"])
        base_with = _medians(measured["with bytecode"]["baseline"])
        base_without = _medians(measured["bytecode removed"]["baseline"])
        self.notes.append(
            f"3. The build's bytecode takes {without['total_ms'] - with_['total_ms']:.0f} ms off the function's cold "
            f"start ({without['total_ms']:.0f} → {with_['total_ms']:.0f} ms) and "
            f"{base_without['total_ms'] - base_with['total_ms']:.0f} ms off the baseline's. Max Memory Used after the "
            f"first answer: {with_['max_memory_mb']:.0f} MB (baseline {base_with['max_memory_mb']:.0f} MB).")
        self._import_notes()
        first, _ = deployed.run_worker("first_answer", {"app": APP, "scope": SCOPE})
        self.notes.append(f"3. The first answer, a table hit ({first['ms']:.0f} ms in one profiled process), by own "
                          "time per package: " + _shares(first["profile"]))
        return rows

    def _cold_once(self, artifact: Artifact, event: dict[str, Any]) -> dict[str, float]:
        assert self.deployment is not None
        with self.deployment.container(artifact) as container:
            answer = container.invoke(event)
            _ok(answer.result())
            assert container.init_duration_ms is not None and answer.invocation.finished is not None
            return {"init_ms": container.init_duration_ms, "first_ms": answer.duration_ms,
                    "total_ms": (answer.invocation.finished - container.spawned_at) * 1000,
                    "max_memory_mb": container.max_memory_mb}

    def _import_notes(self) -> None:
        assert self.deployment is not None
        deployed = self.deployment
        handler = import_times(deployed.function, "token_vending.app", deployed.environment(deployed.function))
        baseline = import_times(deployed.baseline, "baseline", deployed.environment(deployed.baseline))
        self.notes.append(f"3. Importing the handler on 3.13 from the artifact (-X importtime, self time per package, "
                          f"{sum(handler.values()) / 1000:.0f} ms in all): " + _listing(by_package(handler)[:6]))
        extra = {module: micros for module, micros in handler.items() if module not in baseline}
        costly = sorted(extra.items(), key=lambda item: -item[1])[:5]
        self.notes.append(f"3. Imported by the handler but not by the baseline: {len(extra)} modules, "
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
                    results, went = self._stampede_once(app, [CALLER_SESSION] * size)
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

    def _stampede_once(self, app: str, callers: list[str]) -> tuple[list[dict[str, Any]], float]:
        """A cold process per caller, released together against the stub: their answers, and when they went."""
        size = len(callers)
        with tempfile.TemporaryDirectory(prefix="bench-stampede-") as scratch:
            folder = Path(scratch)
            children = []
            for index, caller in enumerate(callers):
                args = {"app": app, "scope": SCOPE, "caller": caller, "ready_file": str(folder / f"ready-{index}")}
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

    # 7
    def holders(self) -> list[Row]:
        """Single flight is per holder: cold processes of as many roles as processes each fetch their own token;
        as many sessions of one role fetch one."""
        size = HOLDER_PROCESSES
        cases = [(f"{size} holders", [f"arn:aws:sts::{ACCOUNT}:assumed-role/bench-role-{n}/task" for n in range(size)],
                  size),
                 ("1 holder", [f"arn:aws:sts::{ACCOUNT}:assumed-role/bench-role-0/task-{n}" for n in range(size)], 1)]
        rows, calls_per_case = [], []
        for label, callers, expected in cases:
            upstream, tokens, served, waits, aws_calls = [], [], [], [], []
            for run in range(HOLDER_RUNS):
                app = f"holders-{expected}-{run}"
                self.stack.add_app(app, allowed_callers=[ACCOUNT])  # the account: every role of it, each its own
                calls_before = len(self.stack.moto.calls)
                self.stack.token_endpoint.delay = STAMPEDE_DELAY
                try:
                    results, went = self._stampede_once(app, callers)
                finally:
                    self.stack.token_endpoint.delay = 0.0
                upstream.append(sum(1 for seen in self.stack.token_endpoint.received
                                    if seen.client_id == f"{app}-client"))
                tokens.append(len({result["fingerprint"] for result in results if result["status"] == 200}))
                served.append(sum(result["status"] == 200 for result in results))
                waits.append(max(result["done_at"] for result in results) - went)
                aws_calls.append(len(self.stack.moto.calls) - calls_before)
            ok = all(count == expected for count in upstream + tokens) and all(count == size for count in served)
            measured = (f"upstream requests {'/'.join(map(str, upstream))}, distinct tokens "
                        f"{'/'.join(map(str, tokens))} (per run); {min(served)} of {size} served; slowest caller "
                        f"waited {statistics.median(waits):.2f} s (stub answers in {STAMPEDE_DELAY} s)")
            rows.append(Row(f"7. Holders: {size} cold processes, {label}, one scope set", measured,
                            f"exactly {expected} upstream request{'s' * (expected != 1)}", _status(ok)))
            calls_per_case.append(f"{statistics.median(aws_calls):.0f} with {label}")
        self.notes.append(f"7. AWS calls to moto for the {size} vends: {' and '.join(calls_per_case)}. Each holder's "
                          "token is a mint of its own (lease, mint counters, KMS Encrypt, table item), so tokens at "
                          "Sangoma and table items grow as holders times scope sets.")
        return rows

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


def _ok(answer: dict[str, Any]) -> None:
    if answer.get("statusCode") != 200:
        raise RuntimeError(f"vend answered {answer.get('statusCode')}: {answer.get('body')}")


def _medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}


def _shares(profile: dict[str, float], top: int = 6) -> str:
    """The costliest entries of a by-package profile, as shares of the whole."""
    total = sum(profile.values()) or 1.0
    costly = sorted(profile.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{name} {value / total:.0%}" for name, value in costly)


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
    try:
        lambda_python = subprocess.run([str(runtime_python()), "-c", "import platform; print(platform.python_version())"
                                        ], capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    except (ArtifactMissing, OSError, subprocess.SubprocessError):
        lambda_python = "none"
    return (f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.machine()}, "
            f"Python {lambda_python} (the artifact: 1-3) and {platform.python_version()} (the dev venv: 4, 6, 7)")


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
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="comma-separated figure numbers")
    wanted = set(parser.parse_args(argv).only.split(","))
    started = time.monotonic()
    rows: list[Row] = []
    notes: list[str] = []
    with LocalStack() as stack, tempfile.TemporaryDirectory(prefix="bench-artifact-") as scratch:
        stack.add_app(APP, allowed_callers=[CALLER_ROLE], allowed_scopes=[*DEFAULT_SCOPES, *KEY_SCOPES])
        deployment, missing = None, ""
        if wanted & {"1", "2", "3"}:
            try:
                deployment = Deployment.make(Path(scratch), bench_stack_env(stack.env))
            except ArtifactMissing as error:
                missing = str(error)
        bench = Bench(stack, deployment, missing)
        steps: list[tuple[str, Callable[[], list[Row]]]] = [
            ("1", bench.warm), ("2", bench.table_hit), ("3", bench.cold), ("4", bench.stampede),
            ("5", sizes), ("6", bench.memory), ("7", bench.holders)]
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
