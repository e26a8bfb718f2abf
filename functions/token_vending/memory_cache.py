"""This container's own token cache: the fast path, bounded in size and in trust."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .tokens import CachedToken, TokenKey


@dataclass
class _Entry:
    token: CachedToken
    trusted_until: float  # monotonic; after this, re-check the table before serving


class MemoryCache:
    def __init__(self, trust_seconds: float, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._trust_seconds = trust_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[TokenKey, _Entry] = OrderedDict()

    def get(self, key: TokenKey) -> tuple[CachedToken, bool] | None:
        """The token and whether it is still trusted without asking the table."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.token, self._clock() < entry.trusted_until

    def token(self, key: TokenKey) -> CachedToken | None:
        """The token held for the key, trusted or not."""
        entry = self._entries.get(key)
        return entry.token if entry else None

    def put(self, key: TokenKey, token: CachedToken) -> None:
        self._entries[key] = _Entry(token, self._clock() + self._trust_seconds)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def renew_trust(self, key: TokenKey) -> None:
        entry = self._entries.get(key)
        if entry:
            entry.trusted_until = self._clock() + self._trust_seconds

    def drop(self, key: TokenKey, fingerprint: str | None = None) -> bool:
        """Drop the entry (only if it holds that token, when a fingerprint is given)."""
        entry = self._entries.get(key)
        if entry is None or (fingerprint is not None and entry.token.fingerprint != fingerprint):
            return False
        del self._entries[key]
        return True
