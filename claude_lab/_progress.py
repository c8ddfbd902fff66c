"""Progress core: the `Snapshot` a job publishes, what every display shares, no front-end.

This module owns the `Display` interface displays subscribe to, the
`ThrottledDisplay` base with its injectable clock and timer (so throttling is
tested without wall-clock time), the `RateMeter` behind rate and ETA, the
wording every front-end uses (`header_text`, `headline`, `next_step`) and the
static result card a saved notebook keeps (`text_summary`, `html_summary`,
`mimebundle`). It imports no front-end: the console front-ends live in
`claude_lab._console`, the notebook one in `claude_lab._widget`, and
`claude_lab._auto` picks one (the tqdm layering: std / notebook / auto).
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "COLOR_VARS",
    "COUNT_KEYS",
    "DEFAULT_MIN_INTERVAL",
    "OUTCOME_KEYS",
    "WIDGET_VIEW_MIME",
    "BatchInfo",
    "Clock",
    "Display",
    "NullDisplay",
    "RateMeter",
    "Scheduler",
    "Snapshot",
    "ThrottledDisplay",
    "bar_html",
    "batches_html",
    "cost_text",
    "count_color",
    "format_cost",
    "format_duration",
    "header_text",
    "headline",
    "html_summary",
    "legend_html",
    "mimebundle",
    "next_step",
    "outcome",
    "text_summary",
    "thread_scheduler",
]

log = logging.getLogger("claude_lab")

#: The Batches API's ``request_counts`` keys, in the API's order.
COUNT_KEYS: tuple[str, ...] = ("processing", "succeeded", "errored", "canceled", "expired")
#: The counts that mean a request has finished (everything but processing).
OUTCOME_KEYS: tuple[str, ...] = COUNT_KEYS[1:]

#: Default minimum seconds between two renders of a live display (a few per second).
DEFAULT_MIN_INTERVAL = 0.25

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"

#: One colour language for every display: JupyterLab theme variables (so light and
#: dark themes both read), with fallbacks for nbconvert, VS Code and GitHub.
#: Processing is the empty track; canceled is neutral grey, never a warning colour.
COLOR_VARS: Mapping[str, str] = {
    "processing": "var(--jp-layout-color2, #e0e0e0)",
    "succeeded": "var(--jp-success-color1, #388e3c)",
    "errored": "var(--jp-error-color1, #d32f2f)",
    "expired": "var(--jp-warn-color1, #f57c00)",
    "canceled": "var(--jp-layout-color4, #757575)",
}
_BAR_ORDER = ("succeeded", "errored", "expired", "canceled")
_ENDED_STATES = frozenset({"ended", "canceled", "failed", "interrupted"})


@dataclass(frozen=True)
class BatchInfo:
    """One batch of a job, for the per-batch detail."""

    id: str
    status: str
    counts: Mapping[str, int]


@dataclass(frozen=True)
class Snapshot:
    """Immutable state of one job, produced by the job and read by displays."""

    job_id: str
    batch_ids: tuple[str, ...]
    # preparing | submitting | in_progress | canceling | fetching | ended | canceled
    # | failed | interrupted
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
    batches: tuple[BatchInfo, ...] = ()
    traceback: str | None = None
    name: str = "claude"
    canceled_by_user: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def count(self, key: str) -> int:
        """One of the five request counts (0 when absent)."""
        return int(self.counts.get(key, 0))

    @property
    def finished(self) -> int:
        """Requests with an outcome: succeeded + errored + canceled + expired."""
        return sum(self.count(k) for k in OUTCOME_KEYS)

    @property
    def counts_held(self) -> bool:
        """True when the honest "counts arrive when the batch ends" note applies."""
        return self.status == "in_progress" and not self.counts_move and not self.done

    @property
    def running_batches(self) -> int:
        """Batches the API is still processing (cancel can still change something)."""
        if self.batches:
            return sum(b.status == "in_progress" for b in self.batches)
        return 1 if self.status in ("in_progress", "submitting") else 0

    @property
    def shown_status(self) -> str:
        """The status to show: "in_progress" while any batch runs (a job whose first
        batch is being downloaded while another runs is still in progress)."""
        if self.status == "fetching" and any(b.status == "in_progress" for b in self.batches):
            return "in_progress"
        return self.status


class Display(Protocol):
    """What a job talks to. `update` comes from a worker thread, often; `close` once."""

    def update(self, snap: Snapshot) -> None: ...

    def close(self, snap: Snapshot) -> None: ...


# ---------------------------------------------------------------------------
# Clock and timers (injectable so throttling is tested deterministically)

Clock = Callable[[], float]


class _Cancelable(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """Runs ``fn`` once after ``delay`` seconds, unless the returned handle is canceled."""

    def __call__(self, delay: float, fn: Callable[[], None]) -> _Cancelable: ...


def thread_scheduler(delay: float, fn: Callable[[], None]) -> _Cancelable:
    """The real scheduler: a daemon `threading.Timer`."""
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()
    return timer


class RateMeter:
    """Requests per second and time left, from the finished counts displays see.

    The rate is measured from the first count that moved (an attached job's
    earlier progress is not credited to this process) and smoothed over time.
    None until two different counts have been seen.
    """

    def __init__(self, clock: Clock = time.monotonic, smoothing: float = 0.3) -> None:
        self._clock = clock
        self._smoothing = smoothing
        self._last: tuple[float, int] | None = None
        self.rate: float | None = None

    def feed(self, finished: int) -> None:
        now = self._clock()
        if self._last is None:
            self._last = (now, finished)
            return
        t0, n0 = self._last
        if finished == n0 or now <= t0:
            return
        current = (finished - n0) / (now - t0)
        self.rate = (
            current
            if self.rate is None
            else self._smoothing * current + (1 - self._smoothing) * self.rate
        )
        self._last = (now, finished)

    def eta(self, snap: Snapshot) -> float | None:
        """Seconds until every request has finished at the current rate, or None."""
        if not self.rate or snap.counts_held or snap.done:
            return None
        return max(0, snap.requests - snap.finished) / self.rate


# ---------------------------------------------------------------------------
# Wording shared by every display


def outcome(snap: Snapshot) -> str:
    """The style of a job: "success", "warning", "danger", or "" while it runs healthy.

    danger: the job failed; warning: some requests errored, expired or were
    canceled; success: everything succeeded (or was cached/skipped).
    """
    if snap.error is not None or snap.status in ("failed", "interrupted"):
        return "danger"
    if not snap.done:
        return ""
    if any(snap.count(k) for k in ("errored", "expired", "canceled", "processing")):
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


def _format_rate(rate: float) -> str:
    return f"{rate:,.1f} req/s" if rate >= 1 else f"{rate * 60:,.1f} req/min"


def cost_text(snap: Snapshot) -> str:
    """Cost so far and/or the upper-bound estimate, or "" when neither is known."""
    parts = []
    if snap.cost_usd is not None:
        parts.append(f"cost {format_cost(snap.cost_usd)}")
    if snap.estimated_cost_usd is not None and not (snap.done and snap.cost_usd is not None):
        parts.append(f"estimated ≤ {format_cost(snap.estimated_cost_usd)}")
    return " / ".join(parts)


def count_color(key: str) -> str:
    """The CSS colour of one of the five counts (a theme variable with a fallback)."""
    return COLOR_VARS[key]


def header_text(snap: Snapshot, rate: float | None = None, eta: float | None = None) -> str:
    """The one-line live header: status, n/N finished, rate, ETA (or the honest note
    that counts arrive when the batch ends), elapsed, cost so far / estimate."""
    parts = [snap.shown_status]
    if snap.requests:
        parts.append(f"{snap.finished:,}/{snap.requests:,} finished")
    if snap.counts_held:
        parts.append("counts arrive when the batch ends")
    else:
        if rate:
            parts.append(_format_rate(rate))
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
    parts.append(format_duration(snap.elapsed))
    if cost := cost_text(snap):
        parts.append(cost)
    return " · ".join(parts)


def headline(snap: Snapshot) -> str:
    """The result card's first line: "Done: 40 succeeded", "Canceled: 12 kept, 28 canceled"."""
    if snap.error is not None or snap.status in ("failed", "interrupted"):
        if snap.status != "interrupted":
            return "Failed"
        return (
            "Stopped (the batches live on)" if snap.batch_ids else "Stopped before a batch existed"
        )
    if not snap.done:
        return f"{snap.shown_status}: {snap.finished:,}/{snap.requests:,} finished"
    counts = ", ".join(f"{snap.count(k):,} {k}" for k in OUTCOME_KEYS if snap.count(k))
    if snap.status == "canceled" or snap.canceled_by_user:
        kept = snap.finished - snap.count("canceled")
        return f"Canceled: {kept:,} kept, {snap.count('canceled'):,} canceled"
    if not snap.requests:
        return "Done: nothing to send"
    return f"Done: {counts}" if counts else "Done"


