"""Writing a result table to parquet, csv or jsonl together with its run provenance.

This module owns the files a run leaves behind: the table in the format the
path's extension names, and the provenance (model, templates, parameters,
batch ids, package version, totals) next to it: inside the parquet schema
metadata under ``claude_lab``, or in a ``<path>.provenance.json`` sidecar for
csv and jsonl. Provenance is scrubbed of anything that looks like a credential
before it is written, whatever its source.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from claude_lab._errors import ConfigError, InputError
from claude_lab._version import __version__

__all__ = ["PROVENANCE_KEY", "export", "read_provenance", "scrub"]

#: Key of the provenance JSON in parquet schema metadata (and in ``df.attrs``).
PROVENANCE_KEY = "claude_lab"

_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
# Key names that may carry a credential. Matched after lower-casing and mapping
# "-" to "_", so "X-Api-Key", "x_api_key" and "ANTHROPIC_API_KEY" all hit.
_SECRET_KEY = re.compile(r"api_?key|authorization|auth_?token|secret|password|bearer|cookie")
# Values that look like an Anthropic key, wherever they hide (a template, a header value).
_SECRET_VALUE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")
_REDACTED = "[redacted]"


def scrub(value: Any) -> Any:
    """A copy of ``value`` without credential-like keys or key-like strings, JSON-ready."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            if _SECRET_KEY.search(key.lower().replace("-", "_")):
                continue
            out[key] = scrub(v)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return _SECRET_VALUE.sub(_REDACTED, value)
    if isinstance(value, type):
        # A pydantic output model travels as its name; its schema is in the params.
        return f"{value.__module__}.{value.__qualname__}"
    return value


def _default(obj: Any) -> Any:
    if isinstance(obj, (_dt.datetime, _dt.date, pd.Timestamp)):
        return obj.isoformat()
    if obj is pd.NA:
        return None
    return str(obj)


def _dumps(provenance: Mapping[str, Any]) -> bytes:
    clean = scrub(provenance)
    data = orjson.dumps(
        clean,
        default=_default,
        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2,
    )
    # Scrub again on the final text: a key-like string could come from default=str.
    return _SECRET_VALUE.sub(_REDACTED, data.decode()).encode()


def _format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputError(
            f"Cannot tell the export format from {path.name!r}: end the path with "
            ".parquet, .csv or .jsonl (csv and jsonl may add .gz, .bz2, .xz, .zst)."
        )
    if fmt == "parquet" and path.suffix.lower() in _COMPRESSION:
        raise InputError(
            f"{path.name!r}: parquet compresses internally; drop the {path.suffix} suffix."
        )
    return fmt


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".provenance.json")


def _require_pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ConfigError(
            "Writing or reading parquet needs pyarrow, which is not installed: "
            "pip install 'claude-lab[parquet]'  (or export to .csv / .jsonl, "
            "which need nothing extra)."
        ) from None
    return pyarrow


def _plain_index(df: pd.DataFrame) -> bool:
    idx = df.index
    return (
        isinstance(idx, pd.RangeIndex)
        and idx.start == 0
        and idx.step == 1
        and idx.name is None
        and idx.stop == len(df)
    )


def _json_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Encode list/dict cells (tool calls, nested output fields) as JSON text."""
    out = df
    for col in df.columns:
        s = df[col]
        if s.dtype != object:
            continue
        if not s.map(lambda v: isinstance(v, (list, dict, tuple))).any():
            continue
        if out is df:
            out = df.copy(deep=False)
        out[col] = s.map(
            lambda v: (
                orjson.dumps(v, default=_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()
                if isinstance(v, (list, dict, tuple))
                else v
            )
        )
    return out


def export(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``df`` to ``path`` (format from the extension) with its provenance; return the path.

    ``.parquet``: provenance JSON in the schema metadata under ``claude_lab``.
    ``.csv`` / ``.jsonl`` (optionally ``.gz`` etc.): a ``<path>.provenance.json``
    sidecar. Provenance defaults to ``df.attrs["claude_lab"]``; an export
    timestamp and the package version are added. The index is written unless it
    is the default 0..n-1 range. Parent directories are created.
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"export() takes a DataFrame, got {type(df).__name__}.")
    target = Path(path)
    fmt = _format(target)
    prov = dict(provenance if provenance is not None else df.attrs.get(PROVENANCE_KEY) or {})
    prov.setdefault("package", f"claude-lab {__version__}")
    prov["exported_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    prov["export"] = {"format": fmt, "rows": len(df), "columns": [str(c) for c in df.columns]}
    blob = _dumps(prov)
    target.parent.mkdir(parents=True, exist_ok=True)

    if fmt == "parquet":
        pa = _require_pyarrow()
        # pyarrow copies df.attrs into the pandas metadata verbatim; give it the
        # scrubbed provenance instead (pandas restores it as attrs on read).
        frame = df.copy(deep=False)
        attrs: dict[Any, Any] = {**df.attrs, PROVENANCE_KEY: prov}
        frame.attrs = orjson.loads(_dumps(attrs))
        table = _to_arrow(pa, frame)
        meta = dict(table.schema.metadata or {})
        meta[PROVENANCE_KEY.encode()] = blob
        pa.parquet.write_table(table.replace_schema_metadata(meta), target)
        return target

    # Attrs would be copied into every derived frame; the sidecar carries them instead.
    frame = _json_cells(df)
    keep_index = not _plain_index(frame)
    if fmt == "csv":
        frame.to_csv(target, index=keep_index)
    else:
        if keep_index:
            frame = frame.reset_index()
        frame.to_json(target, orient="records", lines=True, force_ascii=False, date_format="iso")
    _sidecar(target).write_bytes(blob)
    return target


def _to_arrow(pa: Any, df: pd.DataFrame) -> Any:
    try:
        return pa.Table.from_pandas(df, preserve_index=None)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Mixed nested cells (tool calls with different inputs) have no single
        # arrow type; store those columns as JSON text rather than fail.
        return pa.Table.from_pandas(_json_cells(df), preserve_index=None)


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The provenance written by :func:`export` for ``path``, or None if there is none."""
    target = Path(path)
    fmt = _format(target)
    if fmt == "parquet":
        pa = _require_pyarrow()
        meta = pa.parquet.read_schema(target).metadata or {}
        raw = meta.get(PROVENANCE_KEY.encode())
    else:
        sidecar = _sidecar(target)
        raw = sidecar.read_bytes() if sidecar.exists() else None
    if raw is None:
        return None
    data = orjson.loads(raw)
    return data if isinstance(data, dict) else None
