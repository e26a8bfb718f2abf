"""The built artifact and the baseline function, laid out as Lambda runs them, for the figures measured on 3.13.

    deployed = Deployment.make(scratch, stack_env)
    deployed.container(deployed.function)            # a new execution environment (runtime client)
    deployed.run_worker("warm", args)                # a bench.worker figure in one 3.13 process

`function` is `sam build`'s output after a zip round trip, with the bytecode the build compiled;
`baseline` is bench/baseline.py as a function of its own beside the same dependencies layer,
compiled the same way; the `*_without_bytecode` twins have every __pycache__ removed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devstack.lambda_container import (
    Artifact,
    LambdaContainer,
    bootstrap_command,
    built_function,
    function_environment,
    lambda_environment,
    runtime_python,
    unpack,
    without_bytecode,
)

from .lambda_env import ROOT

BASELINE_SOURCE = Path(__file__).resolve().parent / "baseline.py"


@dataclass(frozen=True)
class Deployment:
    function: Artifact
    function_without_bytecode: Artifact
    baseline: Artifact
    baseline_without_bytecode: Artifact
    stack_env: dict[str, str]

    @classmethod
    def make(cls, scratch: Path, stack_env: dict[str, str]) -> Deployment:
        function = unpack(built_function(), scratch / "function")
        baseline_root = scratch / "baseline" / "task"
        baseline_root.mkdir(parents=True)
        shutil.copy(BASELINE_SOURCE, baseline_root / "baseline.py")
        # Compiled as the build compiles the function (functions/Makefile).
        subprocess.run([str(runtime_python()), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                        str(baseline_root)], check=True, timeout=120)
        baseline = replace(function, name="BaselineFunction", task_root=baseline_root,
                           handler="baseline.lambda_handler")
        function_without = without_bytecode(function, scratch / "function-without-bytecode")
        baseline_without = replace(function_without, name="BaselineFunction", handler="baseline.lambda_handler",
                                   task_root=scratch / "baseline-without-bytecode")
        shutil.copytree(baseline_root, baseline_without.task_root, ignore=shutil.ignore_patterns("__pycache__"))
        return cls(function, function_without, baseline, baseline_without, stack_env)

    def environment(self, artifact: Artifact) -> dict[str, str]:
        return function_environment(self.stack_env, artifact)

    def container(self, artifact: Artifact, **options: Any) -> LambdaContainer:
        """A new execution environment of `artifact` (not started)."""
        return LambdaContainer(artifact, self.environment(artifact), **options)

    def run_worker(self, figure: str, args: dict[str, Any], python_options: tuple[str, ...] = (),
                   timeout: float = 600) -> tuple[dict[str, Any], str]:
        """Run a bench.worker figure on the runtime's 3.13 from the artifact (the function folder first, then
        the layer, then the baseline and this repository's bench code); returns its result and its stderr."""
        with tempfile.TemporaryDirectory(prefix="bench-worker-") as scratch:
            result = Path(scratch) / "result.json"
            command = bootstrap_command(self.function, "bench.worker", (figure, str(result), json.dumps(args)),
                                        extra_path=(self.baseline.task_root, ROOT), python_options=python_options)
            environment = {**self.environment(self.function), **lambda_environment(self.function, "127.0.0.1:9")}
            done = subprocess.run(command, env=environment, cwd=self.function.task_root, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, timeout=timeout, check=False)
            if done.returncode:
                raise RuntimeError(f"bench worker {figure} (3.13) failed:\n{done.stderr[-3000:]}")
            return json.loads(result.read_text()), done.stderr
