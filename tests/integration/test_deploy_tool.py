"""`make deploy` and tools.deploy without AWS: what stops it before building, that a failed build deploys
nothing, the Revision it computes, and the `sam deploy` command line it runs, read back by SAM's own
command-line parser. `sam` here is a stand-in that records its arguments; the deploy with the real
build is in tests/artifact/test_make_deploy.py."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.test_revision import make_build

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
ENVS = "one of default, dev, prod"
SAMCONFIG = """\
version = 0.1
[staging.global.parameters]
stack_name = "vending-staging"
[staging.deploy.parameters]
capabilities = "CAPABILITY_IAM"
parameter_overrides = "SecretPrefix=sangoma/staging/ LogRetentionDays=30"
[build-only.build.parameters]
cached = true
"""
# SAM's own parsing of a `sam deploy` command line, run from the checkout (whose samconfig.toml it reads).
SAM_READS = """
import json, sys
from samcli.commands.deploy.command import cli
params = cli.make_context("deploy", sys.argv[1:]).params
print(json.dumps({key: params[key] for key in ("stack_name", "parameter_overrides", "confirm_changeset")}))
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("AWS_") and name not in ("ENV", "PARAMS", "DRY_RUN", "SAM", "MAKEFLAGS")}
    return {**env, "SAM_CLI_TELEMETRY": "0", "AWS_CONFIG_FILE": os.devnull, **extra}


@dataclass
class FakeSam:
    """A `sam` that logs each command line it gets; `build` exits with the status it was made with."""

    path: Path
    log: Path

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


def fake_sam(tmp_path: Path, build_status: int) -> FakeSam:
    path, log = tmp_path / "sam", tmp_path / "sam.log"
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "with open(os.environ['SAM_LOG'], 'a') as log:\n    log.write(json.dumps(sys.argv[1:]) + '\\n')\n"
                    f"sys.exit({build_status} if sys.argv[1:2] == ['build'] else 0)\n")
    path.chmod(0o755)
    return FakeSam(path, log)


def make_deploy(sam: FakeSam, *assignments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "deploy", *assignments, f"SAM={sam.path}"], cwd=ROOT,
                          env=clean_env(SAM_LOG=str(sam.log)), capture_output=True, text=True, timeout=300,
                          check=False)


def deploy_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SAM_PYTHON), "-m", "tools.deploy", *args], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def samconfig(tmp_path: Path) -> Path:
    path = tmp_path / "samconfig.toml"
    path.write_text(SAMCONFIG)
    return path


@pytest.fixture
def build(tmp_path: Path) -> Path:
    """A build whose template has the parameters the tests pass."""
    return make_build(tmp_path / "build", template=(ROOT / "template.yaml").read_text().replace(
        "CodeUri: functions/", "CodeUri: TokenVendingFunction").replace(
        "ContentUri: layers/dependencies/", "ContentUri: DependenciesLayer").replace(
        "ContentUri: layers/client/", "ContentUri: ClientLayer"))


def dry_run(build: Path, samconfig: Path, env: str = "staging", params: str = "") -> tuple[str, list[str]]:
    """(the Revision, the sam deploy command) that tools.deploy prints."""
    result = deploy_tool("run", env, "--params", params, "--dry-run", "--sam", "sam", "--build-dir", str(build),
                         "--config", str(samconfig))
    assert result.returncode == 0, result.stderr
    announced, command = result.stdout.splitlines()
    assert announced.endswith(": the build in " + str(build) + " and the parameter values below")
    return announced.split()[1].rstrip(":"), shlex.split(command)


