"""`make serve` as a user runs it: busy ports, .local-stack.json, every command it prints, and a second app
onboarded with the documentation's own commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from requests_aws4auth import AWS4Auth

from devstack import local_state
from devstack.gateway import load_credentials

from .operator_commands import DEMO_KEYS, LOCAL_FLOW, printed_commands, render, shell_env

ROOT = Path(__file__).resolve().parents[2]
SCOPES = "cx.agent-calls cx.queue-calls"
PORT_OPTIONS = {"GATEWAY_PORT": "--gateway-port", "MOTO_PORT": "--moto-port", "TOKEN_STUB_PORT": "--token-port"}


def serve_command(**ports: int) -> list[str]:
    command = [sys.executable, "-m", "devstack.serve"]
    for variable, option in PORT_OPTIONS.items():
        command += [option, str(ports.get(variable, 0))]
    return command


def clean_env(**extra: str) -> dict[str, str]:
    return shell_env(**extra)


class Served:
    """A running `make serve` (python -m devstack.serve on free ports, or the `command` given) and what it printed."""

    def __init__(self, command: list[str] | None = None) -> None:
        # A session of its own: a signal reaches make and the server under it alike.
        self.process = subprocess.Popen(command or serve_command(), cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert self.process.stdout is not None
        # A safety net, not a timed assertion: a make serve that never finishes starting is ended, and the
        # assertion below then shows what it printed.
        watchdog = threading.Timer(300, self.process.kill)
        watchdog.start()
        lines = []
        try:
            for line in self.process.stdout:  # until the instructions end (or the process does)
                lines.append(line.rstrip("\n"))
                if line.startswith("Ctrl-C stops everything."):
                    break
        finally:
            watchdog.cancel()
        self.printed = lines
        assert lines and lines[-1].startswith("Ctrl-C"), "\n".join(lines)
        self.gateway_url = re.search(r"Local vending API on (\S+)", "\n".join(lines)).group(1)  # type: ignore[union-attr]

    def commands(self) -> list[str]:
        """Each command it prints (indented, continuation lines joined)."""
        commands: list[str] = []
        continued = False
        for line in self.printed:
            text = line.strip()
            first = text.split(" ")[0]
            if continued:
                commands[-1] += " " + text.rstrip("\\").strip()
            elif line.startswith("  ") and (first in {"curl", ".venv/bin/awscurl", "make"}
                                            or first.startswith("AWS_ACCESS_KEY_ID=")):
                commands.append(text.rstrip("\\").strip())
            else:
                continue
            continued = text.endswith("\\")
        return commands

    def stop(self, signum: int = signal.SIGTERM) -> int:
        os.killpg(self.process.pid, signum)
        try:
            code = self.process.wait(timeout=60)
            # Under make, the server is make's child: done once every process of the session is.
            for _ in range(600):
                try:
                    os.killpg(self.process.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            return code
        finally:
            for stream in (self.process.stdout, self.process.stderr):
                if stream:
                    stream.close()


@pytest.fixture
def served() -> Iterator[Served]:
    server = Served()
    yield server
    if server.process.poll() is None:
        server.stop()


def run(command: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """A command as a user pastes it into a shell at the repository root."""
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=clean_env(**extra_env), capture_output=True,
                          text=True, timeout=120, check=False)


# -- busy ports -------------------------------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("variable", list(PORT_OPTIONS))
def test_a_busy_port_ends_make_serve_at_once_with_one_line_naming_it(variable: str, taken_port: int) -> None:
    # Before, a busy gateway or stub port was a traceback and a busy moto port a wait without end.
    result = subprocess.run(serve_command(**{variable: taken_port}), cwd=ROOT, env=clean_env(), capture_output=True,
                            text=True, timeout=60, check=False)

    assert result.returncode == 1
    said = re.fullmatch(rf"make serve: port {taken_port} \({variable}\) is in use: choose another, e.g. "
                        rf"make serve {variable}=(\d+)\n", result.stderr)
    assert said, result.stderr
    # The port it suggests is one to paste: a number, free when it was said, not the busy one.
    assert int(said[1]) not in (0, taken_port)
    assert result.stdout == ""
    assert not local_state.state_file().exists()


def test_the_same_port_twice_is_refused_too() -> None:
    result = subprocess.run(serve_command(GATEWAY_PORT=8799, MOTO_PORT=8799), cwd=ROOT, env=clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 1
    assert "MOTO_PORT and GATEWAY_PORT are both 8799" in result.stderr


def test_make_serve_with_a_busy_port_through_make(taken_port: int) -> None:
    result = run(f"make serve MOTO_PORT={taken_port}")

    assert result.returncode != 0
    assert f"make serve: port {taken_port} (MOTO_PORT) is in use" in result.stderr
    assert "Traceback" not in result.stderr


# -- .local-stack.json ------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_local_stack_file_names_the_ports_while_serving_and_goes_on_exit(signum: int) -> None:
    server = Served()
    try:
        state = json.loads(local_state.state_file().read_text())
        assert state["pid"] == server.process.pid and state["region"] == "us-east-1"
        assert f"http://127.0.0.1:{state['gateway_port']}" == server.gateway_url
        assert f"moto (Secrets Manager, DynamoDB, KMS): http://127.0.0.1:{state['moto_port']}" in "\n".join(
            server.printed)
        assert f"http://127.0.0.1:{state['token_port']}/oauth/token" in "\n".join(server.printed)
    finally:
        code = server.stop(signum)

    assert code == 0
    assert not local_state.state_file().exists()


def test_a_second_make_serve_in_the_checkout_refuses_naming_the_first_and_leaves_its_state(served: Served) -> None:
    state_before = local_state.state_file().read_text()
    first = json.loads(state_before)

    second = subprocess.run(serve_command(), cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120,
                            check=False)

    assert second.returncode == 1
    assert second.stdout == ""
    assert second.stderr == (
        f"make serve: already running in this checkout (pid {served.process.pid}; gateway {first['gateway_port']}, "
        f"moto {first['moto_port']}, token stub {first['token_port']}): use it, or stop it first (Ctrl-C in its "
        "terminal)\n")
    assert local_state.state_file().read_text() == state_before  # the first one's state, untouched
    listed = run("make tokens LOCAL=1")  # and what reads it still finds the first one
    assert listed.returncode == 0, listed.stderr
    # Once the first has stopped, make serve starts again.
    assert served.stop() == 0
    again = Served()
    assert json.loads(local_state.state_file().read_text())["pid"] == again.process.pid
    assert again.stop() == 0
    assert not local_state.state_file().exists()


def test_make_tokens_local_says_in_one_line_when_make_serve_is_not_running(tmp_path: Path) -> None:
    assert not local_state.state_file().exists()
    missing = run("make tokens LOCAL=1")

    left_over = tmp_path / "left-over.json"  # a make serve that was killed: its process is gone
    left_over.write_text(json.dumps({"moto_port": 1, "token_port": 2, "gateway_port": 3, "region": "us-east-1",
                                     "pid": _a_finished_process()}))
    stale = run("make tokens LOCAL=1", SANGOMA_LOCAL_STACK_FILE=str(left_over))

    for result in (missing, stale):
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
        assert len(errors) == 1, result.stderr
        assert errors[0].startswith("error: make serve is not running (")
    assert "which has exited" in stale.stderr


def _a_finished_process() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    return int(finished.stdout)


def test_make_tokens_without_a_region_says_so_in_one_line() -> None:
    result = run(".venv/bin/python -m tools.list_tokens --table sangoma-token-vending-table")

    assert result.returncode == 1
    assert result.stderr == ("error: no AWS region: pass --region (REGION=... with make), or set AWS_REGION or "
                             "AWS_DEFAULT_REGION\n")


# -- make serve's moto: this machine only -----------------------------------------------------------


def test_make_serves_moto_answers_no_other_host_and_no_other_origin(served: Served) -> None:
    port = json.loads(local_state.state_file().read_text())["moto_port"]
    moto = f"http://127.0.0.1:{port}/"
    # moto checks no signature; the credential scope names the service
    get_secret = {"X-Amz-Target": "secretsmanager.GetSecretValue", "Content-Type": "application/x-amz-json-1.1",
                  "Authorization": "AWS4-HMAC-SHA256 Credential=anything/20260101/us-east-1/secretsmanager/"
                                   "aws4_request, SignedHeaders=host, Signature=0"}
    body = json.dumps({"SecretId": "sangoma/token-vending/demo"})

    # A web page's preflight: no CORS header, so the browser lets the page read nothing.
    preflight = urllib3.request("OPTIONS", moto, headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-amz-target"}, retries=False, timeout=30)
    # DNS rebinding: the page's own name, now resolving to 127.0.0.1, arrives as the Host.
    rebound = urllib3.request("POST", moto, headers={**get_secret, "Host": f"rebind.evil.example:{port}"}, body=body,
                              retries=False, timeout=30)
    # What the refusal keeps from the page: this machine's own clients get the secret (and no CORS header either).
    local = urllib3.request("POST", moto, headers={**get_secret, "Origin": "http://evil.example"}, body=body,
                            retries=False, timeout=30)

    assert [name for name in preflight.headers if name.lower().startswith("access-control-")] == []
    assert rebound.status == 403
    assert b"client_secret" not in rebound.data
    assert local.status == 200 and b"client_secret" in local.data
    assert [name for name in local.headers if name.lower().startswith("access-control-")] == []


# -- signers of others, through make serve's gateway ------------------------------------------------

DEMO_KEY, DEMO_SECRET = (pair.split("=")[1] for pair in DEMO_KEYS.split())
OUTSIDER_KEYS = ("AWS_ACCESS_KEY_ID=AKIALOCALOUTSIDER001 "
                 f"AWS_SECRET_ACCESS_KEY={load_credentials()['AKIALOCALOUTSIDER001'].secret_access_key}")


def vend_with_requests_params(gateway_url: str) -> tuple[str, int, dict[str, str]]:
    """requests builds the query from params= (form encoding: a space is `+`); requests-aws4auth signs it."""
    answer = requests.get(f"{gateway_url}/apps/demo/token", params={"scope": SCOPES}, timeout=60,
                          auth=AWS4Auth(DEMO_KEY, DEMO_SECRET, "us-east-1", "execute-api"))
    return str(answer.url), answer.status_code, answer.json()


def vend_with_botocore_params(gateway_url: str) -> tuple[str, int, dict[str, str]]:
    """botocore's own request with params=: it sends them form-encoded and signs them canonically (%20)."""
    request = AWSRequest(method="GET", url=f"{gateway_url}/apps/demo/token", params={"scope": SCOPES})
    SigV4Auth(Credentials(DEMO_KEY, DEMO_SECRET), "execute-api", "us-east-1").add_auth(request)
    prepared = request.prepare()
    answer = urllib3.request("GET", prepared.url, headers=dict(prepared.headers.items()), retries=False, timeout=60)
    return prepared.url, answer.status, answer.json()


