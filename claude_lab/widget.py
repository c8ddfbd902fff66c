"""The live notebook display: `WidgetDisplay`, built from core ipywidgets only.

Core widgets (HTML, Label, IntProgress, HBox/VBox, Button) need no front-end
extension of ours, so the display renders in JupyterLab, VS Code and Colab.
This module owns the widget tree and how a `Snapshot` maps onto it; throttling
comes from `progress.ThrottledDisplay`, and the text/HTML fallbacks a saved
notebook shows come from `progress.mimebundle`. Imported lazily by
`progress.make_display`, so plain scripts never import ipywidgets.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from claude_lab.progress import (
    COUNT_KEYS,
    DEFAULT_MIN_INTERVAL,
    WIDGET_VIEW_MIME,
    Snapshot,
    ThrottledDisplay,
    cost_text,
    count_color,
    format_duration,
    mimebundle,
    outcome,
)

__all__ = ["WidgetDisplay"]

_BAR_HEIGHT = "14px"
_MAX_BATCH_IDS = 3
# Once the API is canceling or ending a batch, a cancel request changes nothing.
_NOT_CANCELABLE = frozenset({"canceling", "fetching", "ended", "failed"})

NOTE_TEXT = (
    "The Batches API reports every request as “processing” until the batch ends; "
    "succeeded / errored counts arrive at the end."
)


def _segment_html(key: str, count: int, pct: float) -> str:
    tip = f"{key}: {count} ({pct:.1f}%)"
    return (
        f'<div title="{tip}" style="background:{count_color(key)};'
        f'height:{_BAR_HEIGHT};width:100%"></div>'
    )


def _title_html(snap: Snapshot | None) -> str:
    if snap is None:
        return "<b>claude_lab</b> job · <i>starting</i>"
    e = html.escape
    ids = snap.batch_ids[:_MAX_BATCH_IDS]
    batches = ", ".join(f"<code>{e(b)}</code>" for b in ids)
    if len(snap.batch_ids) > len(ids):
        batches += f" +{len(snap.batch_ids) - len(ids)} more"
    label = "batch" if len(snap.batch_ids) == 1 else "batches"
    parts = [f"<b>claude_lab</b> job <code>{e(snap.job_id)}</code>"]
    if snap.batch_ids:
        parts.append(f"{label} {batches}")
    parts.append(f"status <b>{e(snap.status)}</b>")
    return " · ".join(parts)


def _legend_html(snap: Snapshot) -> str:
    items = []
    for key in COUNT_KEYS:
        n = snap.count(key)
        pct = 100.0 * n / snap.requests if snap.requests else 0.0
        # nowrap per item: a narrow cell wraps between counts, never inside one.
        items.append(
            f'<span style="white-space:nowrap"><span style="color:{count_color(key)}">■</span>'
            f" {key} <b>{n}</b> ({pct:.0f}%)</span>"
        )
    return " &nbsp; ".join(items)


def _totals_html(snap: Snapshot) -> str:
    counts = " · ".join(f"{k} {snap.count(k)}" for k in COUNT_KEYS[1:] if snap.count(k))
    counts = counts or "no requests sent"
    extra = [
        f"rows {snap.rows} (cached {snap.cached}, skipped {snap.skipped})",
        cost_text(snap),
        format_duration(snap.elapsed),
    ]
    head = {"success": "Done", "warning": "Done, some rows failed", "danger": "Stopped"}.get(
        outcome(snap), "Stopped watching"
    )
    return f"<b>{head}:</b> {html.escape(counts)} · " + " · ".join(
        html.escape(x) for x in extra if x
    )


class WidgetDisplay(ThrottledDisplay):
    """A VBox showing one job live; `widget` is the root, `snapshot` the newest state.

    Layout, top to bottom: title (job id, batch ids, status); an IntProgress of
    finished/total requests with a "n / N finished" label; a stacked bar of the
    five request counts (segment widths are their proportions) with a legend
    giving each as a number; the honest note while the API holds counts at
    "processing"; elapsed time and cost; a Cancel button; at close, the totals
    and a success / warning / danger bar style.
    """

    def __init__(
        self,
        *,
        on_cancel: Callable[[], object] | None = None,
        min_interval: float = DEFAULT_MIN_INTERVAL,
    ) -> None:
        super().__init__(min_interval=min_interval)
        self._on_cancel = on_cancel
        self._cancel_clicked = False

        self.title = widgets.HTML(value=_title_html(None))
        self.progress = widgets.IntProgress(
            value=0, min=0, max=1, layout=widgets.Layout(flex="1 1 auto", width="auto")
        )
        self.progress_label = widgets.Label(value="")
        self.segments: dict[str, widgets.HTML] = {
            key: widgets.HTML(
                value=_segment_html(key, 0, 0.0),
                # No margin, no min width: the five widths must add up to the bar.
                layout=widgets.Layout(
                    width="0%", min_width="0", margin="0", height=_BAR_HEIGHT, display="none"
                ),
            )
            for key in COUNT_KEYS
        }
        self.stacked_bar = widgets.HBox(
            list(self.segments.values()),
            layout=widgets.Layout(
                width="100%", height=_BAR_HEIGHT, overflow="hidden", border="1px solid #ccc"
            ),
        )
        self.legend = widgets.HTML(value="")
        self.note = widgets.HTML(
            value=f"<i>{html.escape(NOTE_TEXT)}</i>", layout=widgets.Layout(display="none")
        )
        self.info = widgets.Label(value="")
        self.cancel_button = widgets.Button(
            description="Cancel",
            icon="stop",
            tooltip="Cancel the job's batches; requests that already finished are kept.",
            layout=widgets.Layout(width="auto", display="" if on_cancel else "none"),
        )
        self.cancel_button.on_click(self._clicked)
        self.message = widgets.HTML(value="", layout=widgets.Layout(display="none"))
        self.totals = widgets.HTML(value="", layout=widgets.Layout(display="none"))
        self.widget = widgets.VBox(
            [
                self.title,
                widgets.HBox([self.progress, self.progress_label]),
                self.stacked_bar,
                self.legend,
                self.note,
                widgets.HBox(
                    [self.info, self.cancel_button], layout=widgets.Layout(align_items="center")
                ),
                self.message,
                self.totals,
            ]
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        if self.snapshot is None:
            return {
                "text/plain": "claude_lab job (starting)",
                WIDGET_VIEW_MIME: self.widget.get_view_spec(),
            }
        return mimebundle(self.snapshot, self.widget)

    # -- rendering (called under the display lock, from any thread) ----------

    def _render(self, snap: Snapshot, final: bool) -> None:
        self.title.value = _title_html(snap)

        total = max(snap.requests, 0)
        finished = min(snap.finished, total)
        with self.progress.hold_sync():
            if total == 0 and final:
                # Nothing was sent (all cached/skipped): show a full bar, not an empty one.
                self.progress.max, self.progress.value = 1, 1
            else:
                # max before value: ipywidgets clamps value to the current max.
                self.progress.max = max(total, 1)
                self.progress.value = finished
            if final:
                self.progress.bar_style = outcome(snap) or "info"
        if total:
            self.progress_label.value = f"{finished} / {total} finished"
        else:  # nothing sent yet (preparing, submitting), or nothing to send at all
            self.progress_label.value = "no requests sent" if final else f"{snap.status}…"

        for key, seg in self.segments.items():
            n = snap.count(key)
            pct = 100.0 * n / total if total else 0.0
            with seg.hold_sync():
                seg.layout.width = f"{pct:.4f}%"
                seg.layout.display = "" if n else "none"
                seg.value = _segment_html(key, n, pct)
        self.legend.value = _legend_html(snap)

        self.note.layout.display = "" if snap.counts_held and not final else "none"

        info = [f"elapsed {format_duration(snap.elapsed)}"]
        if cost := cost_text(snap):
            info.append(cost)
        self.info.value = " · ".join(info)

        if final or snap.status in _NOT_CANCELABLE or snap.done:
            self.cancel_button.disabled = True
        if self._cancel_clicked and snap.status == "canceling":
            self.cancel_button.description = "Canceling…"

        if snap.error:
            self.message.value = f"<b>Error:</b> {html.escape(snap.error)}"
            self.message.layout.display = ""
        if final:
            self.totals.value = _totals_html(snap)
            self.totals.layout.display = ""

    # -- cancel ----------------------------------------------------------------

    def _clicked(self, _button: widgets.Button) -> None:
        # Clicks arrive on the kernel's thread while renders run on the job's
        # worker: the lock keeps the flag, the button and `closed` consistent.
        with self._lock:
            if self._cancel_clicked or self.closed or self._on_cancel is None:
                return
            self._cancel_clicked = True
            self.cancel_button.disabled = True
            self.cancel_button.description = "Canceling…"
        try:
            self._on_cancel()
        except Exception as exc:
            # Let the user try again and see why; the job keeps running.
            with self._lock:
                self._cancel_clicked = False
                if not self.closed:
                    self.cancel_button.disabled = False
                    self.cancel_button.description = "Cancel"
                self.message.value = f"<b>Cancel failed:</b> {html.escape(str(exc))}"
                self.message.layout.display = ""
