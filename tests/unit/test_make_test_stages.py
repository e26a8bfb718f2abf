"""`make test` as a newcomer sees it: one line per stage with its time, and installs that say what they install."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = (ROOT / "Makefile").read_text()


def recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target (tab-indented lines after `target:`)."""
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", MAKEFILE, re.M)
    assert match, target
    return [line.strip() for line in match.group(1).splitlines()]


def stage(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "tools" / "stage"), *command], capture_output=True, text=True, timeout=60,
                          check=False)


def test_make_test_runs_the_stages_in_order_each_through_the_stage_runner() -> None:
    names = [line.split()[1] for line in recipe("test") if line.startswith("@$(STAGE) ")]

    assert names == ["virtualenvs", "check", "templates", "build", "deploy-check", "stack", "artifact"]
    assert len(names) == len(recipe("test"))  # nothing runs outside a stage


@pytest.mark.process
def test_a_stage_ends_with_one_line_naming_it_with_its_time_and_keeps_the_exit_status() -> None:
    passed = stage("unit", "sh", "-c", "echo testing")
    failed = stage("integration", "sh", "-c", "exit 3")

    assert passed.returncode == 0
    assert re.fullmatch(r"testing\n==> unit ok \((\d+s|\d+m\d\ds)\)\n", passed.stdout), passed.stdout
    assert failed.returncode == 3
    assert re.fullmatch(r"==> integration FAILED \((\d+s|\d+m\d\ds)\)\n", failed.stdout), failed.stdout


def test_every_virtualenv_says_what_it_installs_and_about_how_long_before_installing() -> None:
    for venv in ("$(VENV)", "$(SAM_VENV)", "$(SCAN_VENV)", "$(LAMBDA_VENV)"):
        first = recipe(f"{venv}/.installed")[0]
        assert re.fullmatch(r'@echo "installing \$\(\w+\): .+ \((about \d+ min|under a minute).*\)" >&2', first), first
