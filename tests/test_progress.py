"""The display core and console front-ends: card, wording, throttling on a fake clock,
rate and ETA, the tqdm bar, the line log and the `auto` pick."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from snapshot_helpers import JOB, snapshot

from claude_lab import _auto as auto
from claude_lab import _console as console
from claude_lab._auto import make_display
from claude_lab._console import ConsoleDisplay, LineLogDisplay
from claude_lab._errors import InputError
from claude_lab._progress import (
    WIDGET_VIEW_MIME,
    BatchInfo,
    NullDisplay,
    RateMeter,
    Snapshot,
    ThrottledDisplay,
    header_text,
    headline,
    html_summary,
    mimebundle,
    next_step,
    text_summary,
)

BATCH = "msgbatch_01HxYzAbCdEf"


def snap(**kw: Any) -> Snapshot:
    return snapshot((BATCH,), **kw)


ENDED = snap(
    status="ended",
    counts={"succeeded": 120, "errored": 3},
    rows=130,
    cached=5,
    skipped=2,
    elapsed=754.2,
    counts_move=True,
    cost_usd=0.0123,
    done=True,
)


class FakeClock:
    """Time that moves only when a test says so; timers fire when it passes them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[list[Any]] = []  # [due, fn, canceled]

    def __call__(self) -> float:
        return self.now

    def schedule(self, delay: float, fn: Callable[[], None]) -> Any:
        entry = [self.now + delay, fn, False]
        self.timers.append(entry)

        class Handle:
            def cancel(self) -> None:
                entry[2] = True

        return Handle()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, fn, canceled in due:
            if not canceled:
                fn()


# -- text and HTML card --------------------------------------------------------


def test_text_summary_reports_totals_without_ids_or_durations() -> None:
    text = text_summary(ENDED)
    assert text == (
        "claude_lab job ended · requests 123: processing 0, succeeded 120, errored 3, "
        "canceled 0, expired 0 · rows 130 (cached 5, skipped 2)"
    )


def test_text_summary_scrubs_ids_from_the_job_error() -> None:
    failed = snap(status="failed", error=f"batch {BATCH} of {JOB} expired", done=True)
    assert "error: batch <id> of <id> expired" in text_summary(failed)


def test_card_has_headline_counts_cost_and_next_step_and_ids_only_in_their_span() -> None:
    page = html_summary(ENDED)
    assert "<b>Done: 120 succeeded, 3 errored</b>" in page
    assert "123/123 requests · 12m 34s · cost $0.0123" in page
    assert "Next: 3 errored → <code>job.retry()</code>" in page
    cells = re.findall(r"<td>(.*?)</td>", page)
    assert cells[0] == "<b>ended</b>" and cells[1:9] == ["0", "120", "3", "0", "0", "130", "5", "2"]
    stripped = re.sub(r'<span class="claude-lab-ids">.*?</span>', "", page)
    assert JOB in page and JOB not in stripped and BATCH not in stripped
    # Theme colours with fallbacks, so light, dark and GitHub all read.
    assert "var(--jp-success-color1, #388e3c)" in page


def test_canceled_card_says_what_was_kept() -> None:
    done = snap(status="canceled", counts={"succeeded": 12, "canceled": 28}, done=True)
    assert headline(done) == "Canceled: 12 kept, 28 canceled"
    assert "28 canceled → `job.retry(canceled=True)`" in next_step(done)


def test_error_card_is_short_with_cause_next_step_and_traceback_on_request() -> None:
    failed = snap(
        status="failed",
        batch_ids=(),
        error="AuthenticationError: invalid x-api-key\n{'type': 'error', ...}",
        traceback="Traceback (most recent call last):\n  ...\nAuthenticationError",
        done=True,
    )
    page = html_summary(failed)
    assert "<b>Failed</b>" in page
    assert '<div class="claude-lab-error">AuthenticationError: invalid x-api-key</div>' in page
    assert "{&#x27;type&#x27;" not in page  # the raw SDK dict stays out of the card
    assert "Nothing was sent or paid" in page
    assert "<details><summary>traceback</summary>" in page
    sdk = snap(
        status="failed",
        batch_ids=(),
        error="AuthenticationError: Error code: 401 - {'type': 'error', 'error': {'type': "
        "'authentication_error', 'message': 'invalid x-api-key'}, 'request_id': 'req_1'}",
        done=True,
    )
    assert "AuthenticationError (401): invalid x-api-key</div>" in html_summary(sdk)
    assert "request_id" not in html_summary(sdk)
    lost = snap(status="interrupted", error="ConnectionError: reset", done=True)
    assert f"claude_lab.attach('{JOB}')" in next_step(lost)


