"""The vend: from a validated request to a token, through every cache tier.

It reads as the steps of docs/design.md: the app's configuration, authorization, then the
token: from memory, else one loop that reads the table, takes the key's lease or waits for
its holder, and fetches and stores once it holds the lease (one fetch per key across all
containers), reading the table once a round. A request's state on that way is one `Lookup`.
What may stop a fetch (remembered failures, the mint budgets) is upstream_guard.py's to decide:
each fetch goes through the guard once. An outage of DynamoDB or KMS is worked around where it is
caught, and noted in the request's `StoreHealth`; a misconfiguration is a 500 (aws_errors.py).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from .app_config import AppConfig, AppConfigStore
from .errors import (
    CredentialsHeldOff,
    CredentialsRejected,
    StoreUnavailable,
    TokenInProgress,
    VendingError,
)
from .memory_cache import MemoryCache
from .observability import logger, record_single_flight_wait, record_unsealable_entry
from .policy import Caller
from .reports import Reported, TokenReports
from .request_input import TokenRequest
from .settings import Settings
from .store_health import StoreHealth
from .token_endpoint import IssuedToken, TokenEndpoint
from .token_store import EntryRejected, PaidReplacement, StoredToken, TokenStore
from .tokens import CachedToken, TokenKey, fingerprint
from .upstream_guard import UpstreamGuard

FIRST_WAIT_SECONDS, LONGEST_WAIT_SECONDS = 0.05, 0.4  # between reads while another container fetches


class TokenOrder(NamedTuple):
    """A token wanted: for which request, whose token it is, and whose mint budget a fetch spends."""

    request: TokenRequest
    holder: str = ""  # whose token it is (policy.py); "" when the app shares its tokens
    payer: str | None = None  # the caller's budget holder, whose hourly mint budget a fetch spends; None: the schedule


class Vended(NamedTuple):
    token: CachedToken
    source: str  # memory | table | upstream
    expires_in: int  # what the answer says: the endpoint's own figure for a token fetched now,
    #                  else the whole seconds it has left
    holder: str  # whose token it is ("" when the app shares its tokens)
    stored: bool = False  # a token fetched now reached the table
    default_lifetime: bool = False  # fetched now, and the endpoint did not say how long it lives
    charged_to: str = ""  # fetched now: whose budget paid for it (the payer, or the reporter of the token it replaces)
    prepaid: bool = False  # fetched now to replace a reported token, whose reporter paid


class TokenVendor:
    """A caller's request, step by step: the app's configuration, authorization, then the token from
    TokenSource; or, for a report, the cached token dropped."""

    def __init__(self, configs: AppConfigStore, source: TokenSource, reports: TokenReports) -> None:
        self._configs = configs
        self._source = source
        self._reports = reports

    def vend(self, request: TokenRequest, caller: Caller | None) -> Vended:
        config = self.authorized_config(request, caller)
        assert caller is not None  # authorized: there is one
        try:
            return self._token(config, request, caller)
        except (CredentialsRejected, CredentialsHeldOff) as rejected:
            # The credentials may have rotated since: read the secret again (past the memory cache after a
            # rejection now; at most once a second while one is remembered) and ask once more with new ones.
            fresh = self._configs.get(request.app, force_fetch=isinstance(rejected, CredentialsRejected), max_age=1)
            if fresh.credential_id == config.credential_id:
                raise
            logger.info("credentials rotated, retrying with the new ones", extra={"app": request.app})
            fresh.authorize(caller, request.scopes)
            return self._token(fresh, request, caller)

    def _token(self, config: AppConfig, request: TokenRequest, caller: Caller) -> Vended:
        order = TokenOrder(request, config.holder_for(caller), caller.budget_holder)
        try:
            return self._source.token_for(config, order)
        except VendingError as error:
            _audit_refusal(error, order.holder)
            raise

    def authorized_config(self, request: TokenRequest, caller: Caller | None) -> AppConfig:
        """The app's configuration, once the caller is allowed these scopes under it."""
        config = self._configs.get(request.app)
        config.authorize(caller, request.scopes)
        return config

    def report(self, request: TokenRequest, caller: Caller | None, token_fingerprint: str) -> Reported:
        """Drop the reporting caller's cached token for the request, if it is still the one reported, at the
        cost of one mint of the caller's budget."""
        config = self.authorized_config(request, caller)
        assert caller is not None  # authorized: there is one
        key = TokenKey(request.app, request.scope, config.credential_id, config.holder_for(caller))
        try:
            return self._reports.drop(key, token_fingerprint, caller.budget_holder)
        except VendingError as error:
            _audit_refusal(error, key.holder)
            raise


