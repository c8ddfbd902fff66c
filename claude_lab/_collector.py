"""The collector stage: results JSONL lines -> per-request fields -> result columns, in bulk.

This module owns reading Message Batches results: splitting a byte stream into
lines (:func:`iter_lines`), picking from each line only the fields the result
table needs (:class:`ResultAccumulator`, one slot per unique request ``u``), and
fanning those slots out to the input rows as nullable pandas arrays, with
structured-output and ``parse=`` post-processing and batch-priced cost.

Lines are parsed with orjson and never turned into SDK objects: building a
pydantic object per line is an order of magnitude slower at 100k rows.
"""

from __future__ import annotations

import array
import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import orjson
import pandas as pd
from orjson import JSONDecodeError, loads
from pydantic import BaseModel, ValidationError

from claude_lab import _memory as memory
from claude_lab import _pricing as pricing

__all__ = [
    "CANCELED_MESSAGE",
    "EXPIRED_MESSAGE",
    "MISSING_MESSAGE",
    "REDACTED",
    "STATUSES",
    "ResultAccumulator",
    "iter_lines",
    "output_columns",
    "result_columns",
]

#: Row statuses, indexed by the internal status code.
STATUSES = ("missing", "succeeded", "errored", "canceled", "expired", "skipped", "parse_error")
_MISSING, _SUCCEEDED, _ERRORED, _CANCELED, _EXPIRED, _SKIPPED, _PARSE_ERROR = range(7)

#: What ``<name>_thinking`` holds for a thinking block the API redacted (safety).
REDACTED = "[redacted thinking]"
CANCELED_MESSAGE = "canceled: the batch was canceled before this request ran"
EXPIRED_MESSAGE = "expired: the batch ended (24 h) before this request ran"
MISSING_MESSAGE = "missing: the batch returned no result line for this request"

