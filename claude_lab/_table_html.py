"""How a result table reads in a notebook: empty error cells, not ``<NA>`` noise.

A result table is a plain ``pandas.DataFrame`` (no subclass: a subclass is
lost or must be re-created by every pandas operation, and a user's code may
check the type). Its data stays exact: a row that did not fail has a missing
``<name>_error`` (``isna()`` is True). Only the notebook's HTML view changes:
`register()` adds an IPython ``text/html`` printer for DataFrames that shows
the error cells of frames carrying ``attrs["claude_lab"]`` (which pandas
keeps through selections like ``out[cols].head()``) as empty. Every other
frame renders exactly as pandas renders it. Long replies are cut by pandas'
own ``display.max_colwidth`` (50 characters by default), in the view only.
The reply columns follow the inputs because the job appends them there.
"""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd

__all__ = ["error_columns", "html", "register"]


def error_columns(frame: pd.DataFrame) -> list[str]:
    """The ``<name>_error`` columns of a result table (those with a ``<name>_status``)."""
    if not isinstance(frame.columns, pd.Index) or isinstance(frame.columns, pd.MultiIndex):
        return []
    names = set(frame.columns)
    return [
        c
        for c in frame.columns
        if isinstance(c, str) and c.endswith("_error") and f"{c[: -len('_error')]}_status" in names
    ]


def html(frame: pd.DataFrame) -> str | None:
    """pandas' own HTML view, with a result table's empty error cells left blank."""
    cols = error_columns(frame) if "claude_lab" in frame.attrs else []
    if not cols:
        return frame._repr_html_()  # type: ignore[operator]
    view = frame.copy(deep=False)
    for c in cols:
        view[c] = view[c].astype("string").fillna("")
    return view._repr_html_()


def register() -> bool:
    """Install the printer in the running IPython (once; never over another library's)."""
    if "IPython" not in sys.modules:
        return False
    try:
        from IPython import get_ipython

        shell: Any = get_ipython()
        formatter = shell.display_formatter.formatters["text/html"]
    except Exception:
        return False
    try:
        current = formatter.lookup_by_type(pd.DataFrame)
    except KeyError:
        current = None
    if current is html:
        return True
    if current is not None:
        return False  # e.g. itables: the user chose how tables look
    formatter.for_type(pd.DataFrame, html)
    return True
