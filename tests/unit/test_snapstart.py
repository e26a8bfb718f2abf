"""SnapStart: hooks are registered only for a SnapStart init; before the snapshot they load what a cold
vend would load; after a restore each container draws its own random numbers and remembers nothing."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import snapshot_restore_py
from token_vending import snapstart

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registries() -> Iterator[None]:
    snapshot_restore_py.get_before_snapshot().clear()
    snapshot_restore_py.get_after_restore().clear()
    yield
    snapshot_restore_py.get_before_snapshot().clear()
    snapshot_restore_py.get_after_restore().clear()


def run_hooks(hooks: list) -> None:  # type: ignore[type-arg]
    for function, args, kwargs in hooks:
        function(*args, **kwargs)


def test_nothing_is_registered_outside_a_snapstart_init(registries: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")

    snapstart.register()

    assert snapshot_restore_py.get_before_snapshot() == [] and snapshot_restore_py.get_after_restore() == []


def test_copies_of_one_snapshot_draw_different_random_numbers(registries: None,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    snapstart.register()
    run_hooks(snapshot_restore_py.get_before_snapshot())
    snapshot = random.getstate()

    draws = []
    for _ in range(2):  # two containers restored from the same snapshot
        random.setstate(snapshot)
        run_hooks(snapshot_restore_py.get_after_restore())
        draws.append([random.random() for _ in range(4)])

    assert draws[0] != draws[1]
    random.setstate(snapshot)
    unseeded = [random.random() for _ in range(4)]
    assert unseeded not in draws  # without the hook both would have drawn these


PROBE = """
import json, os, sys
import snapshot_restore_py
from token_vending import app, container
loaded = lambda: {name: name in sys.modules for name in ("requests", "token_vending.prewarm", "aws_xray_sdk")}
at_init = loaded()
for function, args, kwargs in snapshot_restore_py.get_before_snapshot():
    function(*args, **kwargs)
before_snapshot = loaded()
primed = container.current()
configs, vendor = primed.configs, primed.vendor  # what a container remembers app secrets and tokens in
for function, args, kwargs in snapshot_restore_py.get_after_restore():
    function(*args, **kwargs)
restored = container.current()
anew = restored.configs is not configs and restored.vendor is not vendor
print(json.dumps({"at_init": at_init, "before_snapshot": before_snapshot, "same_container": restored is primed,
                  "remembering_anew": anew}))
"""


@pytest.mark.process
def test_the_snapshot_holds_the_lazy_imports_and_a_restore_forgets_memory() -> None:
    env = {**os.environ, "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start", "AWS_DEFAULT_REGION": "us-east-1",
           "POWERTOOLS_TRACE_DISABLED": "true", "PYTHONPATH": str(ROOT / "functions"),
           "TOKEN_TABLE_NAME": "tokens", "TOKEN_KMS_KEY_ID": "alias/tokens"}  # settings a container accepts

    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
                          check=True)
    result = json.loads(done.stdout.splitlines()[-1])

    # An ordinary init loads none of these: a table hit needs none of them.
    assert result["at_init"] == {"requests": False, "token_vending.prewarm": False, "aws_xray_sdk": False}
    # A SnapStart init loads what the first fetch and the first scheduled run need into the snapshot.
    assert result["before_snapshot"] == {"requests": True, "token_vending.prewarm": True, "aws_xray_sdk": False}
    assert result["same_container"]  # clients and parsed models are kept...
    assert result["remembering_anew"]  # ...what it remembered is not
