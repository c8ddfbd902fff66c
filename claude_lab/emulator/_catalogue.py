"""The emulated model catalogue: the Models API's ``ModelInfo`` records, and its two routes.

One record per model of the installed SDK's ``Model`` literal (plus one older,
retired model as history), with plausible limits, lifecycle and capabilities.
Aliases (``claude-haiku-4-5``) resolve to their dated id. The catalogue is a
plain dict per model so tests can change a limit or switch a capability off.
"""

from __future__ import annotations

import copy
import re
import typing
from typing import Any

from claude_lab.emulator import _paging as paging
from claude_lab.emulator._validation import Invalid
from claude_lab.emulator._wire import Response, error, json_response

__all__ = ["Catalogue", "default_models"]

_DATED = re.compile(r"^(?P<alias>.+)-(?P<date>\d{8})$")

# (id, display name, released, line, max_input_tokens, max_tokens, lifecycle, deprecated_at,
#  retires_at, honours sampling params under older API versions)
# fmt: off
_ROWS: list[tuple[str, str, str, str | None, int, int, str, str | None, str | None, bool]] = [
    ("claude-fable-5-2", "Claude Fable 5.2", "2026-10-14", "fable", 1_000_000, 128_000,
     "active", None, None, False),
    ("claude-mythos-5-2", "Claude Mythos 5.2", "2026-10-14", "mythos", 1_000_000, 128_000,
     "active", None, None, False),
    ("claude-haiku-5-5", "Claude Haiku 5.5", "2026-09-30", "haiku", 400_000, 64_000,
     "active", None, None, False),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5", "2026-09-16", "sonnet", 1_000_000, 128_000,
     "active", None, None, False),
    ("claude-fable-5-1", "Claude Fable 5.1", "2026-08-26", "fable", 1_000_000, 128_000,
     "active", None, None, False),
    ("claude-opus-5-5", "Claude Opus 5.5", "2026-08-12", "opus", 1_000_000, 128_000,
     "active", None, None, False),
    ("claude-mythos-5-1", "Claude Mythos 5.1", "2026-07-29", "mythos", 1_000_000, 128_000,
     "active", None, None, False),
    ("claude-sonnet-5", "Claude Sonnet 5", "2026-06-24", "sonnet", 1_000_000, 128_000,
     "active", None, None, False),
    ("claude-fable-5", "Claude Fable 5", "2026-06-10", "fable", 1_000_000, 128_000,
     "active", None, None, False),
    ("claude-mythos-5", "Claude Mythos 5", "2026-06-10", "mythos", 1_000_000, 128_000,
     "active", None, None, False),
    ("claude-opus-5", "Claude Opus 5", "2026-05-27", "opus", 1_000_000, 128_000,
     "active", None, None, False),
    ("claude-opus-4-8", "Claude Opus 4.8", "2026-04-22", "opus", 1_000_000, 128_000,
     "active", None, None, True),
    ("claude-opus-4-7", "Claude Opus 4.7", "2026-03-25", "opus", 1_000_000, 128_000,
     "active", None, None, True),
    # The SDK's own deprecation table gives the preview an end-of-life of 2026-06-30: past.
    ("claude-mythos-preview", "Claude Mythos Preview", "2026-02-24", "mythos", 200_000, 64_000,
     "retired", "2026-03-31", "2026-06-30", True),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17", "sonnet", 1_000_000, 64_000,
     "active", None, None, True),
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05", "opus", 1_000_000, 128_000,
     "active", None, None, True),
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-01", "opus", 200_000, 64_000,
     "active", None, None, True),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01", "haiku", 200_000, 64_000,
     "active", None, None, True),
    # Deprecated with a retirement date of 2026-11-30 (the SDK's deprecation table).
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29", "sonnet", 200_000, 64_000,
     "deprecated", "2026-08-30", "2026-11-30", True),
    # History: retired before this SDK, so absent from its literal.
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22", "haiku", 200_000, 8_192,
     "retired", "2025-07-01", "2026-02-19", True),
]
# fmt: on


def _support(value: bool) -> dict[str, bool]:
    return {"supported": value}


def _capabilities(model_id: str, released: str) -> dict[str, Any]:
    new = released >= "2026-01-01"
    haiku = "haiku" in model_id
    return {
        "batch": _support(True),
        "citations": _support(True),
        "code_execution": _support(new),
        "context_management": {
            "supported": True,
            "clear_thinking_20251015": _support(True),
            "clear_tool_uses_20250919": _support(True),
            "compact_20260112": _support(new),
        },
        "effort": {
            "supported": not haiku or new,
            "low": _support(True),
            "medium": _support(True),
            "high": _support(True),
            "max": _support(new and not haiku),
            "xhigh": _support(new and "opus" in model_id),
        },
        "image_input": _support(True),
        "pdf_input": _support(True),
        "server_tools": {
            "supported": True,
            "code_execution": _support(True),
            "web_search": _support(True),
        },
        "structured_outputs": _support(True),
        "thinking": {
            "supported": True,
            "types": {
                "adaptive": _support(new),
                "between_tools": _support(new),
                "disabled": _support(True),
                "enabled": _support(True),
            },
        },
    }


