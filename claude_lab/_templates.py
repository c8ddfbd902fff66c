"""Prompt and system templates, and rendering rows into Messages API params.

A template is a ``str.format``-style string naming DataFrame columns, a list
of ``{"role", "content"}`` messages whose contents are templates, or a
callable ``row -> str | list[dict] | None``. Only plain field names are
allowed, so a template can never reach into Python objects
(``{a.b}``, ``{a[0]}``, ``{0}`` and ``{}`` are refused), and holds no format
specs or conversions (``{a:>10}``, ``{a!r}``, ``{a:{b}}`` are refused too).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

from claude_lab._errors import InputError, TemplateError

__all__ = [
    "ON_MISSING",
    "Prompt",
    "Rendered",
    "Template",
    "compile_prompt",
    "render",
    "render_json",
]

ON_MISSING = ("skip", "raise", "empty")
OnMissing = Literal["skip", "raise", "empty"]
PromptArg = str | Sequence[Mapping[str, Any]] | Callable[[dict[str, Any]], Any]
_ROLES = ("user", "assistant")
_formatter = string.Formatter()


@dataclass(frozen=True)
class Template:
    """One parsed template string: literal text interleaved with column references."""

    source: str
    literals: tuple[str, ...]  # len == len(fields) + 1
    fields: tuple[str, ...]
    specs: tuple[str, ...]  # format spec per field ("" for none)

    @classmethod
    def parse(cls, source: str, where: str) -> Template:
        literals: list[str] = []
        fields: list[str] = []
        specs: list[str] = []
        pending = ""
        try:
            parsed = list(_formatter.parse(source))
        except ValueError as exc:
            raise TemplateError(
                f"{where}: {exc}. Write a literal brace as '{{{{' or '}}}}'."
            ) from None
        for literal, field, spec, conversion in parsed:
            pending += literal
            if field is None:
                continue
            if field == "" or field.isdigit() or "." in field or "[" in field or conversion:
                shown = "{" + field + ("!" + conversion if conversion else "") + "}"
                raise TemplateError(
                    f"{where}: {shown} is not allowed. Templates take plain column names only, "
                    f"such as {{question}}; compute anything else into a column first, "
                    "or pass a callable prompt."
                )
            if spec:
                # A spec can hold nested fields ({q:{other}}) and fails per value at render
                # time; a column formatted up front says exactly what is sent.
                raise TemplateError(
                    f"{where}: {{{field}:{spec}}} is not allowed. Templates take plain column "
                    f"names only, such as {{{field}}}, with no format spec or conversion; "
                    f"format the column first (e.g. df[{field!r}].map('{{:{spec}}}'.format)), "
                    "or pass a callable prompt. Nothing was sent."
                )
            literals.append(pending)
            pending = ""
            fields.append(field)
            specs.append(spec or "")
        literals.append(pending)
        return cls(source, tuple(literals), tuple(fields), tuple(specs))

    def render_columns(self, columns: Mapping[str, list[str]], n: int) -> list[str]:
        """Render n rows at once from pre-stringified columns (one list per field)."""
        if not self.fields:
            return [self.literals[0]] * n
        out = [self.literals[0]] * n
        for i, field in enumerate(self.fields):
            values = columns[field]
            tail = self.literals[i + 1]
            out = [a + b + tail for a, b in zip(out, values)]
        return out


@dataclass(frozen=True)
class Prompt:
    """The compiled prompt of one run: message templates, a system template, or a callable."""

    messages: tuple[tuple[str, Any], ...] | None  # (role, content-template-tree)
    system: Any  # None, Template, or list of blocks with Template texts
    function: Callable[[dict[str, Any]], Any] | None
    fields: tuple[str, ...]  # every column named, first-seen order

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for provenance and the journal."""

        def plain(node: Any) -> Any:
            if isinstance(node, Template):
                return node.source
            if isinstance(node, list):
                return [plain(x) for x in node]
            if isinstance(node, dict):
                return {k: plain(v) for k, v in node.items()}
            return node

        if self.function is not None:
            prompt: Any = f"<callable {getattr(self.function, '__qualname__', 'prompt')}>"
        else:
            assert self.messages is not None
            prompt = [{"role": r, "content": plain(c)} for r, c in self.messages]
        return {"prompt": prompt, "system": plain(self.system)}


