"""The time the function reads, handed to each class by the container so that a test can own it.

Wall time (`now`, epoch seconds) is what other containers see too: token expiries, leases, cooldowns, the
clock hour of a budget. Monotonic time is this container's own: how long a secret or a token in memory is
trusted, a fetch's deadline. `sleep` is every wait the function makes (for another container's fetch, for a
Retry-After or a back-off between retries).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


SYSTEM_CLOCK = Clock()
