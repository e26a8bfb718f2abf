"""The commands in README.md and docs/*.md are the ones that work.

Every shell block in them says whether it runs offline (`<!-- readme: runs offline -->`) or needs an AWS
account or Docker; every command of an offline block is one a test runs (this module, test_serve.py,
test_operator_readme.py, tests/artifact/test_readme_invoke.py, or `make test` itself), and their Python
examples run against the local gateway."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.gateway import LocalGateway, Principal
from tests.documents import ROOT, Block, blocks

from .conftest import CALLER_ROLE, CALLER_SESSION, SCOPES, Lambda
from .operator_commands import AWS_FLOW, CALLER_BUDGET_FLOW, LOCAL_FLOW, MODE_SWITCH_FLOW, shell_env
from .test_serve import Served

MARKERS = {"runs offline", "needs AWS", "needs Docker"}
# What the documents show that tests run beside the operator flows: the quick start (`make test` is what CI
# runs, `make check` its first stage), `make serve`'s block (its commands are compared with what make serve
# prints, which test_serve.py runs), and `make invoke` (tests/artifact/test_readme_invoke.py runs each line shown);
# the rehearsals' flows run in test_serve_rehearsals.py.
QUICK_START = ["make", "make demo", "make check", "make test"]
SERVE = "make serve"
INVOKE = ["make invoke EVENT=events/vend.json", "make invoke EVENT=events/scheduled.json",
          "make invoke EVENT=events/vend-no-identity.json"]


def commands(body: str) -> list[str]:
    """The block's commands: comments and blank lines dropped, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", body)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [" ".join(line.split()) for line in lines if line and not line.startswith("#")]


def test_every_shell_block_says_whether_it_runs_offline() -> None:
    shell = blocks("sh")
    assert shell
    unmarked = [f"{block.document}: {block.body.splitlines()[0]}" for block in shell if block.marker not in MARKERS]
    assert unmarked == []


def test_every_offline_command_is_one_a_test_runs() -> None:
    tested = {" ".join(command.split()) for command in [*QUICK_START, SERVE, *INVOKE, *LOCAL_FLOW, *AWS_FLOW,
                                                        *MODE_SWITCH_FLOW, *CALLER_BUDGET_FLOW]}
    offline = [(block.document, command) for block in blocks("sh") if block.marker == "runs offline"
               for command in commands(block.body)]
    assert offline
    untested = [f"{document}: {command}" for document, command in offline
                if command not in tested and not _printed_by_make_serve(command)]
    assert untested == []


def _printed_by_make_serve(command: str) -> bool:
    return command.startswith(("curl --aws-sigv4", ".venv/bin/awscurl", "AWS_ACCESS_KEY_ID=AKIALOCALDEMO"))


def test_the_serve_block_shows_what_make_serve_prints() -> None:
    serve_blocks = [block for block in blocks("sh") if block.marker == "runs offline" and block.body.startswith(SERVE)]
    assert len(serve_blocks) == 1, [block.document for block in serve_blocks]  # shown once, wherever it is
    [serve_block] = serve_blocks
    shown = commands(serve_block.body)[1:]
    served = Served()
    try:
        printed = [command.replace(served.gateway_url, "http://127.0.0.1:8710") for command in served.commands()]
    finally:
        served.stop()
    assert shown == printed[:len(shown)], serve_block.document  # test_serve.py runs each of them as printed


def run_make(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", *arguments], cwd=ROOT, env=shell_env(), capture_output=True, text=True,
                          timeout=600, check=False)


def test_make_alone_prints_every_target_with_a_description() -> None:
    result = run_make()

    assert result.returncode == 0, result.stderr
    listed = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    assert set(listed) == targets  # every target, and nothing is built on the way
    assert all(description.strip() for description in listed.values())
    for wanted in ("demo", "test", "lint", "validate", "scan", "unit", "integration", "serve", "build", "bench",
                   "tokens", "clean", "apps", "smoke", "invoke", "help"):
        assert wanted in listed


def test_make_demo_vends_a_token() -> None:
    result = run_make("demo")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP 200" in result.stdout
    assert "same token: True" in result.stdout


# -- the Python examples ------------------------------------------------------------------------------------

KEY, SECRET = "AKIAREADMEEXAMPLE001", "readme-example-secret"


@pytest.fixture
def gateway(lam: Lambda, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalGateway]:
    """The local gateway as `vending_url`, the caller's credentials in the environment, app `billing`."""
    lam.stack.add_app("billing", allowed_callers=[CALLER_ROLE])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with LocalGateway({KEY: Principal(KEY, SECRET, CALLER_SESSION)}) as gateway:
        yield gateway


def run_example(example: Block, vending_url: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"vending_url": vending_url}
    exec(compile(example.body, example.document, "exec"), namespace)  # noqa: S102 - the documentation's own example
    return namespace


def test_the_botocore_example_gets_a_token(gateway: LocalGateway) -> None:
    [example] = [block for block in blocks("python") if "SigV4Auth" in block.body]

    answer = run_example(example, gateway.url)["answer"]

    assert answer["scope"] == SCOPES
    assert set(answer) == {"access_token", "token_type", "scope", "expires_in", "expires_at", "fingerprint"}


def test_the_client_example_gets_reports_and_is_refused_as_shown(gateway: LocalGateway,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    [example] = [block for block in blocks("python") if "TokenClient" in block.body and "TokenAuth" not in block.body]

    namespace = run_example(example, gateway.url)

    assert namespace["token"].scope == SCOPES
    printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("{")]  # not the logs
    assert printed == ["invalid_scope scope not allowed for this application: cx.admin 403"]
    methods = [request.split(" ")[0] for request, _ in gateway.requests]
    assert methods == ["GET", "DELETE", "GET"]


def test_the_json_examples_are_json() -> None:
    examples = blocks("json")
    assert examples
    for example in examples:
        try:
            json.loads(example.body)
        except json.JSONDecodeError as error:
            pytest.fail(f"{example.document}: {error}: {example.body[:80]}")
