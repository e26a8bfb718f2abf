"""The deployed function, through the runtime client, against the local stack: what Lambda would run.

Each test's containers end with a check (conftest.finish) that the process ran on CPython 3.13 with
the runtime's botocore, loaded nothing but the artifact, the runtime's packages and the standard
library, compiled nothing of the artifact from source, and wrote nothing into it.
"""

from __future__ import annotations

import json
from typing import Any

from devstack.stack import LocalStack

from .conftest import Deployed, Start, event, finish, vend_event


def _body(answer: dict[str, Any]) -> dict[str, Any]:
    return json.loads(answer["body"])  # type: ignore[no-any-return]


def test_vend_from_upstream_then_memory_then_the_table_in_a_new_container(
        deployed: Deployed, stack: LocalStack, start_container: Start) -> None:
    first_container = start_container()

    upstream = first_container.invoke(event("vend")).result()
    stack.moto.calls.clear()
    memory = first_container.invoke(event("vend")).result()
    calls_for_memory_hit = list(stack.moto.calls)
    first = finish(first_container, deployed)

    stack.moto.calls.clear()
    second_container = start_container()
    table = second_container.invoke(event("vend")).result()
    calls_for_table_hit = list(stack.moto.calls)
    second = finish(second_container, deployed)

    assert upstream["statusCode"] == memory["statusCode"] == table["statusCode"] == 200
    token = _body(upstream)["access_token"]
    assert _body(memory)["access_token"] == _body(table)["access_token"] == token
    assert stack.token_endpoint.request_count == 1
    assert calls_for_memory_hit == []
    assert calls_for_table_hit == ["secretsmanager.GetSecretValue", "dynamodb.GetItem", "kms.Decrypt"]
    client_secret = stack.token_endpoint.clients["demo-client"]
    for line in first.log_lines + second.log_lines:
        assert token not in line and client_secret not in line


def test_errors_are_answered_as_api_errors(deployed: Deployed, stack: LocalStack, start_container: Start) -> None:
    container = start_container()

    bad_name = container.invoke(event("vend-bad-app")).result()
    unknown = container.invoke(vend_event("nobody")).result()  # Secrets Manager's error, through the runtime's botocore
    finish(container, deployed)

    assert bad_name["statusCode"] == 400 and _body(bad_name)["error"] == "invalid_request"
    assert unknown["statusCode"] == 404 and _body(unknown)["error"] == "unknown_app"
    assert stack.token_endpoint.request_count == 0


def test_scheduled_prewarm_mints_the_listed_tokens(deployed: Deployed, stack: LocalStack,
                                                   start_container: Start) -> None:
    container = start_container()

    run = container.invoke(event("prewarm")).result()
    vend = container.invoke(event("vend")).result()
    finish(container, deployed)

    assert run["minted"] == 2 and run["failed"] == 0
    assert stack.token_endpoint.request_count == 2  # the two listed tokens; the vend found one of them
    assert vend["statusCode"] == 200
    assert len([item for item in stack.table_items() if item["kind"]["S"] == "token"]) == 2
