"""What one Lambda container keeps between invocations: settings, clients, caches.

Everything is built lazily on first use (cold starts pay only for what they
touch) and once per container. AWS clients honour AWS_ENDPOINT_URL, which points
them at a local moto server in tests and the demo.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import botocore.session
from botocore.config import Config

from .app_config import AppConfigStore
from .cooldowns import Cooldowns
from .memory_cache import MemoryCache
from .settings import SETTING_VARIABLES, Settings
from .token_endpoint import TokenEndpoint
from .token_store import Cooldown, TokenStore
from .upstream_guard import UpstreamGuard
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
    """What a container remembers between invocations: tokens, app configurations (and apps that do
    not exist), remembered failures."""

    tokens: MemoryCache = field(default_factory=lambda: MemoryCache(trust_seconds=0))
    app_configs: dict[str, Any] = field(default_factory=dict)
    unknown_apps: OrderedDict[str, float] = field(default_factory=OrderedDict)
    cooldowns: Cooldowns = field(default_factory=Cooldowns)
    failure_streaks: dict[str, Cooldown] = field(default_factory=dict)


class Container:
    def __init__(self, memory: Memory | None = None) -> None:
        self.environment = _environment()
        self.memory = memory or Memory()

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_env()

    @cached_property
    def _botocore_session(self) -> botocore.session.Session:
        # botocore directly: boto3's Session adds only resources, which the function does not use.
        return botocore.session.get_session()

    def _client(self, service: str) -> Any:
        return self._botocore_session.create_client(service, config=AWS_CLIENT_CONFIG)

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
        settings = self.settings
        return AppConfigStore(lambda: self.secretsmanager, settings.secret_prefix, settings.secret_cache_seconds,
                              cache=self.memory.app_configs, token_url=settings.token_url,
                              max_stale_seconds=settings.secret_max_stale_seconds, unknown=self.memory.unknown_apps)

    @cached_property
    def vendor(self) -> TokenVendor:
        settings = self.settings
        return TokenVendor(
            settings=settings,
            configs=self.configs,
            store=self.store,
            memory=self._token_memory(settings.memory_trust_seconds),
            endpoint=TokenEndpoint(settings.token_url, connect_timeout=settings.token_connect_timeout_seconds,
                                   read_timeout=settings.token_read_timeout_seconds,
                                   max_retries=settings.token_max_retries,
                                   deadline_seconds=settings.token_fetch_deadline_seconds,
                                   max_lifetime_seconds=settings.max_token_lifetime_seconds),
            guard=UpstreamGuard(settings, self.store, self.memory.cooldowns, streaks=self.memory.failure_streaks),
        )

    SERVICES = ("secretsmanager", "dynamodb", "kms")

    def load_service_models(self) -> None:
        """Parse the models of the services a vend calls (no credentials, no connection): what a
        SnapStart snapshot can hold so that restored containers skip it."""
        for service in self.SERVICES:
            self._botocore_session.get_service_model(service)

    def forget(self) -> None:
        """Drop everything remembered (tokens, app configurations, failures); keep clients and models."""
        self.memory = Memory()
        for built_on_memory in ("configs", "vendor"):
            self.__dict__.pop(built_on_memory, None)

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
