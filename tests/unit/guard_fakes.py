"""An in-memory GuardTable: the guard's rules tested as rules, without a server round trip. The real
GuardTable's own reads and writes are tested against the moto server (test_guard_table.py)."""

from __future__ import annotations

from collections.abc import Callable

from token_vending.errors import Dependency, StoreUnavailable
from token_vending.shared_table import HOUR
from token_vending.upstream_guard import MAX_COOLDOWN_SECONDS, Cooldown


class InMemoryGuardTable:
    """What GuardTable keeps, in one dict per kind of item; `down` makes every call an outage."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.cooldowns: dict[tuple[str, str], Cooldown] = {}
        self.mints: dict[tuple[str, int], int] = {}
        self.down = False

    def _answer(self) -> None:
        if self.down:
            raise StoreUnavailable("ServiceUnavailable", Dependency.DYNAMODB)

    def remember_cooldown(self, app: str, secret_version: str, cooldown: Cooldown) -> None:
        self._answer()
        self.cooldowns[(app, secret_version)] = cooldown

    def cooldown(self, app: str, secret_version: str) -> Cooldown | None:
        self._answer()
        held = self.cooldowns.get((app, secret_version))
        if held is None:
            return None
        return Cooldown(held.kind, min(held.until, self._clock() + MAX_COOLDOWN_SECONDS), held.streak)

    def forget_cooldown(self, app: str, secret_version: str) -> None:
        self._answer()
        self.cooldowns.pop((app, secret_version), None)

    def count_mint(self, budget: str, limit: int) -> int | None:
        self._answer()
        counter = (budget, int(self._clock() // HOUR))
        if self.mints.get(counter, 0) >= limit:
            return None
        self.mints[counter] = self.mints.get(counter, 0) + 1
        return self.mints[counter]