def next_step(snap: Snapshot) -> str:
    """What to do next, when something is left to do ("" otherwise)."""
    if snap.error is not None or snap.status in ("failed", "interrupted"):
        if snap.batch_ids or snap.status == "interrupted":
            return (
                f"Nothing is lost or paid twice: `claude_lab.attach('{snap.job_id}')` "
                "picks the job up again."
            )
        return "Nothing was sent or paid. Fix the cause above and run the cell again."
    steps = []
    if snap.count("errored"):
        steps.append(f"{snap.count('errored'):,} errored → `job.retry()`")
    if snap.count("expired"):
        steps.append(f"{snap.count('expired'):,} expired → `job.retry()`")
    if snap.count("canceled"):
        steps.append(f"{snap.count('canceled'):,} canceled → `job.retry(canceled=True)`")
    return "; ".join(steps)


def _scrub_ids(text: str, snap: Snapshot) -> str:
    # Error messages from the job often quote its ids; the plain-text summary
    # is compared verbatim by nbval, so the ids must not leak into it.
    for ident in (snap.job_id, *snap.batch_ids):
        if ident:
            text = text.replace(ident, "<id>")
    return text


_SDK_ERROR = re.compile(r"^(\w+): Error code: (\d+) - (.*)$")
_SDK_MESSAGE = re.compile(r"""['"]message['"]: ?(['"])(.*?)\1""")