def _compile_content(content: Any, where: str) -> Any:
    if isinstance(content, str):
        return Template.parse(content, where)
    if isinstance(content, list):
        blocks = []
        for j, block in enumerate(content):
            if not isinstance(block, Mapping):
                raise InputError(f"{where}[{j}] must be a content block dict, got {block!r}.")
            block = dict(block)
            if isinstance(block.get("text"), str):
                block["text"] = Template.parse(block["text"], f"{where}[{j}].text")
            blocks.append(block)
        return blocks
    raise InputError(
        f"{where} must be a string template or a list of content blocks, "
        f"got {type(content).__name__}."
    )


def _fields_of(node: Any, into: dict[str, None]) -> None:
    if isinstance(node, Template):
        into.update(dict.fromkeys(node.fields))
    elif isinstance(node, list):
        for x in node:
            _fields_of(x, into)
    elif isinstance(node, dict):
        for x in node.values():
            _fields_of(x, into)


def compile_prompt(prompt: PromptArg, system: Any = None) -> Prompt:
    """Parse and check the prompt and system templates; raise before anything is rendered."""
    fields: dict[str, None] = {}
    sys_node = None if system is None else _compile_content(system, "system")
    if callable(prompt) and not isinstance(prompt, str):
        _fields_of(sys_node, fields)
        return Prompt(None, sys_node, prompt, tuple(fields))
    if isinstance(prompt, str):
        messages: tuple[tuple[str, Any], ...] = (("user", Template.parse(prompt, "prompt")),)
    elif isinstance(prompt, Sequence) and prompt:
        compiled = []
        for i, msg in enumerate(prompt):
            if (
                not isinstance(msg, Mapping)
                or set(msg) - {"role", "content"}
                or "content" not in msg
            ):
                raise InputError(
                    f"prompt[{i}] must be a dict with 'role' and 'content', got {msg!r}."
                )
            role = msg.get("role", "user")
            if role not in _ROLES:
                raise InputError(
                    f"prompt[{i}] has role {role!r}; use 'user' or 'assistant' "
                    "(put system text in system=)."
                )
            compiled.append((role, _compile_content(msg["content"], f"prompt[{i}].content")))
        if compiled[0][0] != "user":
            raise InputError(
                "prompt[0] must have role 'user': a conversation starts with the user."
            )
        messages = tuple(compiled)
    else:
        raise InputError(
            "prompt must be a template string, a non-empty list of {'role', 'content'} dicts, "
            f"or a callable row -> str | list[dict]; got {type(prompt).__name__}."
        )
    for _, content in messages:
        _fields_of(content, fields)
    _fields_of(sys_node, fields)
    return Prompt(messages, sys_node, None, tuple(fields))


@dataclass(frozen=True)
class Rendered:
    """Per-row Messages params (None where the row is skipped) and the skip mask."""

    params: list[dict[str, Any] | None]
    skipped: np.ndarray  # bool, one per row


def _stringify(series: pd.Series, spec: str, empty: bool) -> list[str]:
    if spec:
        return ["" if (empty and _is_missing(v)) else format(v, spec) for v in series.tolist()]
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
        values = series.tolist()
        return [v if type(v) is str else ("" if _is_missing(v) else str(v)) for v in values]
    if empty:
        return [("" if _is_missing(v) else str(v)) for v in series.tolist()]
    return [str(v) for v in series.tolist()]


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False  # list-like values are present


def _check_columns(df: pd.DataFrame, fields: Sequence[str]) -> None:
    missing = [f for f in fields if f not in df.columns]
    if missing:
        have = ", ".join(repr(str(c)) for c in df.columns) or "(none)"
        names = ", ".join(repr(m) for m in missing)
        raise TemplateError(
            f"The template names column(s) {names} that the DataFrame does not have. "
            f"Columns available: {have}. Rename the column or fix the template."
        )


