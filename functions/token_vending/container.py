"""What one Lambda container keeps between invocations: settings, clients, caches.

Everything is built lazily on first use (cold starts pay only for what they
touch) and once per container. AWS clients honour AWS_ENDPOINT_URL, which points
them at a local moto server in tests and the demo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

from .app_config import AppConfigStore
from .cooldowns import Cooldowns
from .memory_cache import MemoryCache
from .settings import SETTING_VARIABLES, Settings
from .token_endpoint import TokenEndpoint, build_session
from .token_store import TokenStore
from .vending import TokenVendor

# Standard retry mode and short timeouts: every call must fit well inside API Gateway's 29 s.
AWS_CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=3,
    retries={"mode": "standard", "max_attempts": 3},
)


# What a container's settings and AWS clients are built from.
ENVIRONMENT = (*SETTING_VARIABLES, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS",
               "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_REGION", "AWS_DEFAULT_REGION")
# Of those, the ones that say which tokens and apps there are: a change means another stack.
STACK_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "TOKEN_URL", "TOKEN_TABLE_NAME",
                     "TOKEN_KMS_KEY_ID", "SECRET_PREFIX")


def _environment() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in ENVIRONMENT}


@dataclass
class Memory:
    """What a container remembers between invocations: tokens, app configurations, cooldowns."""

    tokens: MemoryCache = field(default_factory=lambda: MemoryCache(trust_seconds=0))
    app_configs: dict[str, Any] = field(default_factory=dict)
    cooldowns: Cooldowns = field(default_factory=Cooldowns)


class Container:
    def __init__(self, memory: Memory | None = None) -> None:
        self.environment = _environment()
        self.memory = memory or Memory()

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_env()

    @cached_property
    def _boto_session(self) -> boto3.Session:
        return boto3.Session()

    def _client(self, service: str) -> Any:
        return self._boto_session.client(service, config=AWS_CLIENT_CONFIG)  # type: ignore[call-overload]

    @cached_property
    def secretsmanager(self) -> Any:
        return self._client("secretsmanager")

    @cached_property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @cached_property
    def kms(self) -> Any:
        return self._client("kms")

    @cached_property
    def store(self) -> TokenStore:
        return TokenStore(lambda: self.dynamodb, lambda: self.kms, self.settings.token_table_name,
                          self.settings.token_kms_key_id)

    @cached_property
    def configs(self) -> AppConfigStore:
        return AppConfigStore(lambda: self.secretsmanager, self.settings.secret_prefix,
                              self.settings.secret_cache_seconds, cache=self.memory.app_configs)

    @cached_property
    def vendor(self) -> TokenVendor:
        settings = self.settings
        return TokenVendor(
            settings=settings,
            configs=self.configs,
            store=self.store,
            memory=self._token_memory(settings.memory_trust_seconds),
            endpoint=TokenEndpoint(build_session(settings.token_max_retries), settings.token_url,
                                   settings.token_connect_timeout_seconds, settings.token_read_timeout_seconds,
                                   settings.max_token_lifetime_seconds),
            cooldowns=self.memory.cooldowns,
        )

    def _token_memory(self, trust_seconds: float) -> MemoryCache:
        self.memory.tokens.trust_seconds = trust_seconds
        return self.memory.tokens


_current = Container()


# Lambda never changes a running container's environment (LAMBDA_TASK_ROOT marks one). Test
# harnesses and benchmarks can, between invocations: then settings and clients are rebuilt, and
# what the container remembers is kept unless the change points at another stack. (A test that
# points one service at a closed port mid-test still sees stale-if-error and memory hits.)
_ENVIRONMENT_CAN_CHANGE = "LAMBDA_TASK_ROOT" not in os.environ


def current() -> Container:
    global _current
    if _ENVIRONMENT_CAN_CHANGE:
        environment = _environment()
        if environment != _current.environment:
            same_stack = all(environment[name] == _current.environment[name] for name in STACK_ENVIRONMENT)
            _current = Container(memory=_current.memory if same_stack else None)
    return _current


def start_new_container() -> Container:
    """Forget everything this container holds, as a fresh Lambda container would (tests, benchmarks)."""
    global _current
    _current = Container()
    return _current
