"""Remembered token-endpoint failures, in this container's memory.

While one lasts, a vend that would call the endpoint answers the remembered
error instead (503 with the Retry-After that is left, or the same 502), without
calling. Each is kept under a scope: an app and secret version (`app_scope`; a
new secret version starts clean) or one token key (`key_scope`).
upstream_guard.py decides what to remember and shares it through the table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import UpstreamError, UpstreamUnavailable
from .tokens import TokenKey

MAX_REMEMBERED = 4096  # keys are many (scope sets): bound the memory, dropping what has run out


def app_scope(app: str, secret_version: str) -> str:
    return f"app#{app}#{secret_version}"


def key_scope(key: TokenKey) -> str:
    return key.table_key


@dataclass(frozen=True)
class _Remembered:
    until: float  # monotonic
    description: str
    unavailable: bool  # 503 upstream_unavailable with Retry-After; else 502 upstream_error


class Cooldowns:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_scope: dict[str, _Remembered] = {}

    def remember(self, scope: str, seconds: float, description: str, *, unavailable: bool = True) -> None:
        if seconds <= 0:
            return
        self._by_scope[scope] = _Remembered(self._clock() + seconds, description, unavailable)
        if len(self._by_scope) > MAX_REMEMBERED:
            now = self._clock()
            self._by_scope = {name: held for name, held in self._by_scope.items() if held.until > now}

    def reason(self, scope: str) -> str | None:
        """Why the scope is held off, while it is."""
        remembered = self._by_scope.get(scope)
        return remembered.description if remembered and remembered.until > self._clock() else None

    def check(self, scope: str) -> None:
        """Raise the remembered failure (a 503 with the Retry-After that is left) while it lasts."""
        remembered = self._by_scope.get(scope)
        if remembered is None:
            return
        left = remembered.until - self._clock()
        if left <= 0:
            del self._by_scope[scope]
            return
        if not remembered.unavailable:
            raise UpstreamError(remembered.description)
        raise UpstreamUnavailable(remembered.description, retry_after=max(1, math.ceil(left)))
