"""The local Lambda runtime as `make invoke` uses it: the runtime client on 3.13 against devstack's Runtime API.

What a function's author sees when the function fails to start or raises, and `make invoke`
against the stack of a running `make serve`.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devstack import invoke, local_state
from devstack.lambda_container import Artifact, LambdaContainer
from devstack.runtime_api import FunctionError, InitError
from devstack.stack import LocalStack

from .conftest import EVENTS, Deployed

HANDLERS = '''
import os

def answer(event, context):
    return {"event": event, "request_id": context.aws_request_id, "arn": context.invoked_function_arn,
            "left_ms": context.get_remaining_time_in_millis(), "trace": os.environ.get("_X_AMZN_TRACE_ID", "")}

def crash(event, context):
    raise ValueError("no " + event["want"])
'''


def small_function(folder: Path, handler: str) -> Artifact:
    folder.mkdir(exist_ok=True)
    (folder / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    return Artifact(name="SmallFunction", task_root=folder, layers=(), handler=handler, memory_mb=128,
                    timeout_seconds=3)


def test_each_event_reaches_the_handler_with_lambdas_context(tmp_path: Path) -> None:
    with LambdaContainer(small_function(tmp_path / "task", "handlers.answer"), {}) as container:
        first = container.invoke({"n": 1})
        second = container.invoke({"n": 2})

    assert first.result()["event"] == {"n": 1} and second.result()["event"] == {"n": 2}
    assert first.result()["request_id"] == first.request_id != second.request_id
    assert first.result()["arn"].endswith(":function:SmallFunction")
    assert 0 <= first.result()["left_ms"] <= 3000  # the deadline of a 3 s Timeout
    assert first.result()["trace"].startswith("Root=1-")


def test_a_handler_that_raises_is_a_function_error_and_the_container_goes_on(tmp_path: Path) -> None:
    with LambdaContainer(small_function(tmp_path / "task", "handlers.crash"), {}) as container:
        failed = container.invoke({"want": "luck"})
        with pytest.raises(FunctionError) as raised:
            failed.result()
        again = container.invoke({"want": "more"})

    assert raised.value.error["errorType"] == "ValueError"
    assert raised.value.error["errorMessage"] == "no luck"
    assert any("no luck" in line for line in failed.log_lines)  # the runtime client logs it, as in CloudWatch
    with pytest.raises(FunctionError, match="no more"):
        again.result()


def test_a_handler_that_cannot_be_found_is_an_init_error(tmp_path: Path) -> None:
    container = LambdaContainer(small_function(tmp_path / "task", "handlers.missing"), {})
    with pytest.raises(InitError) as raised:
        container.start()
    container.stop()

    assert raised.value.error["errorType"] == "Runtime.HandlerNotFound"


def test_make_invoke_uses_the_stack_of_a_running_make_serve(
        deployed: Deployed, stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "local-stack.json"
    monkeypatch.setenv(local_state.FILE_VARIABLE, str(state))
    state.write_text(json.dumps({"moto_port": urlsplit(stack.moto.url).port,
                                 "token_port": urlsplit(stack.token_endpoint.url).port,
                                 "gateway_port": 0, "region": "us-east-1", "pid": os.getpid()}))

    status = invoke.main([str(EVENTS / "vend.json")])

    printed = capsys.readouterr()
    answer = json.loads(printed.out)
    assert status == 0 and answer["statusCode"] == 200
    assert stack.token_endpoint.request_count == 1  # that stack's token endpoint minted it
    assert "make serve's" in printed.err
    report = [line for line in printed.err.splitlines() if line.startswith("REPORT RequestId: ")]
    assert len(report) == 1 and "Init Duration: " in report[0] and "Max Memory Used: " in report[0]
    assert json.loads(answer["body"])["access_token"] not in printed.err  # logs never carry the token


def test_a_state_file_of_a_stopped_make_serve_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "local-stack.json"
    state.write_text(json.dumps({"moto_port": 1, "token_port": 2, "gateway_port": 3, "region": "us-east-1",
                                 "pid": 2**22 + 1}))  # above Linux's largest pid: no such process
    monkeypatch.setenv(local_state.FILE_VARIABLE, str(state))

    # What make invoke asks before it starts an embedded stack instead.
    with pytest.raises(local_state.NotRunning):
        local_state.read_running()
