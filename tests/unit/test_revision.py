"""The Revision make deploy names a version with: the same for the same build and parameter values, whatever
the file times or the order files were written in; different when a file, the template or a value differs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tools.revision import BuildMissing, revision, tree_digest

BUILT_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  TokenUrl: {Type: String, Default: "https://auth.sangoma.com/oauth/token"}
Resources:
  TokenVendingFunction:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: TokenVendingFunction, Handler: token_vending.app.lambda_handler, Timeout: 28}
  DependenciesLayer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: DependenciesLayer, LayerName: !Sub "${AWS::StackName}-dependencies"}
  ClientLayer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: ClientLayer}
"""
PYC = "TokenVendingFunction/token_vending/__pycache__/app.cpython-313.pyc"
IDNA = "DependenciesLayer/python/idna/__init__.py"
FILES = {
    "TokenVendingFunction/token_vending/app.py": b"def lambda_handler(event, context): ...\n",
    PYC: b"\xf3\r\r\n\x01\x00\x00\x00pyc",
    IDNA: b"__version__ = '3.20'\n",
    "DependenciesLayer/python/requests/__init__.py": b"__version__ = '2.34.2'\n",
    "ClientLayer/python/sangoma_token_client/__init__.py": b"from .client import TokenClient\n",
}
PARAMETERS = {"SecretPrefix": "sangoma/token-vending-dev/", "LogRetentionDays": "14"}


def make_build(root: Path, files: dict[str, bytes] = FILES, template: str = BUILT_TEMPLATE) -> Path:
    root.mkdir(parents=True)
    (root / "template.yaml").write_text(template)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


@pytest.fixture
def build(tmp_path: Path) -> Path:
    return make_build(tmp_path / "build")


def test_the_same_build_and_values_give_the_same_sixteen_hex_digits(build: Path) -> None:
    first = revision(build, PARAMETERS)

    assert first == revision(build, dict(reversed(PARAMETERS.items())))  # the values, not their order
    assert len(first) == 16 and int(first, 16) >= 0


def test_file_times_and_the_order_files_were_written_in_do_not_count(build: Path, tmp_path: Path) -> None:
    again = make_build(tmp_path / "again", dict(reversed(FILES.items())))
    for path in again.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))

    assert revision(again, PARAMETERS) == revision(build, PARAMETERS)
    assert tree_digest(again / "DependenciesLayer") == tree_digest(build / "DependenciesLayer")


def test_a_changed_layer_requirement_changes_it(build: Path, tmp_path: Path) -> None:
    # What a different pin leaves in the built layer: another version of one package.
    other = make_build(tmp_path / "other", {**FILES, IDNA: b"__version__ = '3.10'\n"})

    assert revision(other, PARAMETERS) != revision(build, PARAMETERS)
    assert tree_digest(other / "TokenVendingFunction") == tree_digest(build / "TokenVendingFunction")


@pytest.mark.parametrize("change", ["added", "removed", "renamed", "executable", "bytecode"])
def test_any_change_to_the_built_files_changes_it(build: Path, change: str) -> None:
    before = revision(build, PARAMETERS)
    layer = build / "DependenciesLayer" / "python"
    if change == "added":
        (layer / "six.py").write_text("")
    elif change == "removed":
        shutil.rmtree(layer / "idna")
    elif change == "renamed":
        (layer / "idna").rename(layer / "idna2")
    elif change == "executable":
        (layer / "idna" / "__init__.py").chmod(0o755)
    else:
        (build / PYC).write_bytes(b"\xf3\r\r\n\x01\x00\x00\x00other")

    assert revision(build, PARAMETERS) != before


def test_a_parameter_value_changes_it(build: Path) -> None:
    before = revision(build, PARAMETERS)

    assert revision(build, {**PARAMETERS, "LogRetentionDays": "30"}) != before
    assert revision(build, {**PARAMETERS, "TokenUrl": "https://auth.example.com/oauth/token"}) != before


def test_the_built_template_counts_timeout_memory_and_defaults_live_there(build: Path) -> None:
    before = revision(build, PARAMETERS)
    (build / "template.yaml").write_text(BUILT_TEMPLATE.replace("Timeout: 28", "Timeout: 30"))

    assert revision(build, PARAMETERS) != before


def test_no_build_or_a_missing_artifact_is_refused(tmp_path: Path, build: Path) -> None:
    with pytest.raises(BuildMissing, match=r"no built template at .*: run make build"):
        revision(tmp_path / "nothing", PARAMETERS)
    shutil.rmtree(build / "ClientLayer")
    with pytest.raises(BuildMissing, match=r"ClientLayer's build .* is missing: run make build"):
        revision(build, PARAMETERS)