@pytest.mark.parametrize("vend", [vend_with_requests_params, vend_with_botocore_params])
def test_a_query_with_plus_for_space_vends_through_make_serve(served: Served, vend: Any) -> None:
    # API Gateway reads `+` in the query as a space, for the signature and for the function alike.
    url, status, body = vend(served.gateway_url)

    assert "scope=cx.agent-calls+cx.queue-calls" in url  # what was sent: form encoding
    assert status == 200, body
    assert body["scope"] == SCOPES  # two scopes reached the function, not one "cx.agent-calls+cx.queue-calls"


# -- what make serve prints -------------------------------------------------------------------------

CURL_SIGV4 = shutil.which("curl") is not None and "--aws-sigv4" in subprocess.run(
    ["curl", "--help", "all"], capture_output=True, text=True, check=False).stdout


def test_every_command_make_serve_prints_works_as_printed(served: Served) -> None:
    commands = served.commands()
    kinds = [command.split(" ")[0] if not command.startswith("AWS_") else command.split(" ")[2]
             for command in commands]
    assert kinds == ["curl", ".venv/bin/awscurl", ".venv/bin/python", "make", "make", "make"], commands
    curl, awscurl, client, put_app, smoke, tokens = commands
    if not CURL_SIGV4:
        pytest.skip("curl with --aws-sigv4 (7.75+) is not installed")

    for command in (curl, awscurl, client):
        result = run(command)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        assert json.loads(result.stdout)["scope"] == SCOPES, command

    # The onboarding lines: a second app, stored in the local stack, vends through the same gateway.
    assert put_app == 'make apps ARGS="put billing examples/app-secret.json" LOCAL=1'
    assert run(put_app).returncode == 0
    smoked = run(smoke)
    assert smoked.returncode == 0, smoked.stdout + smoked.stderr
    assert "OK: a bearer token for billing, scope 'cx.agent-calls'" in smoked.stdout
    listed = run(tokens)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("EXPIRES_AT"), listed.stdout
    assert sorted(line.split()[3:5] for line in listed.stdout.splitlines()[1:]) == [
        ["billing", "arn:aws:iam::111122223333:user/local-demo-caller"],
        ["demo", "arn:aws:iam::111122223333:user/local-demo-caller"]]


