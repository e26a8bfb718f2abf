"""The built artifact, run as Lambda runs it: `sam build`'s output, zipped and unzipped as a deploy
does, read-only, on CPython 3.13 under the Runtime Interface Client (awslambdaric), with only the
Lambda runtime's own packages beside it (.venv-lambda), against the embedded local stack.

`make test` builds it first (`make build`) and makes .venv-lambda; run alone: `make artifact`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import stat
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from devstack.lambda_container import (
    BOOTSTRAP,
    ROOT,
    Artifact,
    ArtifactMissing,
    LambdaContainer,
    built_function,
    function_environment,
    runtime_python,
    unpack,
)
from devstack.stack import LocalStack

EVENTS = ROOT / "events"
RUNTIME_PINS = ROOT / "devstack" / "lambda-runtime-requirements.txt"
CALLER_ROLE = "arn:aws:iam::111122223333:role/billing-service"  # the caller in events/*.json


def event(name: str, **changes: Any) -> dict[str, Any]:
    """events/NAME.json, with top-level fields replaced."""
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return {**copy.deepcopy(loaded), **changes}


def vend_event(app: str) -> dict[str, Any]:
    """events/vend.json for another app."""
    vend = event("vend", path=f"/apps/{app}/token", pathParameters={"app": app})
    vend["requestContext"]["path"] = f"/v1/apps/{app}/token"
    return vend


def runtime_pin(package: str) -> str:
    for line in RUNTIME_PINS.read_text().splitlines():
        name, _, pinned = line.partition("==")
        if name.strip().lower() == package:
            return pinned.strip()
    raise LookupError(package)


def release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


@pytest.fixture(scope="session")
def built() -> Artifact:
    try:
        artifact = built_function()
        runtime_python()
    except ArtifactMissing as missing:
        pytest.fail(f"{missing} (make test and make artifact do both)")
    # What is built must be what is in the repository: a build older than functions/ tests old code.
    sources = ROOT / "functions"
    stale = [str(path.relative_to(sources)) for path in sources.rglob("*.py")
             if "__pycache__" not in path.parts and (artifact.task_root / path.relative_to(sources)).read_bytes()
             != path.read_bytes()] if artifact.task_root.is_dir() else ["(no function folder)"]
    if stale:
        pytest.fail(f".aws-sam/build is older than functions/ ({', '.join(stale[:3])}): run `make build`")
    return artifact


def listing(folders: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """Every file and folder with its size and modification time."""
    seen = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            info = path.stat()
            seen[str(path)] = (info.st_size, info.st_mtime_ns)
    return seen


@dataclass(frozen=True)
class Deployed:
    artifact: Artifact
    files: dict[str, tuple[int, int]]  # as unzipped, before anything ran


@pytest.fixture(scope="session")
def deployed(built: Artifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """The function and its layers as Lambda has them: unzipped (file times not kept), read-only."""
    artifact = unpack(built, tmp_path_factory.mktemp("deployed"))
    _set_writable(artifact.folders, False)
    yield Deployed(artifact, listing(artifact.folders))
    _set_writable(artifact.folders, True)  # so pytest can remove it later


def _set_writable(folders: tuple[Path, ...], writable: bool) -> None:
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            mode = path.stat().st_mode
            path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture(scope="module")
def local_stack() -> Iterator[LocalStack]:
    """moto keeps its AWS state per process, shared with any other stack in it (tests/integration's):
    so this one starts by resetting that state and leaves it empty."""
    stack = LocalStack()
    stack.moto.start()
    stack.token_endpoint.start()
    try:
        stack.reset()
        yield stack
    finally:
        wipe = urllib.request.Request(stack.moto.url + "/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(wipe, timeout=10).close()  # noqa: S310 - the local moto server, emptied
        stack.stop()


@pytest.fixture
def stack(local_stack: LocalStack) -> LocalStack:
    """A clean stack with the app `demo`, which allows the caller in events/*.json."""
    local_stack.reset()
    local_stack.add_app("demo", allowed_callers=[CALLER_ROLE])
    local_stack.moto.calls.clear()
    return local_stack


@dataclass(frozen=True)
class Report:
    """What a container's process reported about itself when it ended (devstack/lambda_bootstrap.py)."""

    data: dict[str, Any]
    log_lines: list[str]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


Start = Callable[..., LambdaContainer]


@pytest.fixture
def start_container(deployed: Deployed, stack: LocalStack, tmp_path: Path) -> Iterator[Start]:
    """Start a new container (a new process) of the deployed function against the stack."""
    started: list[LambdaContainer] = []

    def start(artifact: Artifact | None = None) -> LambdaContainer:
        artifact = artifact or deployed.artifact
        container = LambdaContainer(artifact, function_environment(stack.env, artifact),
                                    report=tmp_path / f"report-{len(started)}.json")
        started.append(container)
        return container.start()

    yield start
    for container in started:
        container.stop()


def finish(container: LambdaContainer, deployed: Deployed) -> Report:
    """Stop the container, check it ran as Lambda runs the artifact, and return its report."""
    container.stop()
    assert container.report is not None
    report = Report(json.loads(container.report.read_text()), container.log_lines())
    assert_ran_as_lambda(report, deployed)
    return report


def _under(path: str, roots: list[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def assert_ran_as_lambda(report: Report, deployed: Deployed) -> None:
    folders = [os.path.realpath(folder) for folder in deployed.artifact.folders]
    # CPython 3.13, writing nothing, and nothing of the artifact compiled from source: its bytecode was used.
    assert report["implementation"] == "cpython" and report["python"][:2] == [3, 13]
    assert report["dont_write_bytecode"] is True
    assert [path for path in report["compiled_from_source"] if _under(path, folders)] == []
    assert listing(deployed.artifact.folders) == deployed.files
    # Lambda's path: the function folder first, each layer's python/ after it, then the runtime.
    assert report["sys_path"][:len(folders)] == [str(folder) for folder in deployed.artifact.folders]
    # The runtime's botocore (the function's AWS SDK), older than the dev venv's, and nothing from anywhere
    # but the artifact, the runtime's packages and the standard library.
    assert report["botocore"] == runtime_pin("botocore")
    assert release(report["botocore"]) < release(version("botocore"))
    stdlib = os.path.realpath(report["stdlib"])
    allowed = [*folders, os.path.realpath(report["prefix"]), stdlib, os.path.realpath(BOOTSTRAP)]
    elsewhere = {name: path for name, path in report["module_files"].items()
                 if not _under(path, allowed) or _under(path, [os.path.join(stdlib, "site-packages")])}
    assert elsewhere == {}