def _audit_refusal(error: VendingError, holder: str) -> None:
    """What a refusal's audit record adds: whose token it was."""
    error.audited["holder"] = holder


@dataclass
class Lookup:
    """One request's way to a token: what it asks for, and what it has learnt on the way."""

    config: AppConfig
    order: TokenOrder
    key: TokenKey
    min_ttl: float  # a cached token needs more than this left
    health: StoreHealth
    previous: str | None = None  # fingerprint of the token we had, to notice the same one coming back
    paid_by: str | None = None  # the reporter who paid for the mint, when the table holds a reported token's place
    unsealable: set[str] = field(default_factory=set)  # entries that did not unseal: not tried again
    lease_held: bool = False
    lease_busy_until: float = 0.0  # another holder's lease runs out then
    wait_until: float | None = None  # we stop waiting for that holder then
    wait: float = FIRST_WAIT_SECONDS

    @cached_property  # made only when a lease is tried for: most lookups end in memory
    def owner(self) -> str:
        """Names our lease."""
        return uuid.uuid4().hex

    def reject(self, entry_fingerprint: str, problem: EntryRejected) -> None:
        """A table entry that must not be served (edited, moved, or sealed before the seal bound its
        metadata): a miss, which the fetch overwrites; counted and logged once."""
        if entry_fingerprint not in self.unsealable:
            self.unsealable.add(entry_fingerprint)
            record_unsealable_entry()
            logger.warning("cached entry does not unseal; fetching a new token", extra={
                "app": self.key.app, "scope": self.key.scope, "problem": str(problem)})