def test_a_second_app_onboarded_locally_vends_with_the_readmes_commands(served: Served) -> None:
    """docs/operations.md's "Trying your own app locally", command by command, against a running make serve."""
    results = {}
    for command in LOCAL_FLOW:
        result = run(render(command, served.gateway_url))
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        results[command] = result.stdout

    validate, put, listed, show, check, smoke, client, tokens, remove = LOCAL_FLOW
    assert results[validate] == "examples/app-secret.json: valid (2 scopes, 2 callers)\n"
    assert results[put].startswith("created sangoma/token-vending/billing (version ")
    assert [line.split()[0] for line in results[listed].splitlines()] == ["APP", "billing", "demo"]
    assert "allowed_callers:\n  arn:aws:iam::111122223333:role/billing-service" in results[show]
    assert "client-secret" not in results[show] and "billing-client-id" not in results[show]
    assert results[check].startswith("allowed: arn:aws:iam::111122223333:user/local-demo-caller may have billing's")
    assert "OK: a bearer token for billing" in results[smoke]
    answer = json.loads(results[client])
    assert answer["scope"] == "cx.agent-calls"
    rows = [line.split() for line in results[tokens].splitlines()[1:]]
    # The demo key's IAM user holds the token: the app gives each caller its own (no "tokens" field).
    assert [row[3:7] for row in rows] == [["billing", "arn:aws:iam::111122223333:user/local-demo-caller",
                                           "cx.agent-calls", answer["fingerprint"]]]
    assert f"credential id: {rows[0][7]}\n" in results[show]  # the id the function stored the token under
    assert results[remove].startswith("scheduled the deletion of sangoma/token-vending/billing for ")
    assert DEMO_KEYS.split()[0] in smoke