_PARSE_ERROR_MAX = 200
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a stream of byte chunks into non-blank lines, holding only one partial line.

    A final line without ``\\n`` is yielded; blank lines are dropped. Lines may
    keep a trailing ``\\r`` (orjson treats it as whitespace).
    """
    tail: list[bytes] = []
    for chunk in chunks:
        if not chunk:
            continue
        parts = chunk.split(b"\n")
        if len(parts) == 1:
            # Pieces are joined once, at the line's end, so a huge line split
            # over many chunks costs linear rather than quadratic copying.
            tail.append(chunk)
            continue
        if tail:
            tail.append(parts[0])
            parts[0] = b"".join(tail)
            tail = []
        last = parts.pop()
        if last:
            tail.append(last)
        for part in parts:
            if part and not part.isspace():
                yield part
    if tail:
        line = b"".join(tail)
        if not line.isspace():
            yield line


def _error_text(result: Mapping[str, Any]) -> tuple[str, str]:
    """(error type, "type: message") of an errored result."""
    err = result.get("error")
    if not isinstance(err, dict):
        detail = repr(err) if err is not None else "no error details given"
        return "api_error", f"api_error: {detail}"
    inner = err.get("error")
    # The API nests the real error one level down; older/other shapes do not.
    if isinstance(inner, dict):
        err = inner
    etype = str(err.get("type") or "error")
    message = err.get("message")
    return etype, (f"{etype}: {message}" if message is not None else etype)


def _json_type_ok(value: Any, spec: Any) -> bool:
    types = spec.get("type") if isinstance(spec, dict) else None
    if types is None:
        return True
    names = [types] if isinstance(types, str) else list(types)
    for name in names:
        allowed = _JSON_TYPES.get(name)
        if allowed is None:
            return True  # a type we do not check by hand: accept
        # bool is an int in Python but not a JSON integer/number.
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, allowed):
            return True
        if name == "integer" and isinstance(value, float) and value.is_integer():
            return True
    return False


def _schema_fields(output: type[BaseModel] | Mapping[str, Any]) -> list[str]:
    if isinstance(output, type) and issubclass(output, BaseModel):
        return list(output.model_fields)
    if isinstance(output, Mapping):
        # Accept both a bare JSON schema and the {"name":..., "schema": {...}} wrapper.
        schema = output.get("schema", output) if "properties" not in output else output
        props = schema.get("properties") if isinstance(schema, Mapping) else None
        if isinstance(props, Mapping):
            return [str(k) for k in props]
        return []
    raise TypeError(f"output= must be a pydantic model class or a JSON schema dict, got {output!r}")


_SCALAR_DTYPES = {"integer": "Int64", "number": "Float64", "boolean": "boolean", "string": "string"}
_INFERRED = {
    "integer": "integer",
    "floating": "number",
    "mixed-integer-float": "number",
    "boolean": "boolean",
    "string": "string",
}


def _schema_kinds(output: type[BaseModel] | Mapping[str, Any]) -> dict[str, str]:
    """Each top-level field's JSON type when it is one scalar type (nullable allowed),
    else ``"object"``: the dtype a column gets follows the schema, not the values."""
    if isinstance(output, type) and issubclass(output, BaseModel):
        schema: Any = output.model_json_schema()
    else:
        schema = output.get("schema", output) if "properties" not in output else output
    defs = schema.get("$defs") or schema.get("definitions") or {}
    props = schema.get("properties") or {}
    return {str(name): _scalar_kind(spec, defs) for name, spec in props.items()}


def _scalar_kind(spec: Any, defs: Mapping[str, Any]) -> str:
    if not isinstance(spec, Mapping):
        return "object"
    ref = spec.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        return _scalar_kind(defs[ref.rsplit("/", 1)[-1]], defs)
    options = spec.get("anyOf") or spec.get("oneOf")
    if isinstance(options, list):
        kinds = {_scalar_kind(o, defs) for o in options if not _is_null(o)}
        return kinds.pop() if len(kinds) == 1 else "object"
    types = spec.get("type")
    names = [types] if isinstance(types, str) else list(types or ())
    names = [t for t in names if t != "null"]
    return names[0] if len(names) == 1 and names[0] in _SCALAR_DTYPES else "object"


def _is_null(spec: Any) -> bool:
    return isinstance(spec, Mapping) and spec.get("type") == "null"


def _typed_column(values: np.ndarray, kind: str | None) -> Any:
    """One column with one missing-value marker: a nullable dtype for a scalar ``kind``
    (inferred from the values when None), else object with None for every missing value."""
    if kind is None:
        kind = _INFERRED.get(pd.api.types.infer_dtype(values, skipna=True), "object")
    dtype = _SCALAR_DTYPES.get(kind)
    if dtype is not None:
        try:
            return pd.array(values, dtype=dtype)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            pass  # values that do not fit the declared type: keep them as they are
    out = np.array(values, dtype=object)
    out[pd.isna(out)] = None
    return out


_BUILTIN_SUFFIXES = (
    "_text",
    "_status",
    "_error",
    "_stop_reason",
    "_input_tokens",
    "_output_tokens",
    "_cache_read_tokens",
    "_cache_write_tokens",
    "_cost_usd",
    "_model",
    "_batch_id",
    "_custom_id",
    "_cached",
    "_thinking",
    "_thinking_tokens",
    "_tool_calls",
    "_parsed",
)


def output_columns(
    output: type[BaseModel] | Mapping[str, Any], prefix: str = "claude"
) -> dict[str, str]:
    """Map each top-level field of ``output`` to its column name.

    A field is ``<prefix>_<field>``, except where that would clash with a
    column this module always produces (a field called ``status``, say): then
    it is ``<prefix>_output_<field>``.
    """
    taken = {prefix + s for s in _BUILTIN_SUFFIXES}
    names: dict[str, str] = {}
    for field in _schema_fields(output):
        col = f"{prefix}_{field}"
        names[field] = f"{prefix}_output_{field}" if col in taken else col
    return names


def result_columns(
    prefix: str = "claude", output: type[BaseModel] | Mapping[str, Any] | None = None
) -> list[str]:
    """Every column a run with this prefix and ``output=`` may write (some only sometimes)."""
    cols = [prefix + s for s in _BUILTIN_SUFFIXES]
    if output is not None:
        cols += [c for c in output_columns(output, prefix).values() if c not in cols]
    return cols


def _short(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors()
        first: Mapping[str, Any] = errs[0] if errs else {}
        loc = ".".join(str(p) for p in first.get("loc", ())) or "(root)"
        more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
        text = f"{loc}: {first.get('msg', exc)}{more}"
    elif isinstance(exc, orjson.JSONDecodeError):
        text = f"invalid JSON: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return "parse_error: " + text[:_PARSE_ERROR_MAX]


def _strip_fence(text: str) -> str:
    # Without enforced structured output, models often wrap JSON in a code fence.
    m = _FENCE.match(text)
    return m.group(1) if m else text


def _validate_schema(text: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    data = orjson.loads(_strip_fence(text))
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    body = schema.get("schema", schema) if "properties" not in schema else schema
    missing = [k for k in body.get("required", ()) if k not in data]
    if missing:
        raise ValueError(f"missing required field(s): {', '.join(missing)}")
    props = body.get("properties") or {}
    for key, spec in props.items():
        if key in data and not _json_type_ok(data[key], spec):
            want = spec.get("type") if isinstance(spec, dict) else spec
            raise ValueError(f"{key}: expected {want}, got {type(data[key]).__name__}")
    return data


def _tool_input(calls: Sequence[Mapping[str, Any]] | None, forced: Mapping[str, Any]) -> Any:
    """The input of the forced tool's first call, checked against its schema; or the
    ``parse_error: ...`` text saying why there is none."""
    name = forced.get("name")
    call = next((c for c in calls or () if c.get("name") == name), None)
    if call is None or not isinstance(call.get("input"), dict):
        return f"parse_error: the reply has no call to the tool {name!r}"
    data: dict[str, Any] = call["input"]
    schema = forced.get("schema") or {}
    missing = [k for k in schema.get("required", ()) if k not in data]
    if missing:
        return f"parse_error: the {name!r} call lacks required field(s) {', '.join(missing)}"
    for key, spec in (schema.get("properties") or {}).items():
        if key in data and not _json_type_ok(data[key], spec):
            got = type(data[key]).__name__
            return f"parse_error: {key}: expected {spec.get('type')}, got {got}"
    return data


def _decode(codes: Iterable[str | None], per_u: _Slots, take: np.ndarray) -> Any:
    """A string column from per-request codes into ``codes``; -1 and the skipped slot
    become NA."""
    return _names(list(codes), _padded(per_u, -1, np.int32)[take])


def _names(names: Sequence[str | None], codes: np.ndarray) -> Any:
    """The string column ``names[codes]`` per row (code -1: NA), with no Python object
    per row: the strings are copied by a take."""
    if _ARROW_STRINGS:
        import pyarrow as pa

        return _take(pa.array(names, type=pa.large_string()), codes)
    return pd.array(names, dtype="string").take(codes.astype(np.int64), allow_fill=True)


def _take(source: Any, index: np.ndarray) -> Any:
    """The Arrow string column ``source[index]`` per row (index < 0: NA)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    taken = pc.take(source, pa.array(index, mask=index < 0), memory_pool=_system_pool())
    return pd.arrays.ArrowStringArray(taken)


