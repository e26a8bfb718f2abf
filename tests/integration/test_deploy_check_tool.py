"""make deploy-check through the real SAM transform (.venv-sam's translator) and cfn-lint: the template passes,
and a template that brings back the defects it is there to catch fails with each one named."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .test_deploy_tool import SAM_PYTHON, clean_env
from .test_deploy_tool import build as build  # the fixture: template.yaml as sam build leaves it

ROOT = Path(__file__).resolve().parents[2]


def deploy_check(build: Path, *only: str) -> subprocess.CompletedProcess[str]:
    arguments = [argument for name in only for argument in ("--only", name)]
    return subprocess.run([str(SAM_PYTHON), "-m", "tools.deploy_check", "--build-dir", str(build), *arguments],
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=300, check=False)


def test_the_template_passes_for_a_samconfig_env_and_a_private_api(build: Path) -> None:
    result = deploy_check(build, "samconfig dev", "private API")

    assert result.returncode == 0, result.stdout + result.stderr
    dev, private, summary = result.stdout.splitlines()
    assert " ".join(dev.split()) == (
        "ok samconfig dev stack sangoma-token-vending-dev: stages [v1]; 2 API routes, 1 schedule target, "
        "3 permissions, 1 event-invoke config -> live; version TokenVendingFunctionVersion{0123456789, again "
        "0123456789, fedcba9876} for Revision {0123456789abcdef, again, fedcba9876543210}; layers "
        "sangoma-token-vending-dev-client, sangoma-token-vending-dev-dependencies; no cycle; cfn-lint clean")
    assert " ".join(private.split()).startswith("ok private API stack deploy-check: PRIVATE, only through "
                                                "vpce-0123456789abcdef0; stages [v1];")
    assert summary.startswith("deploy-check: all parameter sets pass (transformed templates in ")
    assert (build.parent / "deploy-check" / "samconfig-dev.json").is_file()


def test_the_defects_it_guards_against_are_each_named(build: Path) -> None:
    template = build / "template.yaml"
    text = template.read_text()
    for line in ('      OpenApiVersion: "2.0"', "      AutoPublishCodeSha256: !Ref Revision",
                 "      LayerName: !Sub ${AWS::StackName}-client"):
        assert line in text, line
        text = text.replace(line, "")
    template.write_text(text.replace("${VendingApi}/v1/GET/", "${VendingApi}/*/GET/"))

    result = deploy_check(build, "defaults")

    assert result.returncode == 1
    fail, summary = result.stdout.splitlines()
    assert fail.startswith("FAIL defaults: ")
    for problem in ("API stages ['v1', 'Stage'], not only v1",
                    "VendingApiInvokesLiveGet admits stage ['*']",
                    "two Revisions named one version",
                    "layer ClientLayer", "is named ClientLayer, not deploy-check-client"):
        assert problem in fail, problem
    assert summary == "deploy-check: 1 of 1 parameter sets failed"