def test_every_command_the_tools_print_in_local_mode_works_pasted(served: Served) -> None:
    """What `make apps ... LOCAL=1` and `make smoke` against make serve's gateway tell the operator to run next
    carries LOCAL=1, and works when pasted."""
    put = run('make apps ARGS="put billing examples/app-secret.json" LOCAL=1')
    removed = run('make apps ARGS="remove billing" LOCAL=1')
    shown = run('make apps ARGS="show billing" LOCAL=1')
    refused = run(f"{DEMO_KEYS} make smoke URL={served.gateway_url} APP=nobody SCOPE=cx.agent-calls")
    denied = run(f"{OUTSIDER_KEYS} make smoke URL={served.gateway_url} APP=demo SCOPE=cx.agent-calls")
    unsigned = run(f"make smoke URL={served.gateway_url} APP=demo SCOPE=cx.agent-calls")
    printed = {name: printed_commands(result.stdout + result.stderr)
               for name, result in (("put", put), ("remove", removed), ("show", shown), ("smoke", refused),
                                    ("denied", denied), ("unsigned", unsigned))}

    # The smoke test of the app just stored carries the local keys and the app's scopes, quoted.
    assert printed["put"] == [f"{DEMO_KEYS} make smoke URL={served.gateway_url} APP=billing "
                              "SCOPE='cx.agent-calls cx.queue-calls'"]
    # A refused caller is told the check for itself and what it asked for; one without keys, the demo keys.
    outsider = load_credentials()["AKIALOCALOUTSIDER001"].principal_arn
    assert printed["denied"] == [f"make apps ARGS=\"check demo --caller {outsider} --scope cx.agent-calls\" LOCAL=1"]
    assert printed["unsigned"] == [f"{DEMO_KEYS} make smoke URL={served.gateway_url} APP=demo SCOPE=cx.agent-calls"]
    assert "FUNCTION=" not in denied.stdout + unsigned.stdout + refused.stdout  # nothing to name locally
    assert printed["remove"] == ['make apps ARGS="restore billing" LOCAL=1', "make tokens LOCAL=1"]
    assert printed["show"] == ['make apps ARGS="restore billing" LOCAL=1']
    assert printed["smoke"] == ['make apps ARGS="list" LOCAL=1']
    for command in ["make tokens LOCAL=1", 'make apps ARGS="list" LOCAL=1', 'make apps ARGS="restore billing" LOCAL=1',
                    *printed["put"], *printed["unsigned"]]:
        pasted = run(command)
        assert pasted.returncode == 0, f"{command}\n{pasted.stdout}\n{pasted.stderr}"
    [check] = printed["denied"]
    checked = run(check)  # it answers (the outsider is refused: status 1), and says why
    assert checked.stdout.startswith("denied: the function answers 403 access_denied: no allowed_callers entry of "
                                     f"demo matches {outsider}"), checked.stdout + checked.stderr
    assert run('make apps ARGS="show billing" LOCAL=1').stdout.count("deletion") == 0  # restored