def _cause(snap: Snapshot) -> str:
    """The error's first line, short: a card says what went wrong, not everything.

    An SDK status error's raw body ("Error code: 401 - {'type': 'error', ...}") is
    reduced to its type, status and message.
    """
    first = (snap.error or "").strip().splitlines()[0] if snap.error else ""
    sdk = _SDK_ERROR.match(first)
    if sdk:
        message = _SDK_MESSAGE.search(sdk.group(3))
        first = f"{sdk.group(1)} ({sdk.group(2)})" + (f": {message.group(2)}" if message else "")
    return first if len(first) <= 300 else first[:297] + "…"


def text_summary(snap: Snapshot) -> str:
    """One stable line: status, the five counts and the rows. No ids, times or durations."""
    counts = ", ".join(f"{k} {snap.count(k)}" for k in COUNT_KEYS)
    line = (
        f"claude_lab job {snap.status} · requests {snap.requests}: {counts}"
        f" · rows {snap.rows} (cached {snap.cached}, skipped {snap.skipped})"
    )
    if snap.error:
        line += f" · error: {_scrub_ids(_cause(snap), snap)}"
    return line


def bar_html(snap: Snapshot, height: str = "10px") -> str:
    """One stacked bar, filling left to right: succeeded, errored, expired, canceled;
    processing is the empty track. Plain HTML + theme CSS variables."""
    total = max(snap.requests, 0)
    segs = []
    for key in _BAR_ORDER:
        n = snap.count(key)
        if not n or not total:
            continue
        pct = 100.0 * n / total
        segs.append(
            f'<div title="{key}: {n:,} ({pct:.1f}%)" '
            f'style="width:{pct:.3f}%;background:{COLOR_VARS[key]}"></div>'
        )
    if not total and snap.done:  # nothing sent (all cached or skipped): a full bar
        segs.append(f'<div style="width:100%;background:{COLOR_VARS["succeeded"]}"></div>')
    return (
        f'<div class="claude-lab-bar" style="display:flex;width:100%;height:{height};'
        f"background:{COLOR_VARS['processing']};border-radius:3px;overflow:hidden;"
        f'margin:3px 0">{"".join(segs)}</div>'
    )


