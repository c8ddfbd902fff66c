"""The display core: summaries, fallbacks, throttling, the console bar and `progress=`."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from claude_lab import progress
from claude_lab.errors import InputError
from claude_lab.progress import (
    ConsoleDisplay,
    NullDisplay,
    Snapshot,
    ThrottledDisplay,
    html_summary,
    make_display,
    mimebundle,
    text_summary,
)

JOB = "job_7f3a9c"
BATCH = "msgbatch_01HxYzAbCdEf"


def snap(**kw: Any) -> Snapshot:
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    counts.update(kw.pop("counts", {}))
    base: dict[str, Any] = dict(
        job_id=JOB,
        batch_ids=(BATCH,),
        status="in_progress",
        counts=counts,
        requests=sum(counts.values()),
        rows=sum(counts.values()),
    )
    base.update(kw)
    return Snapshot(**base)


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


# -- text and HTML summaries ---------------------------------------------------


def test_text_summary_reports_totals_without_ids_or_durations() -> None:
    text = text_summary(ENDED)
    assert "ended" in text
    for part in ("requests 123", "succeeded 120", "errored 3", "canceled 0", "expired 0"):
        assert part in text
    assert "rows 130 (cached 5, skipped 2)" in text
    assert JOB not in text and BATCH not in text
    assert "12m" not in text and "754" not in text
    assert "\n" not in text


def test_text_summary_is_identical_across_runs_with_other_ids_and_times() -> None:
    # What nbval compares: a re-run has new ids and a different duration.
    other = snap(
        job_id="job_other",
        batch_ids=("msgbatch_02Other", "msgbatch_03Other"),
        status="ended",
        counts={"succeeded": 120, "errored": 3},
        rows=130,
        cached=5,
        skipped=2,
        elapsed=3.0,
        counts_move=False,
        cost_usd=0.0123,
        done=True,
    )
    assert text_summary(other) == text_summary(ENDED)


def test_text_summary_scrubs_ids_from_the_job_error() -> None:
    failed = snap(status="failed", error=f"batch {BATCH} of {JOB} expired", done=True)
    text = text_summary(failed)
    assert "error: batch <id> of <id> expired" in text
    assert BATCH not in text


def test_html_summary_has_every_count_and_keeps_ids_in_the_strippable_span() -> None:
    page = html_summary(ENDED)
    for header in ("status", "processing", "succeeded", "errored", "canceled", "expired"):
        assert f"<th>{header}</th>" in page
    cells = re.findall(r"<td>(.*?)</td>", page)
    assert cells[0] == "<b>ended</b>"
    assert [re.sub(r"<[^>]+>|■", "", c).strip() for c in cells[1:9]] == [
        "0",
        "120",
        "3",
        "0",
        "0",
        "130",
        "5",
        "2",
    ]
    assert "$0.0123" in cells[9]
    stripped = re.sub(r'<span class="claude-lab-ids">.*?</span>', "", page)
    assert JOB in page and BATCH in page
    assert JOB not in stripped and BATCH not in stripped


def test_html_summary_escapes_and_shows_the_estimate_before_results() -> None:
    page = html_summary(snap(estimated_cost_usd=1.5, error="<script>x</script>"))
    assert "≤ $1.50 (estimate)" in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_mimebundle_fallbacks_and_widget_view() -> None:
    bundle = mimebundle(ENDED)
    assert bundle == {"text/plain": text_summary(ENDED), "text/html": html_summary(ENDED)}

    class FakeWidget:
        model_id = "abc123"

    view = mimebundle(ENDED, FakeWidget())[progress.WIDGET_VIEW_MIME]
    assert view == {"version_major": 2, "version_minor": 0, "model_id": "abc123"}


# -- throttling ------------------------------------------------------------------


class Recorder(ThrottledDisplay):
    def __init__(self, min_interval: float) -> None:
        super().__init__(min_interval=min_interval)
        self.renders: list[tuple[int, bool]] = []

    def _render(self, s: Snapshot, final: bool) -> None:
        self.renders.append((s.count("succeeded"), final))


def wait_for(cond: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_burst_renders_first_and_newest_only() -> None:
    d = Recorder(min_interval=0.05)
    for i in range(200):
        d.update(snap(counts={"succeeded": i, "processing": 200 - i}))
    assert d.renders == [(0, False)]
    # The trailing render lands without any further update: the screen never
    # stays on a stale snapshot when the job goes quiet.
    wait_for(lambda: len(d.renders) == 2)
    assert d.renders[-1] == (199, False)
    assert d.snapshot is not None and d.snapshot.count("succeeded") == 199


def test_close_renders_at_once_wins_over_pending_and_ignores_later_updates() -> None:
    d = Recorder(min_interval=0.05)
    for i in range(50):
        d.update(snap(counts={"succeeded": i}))
    d.close(snap(counts={"succeeded": 1000}, status="ended", done=True))
    d.update(snap(counts={"succeeded": 5}))
    time.sleep(0.1)  # longer than the interval: a stale trailing render would show here
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


def test_console_shows_counts_the_held_note_and_final_totals() -> None:
    out = io.StringIO()
    d = ConsoleDisplay(file=out, min_interval=0)
    d.update(snap(counts={"processing": 123}))
    assert "in_progress (counts arrive at the end)" in out.getvalue()
    assert "0/123" in out.getvalue()

    d.update(snap(counts={"processing": 3, "succeeded": 117, "errored": 3}, counts_move=True))
    latest = out.getvalue().rsplit("\r", 1)[-1]
    assert "counts arrive at the end" not in latest
    assert "120/123" in latest
    assert "succeeded=117 errored=3" in latest

    d.close(ENDED)
    final_line = out.getvalue().rstrip("\n").rsplit("\n", 1)[-1]
    assert final_line.startswith(text_summary(ENDED))
    assert "cost $0.0123" in final_line and "elapsed 12m 34s" in final_line
    assert f"job {JOB}" in final_line


def test_console_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    d = ConsoleDisplay(min_interval=0)
    d.close(ENDED)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "succeeded=120 errored=3" in captured.err
    assert text_summary(ENDED) in captured.err


# -- make_display ------------------------------------------------------------------


def test_forced_choices() -> None:
    from claude_lab.widget import WidgetDisplay

    assert isinstance(make_display(None), NullDisplay)
    assert isinstance(make_display("console"), ConsoleDisplay)
    assert isinstance(make_display("widget", on_cancel=lambda: None), WidgetDisplay)


@pytest.mark.parametrize("bad", ["tqdm", "Widget", "", True, 1])
def test_unknown_choice_names_the_accepted_values(bad: object) -> None:
    with pytest.raises(InputError, match=r'"auto", "widget", "console" or None'):
        make_display(bad)  # type: ignore[arg-type]


class FakeShell:
    def __init__(self, kernel: object) -> None:
        if kernel is not None:
            self.kernel = kernel


def test_auto_picks_widget_in_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython

    from claude_lab.widget import WidgetDisplay

    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell(kernel=object()))
    assert isinstance(make_display("auto"), WidgetDisplay)


@pytest.mark.parametrize(("tty", "expected"), [(True, ConsoleDisplay), (False, NullDisplay)])
def test_auto_outside_a_kernel_follows_the_terminal(
    monkeypatch: pytest.MonkeyPatch, tty: bool, expected: type
) -> None:
    import IPython

    # A terminal IPython shell has no kernel: it counts as a terminal, not a notebook.
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell(kernel=None))
    monkeypatch.setattr(progress, "_isatty", lambda stream: tty)
    assert isinstance(make_display("auto"), expected)


def test_plain_script_never_imports_ipywidgets_or_ipython() -> None:
    code = (
        "import sys; from claude_lab.progress import make_display; d = make_display('auto'); "
        "print(type(d).__name__, 'ipywidgets' in sys.modules, 'IPython' in sys.modules)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    # stderr is a pipe here, so "auto" shows nothing.
    assert res.stdout.split() == ["NullDisplay", "False", "False"]


def test_null_display_keeps_the_newest_snapshot() -> None:
    d = NullDisplay()
    t = threading.Thread(target=d.update, args=(snap(),))
    t.start()
    t.join()
    d.close(ENDED)
    assert d.snapshot is ENDED
