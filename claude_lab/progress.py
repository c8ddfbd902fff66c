"""Progress display core: the `Snapshot` a job publishes and the displays that show it.

This module owns the `Display` interface, the throttling every live display
shares, the console (tqdm) and null displays, the `progress=` choice
(`make_display`), and the plain-text / HTML summaries that a saved notebook
shows instead of the live widget (`text_summary`, `html_summary`,
`mimebundle`). The ipywidgets display lives in `claude_lab.widget` and is
imported only when a widget is wanted, so plain scripts never import ipywidgets.
"""

from __future__ import annotations

import html
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol

from claude_lab.errors import ConfigError, InputError

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_MIN_INTERVAL",
    "OUTCOME_KEYS",
    "PROGRESS_CHOICES",
    "WIDGET_VIEW_MIME",
    "ConsoleDisplay",
    "Display",
    "NullDisplay",
    "Snapshot",
    "ThrottledDisplay",
    "cost_text",
    "count_color",
    "format_cost",
    "format_duration",
    "html_summary",
    "in_kernel",
    "make_display",
    "mimebundle",
    "outcome",
    "text_summary",
]

log = logging.getLogger("claude_lab")

#: The Batches API's ``request_counts`` keys, in the API's order.
COUNT_KEYS: tuple[str, ...] = ("processing", "succeeded", "errored", "canceled", "expired")
#: The counts that mean a request has finished (everything but processing).
OUTCOME_KEYS: tuple[str, ...] = COUNT_KEYS[1:]
#: Accepted values of ``progress=``.
PROGRESS_CHOICES: tuple[str | None, ...] = ("auto", "widget", "console", None)

#: Default minimum seconds between two renders of a live display (a few per second).
DEFAULT_MIN_INTERVAL = 0.25

_NO_COUNTS_NOTE = (
    "The Batches API keeps every request at “processing” until the batch ends; "
    "the other counts arrive at the end."
)


@dataclass(frozen=True)
class Snapshot:
    """Immutable state of one job, produced by jobs.py and read by displays."""

    job_id: str
    batch_ids: tuple[str, ...]
    # "preparing" | "submitting" | "in_progress" | "canceling" | "fetching" | "ended" | "failed"
    status: str
    # processing, succeeded, errored, canceled, expired, summed over the job's batches
    counts: Mapping[str, int]
    requests: int
    rows: int
    cached: int = 0
    skipped: int = 0
    elapsed: float = 0.0
    # False while in_progress => the API is holding every count at "processing"
    counts_move: bool = False
    cost_usd: float | None = None
    estimated_cost_usd: float | None = None
    error: str | None = None
    done: bool = False

    def count(self, key: str) -> int:
        """One of the five request counts (0 when absent)."""
        return int(self.counts.get(key, 0))

    @property
    def finished(self) -> int:
        """Requests with an outcome: succeeded + errored + canceled + expired."""
        return sum(self.count(k) for k in OUTCOME_KEYS)

    @property
    def counts_held(self) -> bool:
        """True when the honest "counts arrive at the end" note applies."""
        return self.status == "in_progress" and not self.counts_move and not self.done


class Display(Protocol):
    """What a job talks to. `update` comes from a worker thread, often; `close` once."""

    def update(self, snap: Snapshot) -> None: ...

    def close(self, snap: Snapshot) -> None: ...


# ---------------------------------------------------------------------------
# Formatting shared by every display


def outcome(snap: Snapshot) -> str:
    """The style of a job: "success", "warning", "danger", or "" while it runs healthy.

    danger: the job failed or requests were canceled; warning: some requests
    errored or expired; success: everything succeeded (or was cached/skipped).
    """
    if snap.error is not None or snap.status == "failed" or snap.count("canceled"):
        return "danger"
    if not snap.done:
        return ""
    if snap.count("errored") or snap.count("expired") or snap.count("processing"):
        return "warning"
    return "success"


def format_cost(usd: float) -> str:
    """Dollars with enough digits to be non-zero for tiny batches."""
    return f"${usd:,.2f}" if abs(usd) >= 1 else f"${usd:.4f}"