def _strings(values: np.ndarray) -> Any:
    """A string column from an object array of str and None (None: NA)."""
    if _ARROW_STRINGS:
        import pyarrow as pa

        column = pa.array(
            values, type=pa.large_string(), from_pandas=True, memory_pool=_system_pool()
        )
        return pd.arrays.ArrowStringArray(column)
    return pd.array(values, dtype="string")


def _id_strings(ids: list[str], take: np.ndarray, rows_are_requests: bool) -> Any:
    """The custom_id column: ``ids[take]``, where ``take`` == len(ids) is NA
    (``rows_are_requests``: ``take`` is ``0..n-1``, so the ids are the rows).

    Our custom_ids all have one length (``"r"`` + 32 hex digits), so in Arrow the
    column is written straight from their bytes as fixed-width rows, at its exact
    size, with no Python object per row (40 MB at a million rows, built with ~1 MB
    of temporaries rather than two object arrays and a growing builder).
    """
    n = len(ids)
    width = len(ids[0]) if n else 0
    fixed: np.ndarray | None = None
    if _ARROW_STRINGS and width > 0 and set(map(len, ids)) == {width}:
        # Equal lengths and ASCII: fixed-width rows, encoded in place (a bytes object
        # per id first would be 6 MB of temporaries per 100k).
        with contextlib.suppress(UnicodeEncodeError):
            fixed = np.array(ids, dtype=f"S{width}")
    if fixed is None:
        return _strings(_padded(ids, None)[take])
    import pyarrow as pa

    valid = take < n
    if valid.all():
        rows = fixed if rows_are_requests else fixed[take]
        offsets = np.arange(0, width * (len(take) + 1), width, dtype=np.int64)
        bitmap, nulls = None, 0
    else:
        rows = fixed[take[valid]]
        offsets = np.zeros(len(take) + 1, dtype=np.int64)
        np.cumsum(valid * width, out=offsets[1:])
        bitmap, nulls = pa.array(valid).buffers()[1], int((~valid).sum())
    del fixed  # the rows are taken: the per-request copy can go before the column is made
    column = pa.LargeStringArray.from_buffers(
        len(take), pa.py_buffer(offsets), pa.py_buffer(rows), bitmap, nulls
    )
    return pd.arrays.ArrowStringArray(column)


# pandas 3 keeps "string" columns in Arrow when pyarrow is installed; pandas 2 in Python.
_ARROW_STRINGS = pd.StringDtype().storage == "pyarrow"


def _system_pool() -> Any:
    """Arrow's malloc-backed pool, for the result table's strings only.

    Arrow's default allocator (mimalloc) cannot reuse the memory malloc has just freed
    from the table's other temporaries, so at a million rows the table's peak would
    carry both: ~30 MB more. Passed per call; the process-wide default is untouched.
    """
    import pyarrow as pa

    return pa.system_memory_pool()


def _padded(values: Sequence[Any] | np.ndarray, fill: Any, dtype: Any = object) -> np.ndarray:
    """``values`` plus one ``fill`` slot at the end (the skipped row), with no list copy."""
    arr = np.empty(len(values) + 1, dtype=dtype)
    arr[:-1] = values
    arr[-1] = fill
    return arr


# A per-request field: item assignment nearly as cheap as a list's, at 1, 4 or 8 bytes a
# slot rather than 8 plus an int object; numpy reads it in place (np.asarray).
_Slots: TypeAlias = "array.array[int]"


_COST_STEP = 4_096  # requests priced at once by ResultAccumulator._price


def _slots(typecode: str, fill: int, n: int) -> array.array[int]:
    return array.array(typecode, [fill]) * n


