"""Console front-ends: a tqdm bar on a terminal, a plain line log everywhere else.

`ConsoleDisplay` draws tqdm's bar with rate and ETA on a terminal that has a
width. `LineLogDisplay` writes one line per change (throttled) for scripts,
CI logs and terminals that report no width, so progress shows there too.
Both only read `progress.Snapshot`s; `claude_lab._auto` picks between them.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from claude_lab._progress import (
    COUNT_KEYS,
    DEFAULT_MIN_INTERVAL,
    Clock,
    Scheduler,
    Snapshot,
    ThrottledDisplay,
    cost_text,
    format_duration,
    header_text,
    headline,
    next_step,
    text_summary,
    thread_scheduler,
)

__all__ = ["LOG_MIN_INTERVAL", "ConsoleDisplay", "LineLogDisplay", "terminal_width"]

#: A line log writes at most one line this often (plus one per status change).
LOG_MIN_INTERVAL = 10.0

_BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"
    "{postfix}"
)


def terminal_width(stream: object) -> int:
    """Columns of the terminal behind ``stream``; 0 when it is not a terminal or has no width."""
    isatty = getattr(stream, "isatty", None)
    try:
        if not (callable(isatty) and isatty()):
            return 0
        return os.get_terminal_size(stream.fileno()).columns  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return 0


def _description(snap: Snapshot) -> str:
    if snap.counts_held:
        return "in_progress (counts arrive when the batch ends)"
    return snap.shown_status


def _postfix(snap: Snapshot) -> str:
    # processing and succeeded always; the failure counts only once they happen,
    # so a healthy run's bar stays short.
    keys = [k for k in COUNT_KEYS if k in ("processing", "succeeded") or snap.count(k)]
    return " ".join(f"{k}={snap.count(k)}" for k in keys)


def _final_line(snap: Snapshot) -> str:
    extra = [t for t in (cost_text(snap), f"elapsed {format_duration(snap.elapsed)}") if t]
    extra.append(f"job {snap.job_id}")
    line = f"{text_summary(snap)} · {' · '.join(extra)}"
    step = next_step(snap)
    return f"{line}\n{headline(snap)}" + (f" · next: {step.replace('`', '')}" if step else "")


class ConsoleDisplay(ThrottledDisplay):
    """A tqdm bar of finished/total requests (with rate and ETA) on stderr.

    `close` leaves the bar in place and writes the final totals and next step.
    """

    def __init__(
        self,
        *,
        file: IO[str] | None = None,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        clock: Clock | None = None,
        scheduler: Scheduler = thread_scheduler,
    ) -> None:
        super().__init__(min_interval=min_interval, clock=clock, scheduler=scheduler)
        self.file: IO[str] = file if file is not None else sys.stderr
        self._bar: Any = None

    def _render(self, snap: Snapshot, final: bool) -> None:
        from tqdm.std import tqdm

        if self._bar is None:
            # tqdm's own rate limiting is off (mininterval=0): ThrottledDisplay decides.
            self._bar = tqdm(
                total=snap.requests,
                file=self.file,
                unit="req",
                mininterval=0,
                dynamic_ncols=True,
                leave=True,
                desc=_description(snap),
                bar_format=_BAR_FORMAT,
                smoothing=0.3,
            )
        bar = self._bar
        bar.total = snap.requests
        finished = min(snap.finished, snap.requests) if snap.requests else snap.finished
        if finished > bar.n:
            bar.update(finished - bar.n)  # update(), not n=: tqdm's rate and ETA need it
        bar.set_description_str(_description(snap), refresh=False)
        bar.set_postfix_str(_postfix(snap), refresh=False)
        if not final:
            bar.refresh()
        else:
            bar.close()  # close draws the bar one last time and leaves it
            self.file.write(_final_line(snap) + "\n")
            self.file.flush()


class LineLogDisplay(ThrottledDisplay):
    """One plain line per change, at most one per ``min_interval`` (status changes and
    the end always print): for logs, CI and terminals without a width."""

    def __init__(
        self,
        *,
        file: IO[str] | None = None,
        min_interval: float = LOG_MIN_INTERVAL,
        clock: Clock | None = None,
        scheduler: Scheduler = thread_scheduler,
    ) -> None:
        super().__init__(min_interval=min_interval, clock=clock, scheduler=scheduler)
        self.file: IO[str] = file if file is not None else sys.stderr
        self._said: tuple[str, int] | None = None
        self._status: str | None = None

    def update(self, snap: Snapshot) -> None:
        with self._lock:
            if (snap.shown_status, snap.finished) == self._said and self._timer is None:
                self.snapshot = snap  # nothing to say: no line, and no throttle slot used
                return
            if self._status is not None and snap.shown_status != self._status:
                self._last = float("-inf")  # a new status prints at once
        super().update(snap)

    def _render(self, snap: Snapshot, final: bool) -> None:
        if final:
            self.file.write(f"claude_lab {snap.job_id}: {_final_line(snap)}\n")
            self.file.flush()
            return
        key = (snap.shown_status, snap.finished)
        if key == self._said:
            return  # nothing changed: a log line per change, not per tick
        self._said, self._status = key, snap.shown_status
        rate = self.rate.rate
        line = header_text(snap, rate, self.rate.eta(snap))
        self.file.write(f"claude_lab {snap.job_id}: {line}\n")
        self.file.flush()