def format_duration(seconds: float) -> str:
    """Compact elapsed time: 9s, 2m 05s, 1h 02m 03s."""
    s = max(0, int(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def cost_text(snap: Snapshot) -> str:
    """Cost so far and/or the upper-bound estimate, or "" when neither is known."""
    parts = []
    if snap.cost_usd is not None:
        parts.append(f"cost {format_cost(snap.cost_usd)}")
    if snap.estimated_cost_usd is not None and not (snap.done and snap.cost_usd is not None):
        parts.append(f"estimated ≤ {format_cost(snap.estimated_cost_usd)}")
    return " / ".join(parts)


def _scrub_ids(text: str, snap: Snapshot) -> str:
    # Error messages from the job often quote its ids; the plain-text summary
    # is compared verbatim by nbval, so the ids must not leak into it.
    for ident in (snap.job_id, *snap.batch_ids):
        if ident:
            text = text.replace(ident, "<id>")
    return text


def text_summary(snap: Snapshot) -> str:
    """One stable line: status, the five counts and the rows. No ids, times or durations."""
    counts = ", ".join(f"{k} {snap.count(k)}" for k in COUNT_KEYS)
    line = (
        f"claude_lab job {snap.status} · requests {snap.requests}: {counts}"
        f" · rows {snap.rows} (cached {snap.cached}, skipped {snap.skipped})"
    )
    if snap.error:
        line += f" · error: {_scrub_ids(snap.error, snap)}"
    return line


_COLORS: Mapping[str, str] = {
    "processing": "#9e9e9e",
    "succeeded": "#4caf50",
    "errored": "#f44336",
    "canceled": "#ff9800",
    "expired": "#795548",
}


def count_color(key: str) -> str:
    """The color used for one of the five counts, in the widget and the HTML summary."""
    return _COLORS[key]


def _cost_cell(snap: Snapshot) -> str:
    if snap.cost_usd is not None:
        return format_cost(snap.cost_usd)
    if snap.estimated_cost_usd is not None:
        return f"≤ {format_cost(snap.estimated_cost_usd)} (estimate)"
    return "—"


def html_summary(snap: Snapshot) -> str:
    """A small table: status, the five counts, rows/cached/skipped, cost.

    Ids appear only inside ``.claude-lab-ids`` so a notebook sanitizer can strip them.
    """
    e = html.escape
    ids = e(snap.job_id)
    if snap.batch_ids:
        ids += " · " + e(", ".join(snap.batch_ids))
    heads = ["status", *COUNT_KEYS, "rows", "cached", "skipped", "cost"]
    cells = [f"<b>{e(snap.status)}</b>"]
    for k in COUNT_KEYS:
        swatch = f'<span style="color:{_COLORS[k]}">■</span> '
        cells.append(f"{swatch}{snap.count(k)}")
    cells += [str(snap.rows), str(snap.cached), str(snap.skipped), e(_cost_cell(snap))]
    th = "".join(f"<th>{h}</th>" for h in heads)
    td = "".join(f"<td>{c}</td>" for c in cells)
    error = ""
    if snap.error:
        error = f'<div class="claude-lab-error">error: {e(_scrub_ids(snap.error, snap))}</div>'
    return (
        '<div class="claude-lab-summary">'
        f'<div>claude_lab job <span class="claude-lab-ids">{ids}</span></div>'
        f"<table><thead><tr>{th}</tr></thead><tbody><tr>{td}</tr></tbody></table>"
        f"{error}</div>"
    )


WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def mimebundle(snap: Snapshot, widget: Any = None) -> dict[str, Any]:
    """What a job's ``_repr_mimebundle_`` returns: text and HTML fallbacks, plus the
    widget view when ``widget`` (an ipywidgets widget, or a `WidgetDisplay`) is given.
    """
    bundle: dict[str, Any] = {"text/plain": text_summary(snap), "text/html": html_summary(snap)}
    if widget is not None:
        root = getattr(widget, "widget", widget)  # accept a WidgetDisplay too
        spec = getattr(root, "get_view_spec", None)
        view = (
            spec()
            if callable(spec)
            else {"version_major": 2, "version_minor": 0, "model_id": root.model_id}
        )
        bundle[WIDGET_VIEW_MIME] = dict(view)
    return bundle


# ---------------------------------------------------------------------------
# Throttling


class ThrottledDisplay:
    """Base for live displays: at most one render per ``min_interval`` seconds.

    A burst of updates renders the first at once and the newest one interval
    later (a trailing timer), so the screen is never left behind on a stale
    snapshot even when the job goes quiet. `close` renders at once, cancels
    the timer and ignores every later update. Render errors are logged, never
    raised into the job's worker thread.
    """

    widget: Any = None

    def __init__(self, *, min_interval: float = DEFAULT_MIN_INTERVAL) -> None:
        self.min_interval = min_interval
        self.snapshot: Snapshot | None = None
        self.closed = False
        self._lock = threading.RLock()
        self._last = float("-inf")
        self._pending: Snapshot | None = None
        self._timer: threading.Timer | None = None

    def _render(self, snap: Snapshot, final: bool) -> None:
        raise NotImplementedError

    def update(self, snap: Snapshot) -> None:
        with self._lock:
            if self.closed:
                return
            self.snapshot = snap
            now = time.monotonic()
            wait = self._last + self.min_interval - now
            if wait <= 0 and self._timer is None:
                self._pending = None
                self._last = now
                self._safe_render(snap, final=False)
                return
            self._pending = snap
            if self._timer is None:
                self._timer = threading.Timer(max(wait, 0.0), self._flush)
                self._timer.daemon = True
                self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            snap, self._pending = self._pending, None
            if self.closed or snap is None:
                return
            self._last = time.monotonic()
            self._safe_render(snap, final=False)

    def close(self, snap: Snapshot) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.snapshot = snap
            self._pending = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._safe_render(snap, final=True)

    def _safe_render(self, snap: Snapshot, final: bool) -> None:
        try:
            self._render(snap, final)
        except Exception:
            log.exception("claude_lab: progress display failed to render; the job continues")


class NullDisplay:
    """Shows nothing; keeps the newest snapshot so a job can still be summarised."""

    widget: Any = None

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def update(self, snap: Snapshot) -> None:
        self.snapshot = snap

    def close(self, snap: Snapshot) -> None:
        self.snapshot = snap


# ---------------------------------------------------------------------------
# Console


_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}"


def _console_description(snap: Snapshot) -> str:
    if snap.counts_held:
        return "in_progress (counts arrive at the end)"
    return snap.status


def _console_postfix(snap: Snapshot) -> str:
    # processing and succeeded always; the failure counts only once they happen,
    # so a healthy run's bar stays short.
    keys = [k for k in COUNT_KEYS if k in ("processing", "succeeded") or snap.count(k)]
    return " ".join(f"{k}={snap.count(k)}" for k in keys)


class ConsoleDisplay(ThrottledDisplay):
    """A tqdm bar of finished/total requests on stderr, counts in the postfix.

    `close` leaves the bar in place and writes one final totals line.
    """

    def __init__(
        self, *, file: IO[str] | None = None, min_interval: float = DEFAULT_MIN_INTERVAL
    ) -> None:
        super().__init__(min_interval=min_interval)
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
                desc=_console_description(snap),
                # No rate or ETA: batch counts jump (often all at the end), and
                # an attached job's clock started before this process did.
                bar_format=_BAR_FORMAT,
            )
        bar = self._bar
        bar.total = snap.requests
        bar.n = min(snap.finished, snap.requests) if snap.requests else snap.finished
        bar.set_description_str(_console_description(snap), refresh=False)
        bar.set_postfix_str(
            f"{_console_postfix(snap)} · {format_duration(snap.elapsed)}", refresh=False
        )
        if not final:
            bar.refresh()
        else:
            bar.close()  # close draws the bar one last time and leaves it
            extra = [t for t in (cost_text(snap), f"elapsed {format_duration(snap.elapsed)}") if t]
            extra.append(f"job {snap.job_id}")
            self.file.write(f"{text_summary(snap)} · {' · '.join(extra)}\n")
            self.file.flush()


