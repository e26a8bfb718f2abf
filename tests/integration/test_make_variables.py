"""make variables are data: a value given on make's command line never becomes make or shell text.

Each value below carries a backquoted command, a shell `$(...)` and make's own `$(shell ...)`; each would create a
file if anything ran it. The tools must receive the values exactly as written, and no file may appear."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from devstack.gateway import LocalGateway, load_credentials
from tests.unit.test_revision import make_build

from .conftest import Lambda
from .operator_commands import shell_env
from .test_deploy_tool import fake_sam

ROOT = Path(__file__).resolve().parents[2]
PRINCIPALS = load_credentials()
DEMO_KEY = "AKIALOCALDEMO0000001"


def hostile(tmp_path: Path, name: str) -> str:
    """A value that, pasted into shell or make text, would create three files named after `name` in tmp_path."""
    return (f"x`touch {tmp_path}/{name}-backquote`$(touch {tmp_path}/{name}-dollar)"
            f"$(shell touch {tmp_path}/{name}-make)")


def ran(tmp_path: Path) -> list[str]:
    """What any of the values made run: the files they would have created."""
    return sorted(path.name for path in tmp_path.iterdir() if "-" in path.name and path.suffix == "")


def make(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *arguments], cwd=ROOT, env=shell_env(**env),
                          capture_output=True, text=True, timeout=300, check=False)


def test_make_smoke_passes_its_values_as_data(lam: Lambda, tmp_path: Path) -> None:
    lam.stack.add_app("demo", allowed_callers=[PRINCIPALS[DEMO_KEY].principal_arn])
    app, scope, function = (hostile(tmp_path, name) for name in ("app", "scope", "function"))
    with LocalGateway(PRINCIPALS) as gateway:
        result = make("smoke", f"URL={gateway.url}", f"APP={app}", f"SCOPE={scope}", f"FUNCTION={function}",
                      f"PROFILE={hostile(tmp_path, 'profile')}", AWS_ACCESS_KEY_ID=DEMO_KEY,
                      AWS_SECRET_ACCESS_KEY=PRINCIPALS[DEMO_KEY].secret_access_key)

    assert ran(tmp_path) == []
    # The profile does not exist: the tool says so, naming it as written.
    assert result.returncode != 0
    assert f"The config profile ({hostile(tmp_path, 'profile')}) could not be found" in result.stdout, result.stdout
    assert lam.stack.token_endpoint.request_count == 0


def test_make_smoke_sends_the_app_and_scope_as_written(lam: Lambda, tmp_path: Path) -> None:
    lam.stack.add_app("demo", allowed_callers=[PRINCIPALS[DEMO_KEY].principal_arn])
    app, scope = hostile(tmp_path, "app"), hostile(tmp_path, "scope")
    with LocalGateway(PRINCIPALS) as gateway:
        result = make("smoke", f"URL={gateway.url}", f"APP={app}", f"SCOPE={scope}", AWS_ACCESS_KEY_ID=DEMO_KEY,
                      AWS_SECRET_ACCESS_KEY=PRINCIPALS[DEMO_KEY].secret_access_key)

    assert ran(tmp_path) == []
    first = result.stdout.splitlines()[0]
    assert f"/apps/{app}/token  scope={scope!r}" in first, first
    assert "FAIL: HTTP 400 invalid_request" in result.stdout  # the function saw the value as written, and refused it


def test_make_deploy_dry_run_passes_env_and_params_as_data(tmp_path: Path) -> None:
    sam = fake_sam(tmp_path, build_status=0)
    build = make_build(tmp_path / "build", template=(ROOT / "template.yaml").read_text().replace(  # as sam build
        "CodeUri: functions/", "CodeUri: TokenVendingFunction").replace(
        "ContentUri: layers/dependencies/", "ContentUri: DependenciesLayer").replace(
        "ContentUri: layers/client/", "ContentUri: ClientLayer"))
    prefix = hostile(tmp_path, "params")

    refused = make("deploy", f"ENV={hostile(tmp_path, 'env')}", "DRY_RUN=1", f"SAM={sam.path}",
                   SAM_LOG=str(sam.log))
    planned = make("deploy", "ENV=dev", f"PARAMS=SecretPrefix='{prefix}'", "DRY_RUN=1", f"SAM={sam.path}",
                   f"BUILT={build / 'template.yaml'}", SAM_LOG=str(sam.log))

    assert ran(tmp_path) == []
    assert refused.returncode != 0
    assert f"samconfig.toml defines no config env {hostile(tmp_path, 'env')!r}" in refused.stderr
    assert planned.returncode == 0, planned.stderr
    announced, command = planned.stdout.splitlines()[-2:]
    assert announced.endswith(f"the build in {build} and the parameter values below")
    assert f'SecretPrefix="{prefix}"' in shlex.split(command), command  # SAM's quoting of the value as given
    assert sam.calls() == []  # the build was up to date; nothing deployed


@pytest.mark.parametrize("target", ["tokens", "apps"])
def test_operator_targets_take_their_values_as_data(target: str, tmp_path: Path) -> None:
    values = [f"{name}={hostile(tmp_path, name.lower())}" for name in ("STACK", "REGION", "PROFILE", "APP", "SINCE")]
    args = [f"ARGS=list {hostile(tmp_path, 'args')}"] if target == "apps" else []

    result = make(target, *values, *args)

    assert ran(tmp_path) == []
    assert result.returncode != 0  # a profile by that name does not exist, or list takes no argument


def test_make_serve_takes_its_ports_as_data(tmp_path: Path) -> None:
    port = hostile(tmp_path, "port")

    result = make("serve", f"GATEWAY_PORT={port}")

    assert ran(tmp_path) == []
    assert result.returncode != 0
    assert f"argument --gateway-port: invalid int value: {port!r}" in result.stderr, result.stderr
