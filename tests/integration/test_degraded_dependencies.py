"""DynamoDB, KMS or Secrets Manager failing: vends go on where they safely can, never a 500."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from devstack.stack import LocalStack

from .conftest import SCOPES, Lambda


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def moto_down(stack: LocalStack) -> Iterator[LocalStack]:
    """Lets a test stop the moto server; it is always brought back."""
    yield stack
    if not stack.moto.running:
        stack.moto.start()


def test_dynamodb_unavailable_still_vends_and_says_so(lam: Lambda, settings_env, captured_logs) -> None:  # type: ignore[no-untyped-def]
    settings_env(AWS_ENDPOINT_URL_DYNAMODB=closed_port_url())

    first = lam.vend()
    second = lam.vend()

    assert first.status == second.status == 200
    assert first.body and second.body and first.body["access_token"] == second.body["access_token"]
    assert lam.stack.token_endpoint.request_count == 1  # the second came from memory
    logs = captured_logs()
    assert "shared cache unavailable" in logs
    assert '"Degraded_dynamodb"' in logs


def test_kms_unavailable_still_vends_and_never_writes_the_token_unsealed(lam: Lambda, settings_env,  # type: ignore[no-untyped-def]
                                                                      captured_logs) -> None:
    settings_env(AWS_ENDPOINT_URL_KMS=closed_port_url())

    answer = lam.vend()

    assert '"Degraded_kms"' in captured_logs()

    assert answer.status == 200 and answer.body
    items = lam.stack.table_items()
    assert not [item for item in items if item["pk"]["S"].startswith("token#")]
    assert answer.body["access_token"] not in repr(items)


def test_secrets_manager_unavailable_with_nothing_in_memory_is_503(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(AWS_ENDPOINT_URL_SECRETS_MANAGER=closed_port_url())

    answer = lam.vend()

    assert (answer.status, answer.error) == (503, "dependency_unavailable")
    assert "Retry-After" in answer.headers
    assert lam.stack.token_endpoint.request_count == 0


def test_moto_stopped_mid_test(lam: Lambda, settings_env, moto_down: LocalStack, captured_logs) -> None:  # type: ignore[no-untyped-def]
    settings_env(SECRET_CACHE_SECONDS=0)  # every vend re-reads the secret
    before = lam.vend()
    assert before.body

    moto_down.moto.stop()
    same_key = lam.vend()  # secret: stale-if-error; token: memory
    other_key = lam.vend(scope="cx.agent-calls")  # secret: stale; table down: straight to the endpoint
    lam.new_container()
    cold = lam.vend()  # nothing in memory at all
    moto_down.moto.start()
    recovered = lam.vend()

    assert same_key.status == 200 and same_key.body
    assert same_key.body["access_token"] == before.body["access_token"]
    assert other_key.status == 200 and other_key.body and other_key.body["scope"] == "cx.agent-calls"
    assert (cold.status, cold.error) == (503, "dependency_unavailable")
    assert recovered.status == 200 and recovered.body
    assert recovered.body["access_token"] == before.body["access_token"]  # back from the table
    assert recovered.body["scope"] == SCOPES
    assert "using the copy in memory" in captured_logs()


def test_secrets_manager_failing_mid_test_falls_back_to_the_copy_in_memory(
        lam: Lambda, settings_env, captured_logs) -> None:  # type: ignore[no-untyped-def]
    settings_env(SECRET_CACHE_SECONDS=0)
    before = lam.vend()

    with lam.stack.moto.outage("secretsmanager"):
        same_key = lam.vend()
        other_key = lam.vend(scope="cx.agent-calls")

    assert same_key.status == 200 and same_key.body and before.body
    assert same_key.body["access_token"] == before.body["access_token"]
    assert other_key.status == 200
    assert "using the copy in memory" in captured_logs()


def test_a_copy_in_memory_older_than_the_stale_limit_is_not_honoured(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(SECRET_CACHE_SECONDS=0, SECRET_MAX_STALE_SECONDS=0)  # every copy is past the limit at once
    assert lam.vend().status == 200

    with lam.stack.moto.outage("secretsmanager"):
        answer = lam.vend()

    # The policy may have removed this caller since the last good read: 503, not the cached token.
    assert (answer.status, answer.error) == (503, "dependency_unavailable")
    assert "Retry-After" in answer.headers


def test_dynamodb_failing_mid_test_keeps_memory_hits_and_still_vends(lam: Lambda) -> None:
    before = lam.vend()

    with lam.stack.moto.outage("dynamodb"):
        same_key = lam.vend()
        other_key = lam.vend(scope="cx.agent-calls")

    assert same_key.body and before.body and same_key.body["access_token"] == before.body["access_token"]
    assert other_key.status == 200
    assert lam.stack.token_endpoint.request_count == 2  # the first vend and the new scope, no refetch
