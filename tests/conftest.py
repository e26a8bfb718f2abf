"""Fixtures for every test."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.stack import LocalStack

UNIT = Path(__file__).resolve().parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the fast tests, what `make check` runs: the unit tests that need no local stack (no moto server: the
    `local_stack` fixture, or a fixture built on it) and start no process (`@pytest.mark.process`). They test rules
    against pure functions and in-process fakes, and all of them take seconds."""
    for item in items:
        if item.path.is_relative_to(UNIT) and "local_stack" not in getattr(item, "fixturenames", ()) \
                and item.get_closest_marker("process") is None:
            item.add_marker(pytest.mark.fast)


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


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """A moto server and a stub token endpoint on 127.0.0.1, for the whole session; tests reset it."""
    with LocalStack() as stack:
        yield stack


@pytest.fixture(scope="session", autouse=True)
def local_stack_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where `make serve` (and what reads it) keeps .local-stack.json during the tests: never the repository's,
    so a `make serve` the developer is running is left alone."""
    from devstack.local_state import FILE_VARIABLE

    path = tmp_path_factory.mktemp("local-stack") / ".local-stack.json"
    previous = os.environ.get(FILE_VARIABLE)
    os.environ[FILE_VARIABLE] = str(path)  # subprocesses inherit it
    yield path
    if previous is None:
        os.environ.pop(FILE_VARIABLE, None)
    else:
        os.environ[FILE_VARIABLE] = previous
