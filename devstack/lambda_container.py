"""The built function run as Lambda runs it: one process per execution environment, on CPython 3.13.

    artifact = unpack(built_function(), into=scratch)        # sam build's output, zipped and unzipped
    with LambdaContainer(artifact, function_environment(stack.env)) as container:
        invocation = container.invoke(event)                 # through awslambdaric and the Runtime API
        invocation.result(), container.init_duration_ms, container.max_memory_mb, invocation.log_lines

The process is the Runtime Interface Client (`python -m awslambdaric HANDLER`) on the 3.13 runtime
virtualenv (.venv-lambda: the runtime's own packages, devstack/lambda-runtime-requirements.txt),
started through devstack/lambda_bootstrap.py with -I -B, so the function folder and each layer's
python/ are on the path in Lambda's order, nothing else from this machine is, and nothing is written.
It talks to its own local Runtime API (devstack/runtime_api.py); a new container is a new process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from .local_aws import ACCOUNT, REGION
from .runtime_api import InitError, Invocation, RuntimeApi
from .template import load_template

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
RUNTIME_VENV = ROOT / ".venv-lambda"
BOOTSTRAP = Path(__file__).resolve().parent / "lambda_bootstrap.py"
FUNCTION = "TokenVendingFunction"


class ArtifactMissing(RuntimeError):
    """What `make build` or the runtime virtualenv should have made is not there."""


@dataclass(frozen=True)
class Artifact:
    """A function as Lambda lays it out: its code folder (/var/task) and each layer's python/ folder (/opt/python)."""

    name: str
    task_root: Path
    layers: tuple[Path, ...]
    handler: str
    memory_mb: int
    timeout_seconds: float
    environment: dict[str, str] = field(default_factory=dict)  # the template's literal variables

    @property
    def folders(self) -> tuple[Path, ...]:
        return (self.task_root, *self.layers)


def built_function(name: str = FUNCTION, build: Path = BUILD) -> Artifact:
    """The function as `sam build` left it in .aws-sam/build, with its layers in template order."""
    template_file = build / "template.yaml"
    if not template_file.exists():
        raise ArtifactMissing(f"no {template_file.relative_to(ROOT)}: run `make build`")
    template = load_template(template_file)
    resources = template["Resources"]
    globals_ = template.get("Globals", {}).get("Function", {})
    properties = {**globals_, **resources[name]["Properties"]}
    layers = []
    for layer in properties.get("Layers", []):
        layer_id = layer.get("Ref") if isinstance(layer, dict) else None
        if layer_id is None or layer_id not in resources:
            continue  # a layer from elsewhere (an ARN): not built here
        layers.append(build / resources[layer_id]["Properties"]["ContentUri"] / "python")
    environment = {}
    for variables in (globals_.get("Environment", {}).get("Variables", {}),
                      resources[name]["Properties"].get("Environment", {}).get("Variables", {})):
        environment.update({key: str(value) for key, value in variables.items() if isinstance(value, str | int)})
    return Artifact(name=name, task_root=build / properties["CodeUri"], layers=tuple(layers),
                    handler=properties["Handler"], memory_mb=int(properties.get("MemorySize", 128)),
                    timeout_seconds=float(properties.get("Timeout", 3)), environment=environment)


def unpack(artifact: Artifact, into: Path) -> Artifact:
    """Zip each folder and unzip it under `into`, as a deploy does: the files' times are not kept."""
    into.mkdir(parents=True, exist_ok=True)
    unpacked = []
    for index, folder in enumerate(artifact.folders):
        if not folder.is_dir():
            raise ArtifactMissing(f"no {folder}: run `make build`")
        archive = into / f"{index}-{folder.parent.name if folder.name == 'python' else folder.name}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(folder.rglob("*")):
                zipped.write(path, path.relative_to(folder))
        target = into / archive.stem / ("python" if folder.name == "python" else "task")
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(target)  # every file gets the time of extraction
        archive.unlink()
        unpacked.append(target)
    return replace(artifact, task_root=unpacked[0], layers=tuple(unpacked[1:]))


def without_bytecode(artifact: Artifact, into: Path) -> Artifact:
    """A copy of the artifact with every __pycache__ removed: what it was before the build compiled it."""
    copies = []
    for index, folder in enumerate(artifact.folders):
        target = into / str(index) / folder.name
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(target)
    return replace(artifact, task_root=copies[0], layers=tuple(copies[1:]))


def runtime_python() -> Path:
    python = RUNTIME_VENV / "bin" / "python"
    if not (RUNTIME_VENV / ".installed").exists():
        raise ArtifactMissing(f"no {RUNTIME_VENV.name}: run `make {RUNTIME_VENV.name}/.installed` "
                              "(the Lambda runtime's own packages on CPython 3.13)")
    return python


def function_environment(stack_env: dict[str, str], artifact: Artifact | None = None) -> dict[str, str]:
    """The function's own variables: the template's literal ones, then the local stack's (which win)."""
    return {**(artifact.environment if artifact else {}), **stack_env}