class TokenSource:
    """Where an authorized request's token comes from: memory, else the table, else the token endpoint,
    one fetch per key across all containers."""

    def __init__(self, settings: Settings, store: TokenStore, memory: MemoryCache,  # noqa: PLR0913 - wiring
                 endpoint: TokenEndpoint, guard: UpstreamGuard, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._settings = settings
        self._store = store
        self._memory = memory
        self._endpoint = endpoint
        self._guard = guard
        self._clock = clock
        self._sleep = sleep

    def token_for(self, config: AppConfig, order: TokenOrder, *, min_ttl: float | None = None,
                  use_memory: bool = True) -> Vended:
        """A token for an already authorized order. `min_ttl` raises the bar for cached tokens
        (the scheduled refresh uses it to renew tokens ahead of expiry)."""
        key = TokenKey(order.request.app, order.request.scope, config.credential_id, order.holder)
        min_ttl = self._settings.min_ttl_seconds if min_ttl is None else min_ttl
        health = StoreHealth()
        previous = None  # the token memory held, if any: to notice the same one coming back
        if use_memory and (remembered := self._memory.get(key)):
            token, trusted = remembered
            now = self._clock()
            if token.servable(now, min_ttl) and (trusted or self._table_still_holds(key, token, health)):
                return Vended(token, "memory", token.whole_seconds_left(now), key.holder)
            previous = token.fingerprint
            self._memory.drop(key)
        return self._from_table_or_upstream(Lookup(config, order, key, min_ttl, health, previous))

    def _table_still_holds(self, key: TokenKey, token: CachedToken, health: StoreHealth) -> bool:
        """Re-check an entry whose memory trust ran out: has it been invalidated or replaced?"""
        try:
            held = self._store.held(key)
        except StoreUnavailable as outage:
            health.note(outage)
            return True  # the table cannot say: keep serving what we have
        if not isinstance(held, StoredToken) or held.fingerprint != token.fingerprint:
            return False
        self._memory.renew_trust(key)
        return True

    def _from_table_or_upstream(self, lookup: Lookup) -> Vended:
        try:
            while lookup.health.table_answers:
                try:
                    if hit := self._table_hit(lookup):
                        return hit
                    if lookup.lease_held:
                        break  # a miss under our own lease: fetch
                    self._take_lease_or_wait(lookup)
                except StoreUnavailable as outage:
                    lookup.health.note(outage)  # DynamoDB out: the loop ends and we fetch without lease or budget;
                    #                             KMS out: the table's token cannot be served, the next round fetches
            return self._fetch(lookup)
        finally:
            self._release_lease(lookup)

    def _release_lease(self, lookup: Lookup) -> None:
        if not (lookup.lease_held and lookup.health.table_answers):
            return
        try:
            self._store.release_lease(lookup.key, lookup.owner)
        except StoreUnavailable as outage:
            lookup.health.note(outage)  # the lease runs out on its own

    def _table_hit(self, lookup: Lookup) -> Vended | None:
        """The table's token if it may be served (unsealed only then); None for a miss."""
        stored = self._read_table(lookup)
        now = self._clock()
        if isinstance(stored, PaidReplacement):
            lookup.paid_by = stored.paid_by  # a reported token's place: its reporter paid for the next mint
            return None
        if stored is None or stored.fingerprint in lookup.unsealable or not lookup.health.kms_answers:
            return None
        if not stored.servable(now, lookup.min_ttl):
            lookup.previous = stored.fingerprint
            return None
        try:
            token = self._store.unseal(lookup.key, stored)
        except EntryRejected as problem:
            lookup.reject(stored.fingerprint, problem)
            return None
        self._memory.put(lookup.key, token)
        return Vended(token, "table", token.whole_seconds_left(now), lookup.key.holder)

    def _read_table(self, lookup: Lookup) -> StoredToken | PaidReplacement | None:
        try:
            return self._store.get(lookup.key)
        except EntryRejected as problem:  # malformed: a miss, which the fetch overwrites
            lookup.reject("", problem)
            return None

    def _take_lease_or_wait(self, lookup: Lookup) -> None:
        """Take the key's lease unless another holder's is still running; else wait a moment for its
        token. Past LEASE_WAIT_SECONDS of waiting: 503 token_in_progress."""
        now = self._clock()
        if now >= lookup.lease_busy_until:
            busy_until = self._store.try_acquire_lease(lookup.key, lookup.owner, self._settings.lease_seconds)
            if busy_until is None:
                lookup.lease_held = True
                return  # read again: a holder may have stored its token just before we took over
            lookup.lease_busy_until = busy_until
        if lookup.wait_until is None:
            record_single_flight_wait()
            lookup.wait_until = now + self._settings.lease_wait_seconds
        if now >= lookup.wait_until:
            raise TokenInProgress(retry_after=1)
        self._sleep(min(lookup.wait * random.uniform(0.8, 1.2), lookup.wait_until - now))
        lookup.wait = min(lookup.wait * 2, LONGEST_WAIT_SECONDS)

    def _fetch(self, lookup: Lookup) -> Vended:
        config, key, scopes = lookup.config, lookup.key, lookup.order.request.scopes
        payer = lookup.order.payer if lookup.paid_by is None else None  # a reporter paid already
        issued = self._guard.fetch(config, key, payer, lookup.health,
                                   lambda: self._endpoint.fetch(config.client_id, config.client_secret, scopes))
        token = _minted(lookup, issued, self._clock())
        stored = False
        if lookup.health.table_answers and lookup.health.kms_answers:
            try:
                self._store.put(key, token, config.version_id)
                stored = True
            except StoreUnavailable as outage:
                lookup.health.note(outage)  # served from memory alone; other containers fetch their own
        self._memory.put(key, token)
        charged_to = lookup.paid_by if lookup.paid_by is not None else lookup.order.payer or ""
        return Vended(token, "upstream", issued.expires_in, key.holder, stored, issued.default_lifetime,
                      charged_to, prepaid=lookup.paid_by is not None)


def _minted(lookup: Lookup, issued: IssuedToken, now: float) -> CachedToken:
    same_again = fingerprint(issued.access_token) == lookup.previous
    if same_again:
        logger.info("token endpoint gave back the token it had issued; serving it until it expires",
                    extra={"app": lookup.key.app, "scope": lookup.key.scope})
    return CachedToken(access_token=issued.access_token, token_type=issued.token_type, scope=lookup.key.scope,
                       expires_at=now + issued.expires_in, renewal_blocked=same_again, minted_at=now)
