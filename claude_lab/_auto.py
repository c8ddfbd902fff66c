"""``progress=``: which display a job gets (the `auto` pick, like ``tqdm.auto``).

"auto" is the notebook widget inside a live kernel, the tqdm bar on a
terminal with a width, and the plain line log otherwise (scripts, CI, a pty
reporting 0 columns). The front-ends are imported only when chosen, so plain
scripts never import ipywidgets or IPython.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from claude_lab._errors import ConfigError, InputError
from claude_lab._progress import DEFAULT_MIN_INTERVAL, Display, NullDisplay

__all__ = ["PROGRESS_CHOICES", "in_kernel", "make_display"]

#: Accepted values of ``progress=``.
PROGRESS_CHOICES: tuple[str | None, ...] = ("auto", "widget", "console", "log", None)


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
    """The display for ``progress="auto" | "widget" | "console" | "log" | None``.

    ``on_cancel`` is what the widget's Cancel button calls.
    """
    from claude_lab import _console as console

    if progress is not None and not isinstance(progress, str):
        raise InputError(_bad_progress(progress))
    if progress == "auto":
        if in_kernel():
            progress = "widget"
        elif console.terminal_width(sys.stderr) > 0:
            progress = "console"
        else:
            progress = "log"
    if progress is None:
        return NullDisplay()
    if progress == "console":
        return console.ConsoleDisplay(min_interval=min_interval)
    if progress == "log":
        return console.LineLogDisplay()
    if progress == "widget":
        try:
            from claude_lab._widget import WidgetDisplay
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
        '"auto", "widget", "console", "log" or None.'
    )
