"""`make invoke EVENT=events/vend.json`: run the built function once, as Lambda runs it, and print what
`sam local invoke` prints: the function's log lines, a REPORT line, and its answer.

    python -m devstack.invoke EVENT_FILE [--function TokenVendingFunction]

The function is `sam build`'s output (.aws-sam/build), zipped and unzipped as a deploy does, run on
CPython 3.13 by the Runtime Interface Client (awslambdaric, what Lambda's Python runtime runs) with
only the runtime's own packages beside it (.venv-lambda), against a local Runtime API. No Docker.

AWS and the token endpoint: a running `make serve`'s stack when there is one (its app `demo` allows
the caller in events/*.json), else an embedded one set up as `make demo` sets it up, for this one call.
Log lines and the REPORT line go to stderr, the answer to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from . import local_state
from .demo import DEMO_CALLER
from .lambda_container import (
    FUNCTION,
    ArtifactMissing,
    LambdaContainer,
    built_function,
    function_environment,
    unpack,
)
from .runtime_api import FunctionError, InitError
from .stack import LocalStack, function_env


def report_line(request_id: str, duration_ms: float, memory_mb: int, max_memory_mb: float,
                init_duration_ms: float) -> str:
    return (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {memory_mb} MB\t"
            f"Max Memory Used: {math.ceil(max_memory_mb)} MB\tInit Duration: {init_duration_ms:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.invoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("event", type=Path, help="the event, as JSON (events/*.json)")
    parser.add_argument("--function", default=FUNCTION, help="the function's logical id in template.yaml")
    args = parser.parse_args(argv)
    event = json.loads(args.event.read_text())

    with ExitStack() as cleanup:
        try:
            state = local_state.read_running()
        except local_state.NotRunning:
            state = None
        if state:
            stack_env = function_env(state.moto_url, state.token_url, state.region)
            print(f"local stack: make serve's (pid {state.pid}), moto on port {state.moto_port}", file=sys.stderr)
        else:
            stack = cleanup.enter_context(LocalStack())
            stack.add_app("demo", allowed_callers=[DEMO_CALLER])
            stack_env = stack.env
            print(f"local stack: embedded for this call, moto {stack.moto.url}, app secret "
                  "sangoma/token-vending/demo", file=sys.stderr)
        scratch = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="invoke-")))
        try:
            artifact = unpack(built_function(args.function), scratch)
        except ArtifactMissing as missing:
            print(f"error: {missing}", file=sys.stderr)
            return 2
        container = LambdaContainer(artifact, function_environment(stack_env, artifact))
        cleanup.callback(container.stop)
        try:
            container.start()
            answer = container.invoke(event)
        except InitError as failed:
            print("\n".join(container.log_lines()), file=sys.stderr)
            print(f"INIT_REPORT Init Duration: failed: {failed}", file=sys.stderr)
            print(json.dumps(failed.error, indent=2))
            return 1
        for line in [*container.init_log_lines, f"START RequestId: {answer.request_id} Version: $LATEST",
                     *answer.log_lines]:
            print(line, file=sys.stderr)
        print(f"END RequestId: {answer.request_id}", file=sys.stderr)
        assert container.init_duration_ms is not None
        print(report_line(answer.request_id, answer.duration_ms, artifact.memory_mb, container.max_memory_mb,
                          container.init_duration_ms), file=sys.stderr)
        try:
            print(json.dumps(answer.result(), indent=2))
        except FunctionError as failed:
            print(json.dumps(failed.error, indent=2))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
