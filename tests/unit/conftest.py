"""What the unit tests of the function's I/O classes share: a hand-moved clock, and the real local stack (a
moto server and the stub token endpoint, over HTTP on 127.0.0.1) to build a TokenStore or TokenEndpoint on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from token_vending.app_config import AppConfig, parse_app_config
from token_vending.token_store import TokenStore
from token_vending.tokens import CachedToken, TokenKey
from token_vending.upstream_guard import GuardTable

from devstack.local_aws import KEY_ALIAS, TABLE_NAME
from devstack.stack import LocalStack

CALLER_ARN = "arn:aws:sts::111122223333:assumed-role/billing-service/billing-session"
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z: a whole hour, so budgets start fresh


ACCESS_TOKEN = "sgm_7YbQx-this-is-the-token"
NOW = 1_700_000_000.0


def token(access_token: str = ACCESS_TOKEN, expires_at: float = NOW + 3600, renewal_blocked: bool = False,
          scope: str = "cx.agent-calls") -> CachedToken:
    """A cached token, as the tests of tokens and of the memory cache use it."""
    return CachedToken(access_token=access_token, token_type="bearer", scope=scope, expires_at=expires_at,
                       renewal_blocked=renewal_blocked)


def key(app: str = "demo", scope: str = "cx.agent-calls", credential_id: str = "c" * 16) -> TokenKey:
    return TokenKey(app, scope, credential_id)


class Clock:
    """A wall clock the test moves by hand; `sleep` moves it too, so waiting costs no real time."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


@dataclass
class Aws:
    """The local stack, emptied, and the function's table classes on it, reading the given clock."""

    stack: LocalStack
    clock: Clock

    def store(self) -> TokenStore:
        dynamodb, kms = self.stack.client("dynamodb"), self.stack.client("kms")
        return TokenStore(lambda: dynamodb, lambda: kms, TABLE_NAME, KEY_ALIAS, clock=self.clock)

    def guard_table(self) -> GuardTable:
        dynamodb = self.stack.client("dynamodb")
        return GuardTable(lambda: dynamodb, TABLE_NAME, clock=self.clock)

    def app(self, app: str = "demo", **overrides: Any) -> AppConfig:
        """A stored app secret (the stub accepts its credentials), parsed as the function parses it."""
        secret = self.stack.add_app(app, allowed_callers=[CALLER_ARN], **overrides)
        version = self.stack.client("secretsmanager").get_secret_value(SecretId=f"sangoma/token-vending/{app}")
        return parse_app_config(app, json.dumps(secret), version["VersionId"], self.stack.token_endpoint.url)

    def items(self, prefix: str) -> list[dict[str, Any]]:
        return [item for item in self.stack.table_items() if item["pk"]["S"].startswith(prefix)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def aws(local_stack: LocalStack, clock: Clock) -> Aws:
    local_stack.reset()
    return Aws(local_stack, clock)
