"""The scheduled run: refresh cached tokens ahead of expiry and mint the listed ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .container import Container


def run(event: dict[str, Any], container: Container) -> dict[str, Any]:
    return {"refreshed": 0, "minted": 0, "skipped": 0, "failed": 0}
