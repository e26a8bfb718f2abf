"""What one Lambda container keeps between invocations: settings, clients, caches.

Everything is built lazily on first use (cold starts pay only for what they
touch) and once per container. AWS clients honour AWS_ENDPOINT_URL, which points
them at a local moto server in tests and the demo.
"""

from __future__ import annotations

from functools import cache, cached_property
from typing import Any

import botocore.session
from botocore.config import Config

from . import settings as function_settings
from .app_config import AppConfigStore
from .clock import SYSTEM_CLOCK, Clock
from .memory_cache import MemoryCache
from .observability import logger
from .reports import TokenReports
from .settings import InvalidSettings, Settings
from .token_endpoint import TokenEndpoint
from .token_store import TokenStore
from .upstream_guard import GuardTable, UpstreamGuard
from .vending import TokenSource, TokenVendor

# Standard retry mode and short timeouts: every call must fit well inside API Gateway's 29 s.
AWS_CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=3,
    retries={"mode": "standard", "max_attempts": 3},
)


@cache
def _service_models() -> Any:
    """botocore's loader of service models, shared by every container of the process: parsing the models is most
    of what building a client costs, and they never change. A Lambda process has one container; tests and
    benchmarks that start new ones in a process reuse the models instead of parsing them again."""
    return botocore.session.get_session().get_component("data_loader")


class Container:
    SERVICES = ("secretsmanager", "dynamodb", "kms")

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock  # every class below reads the time from it (tests pass one they move)

    @cached_property
    def _loaded_settings(self) -> Settings | InvalidSettings:
        try:
            return function_settings.load()
        except InvalidSettings as invalid:
            # Once per container: every request would say the same. Names and reasons only, never a value.
            logger.error("the function's settings are invalid: every request answers 500 until they are fixed",
                         extra={"problems": invalid.problems})
            return invalid

    @property
    def settings(self) -> Settings:
        """The checked settings; InvalidSettings (a 500, already logged) while they cannot work."""
        loaded = self._loaded_settings
        if isinstance(loaded, InvalidSettings):
            raise InvalidSettings(loaded.problems)
        return loaded

    @cached_property
    def _botocore_session(self) -> botocore.session.Session:
        # botocore directly: boto3's Session adds only resources, which the function does not use.
        session = botocore.session.get_session()
        session.register_component("data_loader", _service_models())
        return session

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
                          self.settings.token_kms_key_id, clock=self.clock.now)

    @cached_property
    def configs(self) -> AppConfigStore:
        return AppConfigStore(lambda: self.secretsmanager, self.settings, clock=self.clock.monotonic)

    @cached_property
    def endpoint(self) -> TokenEndpoint:
        return TokenEndpoint(self.settings, clock=self.clock)

    @cached_property
    def guard(self) -> UpstreamGuard:
        return UpstreamGuard(self.settings, GuardTable(lambda: self.dynamodb, self.settings.token_table_name,
                                                       clock=self.clock.now), clock=self.clock.now)

    @cached_property
    def memory(self) -> MemoryCache:
        return MemoryCache(trust_seconds=self.settings.memory_trust_seconds, clock=self.clock.monotonic)

    @cached_property
    def source(self) -> TokenSource:
        return TokenSource(self.settings, self.store, self.memory, self.endpoint, self.guard, clock=self.clock.now,
                           sleep=self.clock.sleep)

    @cached_property
    def vendor(self) -> TokenVendor:
        reports = TokenReports(self.settings, self.store, self.memory, self.guard, clock=self.clock.now)
        return TokenVendor(self.configs, self.source, reports)

    def load_service_models(self) -> None:
        """Parse the models of the services a vend calls (no credentials, no connection): what a
        SnapStart snapshot can hold so that restored containers skip it."""
        for service in self.SERVICES:
            self._botocore_session.get_service_model(service)

    def forget(self) -> None:
        """Drop everything remembered (tokens, app configurations, failures); keep clients and models."""
        for remembering in ("configs", "guard", "memory", "source", "vendor"):
            self.__dict__.pop(remembering, None)


_current = Container()


def current() -> Container:
    return _current


def start_new_container(clock: Clock | None = None) -> Container:
    """Forget everything this container holds and read the environment again, as a fresh Lambda
    container would (tests and benchmarks). The new one reads the same clock unless given another."""
    global _current
    _current = Container(_current.clock if clock is None else clock)
    return _current
