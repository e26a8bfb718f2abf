"""The embedded local stack for integration tests: a real moto server and a real
stub token endpoint on 127.0.0.1, and the real handler driven with API Gateway events.

Each test starts from empty AWS resources and a fresh container (empty memory caches).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from token_vending.clock import SYSTEM_CLOCK, Clock
from token_vending.shared_table import HOUR

from devstack.lambda_context import LocalLambdaContext
from devstack.stack import LocalStack

EVENTS = Path(__file__).resolve().parents[2] / "events"
CALLER_ROLE = "arn:aws:iam::111122223333:role/billing-service"
CALLER_SESSION = "arn:aws:sts::111122223333:assumed-role/billing-service/billing-session"
CALLER_HOLDER = "arn:aws:sts::111122223333:assumed-role/billing-service"  # whose tokens its sessions are given
SCOPES = "cx.agent-calls cx.queue-calls"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None

    @property
    def error(self) -> str | None:
        return self.body.get("error") if self.body else None


class Lambda:
    """Invokes the real handler the way API Gateway and EventBridge do."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack

    @staticmethod
    def api_event(method: str = "GET", app: str = "demo", scope: str | list[str] | None = SCOPES,
                  caller: str | None = CALLER_SESSION, extra_query: dict[str, str] | None = None) -> dict[str, Any]:
        event: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / "vend.json").read_text()))
        path = f"/apps/{app}/token"
        event.update(httpMethod=method, path=path, pathParameters={"app": app})
        event["requestContext"].update(httpMethod=method, path="/v1" + path)
        values = [] if scope is None else [scope] if isinstance(scope, str) else list(scope)
        multi: dict[str, list[str]] = {"scope": values} if values else {}
        for name, value in (extra_query or {}).items():
            multi[name] = [value]
        event["multiValueQueryStringParameters"] = multi or None
        event["queryStringParameters"] = {name: vals[-1] for name, vals in multi.items()} or None
        event["requestContext"]["identity"]["userArn"] = caller
        return event

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        from token_vending.app import lambda_handler

        return lambda_handler(event, LocalLambdaContext())  # type: ignore[no-any-return]

    def call(self, method: str = "GET", **kwargs: Any) -> Answer:
        result = self.invoke(self.api_event(method, **kwargs))
        body = json.loads(result["body"]) if result.get("body") else None
        headers = {**(result.get("headers") or {})}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.setdefault(name, values[-1])
        return Answer(result["statusCode"], headers, body)

    def vend(self, **kwargs: Any) -> Answer:
        return self.call("GET", **kwargs)

    def report(self, fingerprint: str, **kwargs: Any) -> Answer:
        return self.call("DELETE", extra_query={"fingerprint": fingerprint}, **kwargs)

    @staticmethod
    def new_container(clock: Clock | None = None) -> None:
        """What a cold Lambda container has: nothing in memory. It reads the same clock as the last one
        unless given another."""
        from token_vending import container

        container.start_new_container(clock)


class MovableClock:
    """The function's clock, owned by a test: real time plus however far the test has moved it on. The
    function's own waits (for a lease, a Retry-After, a back-off) are recorded and jumped over, not slept."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.waits: list[float] = []
        self.clock = Clock(now=lambda: time.time() + self.offset, monotonic=lambda: time.monotonic() + self.offset,
                           sleep=self.wait)

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.advance(seconds)

    def to_the_start_of_an_hour(self) -> None:
        """On to one second past the start of the next clock hour (an hourly budget's period)."""
        self.advance(HOUR - self.clock.now() % HOUR + 1)


# Tests that report a token right after vending it are about what a report does, not about how
# soon one may come: they run without the minimum age (its own tests set it).
TEST_DEFAULTS = {"MIN_REPORT_AGE_SECONDS": "0"}


@pytest.fixture
def stack(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    local_stack.reset()
    for name, value in {**local_stack.env, **TEST_DEFAULTS}.items():
        monkeypatch.setenv(name, value)
    return local_stack


@pytest.fixture
def lam(stack: LocalStack) -> Iterator[Lambda]:
    """The function, in a fresh container, against a clean stack with app `demo` set up."""
    stack.add_app("demo", allowed_callers=[CALLER_ROLE])
    Lambda.new_container(SYSTEM_CLOCK)
    stack.moto.calls.clear()
    yield Lambda(stack)
    Lambda.new_container(SYSTEM_CLOCK)


@pytest.fixture
def clock(lam: Lambda) -> MovableClock:
    """The clock the function reads from now on (this container and every new one in the test), moved by the
    test instead of waiting."""
    owned = MovableClock()
    lam.new_container(owned.clock)
    return owned


@pytest.fixture
def budget_hour(clock: MovableClock) -> MovableClock:
    """The function's clock at the start of a clock hour, for a test that spends an hourly mint budget by vending:
    whenever the test runs, the budget cannot start afresh halfway through it (a client that honours a short
    Retry-After would otherwise retry just as a new hour begins)."""
    clock.to_the_start_of_an_hour()
    return clock


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set function settings for this test; the next container reads them."""

    def apply(**values: Any) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        Lambda.new_container()

    return apply


def child_env(stack: LocalStack, **extra: str) -> dict[str, str]:
    """The environment a separate Python process (a cold container) needs against this stack."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, **stack.env, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(root / "functions"), str(root)])
    return env
