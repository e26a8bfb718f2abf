"""One fetch per key across containers: a lease in the table, taken with a conditional write.

Each container here is a separate Python process with its own import of the
handler and its own memory cache, as Lambda runs them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from token_vending.app_config import parse_app_config
from token_vending.tokens import TokenKey

from devstack.stack import TABLE_NAME, LocalStack

from .conftest import CALLER_HOLDER, Lambda, MovableClock, child_env

Started = list[tuple[subprocess.Popen[bytes], Path]]


def start_cold_containers(stack: LocalStack, event: dict[str, Any] | list[dict[str, Any]], count: int,
                          tmp_path: Path, start_in: float = 4.0, **env: str) -> Started:
    """`count` cold containers, each answering the event (or its own of a list) at the same moment."""
    start_at = time.time() + start_in  # after every process has imported the handler
    events = event if isinstance(event, list) else [event] * count
    started = []
    for index in range(count):
        result = tmp_path / f"container-{index}.json"
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.cold_container", json.dumps(events[index]), str(start_at), str(result)],
            env=child_env(stack, POWERTOOLS_LOG_LEVEL="WARNING", **env),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        started.append((process, result))
    return started


def results_of(started: Started) -> list[dict[str, Any]]:
    results = []
    for process, result in started:
        _, stderr = process.communicate(timeout=180)  # a bound for a broken container, not a timing expectation
        assert process.returncode == 0, stderr.decode()
        results.append(json.loads(result.read_text()))
    return results


@pytest.mark.slow
def test_eight_cold_containers_missing_one_key_make_one_upstream_request(lam: Lambda, tmp_path: Path) -> None:
    lam.stack.token_endpoint.delay = 0.5

    results = results_of(start_cold_containers(lam.stack, lam.api_event(), 8, tmp_path))

    assert lam.stack.token_endpoint.request_count == 1
    assert [r["status"] for r in results] == [200] * 8
    tokens = {json.loads(r["body"])["access_token"] for r in results}
    assert len(tokens) == 1


# A lease that runs out soon, and a fetch deadline within it (a container refuses settings without that).
SHORT_LEASE = {"LEASE_SECONDS": "3", "TOKEN_FETCH_DEADLINE_SECONDS": "2.5"}


@pytest.mark.slow
def test_a_lease_holder_that_dies_is_taken_over_when_its_lease_runs_out(  # type: ignore[no-untyped-def]
        lam: Lambda, clock: MovableClock, tmp_path: Path, settings_env) -> None:
    lam.stack.token_endpoint.delay = 30  # the holder will be stuck upstream when it is killed
    [(holder, _)] = start_cold_containers(lam.stack, lam.api_event(), 1, tmp_path, start_in=0, **SHORT_LEASE)
    deadline = time.monotonic() + 120  # a bound for a broken holder, not a timing expectation
    while lam.stack.token_endpoint.request_count == 0:  # it holds the lease and waits on the endpoint
        assert time.monotonic() < deadline, "the holder never asked the token endpoint"
        time.sleep(0.05)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lam.stack.token_endpoint.delay = 0
    settings_env(**SHORT_LEASE, LEASE_WAIT_SECONDS="8")

    answer = lam.vend()

    assert answer.status == 200
    assert lam.stack.token_endpoint.request_count == 2  # the dead holder's and the taker-over's


def test_a_waiter_whose_wait_runs_out_answers_503_token_in_progress_without_calling_upstream(  # type: ignore[no-untyped-def]
        lam: Lambda, clock) -> None:
    secret = lam.stack.client("secretsmanager").get_secret_value(SecretId="sangoma/token-vending/demo")
    config = parse_app_config("demo", secret["SecretString"], secret["VersionId"], lam.stack.token_endpoint.url)
    key = TokenKey("demo", "cx.agent-calls cx.queue-calls", config.credential_id, CALLER_HOLDER)
    # Another container holds the lease for this key and is still fetching.
    lam.stack.client("dynamodb").put_item(TableName=TABLE_NAME, Item={
        "pk": {"S": key.lease_key}, "kind": {"S": "lease"}, "owner": {"S": "another-container"},
        "lease_until": {"N": str(clock.clock.now() + 30)}})

    answer = lam.vend()

    # The token endpoint was never asked: the answer says another request is fetching, not that it failed.
    assert (answer.status, answer.error) == (503, "token_in_progress")
    assert answer.headers["Retry-After"] == "1"
    assert lam.stack.token_endpoint.request_count == 0
    assert 0 < sum(clock.waits) <= 14.0  # at most LEASE_WAIT_SECONDS, waited on the test's clock, not slept