class ResultAccumulator:
    """Collects result lines for one job's unique requests, then builds the result columns.

    ``custom_ids`` are the job's unique request ids; request ``u`` is position
    ``u`` in that list. Feed every results line (from every batch of the job),
    then call :meth:`columns` with the per-row request index.
    """

    def __init__(self, custom_ids: Sequence[str]) -> None:
        # The caller's list itself (never changed here): a copy is 8 MB per million.
        self.custom_ids: list[str] = (
            custom_ids if isinstance(custom_ids, list) else list(custom_ids)
        )
        n = len(self.custom_ids)
        if len(set(self.custom_ids)) != n:
            raise ValueError("custom_ids must be unique")
        # Built when the first line arrives, not while the requests are still held.
        self._index: dict[str, int] | None = None
        self.unknown = 0
        self.duplicates = 0
        self.malformed = 0
        self.filled: np.ndarray = np.zeros(n, dtype=bool)
        self._pass = 0
        self._batch_ids: list[str | None] = [None]
        self._batch_slot = 0
        self._status: _Slots = _slots("b", _MISSING, n)
        self._pass_of: _Slots = _slots("i", 0, n)
        # A reply's text is a Python str only while its line is being stored; then it
        # moves into one UTF-8 buffer (``_seal``): ~50 bytes an object less per reply.
        self._text: list[str | None] = [None] * n
        self._text_pos: _Slots = _slots("q", -1, n)  # sealed text k of request u, or -1
        self._text_data = bytearray()
        self._text_ends: array.array[int] = array.array("q")
        self._loose_texts = 0  # texts UTF-8 cannot hold (lone surrogates): kept as str
        self._error: list[str | None] = [None] * n
        # Model and stop reason repeat across requests: keep a small code per
        # request (-1 = none) so columns and prices work on a handful of values.
        self._stop: _Slots = _slots("i", -1, n)
        self._model: _Slots = _slots("i", -1, n)
        self._stop_codes: dict[str | None, int] = {}
        self._model_codes: dict[str | None, int] = {}
        # Tokens of one request: well under 2**31.
        self._in: _Slots = _slots("i", -1, n)
        self._out: _Slots = _slots("i", -1, n)
        self._c_read: _Slots = _slots("i", -1, n)
        self._c_write: _Slots = _slots("i", -1, n)
        self._c_1h: _Slots = _slots("i", 0, n)
        self._cached: _Slots = _slots("b", 0, n)
        self._batch: _Slots = _slots("i", 0, n)
        # Rare fields: only allocated when a line has them.
        self._thinking: dict[int, str] = {}
        self._tools: dict[int, list[dict[str, Any]]] = {}
        self._thinking_tokens: dict[int, int] = {}
        self._error_type: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.custom_ids)

    def uids_of(self, custom_ids: Sequence[str]) -> np.ndarray:
        """The request index ``u`` of each of ``custom_ids`` (all must be this job's)."""
        index = self._lookup()
        return np.fromiter((index[c] for c in custom_ids), dtype=np.int64, count=len(custom_ids))

    def _lookup(self) -> dict[str, int]:
        if self._index is None:
            self._index = {cid: u for u, cid in enumerate(self.custom_ids)}
        return self._index

    def pack(self) -> None:
        """Shrink what is held once every result is in, before the table is built: the
        custom_id lookup is dropped (rebuilt if a line is fed again, e.g. by a retry)."""
        self._index = None

    def begin_pass(self, batch_id: str | None = None) -> None:
        """Start a (re-)download of one batch's results.

        Lines for requests filled in an earlier pass are then skipped silently
        (a resumed stream repeats them); a repeat within one pass is a duplicate.
        """
        self._pass += 1
        if batch_id is not None:
            # A batch met again (a re-attach reads its result files interleaved with
            # other batches') keeps its slot: one entry per batch, not per switch.
            try:
                self._batch_slot = self._batch_ids.index(batch_id)
            except ValueError:
                self._batch_ids.append(batch_id)
                self._batch_slot = len(self._batch_ids) - 1
        else:
            self._batch_slot = 0

    def feed(self, line: bytes) -> int:
        """Store one results line; return its ``u``, or -1 if blank, unknown or a duplicate."""
        return self._store([line], None, False)[0]

    def feed_many(
        self,
        lines: Sequence[bytes],
        *,
        cached: bool = False,
        uids: Sequence[int] | np.ndarray | None = None,
    ) -> list[int]:
        """:meth:`feed` for each line, in one pass: each line's ``u`` (or -1).

        ``uids``: whose each line is, when the journal knows (a re-attach, the cache),
        instead of the line's own custom_id; ``cached``: served from the result cache
        (costs nothing now).
        """
        known = uids.tolist() if isinstance(uids, np.ndarray) else uids
        return self._store(lines, known, cached)

    def statuses(self, uids: Sequence[int]) -> list[str]:
        """The status names of requests ``uids`` (see :meth:`status_of`)."""
        status = self._status
        return [STATUSES[status[u]] for u in uids]

    def mark_cached(self, uids: Sequence[int] | np.ndarray) -> None:
        """Mark requests ``uids`` as not received by this run (served from the journal)."""
        for u in np.asarray(uids, dtype=np.int64).tolist():
            self._cached[u] = True

    @property
    def cached(self) -> np.ndarray:
        """Per request: True if its result was served from the result cache."""
        return np.array(self._cached, dtype=bool)

    def status_of(self, u: int) -> str:
        """The status of request ``u``: succeeded, errored, canceled, expired or missing."""
        return STATUSES[self._status[u]]

    def error_type_of(self, u: int) -> str | None:
        """The API error type of an errored request ``u`` (e.g. ``overloaded_error``)."""
        return self._error_type.get(u)

    def retry_candidates(
        self,
        *,
        errors: Sequence[str] | None = ("overloaded_error", "api_error"),
        expired: bool = True,
        canceled: bool = False,
        missing: bool = True,
    ) -> np.ndarray:
        """Request indices worth resubmitting, ascending.

        ``errors``: errored requests whose error type is in it (None: every
        errored request); plus expired, canceled and missing ones as asked.
        """
        status = np.array(self._status, dtype=np.int8)
        pick = np.zeros(len(status), dtype=bool)
        if expired:
            pick |= status == _EXPIRED
        if canceled:
            pick |= status == _CANCELED
        if missing:
            pick |= status == _MISSING
        if errors is None:
            pick |= status == _ERRORED
        else:
            wanted = set(errors)
            for u, etype in self._error_type.items():
                if etype in wanted and status[u] == _ERRORED:
                    pick[u] = True
        return np.flatnonzero(pick).astype(np.int64)

    def forget(self, uids: Sequence[int] | np.ndarray) -> None:
        """Clear the results of requests ``uids`` (before resubmitting them)."""
        for u in np.asarray(uids, dtype=np.int64).tolist():
            self._status[u] = _MISSING
            self.filled[u] = False
            self._pass_of[u] = 0
            self._text[u] = self._error[u] = None
            self._text_pos[u] = -1
            self._stop[u] = self._model[u] = -1
            self._in[u] = self._out[u] = self._c_read[u] = self._c_write[u] = -1
            self._c_1h[u] = 0
            self._cached[u] = False
            self._batch[u] = 0
            self._thinking.pop(u, None)
            self._tools.pop(u, None)
            self._thinking_tokens.pop(u, None)
            self._error_type.pop(u, None)

    def cost(
        self, prices: Mapping[str, pricing.PriceLike] | None = None, *, cached: bool = False
    ) -> float:
        """USD at batch prices of each succeeded request once: those this run received,
        plus with ``cached=True`` those served from the journal.

        Requests of a model with no known price count as 0 here (no warning: this
        is called while polling; :meth:`columns` warns about them).
        """
        ok = np.asarray(self._status) == _SUCCEEDED
        if not cached:
            ok &= np.asarray(self._cached) == 0
        return float(np.nansum(self._price(np.flatnonzero(ok), prices)))

    def _price(
        self, uids: np.ndarray, prices: Mapping[str, pricing.PriceLike] | None
    ) -> np.ndarray:
        """USD at batch prices of requests ``uids``, from their token counts (read in place);
        NaN for a model with no price (no warning: see ``pricing.warn_unpriced``).

        A slice at a time: this runs on every poll, for the cost column and once more after
        the table, where whole-job token copies and pricing's ~25 float copies of what it
        prices (11 MB per 100k) would set the run's peak.
        """
        view, models = np.asarray, list(self._model_codes)
        out = np.empty(uids.size)
        for k in range(0, uids.size, _COST_STEP):
            part = uids[k : k + _COST_STEP]
            out[k : k + _COST_STEP] = pricing.cost(
                models,
                view(self._in)[part].clip(0),
                view(self._out)[part].clip(0),
                view(self._c_read)[part].clip(0),
                view(self._c_write)[part].clip(0),
                view(self._c_1h)[part],
                batch=True,
                prices=prices,
                warn=False,
                model_index=view(self._model)[part],
            )
        return out

    def _store(self, lines: Sequence[bytes], uids: Sequence[int] | None, cached: bool) -> list[int]:
        # The hot loop of a 100k-row job: one function, the per-u slots bound to
        # locals, the common reply (one text block) inline; no per-line objects
        # beyond what orjson builds.
        if not lines:  # e.g. no cached hits: no lookup built (6 MB per 100k) before submit
            return []
        # Lines whose requests are known need no lookup (6 MB per 100k): a re-attach
        # feeds all of a run's lines that way.
        index = self._lookup() if uids is None else {}
        status, pass_of, text = self._status, self._pass_of, self._text
        stop, model, stop_codes, model_codes = (
            self._stop,
            self._model,
            self._stop_codes,
            self._model_codes,
        )
        tok_in, tok_out, c_read, c_write = self._in, self._out, self._c_read, self._c_write
        c_1h = self._c_1h
        error, error_type, filled = self._error, self._error_type, self.filled
        this_pass, slot = self._pass, self._batch_slot
        out: list[int] = []
        for k, line in enumerate(lines):
            try:
                obj = loads(line)
            except JSONDecodeError:
                if line and not line.isspace():
                    self.malformed += 1
                out.append(-1)
                continue
            try:
                if uids is None:
                    u = index[obj["custom_id"]]
                else:
                    u = uids[k]
                    if u < 0 or type(obj) is not dict:
                        raise KeyError(u)
            except (KeyError, TypeError):
                if isinstance(obj, dict):
                    self.unknown += 1
                else:
                    self.malformed += 1
                out.append(-1)
                continue
            if status[u]:
                # A cached row or one filled in an earlier pass is a re-sent line: not news.
                if pass_of[u] >= this_pass:
                    self.duplicates += 1
                out.append(-1)
                continue
            result = obj.get("result")
            rtype = result.get("type") if isinstance(result, dict) else None
            if rtype == "succeeded":
                code = _SUCCEEDED
                msg = result.get("message")
                if isinstance(msg, dict):
                    content = msg.get("content")
                    if content and len(content) == 1 and content[0].get("type") == "text":
                        text[u] = content[0].get("text") or ""
                    else:
                        self._store_blocks(u, content)
                    value = msg.get("stop_reason")
                    c = stop_codes.get(value)
                    stop[u] = len(stop_codes) if c is None else c
                    if c is None:
                        stop_codes[value] = stop[u]
                    value = msg.get("model")
                    c = model_codes.get(value)
                    model[u] = len(model_codes) if c is None else c
                    if c is None:
                        model_codes[value] = model[u]
                    usage = msg.get("usage")
                    if isinstance(usage, dict):
                        get = usage.get
                        try:
                            tok_in[u] = get("input_tokens") or 0
                            tok_out[u] = get("output_tokens") or 0
                            c_read[u] = get("cache_read_input_tokens") or 0
                            c_write[u] = get("cache_creation_input_tokens") or 0
                            detail = get("cache_creation")
                            if detail and isinstance(detail, dict):
                                c_1h[u] = detail.get("ephemeral_1h_input_tokens") or 0
                        except (TypeError, OverflowError):
                            # Counts that are not whole numbers: unknown, not a failed run.
                            tok_in[u] = tok_out[u] = c_read[u] = c_write[u] = -1
                            c_1h[u] = 0
                        if get("output_tokens_details"):
                            self._store_thinking_tokens(u, usage["output_tokens_details"])
                else:
                    text[u] = ""
            elif rtype == "errored":
                code = _ERRORED
                etype, error[u] = _error_text(result)
                error_type[u] = etype
            elif rtype == "canceled":
                code = _CANCELED
                error[u] = CANCELED_MESSAGE
            elif rtype == "expired":
                code = _EXPIRED
                error[u] = EXPIRED_MESSAGE
            else:
                code = _ERRORED
                error[u] = f"unexpected_result: result type {rtype!r}"
                error_type[u] = "unexpected_result"
            status[u] = code
            filled[u] = True
            if cached:
                pass_of[u] = -1
                self._cached[u] = True
            else:
                pass_of[u] = this_pass
                self._batch[u] = slot
            out.append(u)
        self._seal([u for u in out if u >= 0 and text[u] is not None])
        return out

    def _seal(self, uids: list[int]) -> None:
        """Move the texts of requests ``uids`` from Python strings into the UTF-8 buffer."""
        text, pos, ends, data = self._text, self._text_pos, self._text_ends, self._text_data
        end = ends[-1] if ends else 0
        k = len(ends)
        for u in uids:
            try:
                raw = text[u].encode()  # type: ignore[union-attr]
            except UnicodeEncodeError:  # a lone surrogate: stays a str
                self._loose_texts += 1
                continue
            data += raw
            end += len(raw)
            ends.append(end)
            pos[u] = k
            k += 1
            text[u] = None

    def _texts(self, uids: Iterable[int]) -> list[str | None]:
        """The reply texts of requests ``uids`` (None: no text)."""
        text, pos, ends, data = self._text, self._text_pos, self._text_ends, self._text_data
        out: list[str | None] = []
        for u in uids:
            k = pos[u]
            if text[u] is not None or k < 0:
                out.append(text[u])
            else:
                out.append(data[(ends[k - 1] if k else 0) : ends[k]].decode())
        return out

    def _text_column(self, take: np.ndarray) -> Any:
        """The text column: request ``take[i]``'s reply per row (``len(self)``: NA)."""
        n = len(self.custom_ids)
        if not _ARROW_STRINGS or self._loose_texts or not len(self._text_ends):
            return _strings(_padded(self._texts(range(n)), None)[take])
        import pyarrow as pa

        offsets = np.zeros(len(self._text_ends) + 1, dtype=np.int64)
        offsets[1:] = np.frombuffer(self._text_ends, dtype=np.int64)
        # The buffer is wrapped, not copied, and released when this call returns (a
        # retry may still append to it).
        sealed = pa.LargeStringArray.from_buffers(
            len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(self._text_data)
        )
        return _take(sealed, _padded(self._text_pos, -1, np.int64)[take])

    def _store_blocks(self, u: int, content: Any) -> None:
        """A reply's content blocks other than a single text block: text, thinking, tools."""
        texts: list[str] = []
        for block in content or ():
            btype = block.get("type")
            if btype == "text":
                texts.append(block.get("text") or "")
            elif btype == "thinking":
                prev = self._thinking.get(u)
                thought = block.get("thinking") or ""
                self._thinking[u] = thought if prev is None else prev + "\n\n" + thought
            elif btype == "redacted_thinking":
                prev = self._thinking.get(u)
                self._thinking[u] = REDACTED if prev is None else prev + "\n\n" + REDACTED
            elif btype == "tool_use":
                call = {
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "input": block.get("input"),
                }
                self._tools.setdefault(u, []).append(call)
        self._text[u] = "".join(texts)

    def _store_thinking_tokens(self, u: int, detail: Any) -> None:
        if isinstance(detail, dict):
            thinking_tokens = detail.get("thinking_tokens")
            if isinstance(thinking_tokens, int):
                self._thinking_tokens[u] = thinking_tokens

    # ------------------------------------------------------------------ columns

    def columns(
        self,
        row_uid: np.ndarray,
        *,
        prefix: str = "claude",
        output: type[BaseModel] | Mapping[str, Any] | None = None,
        parse: Callable[[str], Any] | str | None = None,
        prices: Mapping[str, pricing.PriceLike] | None = None,
        features: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Build the result columns, one value per input row, as nullable pandas arrays.

        ``features`` (the run's ``tools`` / ``thinking`` flags and forced ``tool_schema``)
        makes the tool-call and thinking columns appear even when no row has any, and
        gives a forced tool one column per input field.

        ``row_uid[i]`` is the request index of row ``i`` (-1: row was skipped).
        Rows sharing a request share its values; its cost (the batch price of
        producing the reply, whether this run paid it or it was served from the
        journal) is counted once, on the first such row (0.0 on the others).
        """
        n = len(self.custom_ids)
        uid = np.asarray(row_uid, dtype=np.int64)
        if uid.size and (uid.max() >= n or uid.min() < -1):
            raise ValueError(f"row_uid values must be in [-1, {n}); got {uid.min()}..{uid.max()}")
        # Slot n is the skipped row: every per-u array gets one extra NA entry there.
        take = np.where(uid < 0, n, uid)
        # The usual run: row i is request i. Then a row's values are a view of the
        # per-request ones, not a copy (two object arrays per million rows less).
        rows_are_requests = len(take) == n and bool((take == np.arange(n)).all())

        def per_row(values: np.ndarray) -> np.ndarray:
            return values[:n] if rows_are_requests else values[take]

        status = _padded(self._status, _SKIPPED, np.int8)
        succeeded_u = status[:n] == _SUCCEEDED
        # Only post-process requests some row actually uses.
        used = np.zeros(n + 1, dtype=bool)
        used[take] = True
        parse_u = np.flatnonzero(succeeded_u & used[:n])

        # Python strings of the replies only where a parser or a schema reads them.
        text = np.empty(0, dtype=object)
        if output is not None or parse is not None:
            text = np.full(n + 1, None, dtype=object)
            text[parse_u] = self._texts(parse_u.tolist())
        error = _padded(self._error, None)
        for u in np.flatnonzero((status[:n] == _MISSING) & used[:n]):
            error[u] = MISSING_MESSAGE

        cols: dict[str, Any] = {f"{prefix}_text": self._text_column(take)}
        feats = features or {}
        if feats.get("thinking") or (self._thinking and any(used[k] for k in self._thinking)):
            thinking = np.full(n + 1, None, dtype=object)
            for k, t in self._thinking.items():
                thinking[k] = t
            cols[f"{prefix}_thinking"] = _strings(thinking[take])
            counts = np.full(n + 1, -1, dtype=np.int64)
            for k, c in self._thinking_tokens.items():
                counts[k] = c
            row = counts[take]
            cols[f"{prefix}_thinking_tokens"] = pd.arrays.IntegerArray(row, row < 0)
        if feats.get("tools") or (self._tools and any(used[k] for k in self._tools)):
            tools = np.full(n + 1, None, dtype=object)
            for k, calls in self._tools.items():
                tools[k] = calls
            cols[f"{prefix}_tool_calls"] = tools[take]

        # Replies that arrived but could not be post-processed: status parse_error.
        unparsed = np.zeros(n + 1, dtype=bool)

        forced = feats.get("tool_schema")
        if output is not None:
            schema = output

            def validated(u: int, text: np.ndarray = text) -> Any:
                try:
                    return self._validate(text[u], schema)
                except Exception as exc:  # a user validator may raise anything: row data
                    return _short(exc)

            cols.update(self._fields(output, prefix, parse_u, take, validated, error, unparsed))
        elif forced:
            tool_input = lambda u: _tool_input(self._tools.get(u), forced)  # noqa: E731
            cols.update(self._fields(forced, prefix, parse_u, take, tool_input, error, unparsed))

        if parse is not None:
            parsed = np.full(n + 1, None, dtype=object)
            fn = self._parser(parse)
            for u in parse_u:
                try:
                    parsed[u] = fn(text[u])
                except Exception as exc:  # user code: any failure is data, not a crash
                    msg = _short(exc)
                    error[u] = msg if error[u] is None else f"{error[u]}; {msg}"
                    unparsed[u] = True
            cols[f"{prefix}_parsed"] = _typed_column(parsed[take], None)

        status_out = np.where(unparsed, _PARSE_ERROR, status).astype(np.int8)
        cols[f"{prefix}_status"] = _names(STATUSES, per_row(status_out))
        cols[f"{prefix}_error"] = _strings(per_row(error))
        del error, text
        memory.give_back()
        cols[f"{prefix}_stop_reason"] = _decode(self._stop_codes, self._stop, take)

        # One per-request token array at a time, each only while its column is built.
        for suffix, values in (
            ("input_tokens", self._in),
            ("output_tokens", self._out),
            ("cache_read_tokens", self._c_read),
            ("cache_write_tokens", self._c_write),
        ):
            row = per_row(_padded(values, -1, np.int64))
            cols[f"{prefix}_{suffix}"] = pd.arrays.IntegerArray(row, row < 0)

        cols[f"{prefix}_cost_usd"] = self._cost_column(uid, take, status, prices, rows_are_requests)
        # The per-request arrays and the pricing temporaries are freed: return their pages
        # rather than stack the provenance strings on top of them.
        memory.give_back()
        cols[f"{prefix}_model"] = _decode(self._model_codes, self._model, take)
        if len(self._batch_ids) > 1:
            cols[f"{prefix}_batch_id"] = _decode(self._batch_ids, self._batch, take)
        cols[f"{prefix}_custom_id"] = _id_strings(self.custom_ids, take, rows_are_requests)
        cached = per_row(_padded(self._cached, False, bool))
        cols[f"{prefix}_cached"] = pd.arrays.BooleanArray(cached, np.zeros(len(take), dtype=bool))
        return cols

    def _fields(
        self,
        schema: Any,
        prefix: str,
        parse_u: np.ndarray,
        take: np.ndarray,
        extract: Callable[[int], Any],
        error: np.ndarray,
        unparsed: np.ndarray,
    ) -> dict[str, Any]:
        """One column per top-level field of ``schema``, from ``extract(u)``: the reply's
        fields as a dict, or the ``parse_error: ...`` text that marks the row unparsed."""
        names = output_columns(schema, prefix)
        kinds = _schema_kinds(schema)
        values = {f: np.full(len(self.custom_ids) + 1, None, dtype=object) for f in names}
        for u in parse_u.tolist():
            data = extract(u)
            if isinstance(data, str):
                error[u] = data
                unparsed[u] = True
                continue
            for f, store in values.items():
                store[u] = data.get(f)
        return {
            col: _typed_column(values[f][take], kinds.get(f, "object")) for f, col in names.items()
        }

    def _cost_column(
        self,
        uid: np.ndarray,
        take: np.ndarray,
        status: np.ndarray,
        prices: Mapping[str, pricing.PriceLike] | None,
        rows_are_requests: bool,
    ) -> pd.arrays.FloatingArray:
        n = len(self.custom_ids)
        cost_u = np.full(n + 1, np.nan)
        # Succeeded requests whose usage is known; the others stay NA (or 0.0, below).
        ok = np.flatnonzero((status[:n] == _SUCCEEDED) & (np.asarray(self._in) >= 0))
        cost_u[ok] = self._price(ok, prices)
        names = list(self._model_codes)
        used = np.unique(np.asarray(self._model)[ok]).tolist() if ok.size else []
        pricing.warn_unpriced([names[c] for c in used if c >= 0], prices)
        # Failed requests are not billed; skipped and missing rows stay unknown (NA).
        failed = np.isin(status[:n], (_ERRORED, _CANCELED, _EXPIRED))
        cost_u[:n][failed] = 0.0
        row_cost = cost_u[:n] if rows_are_requests else cost_u[take]
        # A request shared by several rows was paid once: charge its first row only.
        if uid.size and not rows_are_requests:
            _, first = np.unique(uid, return_index=True)
            repeat = np.ones(uid.size, dtype=bool)
            repeat[first] = False
            repeat &= uid >= 0
            row_cost[repeat & ~np.isnan(row_cost)] = 0.0
        unknown = np.isnan(row_cost)
        row_cost[unknown] = 0.0
        return pd.arrays.FloatingArray(row_cost, unknown)

    @staticmethod
    def _validate(text: str, output: type[BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(output, type) and issubclass(output, BaseModel):
            # model_dump turns nested models into dicts, which pandas and export can hold.
            return output.model_validate_json(_strip_fence(text)).model_dump()
        return _validate_schema(text, output)

    @staticmethod
    def _parser(parse: Callable[[str], Any] | str) -> Callable[[str], Any]:
        if callable(parse):
            return parse
        if parse == "json":
            return lambda t: orjson.loads(_strip_fence(t))
        if isinstance(parse, str):
            pattern = re.compile(parse)

            def regex(text: str) -> str | None:
                m = pattern.search(text)
                if m is None:
                    return None
                return m.group(1) if pattern.groups else m.group(0)

            return regex
        raise TypeError(f'parse= must be a callable, "json" or a regex string, got {parse!r}')
