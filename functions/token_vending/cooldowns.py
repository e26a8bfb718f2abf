"""Remembered token-endpoint failures, so a burst of vends does not hammer it.

While one lasts, vends for the app answer 503 upstream_unavailable with the
Retry-After that is left, without calling. Per container, keyed by app and
secret version: a new secret version starts clean.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import UpstreamUnavailable


@dataclass(frozen=True)
class _Cooldown:
    until: float  # monotonic
    description: str


class Cooldowns:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_app: dict[tuple[str, str], _Cooldown] = {}

    def remember(self, app: str, secret_version: str, seconds: float, description: str) -> None:
        if seconds > 0:
            self._by_app[(app, secret_version)] = _Cooldown(self._clock() + seconds, description)

    def reason(self, app: str, secret_version: str) -> str | None:
        """Why the app is held off, while it is."""
        cooldown = self._by_app.get((app, secret_version))
        return cooldown.description if cooldown and cooldown.until > self._clock() else None

    def check(self, app: str, secret_version: str) -> None:
        """Raise the remembered failure, with the Retry-After that is left, while it lasts."""
        cooldown = self._by_app.get((app, secret_version))
        if cooldown is None:
            return
        left = cooldown.until - self._clock()
        if left <= 0:
            del self._by_app[(app, secret_version)]
            return
        raise UpstreamUnavailable(cooldown.description, retry_after=max(1, math.ceil(left)))
