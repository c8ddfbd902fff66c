"""The live widget: what it shows for a run, throttling, threads, cancel, final styles.

ipywidgets work headless (no kernel: comm messages are dropped), so these
tests read the widget state a user would see.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as widgets
import pytest

from claude_lab.progress import WIDGET_VIEW_MIME, Snapshot, mimebundle, text_summary
from claude_lab.widget import WidgetDisplay

JOB = "job_7f3a9c"
BATCHES = ("msgbatch_01Aaa", "msgbatch_01Bbb")


def snap(**kw: Any) -> Snapshot:
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    counts.update(kw.pop("counts", {}))
    base: dict[str, Any] = dict(
        job_id=JOB,
        batch_ids=BATCHES,
        status="in_progress",
        counts=counts,
        requests=sum(counts.values()),
        rows=sum(counts.values()),
    )
    base.update(kw)
    return Snapshot(**base)


def widths(d: WidgetDisplay) -> dict[str, float]:
    """Segment widths in percent; hidden segments count as 0."""
    return {
        k: float(seg.layout.width.rstrip("%")) if seg.layout.display != "none" else 0.0
        for k, seg in d.segments.items()
    }


def visible(w: widgets.Widget) -> bool:
    return w.layout.display != "none"


def descendants(w: widgets.Widget) -> list[widgets.Widget]:
    out = [w]
    for child in getattr(w, "children", ()):
        out += descendants(child)
    return out


def wait_for(cond: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_widget_follows_a_run_from_submit_to_end() -> None:
    d = WidgetDisplay(on_cancel=lambda: None, min_interval=0)
    assert isinstance(d.widget, widgets.VBox)
    # The browser test looks for ipywidgets' horizontal progress bar in the DOM.
    assert d.progress in descendants(d.widget)
    assert isinstance(d.progress, widgets.IntProgress)
    assert d.progress.orientation == "horizontal"

    d.update(snap(status="submitting", counts={}, rows=12))
    assert "submitting" in d.title.value and JOB in d.title.value
    assert d.progress_label.value == "submitting…"  # not "no requests sent": they are on the way

    held = snap(counts={"processing": 10}, rows=12, skipped=2, elapsed=3.2)
    d.update(held)
    assert all(b in d.title.value for b in BATCHES) and "in_progress" in d.title.value
    assert (d.progress.value, d.progress.max) == (0, 10)
    assert widths(d) == {
        "processing": 100.0,
        "succeeded": 0.0,
        "errored": 0.0,
        "canceled": 0.0,
        "expired": 0.0,
    }
    assert "elapsed 3s" in d.info.value

    moving = snap(
        counts={"processing": 4, "succeeded": 4, "errored": 1, "expired": 1},
        rows=12,
        skipped=2,
        counts_move=True,
        elapsed=65,
        estimated_cost_usd=0.05,
    )
    d.update(moving)
    assert (d.progress.value, d.progress.max) == (6, 10)
    assert d.progress_label.value == "6 / 10 finished"
    w = widths(d)
    assert w == pytest.approx(
        {"processing": 40.0, "succeeded": 40.0, "errored": 10.0, "canceled": 0.0, "expired": 10.0}
    )
    assert sum(w.values()) == pytest.approx(100.0)
    for key, n in moving.counts.items():
        assert f"{key} <b>{n}</b>" in d.legend.value
    assert "elapsed 1m 05s" in d.info.value and "estimated ≤ $0.0500" in d.info.value
    assert not visible(d.totals)

    final = snap(
        status="ended",
        counts={"succeeded": 8, "errored": 1, "expired": 1},
        rows=12,
        skipped=2,
        counts_move=True,
        cost_usd=0.021,
        done=True,
    )
    d.close(final)
    assert (d.progress.value, d.progress.max) == (10, 10)
    assert d.progress.bar_style == "warning"
    assert sum(widths(d).values()) == pytest.approx(100.0)
    assert visible(d.totals)
    assert "succeeded 8 · errored 1 · expired 1" in d.totals.value
    assert "rows 12 (cached 0, skipped 2)" in d.totals.value and "$0.0210" in d.totals.value
    assert d.cancel_button.disabled
    assert d.snapshot is final


def test_honest_note_while_counts_stay_at_processing() -> None:
    d = WidgetDisplay(min_interval=0)
    d.update(snap(counts={"processing": 5}))
    assert visible(d.note)
    assert "until the batch ends" in d.note.value
    d.update(snap(counts={"processing": 4, "succeeded": 1}, counts_move=True))
    assert not visible(d.note)
    d.update(snap(status="ended", counts={"succeeded": 5}, done=True))
    assert not visible(d.note)


def test_note_is_gone_at_close_even_if_counts_never_moved() -> None:
    d = WidgetDisplay(min_interval=0)
    d.update(snap(counts={"processing": 5}))
    d.close(snap(status="ended", counts={"succeeded": 5}, done=True))
    assert not visible(d.note)


def test_burst_of_updates_makes_few_widget_changes_and_the_last_wins() -> None:
    d = WidgetDisplay(min_interval=0.05)
    changes: list[int] = []
    d.progress.observe(lambda ch: changes.append(ch["new"]), names="value")
    for i in range(1, 101):
        d.update(snap(counts={"processing": 100 - i, "succeeded": i}, counts_move=True))
    assert len(changes) == 1  # the first update rendered; the rest wait for the interval
    assert d.snapshot is not None and d.snapshot.count("succeeded") == 100
    d.close(snap(status="ended", counts={"succeeded": 100}, done=True))
    assert changes[-1] == 100 and len(changes) <= 3
    time.sleep(0.1)  # a trailing render after close must not overwrite the final state
    assert d.progress.value == 100 and d.progress.bar_style == "success"


def test_updates_from_a_background_thread_land_without_further_calls() -> None:
    d = WidgetDisplay(min_interval=0.05)

    def worker() -> None:
        for i in range(1, 21):
            d.update(snap(counts={"processing": 20 - i, "succeeded": i}, counts_move=True))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    # The worker is gone; the newest snapshot still reaches the widget.
    wait_for(lambda: d.progress.value == 20)
    assert d.progress_label.value == "20 / 20 finished"
    assert widths(d)["succeeded"] == pytest.approx(100.0)


def test_cancel_button_calls_on_cancel_once_and_disables_itself() -> None:
    calls: list[int] = []
    d = WidgetDisplay(on_cancel=lambda: calls.append(1), min_interval=0)
    d.update(snap(counts={"processing": 5}))
    assert visible(d.cancel_button) and not d.cancel_button.disabled
    d.cancel_button.click()
    d.cancel_button.click()
    assert calls == [1]
    assert d.cancel_button.disabled
    # Renders never re-enable it while the job winds down.
    d.update(snap(counts={"processing": 5}))
    assert d.cancel_button.disabled


def test_failed_cancel_is_shown_and_can_be_retried() -> None:
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("network down")

    d = WidgetDisplay(on_cancel=flaky, min_interval=0)
    d.update(snap(counts={"processing": 5}))
    d.cancel_button.click()
    assert not d.cancel_button.disabled and visible(d.message)
    assert "network down" in d.message.value
    d.cancel_button.click()
    assert len(attempts) == 2 and d.cancel_button.disabled


def test_no_cancel_button_without_on_cancel() -> None:
    d = WidgetDisplay(min_interval=0)
    assert not visible(d.cancel_button)


@pytest.mark.parametrize(
    ("final", "style"),
    [
        (
            snap(status="ended", counts={"succeeded": 5}, rows=9, cached=3, skipped=1, done=True),
            "success",
        ),
        (snap(status="ended", counts={"succeeded": 4, "errored": 1}, done=True), "warning"),
        (snap(status="ended", counts={"succeeded": 4, "expired": 1}, done=True), "warning"),
        (snap(status="ended", counts={"succeeded": 2, "canceled": 3}, done=True), "danger"),
        (
            snap(status="failed", counts={"processing": 5}, error="batch expired", done=True),
            "danger",
        ),
    ],
)
def test_final_style(final: Snapshot, style: str) -> None:
    d = WidgetDisplay(on_cancel=lambda: None, min_interval=0)
    d.update(snap(counts={"processing": 5}))
    d.close(final)
    assert d.progress.bar_style == style
    assert d.cancel_button.disabled and visible(d.totals)
    if final.error:
        assert visible(d.message) and "batch expired" in d.message.value


def test_all_rows_cached_shows_a_full_successful_bar() -> None:
    d = WidgetDisplay(min_interval=0)
    d.close(snap(status="ended", counts={}, rows=7, cached=6, skipped=1, done=True))
    assert d.progress.value == d.progress.max == 1
    assert d.progress.bar_style == "success"
    assert "no requests sent" in d.totals.value


def test_many_batch_ids_are_shortened_in_the_title() -> None:
    d = WidgetDisplay(min_interval=0)
    ids = tuple(f"msgbatch_{i:02d}" for i in range(5))
    d.update(snap(batch_ids=ids, counts={"processing": 1}))
    assert "msgbatch_02" in d.title.value and "msgbatch_03" not in d.title.value
    assert "+2 more" in d.title.value


def test_mimebundle_carries_the_widget_view_and_text_fallbacks() -> None:
    d = WidgetDisplay(min_interval=0)
    assert d._repr_mimebundle_()[WIDGET_VIEW_MIME]["model_id"] == d.widget.model_id
    final = snap(status="ended", counts={"succeeded": 3}, done=True)
    d.close(final)
    bundle = mimebundle(final, d.widget)
    assert bundle == d._repr_mimebundle_() == mimebundle(final, d)
    view = bundle[WIDGET_VIEW_MIME]
    assert view["model_id"] == d.widget.model_id
    assert {"version_major", "version_minor"} <= view.keys()
    assert bundle["text/plain"] == text_summary(final)
