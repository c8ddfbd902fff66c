"""Builders shared by the emulator tests: small batches, a strict, non-retrying client and a
responder that records what was sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anthropic

from claude_lab.emulator import Emulator

DAY = 86_400


def until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for a condition the client reaches on its own thread (no fixed pause). The
    bound is generous on purpose: CI runs under load, and only a hang should trip it."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def item_requests(n: int, max_tokens: int = 16) -> list[dict[str, Any]]:
    """n batch requests with custom_ids r0..r{n-1} and prompts "item {i}"."""
    return [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"item {i}"}],
            },
        }
        for i in range(n)
    ]


def strict_client(emu: Emulator) -> anthropic.Anthropic:
    """The SDK validating every response strictly, and showing raw errors (no retries)."""
    return emu.client(_strict_response_validation=True, max_retries=0)


class Recorder:
    """A responder that keeps every request's params (and answers with the default reply)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, params: dict[str, Any]) -> None:
        with self._lock:
            self.seen.append(params)
