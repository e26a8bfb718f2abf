"""A caller's report that the CX API rejected its token: the cached token is dropped, if it still is the
one reported, and the reporter pays for the mint that will replace it.

The report costs one mint of the reporter's own hourly budget (the guard's `charge_report`); the token's
place in the table then says who paid (token_store.py's `PaidReplacement`), so the mint that replaces it
spends only the app's budget, whichever caller vends next. A caller's reports can so exhaust only its own
budget, in either token mode. A report of a token minted less than MIN_REPORT_AGE_SECONDS ago is refused
(429 slow_down): report and vend in a loop must not mint without end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

from .errors import DependencyUnavailable, SlowDown, StoreUnavailable
from .memory_cache import MemoryCache
from .settings import Settings
from .store_health import StoreHealth
from .token_store import EntryRejected, StoredToken, TokenStore
from .tokens import CachedToken, TokenKey
from .upstream_guard import UpstreamGuard


class Reported(NamedTuple):
    dropped: bool  # the reported token was still the cached one, and is gone
    holder: str  # whose token was reported
    charged_to: str = ""  # whose budget paid for the mint that will replace it ("": nothing dropped from the table)


class TokenReports:
    def __init__(self, settings: Settings, store: TokenStore, memory: MemoryCache, guard: UpstreamGuard,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._store = store
        self._memory = memory
        self._guard = guard
        self._clock = clock

    def drop(self, key: TokenKey, token_fingerprint: str, payer: str) -> Reported:
        """Drop the key's token, from memory and the table, if it is still the one reported. Dropping it from the
        table costs one mint of `payer`'s budget (MintLimitReached, and nothing dropped, when it is spent): the
        mint that replaces it spends the app's budget only. A token minted less than MIN_REPORT_AGE_SECONDS ago
        is not dropped (SlowDown): report and vend in a loop must not mint without end. Only a minting time
        the seal vouches for counts."""
        health = StoreHealth()
        try:
            entry = self._store.held(key)
            reported = entry if isinstance(entry, StoredToken) and entry.fingerprint == token_fingerprint else None
            in_table = self._unsealed(key, reported) if reported is not None else None
        except StoreUnavailable as outage:
            health.note(outage)
            # Without the table nothing can be dropped for good, nor paid for: the caller reports again.
            raise _report_again() from None
        minted = [token.minted_at for token in (in_table, self._memory.token(key))
                  if token is not None and token.fingerprint == token_fingerprint]
        now = self._clock()
        reportable_from = max(minted, default=0.0) + self._settings.min_report_age_seconds
        if now < reportable_from:
            raise SlowDown(retry_after=max(1, math.ceil(reportable_from - now)))
        replaced = reported is not None and self._replace_reported(key, reported, in_table, payer, health)
        dropped_from_memory = self._memory.drop(key, token_fingerprint)
        return Reported(replaced or dropped_from_memory, key.holder, payer if replaced else "")

    def _replace_reported(self, key: TokenKey, reported: StoredToken, in_table: CachedToken | None,
                          payer: str, health: StoreHealth) -> bool:
        """Charge the payer, then put its paid mark in the reported entry's place; True if it was still there."""
        # An entry naming the token that does not unseal holds nothing worth keeping, whatever its stored_at.
        minted_before = None if in_table is None else self._clock() - self._settings.min_report_age_seconds
        try:
            self._guard.charge_report(key.app, payer, health)
            return self._store.replace_reported(key, reported, minted_before, payer)
        except StoreUnavailable as outage:
            health.note(outage)  # the table failed between the read and the charge: nothing is dropped
            raise _report_again() from None

    def _unsealed(self, key: TokenKey, stored: StoredToken) -> CachedToken | None:
        """The entry's token, or None when it does not unseal (edited, moved, or planted)."""
        try:
            return self._store.unseal(key, stored)
        except EntryRejected:
            return None


def _report_again() -> DependencyUnavailable:
    return DependencyUnavailable("the shared cache is unavailable; report again shortly", retry_after=5)