@pytest.mark.parametrize(("assignments", "said"), [
    ((), f"make deploy: no ENV given: make deploy ENV=<config env>, {ENVS} (samconfig.toml's)"),
    (("ENV=staging",), f"make deploy: samconfig.toml defines no config env 'staging' to deploy: {ENVS}"),
    (("ENV=dev", "PARAMS=TokenURL=https://x.example/t"), "make deploy: template.yaml has no parameter TokenURL; "
                                                         "its parameters: SecretPrefix, TokenUrl, "),
    (("ENV=dev", "PARAMS=Revision=0123456789abcdef"),
     "make deploy: Revision is the hash make deploy computes: leave it out of PARAMS"),
])
def test_bad_input_stops_before_building(tmp_path: Path, assignments: tuple[str, ...], said: str) -> None:
    sam = fake_sam(tmp_path, build_status=0)

    result = make_deploy(sam, *assignments)

    assert result.returncode != 0
    assert result.stderr.startswith(said), result.stderr
    assert sam.calls() == []  # neither sam build nor sam deploy


def test_a_failed_build_deploys_nothing(tmp_path: Path) -> None:
    sam = fake_sam(tmp_path, build_status=1)

    # As if there were no build yet (BUILT names the file a build leaves): the build runs, and fails.
    result = make_deploy(sam, "ENV=dev", f"BUILT={tmp_path / 'never-built' / 'template.yaml'}")

    assert result.returncode != 0
    assert sam.calls() == [["build"]]
    assert "Revision" not in result.stdout


def test_the_command_passes_samconfigs_overrides_then_params_then_the_revision(build: Path, samconfig: Path) -> None:
    revision, command = dry_run(build, samconfig, params='LogRetentionDays=90 PrewarmSchedule="rate(2 hours)"')

    assert command == ["sam", "deploy", "--config-env", "staging", "--parameter-overrides",
                       "SecretPrefix=sangoma/staging/", "LogRetentionDays=90", 'PrewarmSchedule="rate(2 hours)"',
                       f"Revision={revision}"]
    assert len(revision) == 16


def test_the_same_build_and_parameters_give_the_same_revision_twice(build: Path, samconfig: Path) -> None:
    assert dry_run(build, samconfig) == dry_run(build, samconfig)


def test_a_changed_layer_requirement_or_parameter_gives_another_revision(build: Path, samconfig: Path) -> None:
    before, _ = dry_run(build, samconfig)
    assert dry_run(build, samconfig, params="TokenUrl=https://auth.example.com/oauth/token")[0] != before
    assert dry_run(build, samconfig, params="SecretPrefix=sangoma/staging/")[0] == before  # samconfig's own value

    # The dependencies layer as a build with urllib3 pinned to another version would leave it.
    (build / "DependenciesLayer" / "python" / "urllib3").mkdir()
    (build / "DependenciesLayer" / "python" / "urllib3" / "__init__.py").write_text("__version__ = '2.7.0'\n")

    assert dry_run(build, samconfig)[0] != before


def test_a_config_env_without_deploy_settings_is_not_offered(build: Path, samconfig: Path) -> None:
    result = deploy_tool("check", "build-only", "--config", str(samconfig))

    assert result.returncode == 2
    assert result.stderr == "make deploy: samconfig.toml defines no config env 'build-only' to deploy: one of staging\n"


def test_sam_reads_the_command_as_the_stack_of_env_with_exactly_these_values(build: Path) -> None:
    prewarm = '[{"app": "billing", "scope": "cx.agent-calls cx.queue-calls"}]'
    params = f"OrganizationId=\"\" PrewarmList='{prewarm}' SecretKmsKeyArns=arn:aws:kms:1,arn:aws:kms:2"
    revision, command = dry_run(build, ROOT / "samconfig.toml", env="dev", params=params)

    read = subprocess.run([str(SAM_PYTHON), "-c", SAM_READS, *command[2:]], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=120, check=True)

    assert json.loads(read.stdout) == {
        "stack_name": "sangoma-token-vending-dev", "confirm_changeset": False,
        "parameter_overrides": {"SecretPrefix": "sangoma/token-vending-dev/", "LogRetentionDays": "14",
                                "OrganizationId": "", "PrewarmList": prewarm,
                                "SecretKmsKeyArns": "arn:aws:kms:1,arn:aws:kms:2", "Revision": revision}}
