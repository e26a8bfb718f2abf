"""Which imports a cold start pays for, from `python -X importtime`."""

from __future__ import annotations

import re
import subprocess
import sys

from bench.lambda_env import ROOT

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def import_times(statement: str, env: dict[str, str]) -> dict[str, int]:
    """Self time in microseconds of every module the statement imports, in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    return {match[4]: int(match[1]) for line in done.stderr.splitlines() if (match := LINE.match(line))}


def by_package(times: dict[str, int]) -> list[tuple[str, float]]:
    """Self times summed per top-level package, in milliseconds, costliest first."""
    totals: dict[str, float] = {}
    for module, micros in times.items():
        top = module.split(".")[0]
        totals[top] = totals.get(top, 0.0) + micros / 1000
    return sorted(totals.items(), key=lambda item: -item[1])