def legend_html(snap: Snapshot) -> str:
    """Each count as a coloured number, in the bar's colours."""
    items = []
    for key in COUNT_KEYS:
        n = snap.count(key)
        swatch = (
            f'<span style="display:inline-block;width:0.8em;height:0.8em;'
            f"background:{COLOR_VARS[key]};border:1px solid var(--jp-border-color1, #bdbdbd);"
            f'vertical-align:middle"></span>'
        )
        items.append(f'<span style="white-space:nowrap">{swatch} {key} <b>{n:,}</b></span>')
    return " &nbsp; ".join(items)


def batches_html(snap: Snapshot) -> str:
    """Per-batch detail: id, status and the counts that are not zero."""
    e = html.escape
    rows = []
    for b in snap.batches:
        counts = ", ".join(
            f"{k} {int(b.counts.get(k, 0)):,}" for k in COUNT_KEYS if b.counts.get(k)
        )
        rows.append(
            f"<tr><td><code>{e(b.id)}</code></td><td>{e(b.status)}</td><td>{e(counts)}</td></tr>"
        )
    if not rows:
        return "<i>no batch created yet</i>"
    return (
        '<table class="claude-lab-batches"><thead><tr><th>batch</th><th>status</th>'
        f"<th>requests</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _cost_cell(snap: Snapshot) -> str:
    if snap.cost_usd is not None:
        return format_cost(snap.cost_usd)
    if snap.estimated_cost_usd is not None:
        return f"≤ {format_cost(snap.estimated_cost_usd)} (estimate)"
    return "—"


_CARD_STYLE = (
    "font-family:var(--jp-ui-font-family, sans-serif);font-size:var(--jp-ui-font-size1, 13px);"
    "color:var(--jp-ui-font-color1, inherit);border-left:3px solid {accent};padding:2px 8px;"
    "overflow-x:auto"
)
_ACCENT = {
    "success": COLOR_VARS["succeeded"],
    "warning": COLOR_VARS["expired"],
    "danger": COLOR_VARS["errored"],
    "": "var(--jp-border-color1, #bdbdbd)",
}


def html_summary(snap: Snapshot) -> str:
    """The result card: headline, the bar, elapsed and cost, the next step, the counts
    (a small table) and, for a failure, the cause with the traceback on request.

    Static HTML (no script, no widget), so a reopened notebook, nbconvert, VS Code and
    GitHub all show it. Ids appear only inside ``.claude-lab-ids`` so a notebook
    sanitizer can strip them.
    """
    e = html.escape
    ids = e(snap.job_id)
    if snap.batch_ids:
        ids += " · " + e(", ".join(snap.batch_ids))
    heads = ["status", *COUNT_KEYS, "rows", "cached", "skipped", "cost"]
    cells = [f"<b>{e(snap.status)}</b>"]
    cells += [f"{snap.count(k)}" for k in COUNT_KEYS]
    cells += [str(snap.rows), str(snap.cached), str(snap.skipped), e(_cost_cell(snap))]
    th = "".join(f"<th>{h}</th>" for h in heads)
    td = "".join(f"<td>{c}</td>" for c in cells)
    facts = [f"{snap.finished:,}/{snap.requests:,} requests", format_duration(snap.elapsed)]
    if snap.cost_usd is not None:
        facts.append(f"cost {format_cost(snap.cost_usd)}")
    elif snap.estimated_cost_usd is not None:
        facts.append(f"estimated ≤ {format_cost(snap.estimated_cost_usd)}")
    parts = [
        f'<div class="claude-lab-headline"><b>{e(headline(snap))}</b> · '
        f'<span class="claude-lab-facts">{e(" · ".join(facts))}</span></div>',
    ]
    if snap.error:
        parts.append(f'<div class="claude-lab-error">{e(_scrub_ids(_cause(snap), snap))}</div>')
    if step := next_step(snap):
        parts.append(f'<div class="claude-lab-next">Next: {_code(step)}</div>')
    if snap.requests or snap.done:
        parts.append(bar_html(snap, height="6px"))
    parts.append(
        '<table style="margin:2px 0;font-size:var(--jp-ui-font-size0, 11px)">'
        f"<thead><tr>{th}</tr></thead><tbody><tr>{td}</tr></tbody></table>"
    )
    if snap.traceback:
        parts.append(
            f"<details><summary>traceback</summary><pre>{e(snap.traceback)}</pre></details>"
        )
    parts.append(
        '<div style="color:var(--jp-ui-font-color2, #777)">claude_lab job '
        f'<span class="claude-lab-ids">{ids}</span></div>'
    )
    style = _CARD_STYLE.format(accent=_ACCENT[outcome(snap) if snap.done else ""])
    return f'<div class="claude-lab-summary" style="{style}">{"".join(parts)}</div>'


def _code(text: str) -> str:
    """Escape ``text`` and show its `backticked` parts as code."""
    out = []
    for k, piece in enumerate(text.split("`")):
        out.append(f"<code>{html.escape(piece)}</code>" if k % 2 else html.escape(piece))
    return "".join(out)


def mimebundle(snap: Snapshot, widget: Any = None) -> dict[str, Any]:
    """A job's output: the text and HTML card, plus the widget view when ``widget`` (an
    ipywidgets widget, or a display with a ``widget``) is given and the job still runs.

    A finished job's bundle never carries a widget view: a reopened notebook must not
    show "model not found".
    """
    bundle: dict[str, Any] = {"text/plain": text_summary(snap), "text/html": html_summary(snap)}
    if widget is not None and not snap.done:
        root = getattr(widget, "widget", widget)  # accept a display too
        if root is not None:
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
    raised into the job's worker thread. ``clock`` and ``scheduler`` are
    injectable: tests drive time by hand.
    """

    widget: Any = None

    def __init__(
        self,
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        clock: Clock | None = None,
        scheduler: Scheduler = thread_scheduler,
    ) -> None:
        self.min_interval = min_interval
        self.clock: Clock = time.monotonic if clock is None else clock
        self.scheduler = scheduler
        self.rate = RateMeter(self.clock)
        self.snapshot: Snapshot | None = None
        self.closed = False
        self._lock = threading.RLock()
        self._last = float("-inf")
        self._pending: Snapshot | None = None
        self._timer: _Cancelable | None = None

    def _render(self, snap: Snapshot, final: bool) -> None:
        raise NotImplementedError

    def update(self, snap: Snapshot) -> None:
        with self._lock:
            if self.closed:
                return
            self.snapshot = snap
            if not snap.counts_held:
                self.rate.feed(snap.finished)
            now = self.clock()
            wait = self._last + self.min_interval - now
            if wait <= 0 and self._timer is None:
                self._pending = None
                self._last = now
                self._safe_render(snap, final=False)
                return
            self._pending = snap
            if self._timer is None:
                self._timer = self.scheduler(max(wait, 0.0), self._flush)

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            snap, self._pending = self._pending, None
            if self.closed or snap is None:
                return
            self._last = self.clock()
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
