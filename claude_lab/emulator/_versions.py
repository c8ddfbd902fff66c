"""What each ``anthropic-version`` accepts in Messages params (see docs/api_rules.md).

The core validates every request under the version its header names. Under
2026-10-21 (what SDK 2.x sends) the sampling parameters and the beta-era
``output_format`` are gone, unknown fields and empty text are refused, and
``max_tokens: 0`` pre-warms the prompt cache on ``/v1/messages`` (never in a
batch). Older versions keep the permissive behaviour of 2023-06-01.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CURRENT",
    "REMOVED",
    "SAMPLING",
    "is_current",
    "known_fields",
    "removed_message",
    "version_problem",
]

CURRENT = "2026-10-21"
SAMPLING = ("temperature", "top_p", "top_k")
#: Fields 2026-10-21 no longer accepts -> what to send instead.
REMOVED = {
    "temperature": "remove it (current models do not use sampling parameters)",
    "top_p": "remove it (current models do not use sampling parameters)",
    "top_k": "remove it (current models do not use sampling parameters)",
    "output_format": 'use output_config={"format": {...}}',
}


def is_current(version: str | None) -> bool:
    """Is this ``anthropic-version`` 2026-10-21 or later (dates compare as strings)?"""
    return bool(version) and str(version) >= CURRENT


_KNOWN: frozenset[str] | None = None


def known_fields() -> frozenset[str]:
    """Every body field the SDK's Messages params (plain and beta) can send, plus ``stream``."""
    global _KNOWN
    if _KNOWN is None:
        from anthropic.types import message_create_params as plain
        from anthropic.types.beta import message_create_params as beta

        names = set(plain.MessageCreateParamsBase.__annotations__)
        names |= set(beta.MessageCreateParamsBase.__annotations__)
        names -= {"betas"}  # a header, not a body field
        _KNOWN = frozenset(names | {"stream"})
    return _KNOWN


def removed_message(field: str, version: str) -> str:
    return (
        f"{field}: Extra inputs are not permitted. `{field}` is not accepted under "
        f"anthropic-version {version}; {REMOVED[field]}. Models that predate the change "
        "still honour sampling parameters under anthropic-version 2023-06-01."
        if field in SAMPLING
        else f"{field}: Extra inputs are not permitted under anthropic-version {version}; "
        f"{REMOVED[field]}."
    )


def _at(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _empty_text(content: Any, where: str, *, final_assistant: bool) -> str | None:
    if isinstance(content, str):
        if not content and not final_assistant:
            return (
                f"{where}: all messages must have non-empty content except for the optional "
                "final assistant message"
            )
        return None
    if isinstance(content, list):
        for k, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") == "text" and block.get("text") == "":
                return f"{where}.{k}.text: text content blocks must be non-empty"
    return None


def version_problem(
    params: dict[str, Any], prefix: str, *, version: str, batch: bool
) -> str | None:
    """The first thing ``version`` refuses in already shape-checked ``params``, or None."""
    known = known_fields()
    for key in params:
        if key in REMOVED:
            message = removed_message(key, version)
            return f"{prefix}.{message}" if prefix else message
        if key not in known:
            return f"{_at(prefix, key)}: Extra inputs are not permitted"
    messages = params.get("messages") or []
    last = len(messages) - 1
    for j, message in enumerate(messages):
        problem = _empty_text(
            message.get("content"),
            _at(prefix, f"messages.{j}.content"),
            final_assistant=j == last and message.get("role") == "assistant",
        )
        if problem:
            return problem
    system = params.get("system")
    if isinstance(system, list):
        problem = _empty_text(system, _at(prefix, "system"), final_assistant=True)
        if problem:
            return problem
    if batch:
        if params.get("speed") is not None:
            return (
                f"{_at(prefix, 'speed')}: fast mode is not available for requests in a "
                "Message Batch; remove `speed`."
            )
        if params.get("max_tokens") == 0:
            return (
                f"{_at(prefix, 'max_tokens')}: Input should be greater than or equal to 1 in a "
                "Message Batch (max_tokens: 0 pre-warms the prompt cache and is only accepted "
                "on /v1/messages)."
            )
    return None