def test_html_escapes_and_shows_the_estimate_before_results() -> None:
    page = html_summary(snap(estimated_cost_usd=1.5, error="<script>x</script>"))
    assert "≤ $1.50 (estimate)" in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_a_finished_jobs_bundle_never_carries_a_widget_view() -> None:
    class FakeWidget:
        model_id = "abc123"

    running = snap(counts={"processing": 3})
    assert mimebundle(running, FakeWidget())[WIDGET_VIEW_MIME]["model_id"] == "abc123"
    assert WIDGET_VIEW_MIME not in mimebundle(ENDED, FakeWidget())
    assert mimebundle(ENDED) == {
        "text/plain": text_summary(ENDED),
        "text/html": html_summary(ENDED),
    }


# -- header wording, rate and ETA ------------------------------------------------


def test_header_while_counts_are_held_and_while_they_move() -> None:
    held = snap(counts={"processing": 40}, elapsed=12, estimated_cost_usd=0.05)
    assert header_text(held) == (
        "in_progress · 0/40 finished · counts arrive when the batch ends · 12s · "
        "estimated ≤ $0.0500"
    )
    moving = snap(
        counts={"processing": 30, "succeeded": 10}, counts_move=True, elapsed=65, cost_usd=0.01
    )
    assert header_text(moving, rate=2.0, eta=15) == (
        "in_progress · 10/40 finished · 2.0 req/s · ETA 15s · 1m 05s · cost $0.0100"
    )


def test_status_stays_in_progress_while_any_batch_runs() -> None:
    mixed = snap(
        status="fetching",
        batches=(BatchInfo("a", "ended", {}), BatchInfo("b", "in_progress", {})),
    )
    assert mixed.shown_status == "in_progress" and mixed.running_batches == 1


def test_rate_meter_on_a_fake_clock() -> None:
    clock = FakeClock()
    meter = RateMeter(clock, smoothing=1.0)
    meter.feed(0)
    assert meter.rate is None
    clock.advance(5)
    meter.feed(10)
    assert meter.rate == 2.0
    moving = snap(counts={"processing": 30, "succeeded": 10}, counts_move=True)
    assert meter.eta(moving) == 15.0
    assert meter.eta(snap(counts={"processing": 40})) is None  # counts held: no ETA


# -- throttling (deterministic: a fake clock and timers) -----------------------------


class Recorder(ThrottledDisplay):
    def __init__(self, clock: FakeClock, min_interval: float = 0.25) -> None:
        super().__init__(min_interval=min_interval, clock=clock, scheduler=clock.schedule)
        self.renders: list[tuple[int, bool]] = []

    def _render(self, s: Snapshot, final: bool) -> None:
        self.renders.append((s.count("succeeded"), final))


def test_burst_renders_first_then_newest_one_interval_later() -> None:
    clock = FakeClock()
    d = Recorder(clock)
    for i in range(200):
        d.update(snap(counts={"succeeded": i, "processing": 200 - i}))
    assert d.renders == [(0, False)]
    clock.advance(0.2)
    assert d.renders == [(0, False)]
    # The trailing render lands without any further update: the screen never
    # stays on a stale snapshot when the job goes quiet.
    clock.advance(0.05)
    assert d.renders == [(0, False), (199, False)]
    clock.advance(1)
    d.update(snap(counts={"succeeded": 200}))  # quiet for a while: renders at once
    assert d.renders[-1] == (200, False)


def test_close_renders_at_once_wins_over_pending_and_ignores_later_updates() -> None:
    clock = FakeClock()
    d = Recorder(clock)
    for i in range(50):
        d.update(snap(counts={"succeeded": i}))
    d.close(snap(counts={"succeeded": 1000}, status="ended", done=True))
    d.update(snap(counts={"succeeded": 5}))
    clock.advance(10)  # a stale trailing render would show here
    assert d.renders == [(0, False), (1000, True)]
    d.close(snap(counts={"succeeded": 7}))
    assert len(d.renders) == 2


