"""The notebook front-end: `WidgetDisplay`, core ipywidgets only, ending as a static card.

Live, it is one line of header (status, n/N finished, rate, ETA or "counts
arrive when the batch ends", elapsed, cost), a Cancel button, one stacked bar
in the colours of `progress.COLOR_VARS`, and a fold-out with the counts, the
batch ids and per-batch detail. Text is `HTML` widgets, never `Label` (a
Label typesets ``$…$`` as maths). When the job ends every output that showed
it is replaced by the static result card (`progress.mimebundle` with no
widget view) and the widgets are closed, so a reopened notebook, VS Code,
GitHub and nbconvert show the final counts instead of "model not found".

Core widgets need no front-end extension of ours, so the display renders in
JupyterLab, VS Code and Colab. Imported only by `claude_lab._auto`.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from claude_lab._progress import (
    COLOR_VARS,
    DEFAULT_MIN_INTERVAL,
    OUTCOME_KEYS,
    WIDGET_VIEW_MIME,
    Clock,
    Scheduler,
    Snapshot,
    ThrottledDisplay,
    bar_html,
    batches_html,
    header_text,
    legend_html,
    mimebundle,
    text_summary,
    thread_scheduler,
)

__all__ = ["WidgetDisplay"]

# Statuses in which a cancel request can no longer change anything.
_NOT_CANCELABLE = frozenset({"canceling", "canceled", "ended", "failed", "interrupted"})


def _header_html(snap: Snapshot | None, rate: float | None, eta: float | None) -> str:
    if snap is None:
        return "<b>claude_lab</b> · starting…"
    line = html.escape(header_text(snap, rate, eta))
    status, _, rest = line.partition(" · ")
    # The outcome counts, compact, in the bar's colours, right after "n/N finished".
    counts = " ".join(
        f'<span title="{k}" style="white-space:nowrap">'
        f'<span style="color:{COLOR_VARS[k]}">■</span>{snap.count(k):,}</span>'
        for k in OUTCOME_KEYS
        if snap.count(k)
    )
    if counts:
        rest = rest.replace(" finished", f" finished ({counts})", 1)
    return f"<b>{status}</b> · {rest}"


def _details_html(snap: Snapshot) -> str:
    e = html.escape
    rows = (
        f"rows {snap.rows:,} (cached {snap.cached:,}, skipped {snap.skipped:,}) · "
        f"requests {snap.requests:,}"
    )
    return (
        f"<div>{legend_html(snap)}</div><div>{e(rows)}</div>"
        f"<div>job <code>{e(snap.job_id)}</code></div>{batches_html(snap)}"
    )


class WidgetDisplay(ThrottledDisplay):
    """A job's live notebook view; `widget` is the root, `snapshot` the newest state.

    `show` puts it in the current cell (once live; any later showing is a static
    pointer), `close` replaces every output it was shown in with the result card.
    """

    def __init__(
        self,
        *,
        on_cancel: Callable[[], object] | None = None,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        clock: Clock | None = None,
        scheduler: Scheduler = thread_scheduler,
    ) -> None:
        super().__init__(min_interval=min_interval, clock=clock, scheduler=scheduler)
        self._on_cancel = on_cancel
        self._cancel_clicked = False
        self._handles: list[Any] = []
        self._live_shown = False
        self.final_bundle: dict[str, Any] | None = None

        self.header = widgets.HTML(
            value=_header_html(None, None, None), layout=widgets.Layout(flex="1 1 auto")
        )
        self.cancel_button = widgets.Button(
            description="Cancel",
            icon="stop",
            tooltip="Cancel the job's batches; requests that already finished are kept.",
            layout=widgets.Layout(
                width="auto", flex="0 0 auto", display="" if on_cancel else "none"
            ),
        )
        self.cancel_button.on_click(self._clicked)
        self.bar = widgets.HTML(value="", layout=widgets.Layout(width="100%"))
        self.hint = widgets.HTML(value="", layout=widgets.Layout(display="none"))
        self.detail = widgets.HTML(value="")
        self.details = widgets.Accordion(children=[self.detail], selected_index=None)
        self.details.set_title(0, "details: counts, batches")
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [self.header, self.cancel_button],
                    layout=widgets.Layout(align_items="center", justify_content="space-between"),
                ),
                self.bar,
                self.hint,
                self.details,
            ],
            layout=widgets.Layout(max_width="60em"),
        )

    # -- showing -----------------------------------------------------------------------

    def _bundle(self) -> dict[str, Any]:
        snap = self.snapshot
        if snap is None:
            return {
                "text/plain": "claude_lab job (starting)",
                "text/html": '<div class="claude-lab-summary">claude_lab job (starting)</div>',
                WIDGET_VIEW_MIME: self.widget.get_view_spec(),
            }
        return mimebundle(snap, None if self.closed else self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return self._bundle()

    def show(self, snap: Snapshot | None = None) -> None:
        """Display in the current output: the live view the first time, the result card
        once the job ended, and otherwise a pointer to the live view (one live view)."""
        from IPython.display import display

        with self._lock:
            if snap is not None and self.snapshot is None:
                self.snapshot = snap
            if self.closed:
                display(self._bundle(), raw=True)
                return
            if self._live_shown:
                bundle = self._pointer_bundle()
            else:
                self._live_shown = True
                bundle = self._bundle()
            self._handles.append(display(bundle, raw=True, display_id=True))

    def adopt(self, previous: object) -> bool:
        """Take over the outputs of an earlier display of the same job (a retry shows in
        the place of the card it follows); False when there are none."""
        handles = list(getattr(previous, "_handles", ()))
        if not handles:
            return False
        with self._lock:
            self._handles = handles
            self._live_shown = True
            handles[0].update(self._bundle(), raw=True)
            for handle in handles[1:]:
                handle.update(self._pointer_bundle(), raw=True)
        return True

    def _pointer_bundle(self) -> dict[str, Any]:
        current = self.snapshot
        plain = f"claude_lab job {current.job_id if current else ''}: live progress above"
        return {
            "text/plain": plain,
            "text/html": f'<div class="claude-lab-summary">{html.escape(plain)}</div>',
        }

    def waiting(self, cancel_works: bool) -> None:
        """Told by a blocking ``wait()``: when clicks cannot be handled while it blocks,
        say how to stop instead of offering a button that does nothing."""
        with self._lock:
            if cancel_works or self.closed or self.snapshot is None:
                return
            job = self.snapshot.job_id
            self.cancel_button.disabled = True
            self.hint.value = (
                "<i>Cancel cannot be clicked while this cell waits here. To stop: interrupt "
                f"the kernel (■), then run <code>claude_lab.attach('{html.escape(job)}')"
                ".cancel()</code>.</i>"
            )
            self.hint.layout.display = ""

    # -- rendering (called under the display lock, from any thread) ----------------------

    def _render(self, snap: Snapshot, final: bool) -> None:
        if final:
            self._finish(snap)
            return
        rate = self.rate.rate
        self.header.value = _header_html(snap, rate, self.rate.eta(snap))
        self.bar.value = bar_html(snap)
        self.detail.value = _details_html(snap)
        if snap.status in _NOT_CANCELABLE or snap.done:
            self.cancel_button.disabled = True
        if self._cancel_clicked and snap.status == "canceling":
            self.cancel_button.description = "Canceling…"

    def _finish(self, snap: Snapshot) -> None:
        """Replace every output of this display with the static card; close the widgets."""
        self.final_bundle = mimebundle(snap)  # no widget view: it is about to be closed
        self.header.value = html.escape(text_summary(snap))
        self.bar.value = bar_html(snap)
        self.detail.value = _details_html(snap)
        self.cancel_button.disabled = True
        for handle in self._handles:
            handle.update(self.final_bundle, raw=True)
        if self._handles:  # shown: the card took the widget's place, free its models
            for w in (
                self.widget,
                *self.widget.children,
                self.header,
                self.cancel_button,
                self.bar,
                self.hint,
                self.details,
                self.detail,
            ):
                w.close()

    # -- cancel ---------------------------------------------------------------------------

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
                self.hint.value = f"<b>Cancel failed:</b> {html.escape(str(exc))}"
                self.hint.layout.display = ""
