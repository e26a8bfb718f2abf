"""The vend: from a validated request to a token, through every cache tier.

Order of work (DESIGN.md): app configuration, authorization, then the token
from memory, the shared table, or the token endpoint, with one fetch per key
across all containers (a lease in the table).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .app_config import AppConfig, AppConfigStore
from .cooldowns import Cooldowns
from .errors import CredentialsRejected, DependencyUnavailable, StoreUnavailable, UpstreamThrottled, UpstreamUnavailable
from .memory_cache import MemoryCache
from .observability import logger, record_degraded, record_single_flight_wait
from .policy import authorize
from .request_input import TokenRequest
from .settings import Settings
from .token_endpoint import TokenEndpoint
from .token_store import TokenStore
from .tokens import CachedToken, TokenKey, fingerprint

THROTTLED = "the token endpoint asked us to wait"
REJECTED = "the token endpoint rejected the application's credentials"


@dataclass(frozen=True)
class Vended:
    token: CachedToken
    source: str  # memory | table | upstream


class TokenVendor:
    def __init__(self, settings: Settings, configs: AppConfigStore, store: TokenStore, memory: MemoryCache,
                 endpoint: TokenEndpoint, cooldowns: Cooldowns, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._settings = settings
        self._configs = configs
        self._store = store
        self._memory = memory
        self._endpoint = endpoint
        self._cooldowns = cooldowns
        self._clock = clock
        self._sleep = sleep

    def vend(self, request: TokenRequest, caller_arn: str | None) -> Vended:
        config = self._configs.get(request.app)
        if self._cooldowns.reason(config.app, config.version_id) == REJECTED:
            # Its credentials were rejected: a new secret version may already fix them, so look
            # (at most once a second) rather than wait out SECRET_CACHE_SECONDS.
            config = self._configs.get(request.app, max_age=1)
        authorize(caller_arn, config.allowed_callers, request.scopes, config.allowed_scopes)
        try:
            return self.token_for(config, request)
        except CredentialsRejected:
            # The credentials may have just rotated: read the secret once more, past the memory cache.
            fresh = self._configs.get(request.app, force_fetch=True)
            if fresh.credential_id == config.credential_id:
                self._remember_rejection(config)
                raise
            logger.info("credentials rotated, retrying with the new ones", extra={"app": request.app})
            authorize(caller_arn, fresh.allowed_callers, request.scopes, fresh.allowed_scopes)
            try:
                return self.token_for(fresh, request)
            except CredentialsRejected:
                self._remember_rejection(fresh)
                raise

    def invalidate(self, request: TokenRequest, caller_arn: str | None, token_fingerprint: str) -> bool:
        """Drop the cached token for the request if it is still the one reported; True if dropped."""
        config = self._configs.get(request.app)
        authorize(caller_arn, config.allowed_callers, request.scopes, config.allowed_scopes)
        key = TokenKey(request.app, request.scope, config.credential_id)
        dropped_from_memory = self._memory.drop(key, token_fingerprint)
        try:
            dropped_from_table = self._store.delete_if_fingerprint(key, token_fingerprint)
        except StoreUnavailable as error:
            self._degraded(error)
            raise DependencyUnavailable("the shared cache is unavailable; report again shortly", retry_after=5) \
                from None
        return dropped_from_memory or dropped_from_table

    def token_for(self, config: AppConfig, request: TokenRequest, *, min_ttl: float | None = None,
                  use_memory: bool = True) -> Vended:
        """A token for an already authorized request. `min_ttl` raises the bar for cached tokens
        (the scheduled refresh uses it to renew tokens ahead of expiry)."""
        min_ttl = self._settings.min_ttl_seconds if min_ttl is None else min_ttl
        key = TokenKey(request.app, request.scope, config.credential_id)
        previous: str | None = None  # fingerprint of the token we had, to notice the same one coming back
        if use_memory and (hit := self._memory.get(key)):
            token, trusted = hit
            if token.servable(self._clock(), min_ttl) and (trusted or self._table_still_holds(key, token)):
                return Vended(token, "memory")
            previous = token.fingerprint
            self._memory.drop(key)
        return self._from_table_or_upstream(config, request, key, min_ttl, previous)

    def _table_still_holds(self, key: TokenKey, token: CachedToken) -> bool:
        """Re-check an entry whose memory trust ran out: has it been invalidated or replaced?"""
        try:
            held = self._store.fingerprint_of(key)
        except StoreUnavailable as error:
            self._degraded(error)
            held = token.fingerprint  # keep serving what we have rather than fail
        if held != token.fingerprint:
            return False
        self._memory.renew_trust(key)
        return True

    def _from_table_or_upstream(self, config: AppConfig, request: TokenRequest, key: TokenKey, min_ttl: float,
                                previous: str | None) -> Vended:
        owner = uuid.uuid4().hex
        try:
            hit, previous = self._table_hit(key, min_ttl, previous)
            if hit:
                return hit
            busy_until = self._store.try_acquire_lease(key, owner, self._settings.lease_seconds)
            if busy_until is not None:
                hit, previous = self._wait_for_holder(key, min_ttl, owner, previous, busy_until)
                if hit:
                    return hit
        except StoreUnavailable as error:
            self._degraded(error)
            return self._fetch(config, request, key, previous, store=False)
        return self._fetch_under_lease(config, request, key, min_ttl, owner, previous)

    def _table_hit(self, key: TokenKey, min_ttl: float, previous: str | None) -> tuple[Vended | None, str | None]:
        """The table's token if servable (unsealed only then), else the fingerprint of what it holds."""
        stored = self._store.get(key)
        if stored is None:
            return None, previous
        if not stored.servable(self._clock(), min_ttl):
            return None, stored.fingerprint
        token = self._store.unseal(key, stored)
        self._memory.put(key, token)
        return Vended(token, "table"), previous

    def _wait_for_holder(self, key: TokenKey, min_ttl: float, owner: str, previous: str | None,
                         busy_until: float) -> tuple[Vended | None, str | None]:
        """Another container is fetching: wait for the token it stores, or take over once its lease
        runs out (then the hit is None and we hold the lease). Bounded: past the wait, a 503."""
        record_single_flight_wait()
        deadline = time.monotonic() + self._settings.lease_wait_seconds
        delay = 0.05
        while time.monotonic() < deadline:
            self._sleep(min(delay * random.uniform(0.8, 1.2), max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.4)
            hit, previous = self._table_hit(key, min_ttl, previous)
            if hit:
                return hit, previous
            if self._clock() >= busy_until:  # the holder's lease ran out: it may have died
                next_busy = self._store.try_acquire_lease(key, owner, self._settings.lease_seconds)
                if next_busy is None:
                    return None, previous
                busy_until = next_busy
        raise UpstreamUnavailable("another request is fetching this token; try again shortly", retry_after=1)

    def _fetch_under_lease(self, config: AppConfig, request: TokenRequest, key: TokenKey, min_ttl: float,
                           owner: str, previous: str | None) -> Vended:
        try:
            try:
                # Re-read: a holder may have stored and released between our read and our lease.
                hit, previous = self._table_hit(key, min_ttl, previous)
            except StoreUnavailable as error:
                self._degraded(error)
                hit = None
            return hit or self._fetch(config, request, key, previous, store=True)
        finally:
            try:
                self._store.release_lease(key, owner)
            except StoreUnavailable as error:
                self._degraded(error)  # the lease runs out on its own

    def _fetch(self, config: AppConfig, request: TokenRequest, key: TokenKey, previous: str | None,
               *, store: bool) -> Vended:
        self._check_cooldown(config, shared=store)
        try:
            issued = self._endpoint.fetch(config.client_id, config.client_secret, request.scopes)
        except UpstreamThrottled as error:
            self._remember_failure(config, error.retry_after or 0, THROTTLED)
            raise
        same_again = fingerprint(issued.access_token) == previous
        if same_again:
            logger.info("token endpoint gave back the token it had issued; serving it until it expires",
                        extra={"app": config.app, "scope": key.scope})
        token = CachedToken(access_token=issued.access_token, token_type=issued.token_type, scope=key.scope,
                            expires_at=self._clock() + issued.expires_in, renewal_blocked=same_again)
        if store:
            try:
                self._store.put(key, token, config.version_id)
            except StoreUnavailable as error:
                self._degraded(error)
        self._memory.put(key, token)
        return Vended(token, "upstream")

    def _check_cooldown(self, config: AppConfig, *, shared: bool) -> None:
        """Raise 503 while a remembered failure lasts: this container's, or (before a fetch that
        would otherwise go out) one another container shared through the table."""
        self._cooldowns.check(config.app, config.version_id)
        if not shared:
            return
        try:
            held = self._store.cooldown(config.app, config.version_id)
        except StoreUnavailable as error:
            self._degraded(error)
            return
        if held:
            until, reason = held
            self._cooldowns.remember(config.app, config.version_id, until - self._clock(), reason)
            self._cooldowns.check(config.app, config.version_id)

    def _remember_rejection(self, config: AppConfig) -> None:
        self._remember_failure(config, self._settings.invalid_client_cooldown_seconds, REJECTED)

    def _remember_failure(self, config: AppConfig, seconds: float, reason: str) -> None:
        self._cooldowns.remember(config.app, config.version_id, seconds, reason)
        try:
            self._store.remember_cooldown(config.app, config.version_id, self._clock() + seconds, reason)
        except StoreUnavailable as error:
            self._degraded(error)  # this container still remembers

    @staticmethod
    def _degraded(error: StoreUnavailable) -> None:
        record_degraded(error.dependency)
        logger.warning("shared cache unavailable, going on without it",
                       extra={"dependency": error.dependency, "reason": str(error)})
