"""What the emulator checks and counts for media, tools, thinking, prefill and extended output.

Owns the per-request rules the API applies to images and PDFs (valid base64, a
media type that matches the bytes, 5 MB and 8000 px per image, 2000 px with more
than 20 images, at most 600 images, PDF pages per model), tool definitions and
``tool_choice``, thinking with forced tools, assistant prefill on models that
refuse it, cache breakpoints (at most 4) and the extended-output beta
(``output-300k-2026-03-24``: batch only, on the models that have it). A
violation is the message of an ``invalid_request_error`` (an errored row in a
batch, a 400 on ``/v1/messages``). Token counts: an image costs width*height/750
(read from its real PNG/JPEG/GIF/WEBP header, after the downscale to 1568 px on
the long edge), a PDF page 1,500 tokens.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from claude_lab import _api_facts as facts
from claude_lab import _media as media

__all__ = [
    "REDACTED_THINKING_TRIGGER",
    "block_tokens",
    "capability_problem",
    "check_request",
]

PDF_PAGE_TOKENS = 1500
URL_IMAGE_TOKENS = 1600
#: The API's documented test string: a prompt holding it gets a redacted_thinking block.
REDACTED_THINKING_TRIGGER = (
    "ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_46C9A13E193C177646C7398A98432ECCCE4C1253"
)
_HEAD = 1 << 16


def _head(data: str) -> bytes:
    return base64.b64decode(data[:_HEAD], validate=False)


def block_tokens(block: Mapping[str, Any]) -> int:
    """Prompt tokens of an image or document block."""
    source = block.get("source")
    if not isinstance(source, Mapping):
        return URL_IMAGE_TOKENS
    kind = source.get("type")
    if kind == "text":
        return max(1, (len(str(source.get("data", ""))) + 3) // 4)
    if kind != "base64":
        return URL_IMAGE_TOKENS
    data = str(source.get("data", ""))
    try:
        if block.get("type") == "document":
            pages = media.pdf_pages(base64.b64decode(data)) or 1
            return pages * PDF_PAGE_TOKENS
        size = media.image_size(_head(data))
    except (binascii.Error, ValueError):
        return URL_IMAGE_TOKENS
    return media.image_tokens(*size) if size else URL_IMAGE_TOKENS


def _media_blocks(params: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    found: list[tuple[str, Mapping[str, Any]]] = []
    for j, message in enumerate(params.get("messages") or ()):
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            for k, block in enumerate(content):
                if isinstance(block, Mapping) and block.get("type") in ("image", "document"):
                    found.append((f"messages.{j}.content.{k}", block))
    return found


def _check_media(params: Mapping[str, Any]) -> str | None:
    blocks = _media_blocks(params)
    images = [(w, b) for w, b in blocks if b.get("type") == "image"]
    if len(images) > media.MAX_IMAGES:
        return f"messages: too many images ({len(images)}); the maximum is {media.MAX_IMAGES}"
    many = len(images) > media.MANY_IMAGES
    side_limit = media.MAX_IMAGE_SIDE_MANY if many else media.MAX_IMAGE_SIDE
    pages = 0
    for where, block in blocks:
        source = block.get("source")
        if not isinstance(source, Mapping) or not isinstance(source.get("type"), str):
            return f"{where}.source: Field required"
        if source["type"] == "url":
            if not isinstance(source.get("url"), str):
                return f"{where}.source.url: Field required"
            continue
        if source["type"] == "text" and block.get("type") == "document":
            continue
        if source["type"] != "base64":
            return f"{where}.source.type: unsupported source type {source['type']!r}"
        data = source.get("data")
        media_type = source.get("media_type")
        if not isinstance(data, str):
            return f"{where}.source.data: Field required"
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return f"{where}.source.data: invalid base64 data"
        sniffed = media.sniff(raw)
        if block.get("type") == "image":
            if media_type not in media.IMAGE_TYPES:
                return (
                    f"{where}.source.media_type: Input should be 'image/jpeg', 'image/png', "
                    "'image/gif' or 'image/webp'"
                )
            if sniffed != media_type:
                return f"{where}.source: Image does not match the provided media type {media_type}"
            if len(data) > media.MAX_IMAGE_BASE64_BYTES:
                return (
                    f"{where}.source.base64: image exceeds 5 MB maximum: {len(data)} bytes > "
                    f"{media.MAX_IMAGE_BASE64_BYTES} bytes"
                )
            size = media.image_size(raw)
            if size and max(size) > side_limit:
                return (
                    f"{where}.source.base64.data: image dimensions exceed max allowed size: "
                    f"{side_limit} pixels"
                )
        else:
            if media_type != media.PDF_TYPE or sniffed != media.PDF_TYPE:
                return f"{where}.source: the document is not a valid PDF (application/pdf)"
            pages += media.pdf_pages(raw) or 1
    model = str(params.get("model", ""))
    limit = media._pdf_page_limit(model)
    if pages > limit:
        return f"messages: A maximum of {limit} PDF pages may be provided (got {pages})"
    return None


def _check_tools(params: Mapping[str, Any]) -> str | None:
    tools = params.get("tools") or []
    names = []
    for k, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            return f"tools.{k}: Input should be a valid dictionary"
        if tool.get("type") in (None, "custom"):
            schema = tool.get("input_schema")
            if not isinstance(schema, Mapping):
                return f"tools.{k}.custom.input_schema: Field required"
            if schema.get("type") != "object":
                return f"tools.{k}.custom.input_schema.type: Input should be 'object'"
        names.append(tool.get("name"))
    choice = params.get("tool_choice")
    if isinstance(choice, Mapping):
        kind = choice.get("type")
        if kind == "tool" and choice.get("name") not in names:
            return f"tool_choice.name: Tool '{choice.get('name')}' not found in tools"
        thinking = params.get("thinking")
        if (
            kind in ("any", "tool")
            and isinstance(thinking, Mapping)
            and thinking.get("type") in ("enabled", "adaptive")
        ):
            return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def _breakpoints(node: Any) -> int:
    if isinstance(node, Mapping):
        own = 1 if node.get("cache_control") else 0
        return own + sum(_breakpoints(v) for k, v in node.items() if k != "cache_control")
    if isinstance(node, list):
        return sum(_breakpoints(x) for x in node)
    return 0


def check_request(params: Mapping[str, Any], *, batch: bool, betas: frozenset[str]) -> str | None:
    """The invalid_request_error message for ``params``, or None if the API would take it."""
    if facts.LONG_OUTPUT_BETA in betas:
        if not batch:
            return (
                f"The {facts.LONG_OUTPUT_BETA} beta is only available for Message Batches; "
                "send this request in a batch."
            )
        if not str(params.get("model", "")).startswith(facts.LONG_OUTPUT_MODELS):
            model = params.get("model")
            return f"The {facts.LONG_OUTPUT_BETA} beta is not supported for model {model}"
    messages = params.get("messages") or []
    last = messages[-1] if messages else None
    if (
        isinstance(last, Mapping)
        and last.get("role") == "assistant"
        and not str(params.get("model", "")).startswith(facts.PRE_4_6_MODELS)
    ):
        return (
            "This model does not support assistant message prefill. "
            "The conversation must end with a user message."
        )
    for check in (_check_media, _check_tools):
        problem = check(params)
        if problem:
            return problem
    marks = _breakpoints(params.get("tools")) + _breakpoints(params.get("system"))
    marks += _breakpoints(messages)
    if marks > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {marks}."
    return None


def capability_problem(params: Mapping[str, Any], capabilities: Any) -> str | None:
    """What the model's catalogue capabilities refuse: images, PDFs, a thinking type."""
    if not isinstance(capabilities, Mapping):
        return None

    def supported(*path: str) -> bool:
        node: Any = capabilities
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping):
            node = node.get("supported")
        return node is not False

    model = params.get("model")
    kinds = {b.get("type") for _, b in _media_blocks(params)}
    if "image" in kinds and not supported("image_input"):
        return f"{model} does not support image input."
    if "document" in kinds and not supported("pdf_input"):
        return f"{model} does not support PDF input."
    thinking = params.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if isinstance(kind, str) and not supported("thinking", "types", kind):
        return f"thinking.type: {kind!r} is not supported by {model}."
    return None
