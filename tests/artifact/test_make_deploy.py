"""`make deploy` with the real build (`sam` itself a stand-in that logs its arguments: no AWS): the Revision it
passes is the build's, the same on every run, and building the same sources again gives the same bytes,
bytecode included, so an unchanged deploy publishes nothing new."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devstack.lambda_container import BUILD
from tests.integration.test_deploy_tool import clean_env, fake_sam
from tools.revision import revision, tree_digest

ROOT = Path(__file__).resolve().parents[2]
PROD = {"SecretPrefix": "sangoma/token-vending/", "LogRetentionDays": "365"}  # samconfig.toml's for prod


def test_make_deploy_passes_the_revision_of_the_build_and_the_same_one_again(tmp_path: Path) -> None:
    sam = fake_sam(tmp_path, build_status=0)  # `make build` ran before the artifact tests: .aws-sam/build is it
    expected = revision(BUILD, PROD)

    for _ in range(2):
        result = subprocess.run(["make", "--no-print-directory", "deploy", "ENV=prod", f"SAM={sam.path}"], cwd=ROOT,
                                env=clean_env(SAM_LOG=str(sam.log)), capture_output=True, text=True, timeout=300,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Revision {expected}: the build in .aws-sam/build and the parameter values below" in result.stdout

    deploy = ["deploy", "--config-env", "prod", "--parameter-overrides", "SecretPrefix=sangoma/token-vending/",
              "LogRetentionDays=365", f"Revision={expected}"]
    # A `sam build` only where a source changed since the last build: the same deploy each time either way.
    assert [call for call in sam.calls() if call != ["build"]] == [deploy, deploy]


def build_with_makefile(directory: str, target: str, artifacts: Path) -> str:
    subprocess.run(["make", "--no-print-directory", "-C", str(ROOT / directory), target, f"ARTIFACTS_DIR={artifacts}"],
                   check=True, capture_output=True, timeout=300)
    return tree_digest(artifacts)


def test_building_the_same_sources_twice_gives_the_same_bytes_bytecode_included(tmp_path: Path) -> None:
    for directory, target, built in (("functions", "build-TokenVendingFunction", "TokenVendingFunction"),
                                     ("layers/client", "build-ClientLayer", "ClientLayer")):
        first = build_with_makefile(directory, target, tmp_path / built / "first")
        second = build_with_makefile(directory, target, tmp_path / built / "second")

        assert first == second == tree_digest(BUILD / built), built
        assert list((tmp_path / built / "first").rglob("*.pyc"))