def lambda_environment(artifact: Artifact, api_address: str) -> dict[str, str]:
    """What Lambda itself sets in the environment of a python3.13 function."""
    log_stream = time.strftime("%Y/%m/%d") + "/[$LATEST]" + os.urandom(16).hex()
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(artifact.task_root),
        "LAMBDA_RUNTIME_DIR": str(RUNTIME_VENV),
        "_HANDLER": artifact.handler,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_RUNTIME_API": api_address,
        "AWS_LAMBDA_FUNCTION_NAME": artifact.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(artifact.memory_mb),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{artifact.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",  # Tracing: Active sets it; nothing listens here
        # Not Lambda's: keeps this machine's ~/.aws (profiles, settings) out of the function.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def bootstrap_command(artifact: Artifact, module: str, args: tuple[str, ...], *, python: Path | None = None,
                      extra_path: tuple[Path, ...] = (), report: Path | None = None,
                      python_options: tuple[str, ...] = ()) -> list[str]:
    """Run `module` (as __main__) on the runtime's 3.13 with the artifact on the path as Lambda lays it out."""
    return [str(python or runtime_python()), "-I", "-B", *python_options, str(BOOTSTRAP),
            "--task-root", str(artifact.task_root),
            *[argument for layer in artifact.layers for argument in ("--layer", str(layer))],
            *[argument for path in extra_path for argument in ("--path", str(path))],
            *(["--report", str(report)] if report else []),
            "--module", module, *args]


@dataclass
class Answer:
    """One invocation as the caller sees it, with what Lambda's REPORT line shows."""

    invocation: Invocation
    log_lines: list[str]

    @property
    def request_id(self) -> str:
        return self.invocation.request_id

    @property
    def duration_ms(self) -> float:
        return self.invocation.duration_ms

    def result(self) -> Any:
        return self.invocation.result()


class LambdaContainer:
    """One execution environment: a runtime-client process and its Runtime API."""

    def __init__(self, artifact: Artifact, environment: dict[str, str], *, python: Path | None = None,
                 report: Path | None = None, extra_path: tuple[Path, ...] = (), module: str = "awslambdaric",
                 args: tuple[str, ...] | None = None, python_options: tuple[str, ...] = ()) -> None:
        self.artifact = artifact
        self.environment = environment
        self.python = python or runtime_python()
        self.report = report
        self.extra_path = extra_path
        self.module = module
        self.args = args if args is not None else (artifact.handler,)
        self.python_options = python_options
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{artifact.name}"
        self.api = RuntimeApi(arn, artifact.timeout_seconds)
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.init_duration_ms: float | None = None
        self._peak_rss_kb = 0
        self._scratch = tempfile.TemporaryDirectory(prefix="lambda-container-")
        self._log_path = Path(self._scratch.name) / "output.log"  # the process's stdout and stderr
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._stopped_lines: list[str] | None = None
        self.init_log_lines: list[str] = []

    def __enter__(self) -> LambdaContainer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> LambdaContainer:
        """Spawn the process and wait for its first `/next` (the end of init), or raise InitError."""
        if self.process is not None:
            raise RuntimeError("a container starts once; a new container is a new LambdaContainer")
        self.api.start()
        self._log = self._log_path.open("wb")
        command = bootstrap_command(self.artifact, self.module, self.args, python=self.python,
                                    extra_path=self.extra_path, report=self.report,
                                    python_options=self.python_options)
        environment = {**self.environment, **lambda_environment(self.artifact, self.api.address)}
        self.spawned_at = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=self.artifact.task_root, env=environment, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self._wait(lambda: self.api.first_next_at is not None, timeout, "its first /next")
        assert self.api.first_next_at is not None
        self.init_duration_ms = (self.api.first_next_at - self.spawned_at) * 1000
        self._log_offset = self._log_size()
        self.init_log_lines = self._read_log(0, self._log_offset)
        return self

    def invoke(self, event: Any, timeout: float = 120) -> Answer:
        """Hand one event to the function and wait for its answer (a result or a function error)."""
        invocation = self.api.submit(event)
        self._wait(invocation.done.is_set, timeout, "an answer")
        self._sample_memory()
        # The runtime client writes its log lines (unbuffered) before it posts the answer.
        end = self._log_size()
        lines = self._read_log(self._log_offset, end)
        self._log_offset = end
        return Answer(invocation, lines)

    @property
    def max_memory_mb(self) -> float:
        """The process's peak resident memory so far (VmHWM): Lambda's "Max Memory Used"."""
        self._sample_memory()
        return self._peak_rss_kb / 1024

    def log_lines(self) -> list[str]:
        """Everything the process has written so far."""
        if self._stopped_lines is not None:
            return self._stopped_lines
        return self._read_log(0, self._log_size()) if self._log is not None else []

    def stop(self) -> None:
        """End the process (SIGTERM, as Lambda's shutdown does; it writes its report then), then the API."""
        if self.process is not None and self.process.poll() is None:
            self._sample_memory()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.api.stop()
        if self._log is not None and self._stopped_lines is None:
            self._log.close()
            self._stopped_lines = self._read_log(0, self._log_size())
            self._scratch.cleanup()

    def _wait(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.api.changed:
            while not condition():
                if self.api.init_error is not None:
                    raise InitError(self.api.init_error)
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"the function's process exited ({self.process.returncode}) before {what}:\n"
                                       + "\n".join(self.log_lines()[-30:]))
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {what} from the function within {timeout} s")
                self.api.changed.wait(0.05)  # the timeout notices a process that died

    def _sample_memory(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self._peak_rss_kb = max(self._peak_rss_kb, int(line.split()[1]))

    def _log_size(self) -> int:
        return self._log_path.stat().st_size

    def _read_log(self, start: int, end: int) -> list[str]:
        with self._log_path.open("rb") as handle:
            handle.seek(start)
            return handle.read(end - start).decode(errors="replace").splitlines()
