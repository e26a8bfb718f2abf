"""The vend: from a validated request to a token, through every cache tier.

Order of work: app configuration, authorization, then the token from memory,
the shared table, or the token endpoint, with one fetch per key across all
containers (a lease in the table). What may stop a fetch (remembered failures,
the mint budget) is upstream_guard.py's to decide.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .app_config import AppConfig, AppConfigStore
from .errors import (
    CredentialsRejected,
    DependencyUnavailable,
    SlowDown,
    StoreUnavailable,
    UpstreamUnavailable,
    VendingError,
)
from .memory_cache import MemoryCache
from .observability import logger, record_single_flight_wait, record_store_degraded, record_unsealable_entry
from .request_input import TokenRequest
from .settings import Settings
from .token_endpoint import TokenEndpoint
from .token_store import EntryRejected, TokenStore
from .tokens import CachedToken, TokenKey, fingerprint
from .upstream_guard import UpstreamGuard


@dataclass(frozen=True)
class Vended:
    token: CachedToken
    source: str  # memory | table | upstream
    expires_in: int  # what the answer says: the endpoint's own figure for a token fetched now,
    #                  else the whole seconds it has left


class TokenVendor:
    def __init__(self, settings: Settings, configs: AppConfigStore, store: TokenStore, memory: MemoryCache,
                 endpoint: TokenEndpoint, guard: UpstreamGuard, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._settings = settings
        self._configs = configs
        self._store = store
        self._memory = memory
        self._endpoint = endpoint
        self._guard = guard
        self._clock = clock
        self._sleep = sleep

    def vend(self, request: TokenRequest, caller_arn: str | None) -> Vended:
        self._endpoint.check_url()  # a refused TOKEN_URL answers 500 before any call
        config = self._configs.get(request.app)
        if self._guard.credentials_rejected(config):
            # Its credentials were rejected: a new secret version may already fix them, so look
            # (at most once a second) rather than wait out SECRET_CACHE_SECONDS.
            config = self._configs.get(request.app, max_age=1)
        config.authorize(caller_arn, request.scopes)
        try:
            return self.token_for(config, request)
        except CredentialsRejected:
            # The credentials may have just rotated: read the secret once more, past the memory cache.
            fresh = self._configs.get(request.app, force_fetch=True)
            if fresh.credential_id == config.credential_id:
                self._guard.rejected(config)
                raise
            logger.info("credentials rotated, retrying with the new ones", extra={"app": request.app})
            fresh.authorize(caller_arn, request.scopes)
            try:
                return self.token_for(fresh, request)
            except CredentialsRejected:
                self._guard.rejected(fresh)
                raise

    def invalidate(self, request: TokenRequest, caller_arn: str | None, token_fingerprint: str) -> bool:
        """Drop the cached token for the request if it is still the one reported; True if dropped.
        A token minted less than MIN_REPORT_AGE_SECONDS ago is not dropped (SlowDown): report and
        vend in a loop must not mint without end."""
        config = self._configs.get(request.app)
        config.authorize(caller_arn, request.scopes)
        key = TokenKey(request.app, request.scope, config.credential_id)
        try:
            held = self._store.held_token(key)
            minted = [held.minted_at] if held and held.fingerprint == token_fingerprint else []
            remembered = self._memory.get(key)
            if remembered and remembered[0].fingerprint == token_fingerprint:
                minted.append(remembered[0].minted_at)
            now = self._clock()
            reportable_from = max(minted, default=0.0) + self._settings.min_report_age_seconds
            if now < reportable_from:
                raise SlowDown(retry_after=max(1, math.ceil(reportable_from - now)))
            dropped_from_memory = self._memory.drop(key, token_fingerprint)
            dropped_from_table = self._store.delete_if_fingerprint(
                key, token_fingerprint, minted_before=now - self._settings.min_report_age_seconds)
        except StoreUnavailable as error:
            record_store_degraded(error.dependency, str(error))
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
            now = self._clock()
            if token.servable(now, min_ttl) and (trusted or self._table_still_holds(key, token)):
                return Vended(token, "memory", token.whole_seconds_left(now))
            previous = token.fingerprint
            self._memory.drop(key)
        return self._from_table_or_upstream(config, request, key, min_ttl, previous)

    def _table_still_holds(self, key: TokenKey, token: CachedToken) -> bool:
        """Re-check an entry whose memory trust ran out: has it been invalidated or replaced?"""
        try:
            held = self._store.held_token(key)
        except StoreUnavailable as error:
            record_store_degraded(error.dependency, str(error))
            return True  # keep serving what we have rather than fail
        if held is None or held.fingerprint != token.fingerprint:
            return False
        self._memory.renew_trust(key)
        return True

    def _from_table_or_upstream(self, config: AppConfig, request: TokenRequest, key: TokenKey, min_ttl: float,
                                previous: str | None) -> Vended:
        owner = uuid.uuid4().hex
        rejected: set[str] = set()  # fingerprints of entries that did not unseal: not tried again
        try:
            hit, previous = self._table_hit(key, min_ttl, previous, rejected)
            if hit:
                return hit
            busy_until = self._store.try_acquire_lease(key, owner, self._settings.lease_seconds)
            if busy_until is not None:
                hit, previous = self._wait_for_holder(key, min_ttl, owner, previous, busy_until, rejected)
                if hit:
                    return hit
        except StoreUnavailable as error:
            record_store_degraded(error.dependency, str(error))
            return self._fetch(config, request, key, previous, store=False)
        return self._fetch_under_lease(config, request, key, min_ttl, owner, previous, rejected)

    def _table_hit(self, key: TokenKey, min_ttl: float, previous: str | None,
                   rejected: set[str]) -> tuple[Vended | None, str | None]:
        """The table's token if servable (unsealed only then), else the fingerprint of what it holds."""
        stored = None
        try:
            stored = self._store.get(key)
            if stored is None or stored.fingerprint in rejected:
                return None, previous
            now = self._clock()
            if not stored.servable(now, min_ttl):
                return None, stored.fingerprint
            token = self._store.unseal(key, stored)
        except EntryRejected as problem:
            # Edited, or sealed before the seal bound its metadata: a miss; the fetch overwrites it.
            rejected.add(stored.fingerprint if stored else "")
            record_unsealable_entry()
            logger.warning("cached entry does not unseal; fetching a new token", extra={
                "app": key.app, "scope": key.scope, "problem": str(problem)})
            return None, previous
        self._memory.put(key, token)
        return Vended(token, "table", token.whole_seconds_left(now)), previous

    def _wait_for_holder(self, key: TokenKey, min_ttl: float, owner: str, previous: str | None,
                         busy_until: float, rejected: set[str]) -> tuple[Vended | None, str | None]:
        """Another container is fetching: wait for the token it stores, or take over once its lease
        runs out (then the hit is None and we hold the lease). Bounded: past the wait, a 503."""
        record_single_flight_wait()
        deadline = time.monotonic() + self._settings.lease_wait_seconds
        delay = 0.05
        while time.monotonic() < deadline:
            self._sleep(min(delay * random.uniform(0.8, 1.2), max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.4)
            hit, previous = self._table_hit(key, min_ttl, previous, rejected)
            if hit:
                return hit, previous
            if self._clock() >= busy_until:  # the holder's lease ran out: it may have died
                next_busy = self._store.try_acquire_lease(key, owner, self._settings.lease_seconds)
                if next_busy is None:
                    return None, previous
                busy_until = next_busy
        raise UpstreamUnavailable("another request is fetching this token; try again shortly", retry_after=1)

    def _fetch_under_lease(self, config: AppConfig, request: TokenRequest, key: TokenKey, min_ttl: float,
                           owner: str, previous: str | None, rejected: set[str]) -> Vended:
        try:
            try:
                # Re-read: a holder may have stored and released between our read and our lease.
                hit, previous = self._table_hit(key, min_ttl, previous, rejected)
            except StoreUnavailable as error:
                record_store_degraded(error.dependency, str(error))
                hit = None
            return hit or self._fetch(config, request, key, previous, store=True)
        finally:
            try:
                self._store.release_lease(key, owner)
            except StoreUnavailable as error:
                record_store_degraded(error.dependency, str(error))  # the lease runs out on its own

    def _fetch(self, config: AppConfig, request: TokenRequest, key: TokenKey, previous: str | None,
               *, store: bool) -> Vended:
        self._guard.admit(config, key, shared=store)
        try:
            issued = self._endpoint.fetch(config.client_id, config.client_secret, request.scopes)
        except VendingError as error:
            self._guard.failed(config, key, error)
            raise
        self._guard.succeeded(config)
        same_again = fingerprint(issued.access_token) == previous
        if same_again:
            logger.info("token endpoint gave back the token it had issued; serving it until it expires",
                        extra={"app": config.app, "scope": key.scope})
        now = self._clock()
        token = CachedToken(access_token=issued.access_token, token_type=issued.token_type, scope=key.scope,
                            expires_at=now + issued.expires_in, renewal_blocked=same_again, minted_at=now)
        if store:
            try:
                self._store.put(key, token, config.version_id)
            except StoreUnavailable as error:
                record_store_degraded(error.dependency, str(error))
        self._memory.put(key, token)
        return Vended(token, "upstream", issued.expires_in)
