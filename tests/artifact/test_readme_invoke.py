"""The `make invoke` lines README.md or docs/*.md show, as make runs them once the artifact is built: each prints
the function's log lines and a REPORT line on stderr and the function's answer on stdout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from devstack.lambda_container import ROOT
from tests.documents import documents

from .conftest import Artifact

INVOKE = re.compile(r"^make invoke EVENT=(\S+)$", re.M)
SHOWN = [event for text in documents().values() for event in INVOKE.findall(text)]
EXPECTED = {"events/vend.json": 200, "events/vend-no-identity.json": 403}


def test_the_documentation_shows_make_invoke() -> None:
    assert "events/vend.json" in SHOWN and "events/scheduled.json" in SHOWN


@pytest.mark.parametrize("event", SHOWN)
def test_make_invoke_as_the_documentation_shows_it(built: Artifact, event: str) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    # What `make invoke EVENT=...` runs once `build` and .venv-lambda are made (make test makes both).
    done = subprocess.run([sys.executable, "-m", "devstack.invoke", event], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    report = [line for line in done.stderr.splitlines() if line.startswith("REPORT RequestId: ")]
    assert len(report) == 1
    assert all(f"{field}: " in report[0] for field in ("Duration", "Max Memory Used", "Init Duration"))
    answer = json.loads(done.stdout)
    if event in EXPECTED:
        assert answer["statusCode"] == EXPECTED[event]
        body = json.loads(answer["body"])
        if answer["statusCode"] == 200:
            assert body["access_token"] not in done.stderr  # the log lines never carry the token
    else:  # a scheduled run answers its counts, with the reasons and the entries no longer served
        assert set(answer) == {"refreshed", "minted", "skipped", "failed", "reasons", "stale"}
        assert answer["failed"] == 0
    assert any(line.startswith("{") for line in done.stderr.splitlines())  # the function's own log lines


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """make as a developer runs it at the repository root (not as a make inside `make test`)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("AWS_") and name not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    return subprocess.run(["make", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_make_invoke_prints_only_the_functions_answer_on_stdout(built: Artifact) -> None:
    done = make("invoke", "EVENT=events/vend.json")

    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)  # what `make invoke ... | jq` reads: nothing else on stdout
    assert answer["statusCode"] == 200
    assert sum(line.startswith("REPORT RequestId: ") for line in done.stderr.splitlines()) == 1
    assert "sam build" not in done.stderr  # built by make test already: nothing changed since


def test_make_invoke_builds_only_when_a_source_changed(built: Artifact) -> None:
    # -n: what make would run, without running it; -W: as if that file had just been edited.
    unchanged = make("-n", "invoke")
    edited = make("-n", "-W", "functions/token_vending/app.py", "invoke")
    layer_edited = make("-n", "-W", "layers/dependencies/requirements.txt", "invoke")

    assert unchanged.returncode == 0 and "sam build" not in unchanged.stdout, unchanged.stdout
    assert "sam build" in edited.stdout and "sam build" in layer_edited.stdout