def _render_tree(node: Any, columns: Mapping[str, list[str]], i: int) -> Any:
    if isinstance(node, Template):
        return node.literals[0] + "".join(
            columns[f][i] + node.literals[k + 1] for k, f in enumerate(node.fields)
        )
    if isinstance(node, list):
        return [_render_tree(x, columns, i) for x in node]
    if isinstance(node, dict):
        return {k: _render_tree(v, columns, i) for k, v in node.items()}
    return node


def _columns(
    df: pd.DataFrame, prompt: Prompt, on_missing: OnMissing
) -> tuple[np.ndarray, dict[str, str]]:
    """Check the template's columns against ``df`` -> (skipped rows, format spec per field)."""
    if on_missing not in ON_MISSING:
        raise InputError(f"on_missing={on_missing!r} is not one of {', '.join(ON_MISSING)}.")
    n = len(df)
    _check_columns(df, prompt.fields)
    if df.columns.has_duplicates:
        dup = [str(c) for c in df.columns[df.columns.duplicated()] if c in prompt.fields]
        if dup:
            raise TemplateError(
                f"Column(s) {dup} appear more than once in the DataFrame, so the template is "
                "ambiguous. Rename the duplicates first."
            )

    skipped = np.zeros(n, dtype=bool)
    missing_mask = np.zeros(n, dtype=bool)
    specs: dict[str, str] = {}
    for node in _templates_in(prompt):
        for f, s in zip(node.fields, node.specs):
            specs.setdefault(f, s)
    for f in prompt.fields:
        missing_mask |= df[f].isna().to_numpy(dtype=bool, na_value=True)
    if missing_mask.any():
        if on_missing == "raise":
            rows = np.flatnonzero(missing_mask)
            labels = ", ".join(repr(df.index[i]) for i in rows[:5])
            more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
            raise InputError(
                f"{len(rows)} row(s) have missing values in template columns "
                f"(index {labels}{more}). Fill them, drop them, or pass on_missing='skip' "
                "(rows are marked skipped) or on_missing='empty' (missing renders as '')."
            )
        if on_missing == "skip":
            skipped |= missing_mask
    return skipped, specs


def _simple(prompt: Prompt) -> bool:
    """One user template and a plain (or no) system template: rendered column-wise."""
    return (
        prompt.messages is not None
        and len(prompt.messages) == 1
        and isinstance(prompt.messages[0][1], Template)
        and (prompt.system is None or isinstance(prompt.system, Template))
    )


def _simple_texts(
    df: pd.DataFrame, prompt: Prompt, on_missing: OnMissing, specs: Mapping[str, str]
) -> tuple[list[str], list[str] | None]:
    """The user and system text of every row, for a ``_simple`` prompt."""
    assert prompt.messages is not None
    columns = {
        f: _stringify(df[f], specs.get(f, ""), empty=on_missing == "empty") for f in prompt.fields
    }
    n = len(df)
    user = prompt.messages[0][1].render_columns(columns, n)
    system = prompt.system.render_columns(columns, n) if prompt.system is not None else None
    return user, system


def render(
    df: pd.DataFrame,
    prompt: Prompt,
    base: Mapping[str, Any],
    on_missing: OnMissing = "skip",
) -> Rendered:
    """Render every row into Messages params (``base`` merged in); no network, no cost."""
    skipped, specs = _columns(df, prompt, on_missing)
    n = len(df)
    base = dict(base)
    if prompt.function is not None:
        return _render_callable(df, prompt, base, skipped)

    assert prompt.messages is not None
    params: list[dict[str, Any] | None]
    if _simple(prompt):
        user, system = _simple_texts(df, prompt, on_missing, specs)
        if system is None:
            params = [{**base, "messages": [{"role": "user", "content": u}]} for u in user]
        else:
            params = [
                {**base, "system": s, "messages": [{"role": "user", "content": u}]}
                for u, s in zip(user, system)
            ]
    else:
        columns = {
            f: _stringify(df[f], specs.get(f, ""), empty=on_missing == "empty")
            for f in prompt.fields
        }
        params = []
        for i in range(n):
            p = dict(base)
            if prompt.system is not None:
                p["system"] = _render_tree(prompt.system, columns, i)
            p["messages"] = [
                {"role": role, "content": _render_tree(c, columns, i)}
                for role, c in prompt.messages
            ]
            params.append(p)
    for k in np.flatnonzero(skipped).tolist():
        params[k] = None
    return Rendered(params, skipped)


