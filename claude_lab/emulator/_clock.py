"""The emulator's clock: simulated epoch seconds that tests advance and demos let run.

Batch state is computed from this clock on every read, so moving it is all it
takes to move every batch through its lifecycle; nothing runs in the background.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

__all__ = ["Clock", "rfc3339"]


class Clock:
    """Simulated time in epoch seconds.

    ``speed=0`` stands still until :meth:`advance` is called; ``speed>0`` runs
    with real (monotonic) time scaled by ``speed``, plus every advance.
    """

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed!r}")
        self._lock = threading.Lock()
        self._speed = float(speed)
        self._start = time.time() if start is None else float(start)
        self._mono0 = time.monotonic()
        self._offset = 0.0

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        """Current simulated time, epoch seconds."""
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> float:
        elapsed = (time.monotonic() - self._mono0) * self._speed if self._speed else 0.0
        return self._start + self._offset + elapsed

    def advance(self, seconds: float) -> float:
        """Move simulated time forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward; got {seconds!r}")
        with self._lock:
            self._offset += float(seconds)
            return self._now_locked()

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=timezone.utc)

    def __repr__(self) -> str:
        return f"Clock(speed={self._speed}, now={rfc3339(self.now())})"


def rfc3339(t: float) -> str:
    """Epoch seconds -> RFC 3339 UTC with a ``Z`` suffix, microsecond precision."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