# ---------------------------------------------------------------------------
# Choosing a display


def in_kernel() -> bool:
    """True inside a live IPython kernel (not a terminal IPython, not a plain script)."""
    if "IPython" not in sys.modules:  # never import IPython just to ask
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def make_display(
    progress: str | None,
    *,
    on_cancel: Callable[[], object] | None = None,
    min_interval: float = DEFAULT_MIN_INTERVAL,
) -> Display:
    """The display for ``progress="auto" | "widget" | "console" | None``.

    "auto": the widget inside a live kernel, the console bar when stderr is a
    terminal, nothing otherwise. ``on_cancel`` is what the widget's Cancel
    button calls.
    """
    if progress is not None and not isinstance(progress, str):
        raise InputError(_bad_progress(progress))
    if progress == "auto":
        if in_kernel():
            progress = "widget"
        elif _isatty(sys.stderr):
            progress = "console"
        else:
            progress = None
    if progress is None:
        return NullDisplay()
    if progress == "console":
        return ConsoleDisplay(min_interval=min_interval)
    if progress == "widget":
        try:
            from claude_lab.widget import WidgetDisplay
        except ImportError as exc:
            raise ConfigError(
                f'progress="widget" needs ipywidgets ({exc}); install it with '
                '`pip install ipywidgets`, or pass progress="console" or None.'
            ) from exc
        return WidgetDisplay(on_cancel=on_cancel, min_interval=min_interval)
    raise InputError(_bad_progress(progress))


def _bad_progress(value: object) -> str:
    return (
        f"progress={value!r} is not one of the accepted values: "
        '"auto", "widget", "console" or None.'
    )


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # closed stream
        return False
