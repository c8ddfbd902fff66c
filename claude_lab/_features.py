"""Thinking, prompt caching, extended output and assistant prefill, checked against the model.

Each option becomes Messages params (or, for extended output, a beta header on
the batch create call) and is refused before anything is sent when the model
cannot take it. Model support comes from a capabilities mapping in the Models
API's ``ModelCapabilities`` shape when one is known (``capabilities=``), and
otherwise from the small tables below (as of 2026-11):

- adaptive thinking: models from Claude Opus 4.6 / Sonnet 4.6 on;
- assistant prefill: models up to the 4.5 generation (4.6 and later answer 400
  "This model does not support assistant message prefill");
- extended output (``long_output=True``, beta ``output-300k-2026-03-24``,
  ``max_tokens`` up to 300,000, Message Batches only): Opus 4.6, 4.7, 4.8 and
  Sonnet 4.6.

Prompt caching puts one ``cache_control`` marker on the last block every row
shares (the last static leading turn, else the system prompt, else the last
tool). The API's top-level ``cache_control`` would mark the *last* block of each
request instead, which in a batch is the row's own text: every row would pay a
cache write and none would read it, so it is not used here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from claude_lab._api_facts import (
    LONG_OUTPUT_BETA,
    LONG_OUTPUT_MAX_TOKENS,
    LONG_OUTPUT_MODELS,
    PRE_4_6_MODELS,
)
from claude_lab._errors import InputError

__all__ = [
    "LONG_OUTPUT_BETA",
    "LONG_OUTPUT_MAX_TOKENS",
    "PROMPT_CACHE_TTLS",
    "betas_for",
    "check_prefill",
    "mark_shared_prefix",
    "thinking_param",
]

PROMPT_CACHE_TTLS = ("5m", "1h")
# The generation before adaptive thinking and after which prefill was withdrawn.
_LEGACY = PRE_4_6_MODELS
MIN_THINKING_BUDGET = 1024


def _supported(capabilities: Mapping[str, Any] | None, *path: str) -> bool | None:
    node: Any = capabilities
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, Mapping):
        node = node.get("supported")
    return node if isinstance(node, bool) else None


def thinking_param(
    thinking: Any,
    *,
    model: str,
    max_tokens: int,
    capabilities: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """``thinking=`` as the API's dict: a budget (int), ``"adaptive"``, or a dict."""
    if thinking is None or thinking is False:
        return None
    if isinstance(thinking, bool):
        raise InputError("thinking=True is ambiguous: pass a budget such as 2048, or 'adaptive'.")
    if isinstance(thinking, int):
        thinking = {"type": "enabled", "budget_tokens": thinking}
    elif thinking == "adaptive":
        thinking = {"type": "adaptive"}
    elif not isinstance(thinking, Mapping):
        raise InputError(
            f"thinking={thinking!r}: pass a token budget (int >= {MIN_THINKING_BUDGET}), "
            "'adaptive', or the API's dict."
        )
    thinking = dict(thinking)
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < MIN_THINKING_BUDGET:
            raise InputError(
                f"thinking budget must be a whole number >= {MIN_THINKING_BUDGET}, got {budget!r}."
            )
        if budget >= max_tokens:
            raise InputError(
                f"thinking budget {budget} must be below max_tokens ({max_tokens}): thinking "
                f"counts toward max_tokens. Raise max_tokens, e.g. max_tokens={budget + 1024}."
            )
    if kind in ("enabled", "adaptive"):
        known = _supported(capabilities, "thinking", "types", kind)
        if known is None and kind == "adaptive":
            known = not model.startswith(_LEGACY)
        if known is False:
            other = "a budget such as 2048" if kind == "adaptive" else "'adaptive'"
            raise InputError(
                f"Model {model} does not take thinking of type {kind!r}; pass {other} "
                "instead, or another model. Nothing was sent."
            )
    return thinking