# Stand-ins for the per-row texts in the canonical JSON of the shared params: NUL never
# reaches a template's output unescaped, so each marks exactly where a row's text goes.
_USER_MARK = "\x00claude_lab:user\x00"
_SYSTEM_MARK = "\x00claude_lab:system\x00"


def render_json(
    df: pd.DataFrame,
    prompt: Prompt,
    base: Mapping[str, Any],
    on_missing: OnMissing = "skip",
) -> list[bytes | None] | None:
    """Each row's params as canonical JSON bytes (None: a skipped row), for a ``_simple``
    prompt; None for any other prompt (use ``render``).

    The bytes equal ``orjson.dumps(params, option=OPT_SORT_KEYS)`` of what ``render``
    gives, but no dict is built per row: the shared params are encoded once with
    markers where the texts go, and each row is that JSON with its texts spliced in.
    """
    if prompt.function is not None or not _simple(prompt):
        return None
    shared: dict[str, Any] = {**base, "messages": [{"role": "user", "content": _USER_MARK}]}
    if prompt.system is not None:
        shared["system"] = _SYSTEM_MARK
    blob = orjson.dumps(shared, option=orjson.OPT_SORT_KEYS)
    user_mark, system_mark = orjson.dumps(_USER_MARK), orjson.dumps(_SYSTEM_MARK)
    if blob.count(user_mark) != 1 or blob.count(system_mark) != (prompt.system is not None):
        return None  # base itself holds a marker: let render() build the dicts
    skipped, specs = _columns(df, prompt, on_missing)
    user, system = _simple_texts(df, prompt, on_missing, specs)
    dumps = orjson.dumps
    out: list[bytes | None]
    if system is None:
        head, tail = blob.split(user_mark)
        out = [head + dumps(u) + tail for u in user]
    else:
        # "messages" sorts before "system", so the user text comes first.
        head, rest = blob.split(user_mark)
        middle, tail = rest.split(system_mark)
        out = [head + dumps(u) + middle + dumps(s) + tail for u, s in zip(user, system)]
    del user, system
    for k in np.flatnonzero(skipped).tolist():
        out[k] = None
    return out


def _templates_in(prompt: Prompt) -> list[Template]:
    found: list[Template] = []

    def walk(node: Any) -> None:
        if isinstance(node, Template):
            found.append(node)
        elif isinstance(node, list):
            for x in node:
                walk(x)
        elif isinstance(node, dict):
            for x in node.values():
                walk(x)

    for _, c in prompt.messages or ():
        walk(c)
    walk(prompt.system)
    return found


def _render_callable(
    df: pd.DataFrame, prompt: Prompt, base: dict[str, Any], skipped: np.ndarray
) -> Rendered:
    assert prompt.function is not None
    fn = prompt.function
    system_cols = {f: _stringify(df[f], "", empty=True) for f in prompt.fields}
    params: list[dict[str, Any] | None] = []
    records = df.to_dict("records") if len(df.columns) else [{} for _ in range(len(df))]
    for i, row in enumerate(records):
        if skipped[i]:
            params.append(None)
            continue
        try:
            value = fn(row)  # type: ignore[arg-type]  # column labels need not be str
        except Exception as exc:
            raise InputError(
                f"The prompt callable failed on row {df.index[i]!r}: "
                f"{type(exc).__name__}: {exc}. Fix the function; nothing was sent."
            ) from exc
        if value is None:
            skipped[i] = True
            params.append(None)
            continue
        if isinstance(value, str):
            messages: Any = [{"role": "user", "content": value}]
        elif isinstance(value, list) and all(
            isinstance(m, Mapping) and "role" in m and "content" in m for m in value
        ):
            messages = [dict(m) for m in value]
        else:
            raise InputError(
                f"The prompt callable returned {type(value).__name__} for row {df.index[i]!r}; "
                "return a string, a list of {'role', 'content'} dicts, or None to skip the row."
            )
        p = dict(base)
        if prompt.system is not None:
            p["system"] = _render_tree(prompt.system, system_cols, i)
        p["messages"] = messages
        params.append(p)
    return Rendered(params, skipped)
