"""Gates: hold an API call inside the emulator until the test releases it.

A gate makes "while the create is in flight" an exact moment rather than a
race: the caller's request has reached the emulator (``wait_arrived``) and gets
no answer until ``release``. Nothing here sleeps; every wait is on an event.
"""

from __future__ import annotations

import threading
from types import TracebackType

__all__ = ["Gate"]

#: A held call is let through after this long even if never released, so a failed
#: test cannot hang the emulator's shutdown.
MAX_HOLD_S = 120.0


class Gate:
    """Holds the next ``count`` matching calls (None: every one) until :meth:`release`."""

    def __init__(self, count: int | None = 1) -> None:
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1 or None, got {count!r}")
        self._lock = threading.Lock()
        self._left = count
        self._arrived = threading.Condition(self._lock)
        self._released = threading.Event()
        self.arrivals = 0
        """How many calls have reached the gate (held or not)."""

    def wait_arrived(self, n: int = 1, timeout: float = 30.0) -> None:
        """Block until ``n`` calls have reached the gate; TimeoutError if they do not."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self.arrivals >= n, timeout=timeout):
                got = self.arrivals
                raise TimeoutError(f"{got} of {n} call(s) reached the gate in {timeout} s")

    def release(self) -> None:
        """Let every held call, and every later one, through."""
        self._released.set()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def _pass(self) -> bool:
        """Called by the emulator for each matching call: hold it if this gate takes it.
        True if the gate is used up (the emulator then forgets it)."""
        with self._arrived:
            self.arrivals += 1
            take = self._left is None or self._left > 0
            if self._left is not None and self._left > 0:
                self._left -= 1
            done = self._left == 0
            self._arrived.notify_all()
        if take:
            self._released.wait(MAX_HOLD_S)
        return done

    def __enter__(self) -> Gate:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
