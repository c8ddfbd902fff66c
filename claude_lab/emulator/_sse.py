"""Streaming: a Message as the API's server-sent event stream.

Owns the event sequence the SDK's stream parser reads (``message_start``, ``ping``,
per block ``content_block_start`` / deltas / ``content_block_stop``, then
``message_delta`` and ``message_stop``), with text, thinking and tool input cut
into small deltas, and the streaming headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

__all__ = ["HEADERS", "events"]

#: Headers of an event stream (with the request's ``request-id`` added).
HEADERS = (("content-type", "text/event-stream"), ("cache-control", "no-cache"))


def events(message: dict[str, Any]) -> Iterator[bytes]:
    """A Message as the API's server-sent event stream."""

    def event(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    usage = message.get("usage") or {}
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    yield event("message_start", {"type": "message_start", "message": start})
    yield event("ping", {"type": "ping"})
    for index, block in enumerate(message.get("content") or []):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            yield event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in _pieces(str(block.get("text", ""))):
                delta = {"type": "text_delta", "text": piece}
                yield event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
        elif kind == "thinking":
            empty = {"type": "thinking", "thinking": "", "signature": ""}
            yield event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
            for piece in _pieces(str(block.get("thinking", ""))):
                delta = {"type": "thinking_delta", "thinking": piece}
                yield event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            delta = {"type": "signature_delta", "signature": str(block.get("signature", ""))}
            yield event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        elif kind == "tool_use":
            head = {k: v for k, v in block.items() if k != "input"}
            yield event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**head, "input": {}},
                },
            )
            raw = orjson.dumps(block.get("input") or {}).decode()
            for piece in _pieces(raw, 16):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
        else:
            yield event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        yield event("content_block_stop", {"type": "content_block_stop", "index": index})
    delta_usage = {
        "output_tokens": usage.get("output_tokens", 1),
        "input_tokens": usage.get("input_tokens"),
        "cache_creation_input_tokens": usage.get("cache_creation_input_tokens"),
        "cache_read_input_tokens": usage.get("cache_read_input_tokens"),
    }
    yield event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message.get("stop_reason"),
                "stop_sequence": message.get("stop_sequence"),
            },
            "usage": delta_usage,
        },
    )
    yield event("message_stop", {"type": "message_stop"})


def _pieces(text: str, size: int = 12) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
