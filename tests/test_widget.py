"""The notebook display: header, one bar, fold-out, cancel, the final card, HTML text.

ipywidgets work headless (no kernel: comm messages are dropped), so these tests
read the widget state a user would see. Throttling runs on a fake clock.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import pytest
from snapshot_helpers import JOB, snapshot
from test_progress import FakeClock

from claude_lab._progress import WIDGET_VIEW_MIME, BatchInfo, Snapshot, text_summary
from claude_lab._widget import WidgetDisplay

BATCHES = ("msgbatch_01Aaa", "msgbatch_01Bbb")


def snap(**kw: Any) -> Snapshot:
    return snapshot(BATCHES, **kw)


def descendants(w: widgets.Widget) -> list[widgets.Widget]:
    out = [w]
    for child in getattr(w, "children", ()):
        out += descendants(child)
    return out


def test_text_is_html_never_label() -> None:
    # A Label typesets "$0.01 … $0.05" as maths; HTML widgets show the text.
    d = WidgetDisplay(on_cancel=lambda: None, min_interval=0)
    assert not any(isinstance(w, widgets.Label) for w in descendants(d.widget))
    d.update(snap(counts={"processing": 4}, cost_usd=0.01, estimated_cost_usd=0.05))
    assert "cost $0.0100 / estimated ≤ $0.0500" in d.header.value


def test_display_follows_a_run_from_submit_to_end() -> None:
    clock = FakeClock()
    d = WidgetDisplay(on_cancel=lambda: None, min_interval=0, clock=clock)
    d.update(snap(status="submitting", counts={}, rows=12))
    assert d.header.value.startswith("<b>submitting</b>")

    d.update(snap(counts={"processing": 10}, rows=12, elapsed=3.2))
    assert "0/10 finished · counts arrive when the batch ends · 3s" in d.header.value
    assert 'class="claude-lab-bar"' in d.bar.value and "title=" not in d.bar.value  # empty track

    clock.advance(4)
    moving = snap(
        counts={"processing": 4, "succeeded": 4, "errored": 1, "expired": 1},
        counts_move=True,
        elapsed=65,
        batches=(BatchInfo(BATCHES[0], "in_progress", {"processing": 4, "succeeded": 4}),),
    )
    d.update(moving)
    assert "6/10 finished" in d.header.value and "1m 05s" in d.header.value
    assert "counts arrive" not in d.header.value
    # One bar, left to right: succeeded 40%, errored 10%, expired 10%; processing is the track.
    widths = [
        float(w) for w in __import__("re").findall(r"width:([\d.]+)%;background", d.bar.value)
    ]
    assert widths == pytest.approx([40.0, 10.0, 10.0])
    assert "succeeded <b>4</b>" in d.detail.value and BATCHES[0] in d.detail.value
    assert not d.cancel_button.disabled


def test_cancel_stays_usable_while_any_batch_runs() -> None:
    d = WidgetDisplay(on_cancel=lambda: None, min_interval=0)
    d.update(
        snap(
            status="fetching",  # one batch is being downloaded, the other still runs
            counts={"processing": 5, "succeeded": 5},
            batches=(
                BatchInfo(BATCHES[0], "ended", {"succeeded": 5}),
                BatchInfo(BATCHES[1], "in_progress", {"processing": 5}),
            ),
        )
    )
    assert not d.cancel_button.disabled
    assert d.header.value.startswith("<b>in_progress</b>")


def test_cancel_button_calls_on_cancel_once() -> None:
    calls: list[int] = []
    d = WidgetDisplay(on_cancel=lambda: calls.append(1), min_interval=0)
    d.update(snap(counts={"processing": 5}))
    d.cancel_button.click()
    d.cancel_button.click()
    assert calls == [1] and d.cancel_button.disabled
    d.update(snap(status="canceling", counts={"processing": 5}))
    assert d.cancel_button.disabled and d.cancel_button.description == "Canceling…"


def test_failed_cancel_is_shown_and_can_be_retried() -> None:
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("network down")

    d = WidgetDisplay(on_cancel=flaky, min_interval=0)
    d.update(snap(counts={"processing": 5}))
    d.cancel_button.click()
    assert not d.cancel_button.disabled and "network down" in d.hint.value
    d.cancel_button.click()
    assert len(attempts) == 2 and d.cancel_button.disabled


def test_a_wait_that_cannot_take_clicks_says_how_to_stop() -> None:
    d = WidgetDisplay(on_cancel=lambda: None, min_interval=0)
    d.update(snap(counts={"processing": 5}))
    d.waiting(cancel_works=True)
    assert d.hint.layout.display == "none" and not d.cancel_button.disabled
    d.waiting(cancel_works=False)
    assert d.cancel_button.disabled and d.hint.layout.display != "none"
    assert f"interrupt the kernel (■), then run <code>claude_lab.attach('{JOB}').cancel()" in (
        d.hint.value
    )


def test_no_cancel_button_without_on_cancel() -> None:
    assert WidgetDisplay(min_interval=0).cancel_button.layout.display == "none"


def test_live_bundle_has_the_view_and_the_final_one_does_not() -> None:
    d = WidgetDisplay(min_interval=0)
    assert d._repr_mimebundle_()[WIDGET_VIEW_MIME]["model_id"] == d.widget.model_id
    d.update(snap(counts={"processing": 3}))
    assert WIDGET_VIEW_MIME in d._repr_mimebundle_()
    final = snap(status="ended", counts={"succeeded": 3}, done=True)
    d.close(final)
    bundle = d._repr_mimebundle_()
    assert WIDGET_VIEW_MIME not in bundle and bundle == d.final_bundle
    assert bundle["text/plain"] == text_summary(final)
    assert "Done: 3 succeeded" in bundle["text/html"]
