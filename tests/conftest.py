"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from claude_lab.emulator import Emulator, serve


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own journal, and no real credentials: nothing can reach the API."""
    monkeypatch.setenv("CLAUDE_LAB_HOME", str(tmp_path_factory.mktemp("claude_lab_home")))
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """A running emulator whose clock stands still until the test advances it; its clients
    reach it in-process (no socket). Tests that need a socket ask ``serve(transport="socket")``."""
    with serve(speed=0, transport="inprocess") as emulator:
        yield emulator


@pytest.fixture
def fast() -> Iterator[Emulator]:
    """An emulator whose batches end as soon as they are created (in-process, like ``emu``)."""
    with serve(request_seconds=0, concurrency=100_000, transport="inprocess") as emulator:
        yield emulator