def _sdk_ids() -> list[str]:
    try:
        from anthropic.types.model import Model
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return []
    ids: list[str] = []
    for arg in typing.get_args(Model):
        ids.extend(a for a in typing.get_args(arg) if isinstance(a, str))
    return ids


def default_models() -> dict[str, dict[str, Any]]:
    """id -> ModelInfo dict (plus a private ``_sampling`` flag), newest first.

    Every id of the SDK's ``Model`` literal resolves (directly or as an alias); an id
    of the literal not in the table above gets a plausible active record.
    """
    models: dict[str, dict[str, Any]] = {}
    for mid, name, released, line, max_in, max_out, life, dep, ret, sampling in _ROWS:
        models[mid] = {
            "type": "model",
            "id": mid,
            "display_name": name,
            "created_at": f"{released}T00:00:00Z",
            "lifecycle": life,
            "deprecated_at": f"{dep}T00:00:00Z" if dep else None,
            "retires_at": f"{ret}T00:00:00Z" if ret else None,
            "line": line,
            "max_input_tokens": max_in,
            "max_tokens": max_out,
            "capabilities": _capabilities(mid, released),
            "_sampling": sampling,
        }
    known = set(models) | {_alias(m) for m in models}
    for mid in _sdk_ids():
        if mid not in known:
            models[mid] = {
                **copy.deepcopy(models["claude-sonnet-5"]),
                "id": mid,
                "display_name": mid,
                "line": None,
            }
            known.add(mid)
    return models


def _alias(model_id: str) -> str:
    m = _DATED.match(model_id)
    return m.group("alias") if m else model_id


class Catalogue:
    """The models an emulator serves; ``models[id]`` may be edited by tests."""

    def __init__(self, models: dict[str, dict[str, Any]] | None = None) -> None:
        self.models = models if models is not None else default_models()
        self._aliases: dict[str, str] = {}
        self._aliased = -1

    def resolve(self, model: str) -> dict[str, Any] | None:
        """The record for an id or alias, or None (on the hot path of every batch row)."""
        found = self.models.get(model)
        if found is not None:
            return found
        if self._aliased != len(self.models):
            self._aliases = {_alias(m): m for m in self.models if _alias(m) != m}
            self._aliased = len(self.models)
        target = self._aliases.get(model)
        return self.models.get(target) if target is not None else None

    def ordered(self, lifecycles: set[str]) -> list[dict[str, Any]]:
        """Records in the lifecycles asked for, newest first (the list order of the API)."""
        chosen = [r for r in self.models.values() if r["lifecycle"] in lifecycles]
        return sorted(chosen, key=lambda r: (r["created_at"], r["id"]), reverse=True)

    @staticmethod
    def public(record: dict[str, Any]) -> dict[str, Any]:
        """The ModelInfo as served (private keys dropped)."""
        return {k: v for k, v in record.items() if not k.startswith("_")}

    # --- the Models API -----------------------------------------------------------------

    def list_response(self, query: dict[str, str], request_id: str) -> Response:
        """``GET /v1/models``: newest first, paged like batches; retired only when asked."""
        try:
            limit, after, before = paging.page_query(query)
        except Invalid as exc:
            return error(400, exc.message, request_id)
        raw = query.get("lifecycle[]") or query.get("lifecycle") or "active,deprecated"
        wanted = {x for x in raw.split(",") if x}
        bad = sorted(wanted - {"active", "deprecated", "retired"})
        if bad:
            return error(
                400,
                f"lifecycle: {bad} is not one of 'active', 'deprecated', 'retired'",
                request_id,
            )
        records = {r["id"]: r for r in self.ordered(wanted)}
        ids = list(records)
        cursor = after or before
        if cursor and cursor not in records:
            which = "after_id" if after else "before_id"
            return error(400, f"{which}: no model with id {cursor!r} in this list", request_id)
        page, has_more = paging.cut(ids, limit, after, before)
        data = [self.public(records[i]) for i in page]
        return json_response(200, paging.page_body(data, has_more), request_id)

    def get_response(self, model_id: str, request_id: str) -> Response:
        """``GET /v1/models/{id}``: an id or an alias; retired models stay in the record."""
        record = self.resolve(model_id)
        if record is None:
            return error(404, f"model: {model_id}", request_id)
        return json_response(200, self.public(record), request_id)
