"""Fixtures for every test."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def captured_logs(capfd: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Everything the function logs (its JSON log lines) and prints (EMF metrics), as one text."""
    from token_vending.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    std_logger = logging.getLogger(logger.name)
    std_logger.addHandler(handler)

    def read() -> str:
        printed = capfd.readouterr()
        return stream.getvalue() + printed.out + printed.err

    yield read
    std_logger.removeHandler(handler)
