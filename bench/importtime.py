"""Which imports a cold start pays for, from `python -X importtime`, on the runtime's 3.13 from the artifact."""

from __future__ import annotations

import re
import statistics
import subprocess

from devstack.lambda_container import Artifact, bootstrap_command, lambda_environment

from .import_probe import MARKER
from .lambda_env import ROOT

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def import_times(artifact: Artifact, module: str, env: dict[str, str], runs: int = 3) -> dict[str, float]:
    """Self time in microseconds of every module that importing `module` loads: the median over fresh 3.13 processes."""
    command = bootstrap_command(artifact, "bench.import_probe", (module,), extra_path=(ROOT,),
                                python_options=("-X", "importtime"))
    samples: dict[str, list[int]] = {}
    for _ in range(runs):
        done = subprocess.run(command, env={**env, **lambda_environment(artifact, "127.0.0.1:9")},
                              cwd=artifact.task_root, capture_output=True, text=True, timeout=120, check=True)
        for line in done.stderr.split(MARKER, 1)[-1].splitlines():
            if match := LINE.match(line):
                samples.setdefault(match[4], []).append(int(match[1]))
    return {name: statistics.median(micros) for name, micros in samples.items()}


def by_package(times: dict[str, float]) -> list[tuple[str, float]]:
    """Self times summed per top-level package, in milliseconds, costliest first."""
    totals: dict[str, float] = {}
    for module, micros in times.items():
        top = module.split(".")[0]
        totals[top] = totals.get(top, 0.0) + micros / 1000
    return sorted(totals.items(), key=lambda item: -item[1])