def betas_for(
    *, long_output: bool, model: str, max_tokens: int, capabilities: Mapping[str, Any] | None
) -> list[str]:
    """The beta headers a batch create call needs (extended output), checked."""
    if not isinstance(long_output, bool):
        raise InputError(f"long_output must be True or False, got {long_output!r}.")
    if not long_output:
        return []
    if not model.startswith(LONG_OUTPUT_MODELS):
        raise InputError(
            f"long_output=True (max_tokens up to {LONG_OUTPUT_MAX_TOKENS:,}, batch only) is "
            f"available on {', '.join(LONG_OUTPUT_MODELS)}, not {model}. Pick one of those, "
            "or drop long_output. Nothing was sent."
        )
    if max_tokens > LONG_OUTPUT_MAX_TOKENS:
        raise InputError(
            f"max_tokens={max_tokens:,} is over the extended-output limit of "
            f"{LONG_OUTPUT_MAX_TOKENS:,}."
        )
    return [LONG_OUTPUT_BETA]


def check_prefill(
    messages: Sequence[tuple[str, Any]] | None,
    *,
    model: str,
    thinking: Mapping[str, Any] | None,
    capabilities: Mapping[str, Any] | None = None,
) -> None:
    """A template ending with an assistant turn is a prefill: refuse it where it would fail."""
    if not messages or messages[-1][0] != "assistant":
        return
    known = _supported(capabilities, "prefill")
    if known is None:
        known = model.startswith(_LEGACY)
    if not known:
        raise InputError(
            f"The prompt ends with an assistant turn (a prefill), which {model} does not "
            "support (the API answers 400). End with a user turn, use output= for a fixed "
            "format, or pick a model that takes prefill (e.g. claude-haiku-4-5)."
        )
    if thinking and thinking.get("type") in ("enabled", "adaptive"):
        raise InputError(
            "A prefill (a final assistant turn) cannot be combined with thinking=; drop one."
        )


def _static(node: Any) -> bool:
    """True if a compiled template node renders the same for every row."""
    fields = getattr(node, "fields", None)
    if fields is not None:
        return not fields
    if isinstance(node, list):
        return all(_static(x) for x in node)
    if isinstance(node, dict):
        if node.get("type") in ("image", "document") and "column" in node:
            return False
        return all(_static(v) for v in node.values())
    return True


def _with_marker(content: Any, marker: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    blocks[-1] = {**blocks[-1], "cache_control": marker}
    return blocks


def mark_shared_prefix(
    params: list[dict[str, Any] | None],
    prompt: Any,
    ttl: str | None,
    *,
    media_in_last_turn: bool,
) -> str | None:
    """Put the cache marker on the last block all rows share, in place; -> where it went
    ("messages.K", "system", "tools") or None when ``ttl`` is None."""
    if ttl is None:
        return None
    if ttl not in PROMPT_CACHE_TTLS:
        raise InputError(f"prompt_cache={ttl!r} is not one of '5m', '1h' or None.")
    marker = {"type": "ephemeral", "ttl": ttl}
    first = next((p for p in params if p is not None), None)
    if first is None:
        return None
    shared_system = prompt.system is None or _static(prompt.system)
    k = 0
    if prompt.messages is not None and shared_system:
        for _, content in prompt.messages:
            if not _static(content):
                break
            k += 1
        if media_in_last_turn:
            last_user = max(j for j, (role, _) in enumerate(prompt.messages) if role == "user")
            k = min(k, last_user)
    if k:
        j = k - 1
        turn = first["messages"][j]
        shared = {**turn, "content": _with_marker(turn["content"], marker)}
        for p in params:
            if p is not None:
                p["messages"] = [*p["messages"][:j], shared, *p["messages"][j + 1 :]]
        return f"messages.{j}"
    if prompt.system is not None and shared_system and first.get("system"):
        system = _with_marker(first["system"], marker)
        for p in params:
            if p is not None:
                p["system"] = system
        return "system"
    if first.get("tools"):
        tools = [*first["tools"][:-1], {**first["tools"][-1], "cache_control": marker}]
        for p in params:
            if p is not None:
                p["tools"] = tools
        return "tools"
    raise InputError(
        "prompt_cache= caches what every row shares, but this prompt shares nothing: the "
        "system prompt and the first turn both name columns. Put the shared instructions in "
        "system= (with no {columns}) or in leading turns without columns, or drop prompt_cache."
    )