def test_render_errors_do_not_reach_the_worker_thread(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(ThrottledDisplay):
        def _render(self, s: Snapshot, final: bool) -> None:
            raise RuntimeError("boom")

    d = Broken(min_interval=0)
    d.update(snap())
    d.close(snap())
    assert "failed to render" in caplog.text


# -- console ---------------------------------------------------------------------


def test_console_bar_has_rate_eta_counts_and_final_next_step() -> None:
    out = io.StringIO()
    clock = FakeClock()
    d = ConsoleDisplay(file=out, min_interval=0, clock=clock, scheduler=clock.schedule)
    d.update(snap(counts={"processing": 123}))
    assert "in_progress (counts arrive when the batch ends)" in out.getvalue()
    assert "0/123" in out.getvalue()

    d.update(snap(counts={"processing": 3, "succeeded": 117, "errored": 3}, counts_move=True))
    latest = out.getvalue().rsplit("\r", 1)[-1]
    assert "120/123" in latest and "succeeded=117 errored=3" in latest
    assert re.search(r"\[\d\d:\d\d<[\d:?]+, +[\d.?]+ *req/s\]", latest), latest  # tqdm's rate/ETA

    d.close(ENDED)
    lines = out.getvalue().rstrip("\n").rsplit("\n", 2)[-2:]
    assert lines[0].startswith(text_summary(ENDED))
    assert "cost $0.0123" in lines[0] and "elapsed 12m 34s" in lines[0] and f"job {JOB}" in lines[0]
    assert lines[1] == "Done: 120 succeeded, 3 errored · next: 3 errored → job.retry()"


def test_line_log_writes_one_line_per_change_throttled() -> None:
    out = io.StringIO()
    clock = FakeClock()
    d = LineLogDisplay(file=out, min_interval=10, clock=clock, scheduler=clock.schedule)
    d.update(snap(status="submitting", counts={}))
    d.update(snap(counts={"processing": 40}))  # a new status prints at once
    d.update(snap(counts={"processing": 40}))  # nothing changed: no line
    clock.advance(11)
    d.update(snap(counts={"processing": 30, "succeeded": 10}, counts_move=True))
    d.update(snap(counts={"processing": 20, "succeeded": 20}, counts_move=True))  # throttled
    assert out.getvalue().count("\n") == 3
    clock.advance(10)  # the trailing line lands on its own
    d.close(ENDED)
    lines = out.getvalue().splitlines()
    assert [ln.split(": ", 1)[1].split(" · ")[0] for ln in lines[:4]] == [
        "submitting",
        "in_progress",
        "in_progress",
        "in_progress",
    ]
    assert "counts arrive when the batch ends" in lines[1]
    assert "10/40 finished" in lines[2] and "20/40 finished" in lines[3]
    assert "ETA" in lines[3]
    assert lines[4].startswith(f"claude_lab {JOB}: claude_lab job ended")
    assert lines[-1].startswith("Done: 120 succeeded, 3 errored")


def test_console_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleDisplay(min_interval=0).close(ENDED)
    captured = capsys.readouterr()
    assert captured.out == "" and text_summary(ENDED) in captured.err


# -- the auto pick -----------------------------------------------------------------


def test_forced_choices() -> None:
    from claude_lab._widget import WidgetDisplay

    assert isinstance(make_display(None), NullDisplay)
    assert isinstance(make_display("console"), ConsoleDisplay)
    assert isinstance(make_display("log"), LineLogDisplay)
    assert isinstance(make_display("widget", on_cancel=lambda: None), WidgetDisplay)


@pytest.mark.parametrize("bad", ["tqdm", "Widget", "", True, 1])
def test_unknown_choice_names_the_accepted_values(bad: object) -> None:
    with pytest.raises(InputError, match=r'"auto", "widget", "console", "log" or None'):
        make_display(bad)  # type: ignore[arg-type]


class FakeShell:
    def __init__(self, kernel: object) -> None:
        if kernel is not None:
            self.kernel = kernel


def test_auto_picks_widget_in_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython

    from claude_lab._widget import WidgetDisplay

    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell(kernel=object()))
    assert isinstance(make_display("auto"), WidgetDisplay)


@pytest.mark.parametrize(("width", "expected"), [(120, ConsoleDisplay), (0, LineLogDisplay)])
def test_auto_outside_a_kernel_follows_the_terminal_width(
    monkeypatch: pytest.MonkeyPatch, width: int, expected: type
) -> None:
    import IPython

    # A terminal IPython shell has no kernel: it counts as a terminal, not a notebook.
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell(kernel=None))
    monkeypatch.setattr(console, "terminal_width", lambda stream: width)
    assert isinstance(auto.make_display("auto"), expected)


def test_plain_script_never_imports_ipywidgets_or_ipython() -> None:
    code = (
        "import sys; from claude_lab._auto import make_display; d = make_display('auto'); "
        "print(type(d).__name__, 'ipywidgets' in sys.modules, 'IPython' in sys.modules)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    # stderr is a pipe here: the plain line log, so CI logs show progress too.
    assert res.stdout.split() == ["LineLogDisplay", "False", "False"]


def test_a_pty_with_zero_columns_gets_the_line_log() -> None:
    pty = pytest.importorskip("pty")
    import fcntl
    import os
    import struct
    import termios

    main, side = pty.openpty()
    try:
        fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        with os.fdopen(os.dup(side), "w") as stream:
            assert stream.isatty() and console.terminal_width(stream) == 0
    finally:
        os.close(main)
        os.close(side)


def test_null_display_keeps_the_newest_snapshot() -> None:
    d = NullDisplay()
    t = threading.Thread(target=d.update, args=(snap(),))
    t.start()
    t.join()
    d.close(ENDED)
    assert d.snapshot is ENDED
