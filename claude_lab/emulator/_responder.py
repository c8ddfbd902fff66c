"""The default responder: deterministic Messages built from the request params.

Owns everything about *what* a reply contains — text (with correct answers to
simple arithmetic), ``max_tokens`` / ``stop_sequences`` handling, tool use,
JSON-schema structured output, thinking blocks — and the token accounting
(input/output counts, prompt-cache writes and reads). It is on the hot path of
100,000-row batches, so it works on plain dicts and never touches pydantic.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import math
import operator
import re
import threading
from collections.abc import Callable
from typing import Any

import orjson

from claude_lab.emulator import _features as features

__all__ = [
    "ROW_ERROR_TYPES",
    "PromptCache",
    "Responder",
    "RowError",
    "arithmetic_answer",
    "build_message",
    "count_input_tokens",
    "reply_text",
    "schema_example",
    "text_tokens",
]

#: What a user responder may return (or raise): reply text, Message fields, or an error.
Responder = Callable[[dict[str, Any]], "str | dict[str, Any] | BaseException"]

#: Error types the SDK accepts inside an errored batch result (its ErrorObject union).
ROW_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    }
)


class RowError(Exception):
    """An API error for one request: an errored row in a batch, an HTTP error on /v1/messages.

    Return or raise it from a responder, e.g. ``RowError("overloaded_error", "Overloaded")``.
    """

    def __init__(self, type: str, message: str = "") -> None:
        if type not in ROW_ERROR_TYPES:
            raise ValueError(
                f"unknown error type {type!r}; use one of {', '.join(sorted(ROW_ERROR_TYPES))}"
            )
        super().__init__(message or type)
        self.type = type
        self.message = message or type


# --- tokens -------------------------------------------------------------------------------------


def text_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: one token per 4 characters, rounded up."""
    return (len(text) + 3) // 4


_MESSAGE_OVERHEAD = 3  # tokens per message turn, like the role markers a real tokenizer adds


def _block_text(block: Any) -> str:
    """The text a content block contributes to the prompt (for counting and hashing)."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return str(block)
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "thinking":
        return str(block.get("thinking", ""))
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return "".join(_block_text(b) for b in content)
        return str(content)
    stripped = {k: v for k, v in block.items() if k != "cache_control"}
    return orjson.dumps(stripped, option=orjson.OPT_SORT_KEYS).decode()


def _prompt_blocks(params: dict[str, Any]) -> list[tuple[str, int, Any]]:
    """The prompt as (text, tokens, cache_control), in cache order: tools, system, messages."""
    out: list[tuple[str, int, Any]] = []
    for tool in params.get("tools") or ():
        text = _block_text(tool) if isinstance(tool, dict) else str(tool)
        cc = tool.get("cache_control") if isinstance(tool, dict) else None
        out.append((text, text_tokens(text), cc))
    system = params.get("system")
    if isinstance(system, str):
        if system:
            out.append((system, text_tokens(system), None))
    elif isinstance(system, list):
        for block in system:
            text = _block_text(block)
            cc = block.get("cache_control") if isinstance(block, dict) else None
            out.append((text, text_tokens(text), cc))
    for message in params.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", ""))
        content = message.get("content", "")
        if isinstance(content, str):
            out.append((role + ":" + content, text_tokens(content) + _MESSAGE_OVERHEAD, None))
            continue
        first = True
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict) and block.get("type") in ("image", "document"):
                text = orjson.dumps(block.get("source")).decode()
                tokens = features.block_tokens(block)
            else:
                text = _block_text(block)
                tokens = text_tokens(text)
            if first:
                text, tokens, first = role + ":" + text, tokens + _MESSAGE_OVERHEAD, False
            cc = block.get("cache_control") if isinstance(block, dict) else None
            out.append((text, tokens, cc))
    return out


def count_input_tokens(params: dict[str, Any]) -> int:
    """Total prompt tokens; equals input + cache write + cache read tokens of a reply."""
    return max(1, sum(tokens for _, tokens, _ in _prompt_blocks(params)))


class PromptCache:
    """Prompt-cache state shared by every request an emulator serves.

    A prefix (everything up to a ``cache_control`` breakpoint) is written on first
    sight and read afterwards while it has been used within its TTL (5 min, or 1 h).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[bytes, tuple[float, float]] = {}  # key -> (last used, ttl)

    def account(self, params: dict[str, Any], now: float) -> tuple[int, int, int, int]:
        """-> (uncached input tokens, cache write 5m, cache write 1h, cache read)."""
        blocks = _prompt_blocks(params)
        top = params.get("cache_control")
        if top and blocks:
            # Top-level cache_control marks the last cacheable block of the request.
            blocks[-1] = (blocks[-1][0], blocks[-1][1], top)
        total = max(1, sum(tokens for _, tokens, _ in blocks))
        if not any(cc for _, _, cc in blocks):
            return total, 0, 0, 0
        hasher = hashlib.blake2b(str(params.get("model", "")).encode(), digest_size=16)
        running = 0
        breakpoints: list[tuple[bytes, int, float]] = []
        for text, tokens, cc in blocks:
            hasher.update(text.encode())
            hasher.update(b"\x00")
            running += tokens
            if cc:
                ttl = 3600.0 if isinstance(cc, dict) and cc.get("ttl") == "1h" else 300.0
                breakpoints.append((hasher.digest(), running, ttl))
        with self._lock:
            hit = 0
            for key, upto, _ in reversed(breakpoints):
                seen = self._seen.get(key)
                if seen is not None and now - seen[0] <= seen[1]:
                    hit = upto
                    break
            for key, _, ttl in breakpoints:
                self._seen[key] = (now, max(ttl, self._seen.get(key, (0.0, 0.0))[1]))
        _, last_upto, last_ttl = breakpoints[-1]
        write = last_upto - hit
        write_1h = write if last_ttl > 300.0 else 0
        return total - last_upto, write - write_1h, write_1h, hit


# --- reply text ---------------------------------------------------------------------------------


def _message_text(message: Any) -> str:
    content = message.get("content", "") if isinstance(message, dict) else ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def last_user_text(params: dict[str, Any]) -> str:
    for message in reversed(params.get("messages") or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


def _system_text(params: dict[str, Any]) -> str:
    system = params.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(_block_text(b) for b in system)
    return ""


_WORD_OPS = {
    "multiplied by": "*",
    "times": "*",
    "divided by": "/",
    "plus": "+",
    "added to": "+",
    "minus": "-",
    "modulo": "%",
    "mod": "%",
}
_WORDS = re.compile(
    r"\b(?:multiplied\s+by|times|divided\s+by|plus|added\s+to|minus|modulo|mod)\b", re.I
)
_NUM = r"\d+(?:\.\d+)?"
_EXPR = re.compile(
    rf"[(\s]*-?\s*{_NUM}\s*\)*(?:\s*(?://|\*\*|[-+*/%×÷x])\s*[(\s]*-?\s*{_NUM}\s*\)*)+"
)
_WORD_HINTS = ("times", " by", "plus", "minus", "mod", "added")
_DIGIT = re.compile(r"\d")
# A cheap pre-check that rules out most prompts without running _EXPR.
_OP_NEAR_DIGIT = re.compile(r"\d\s*(?:[-+*/%×÷x])")
# The common case ("17 + 25") without the cost of ast.parse.
_SIMPLE = re.compile(rf"\s*(-?{_NUM})\s*(//|[-+*/%])\s*(-?{_NUM})\s*")
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


_OPS: dict[str, type] = {
    "+": ast.Add,
    "-": ast.Sub,
    "*": ast.Mult,
    "/": ast.Div,
    "//": ast.FloorDiv,
    "%": ast.Mod,
}


def _parse_number(text: str) -> int | float:
    digits = text.lstrip("-")
    if len(digits) > 1 and digits[0] == "0" and digits[1] != ".":
        raise ValueError("leading zero: a date or a code, not a number")
    return float(text) if "." in text else int(text)


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise ValueError("not arithmetic")
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        # Keep "simple arithmetic" simple: no huge powers a prompt could use to stall the server.
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 10**6):
            raise ValueError("power too large")
        result: int | float = _BINOPS[type(node.op)](left, right)
        return result
    raise ValueError("not arithmetic")


def _format_number(value: int | float) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("not finite")
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}" if abs(value) >= 1e15 else f"{round(value, 6):.6f}".rstrip("0")
    return str(value)


def arithmetic_answer(prompt: str) -> str | None:
    """The answer to the first arithmetic expression in ``prompt`` ("17 + 25" -> "42"), or None."""
    lower = prompt.lower()
    words = any(word in lower for word in _WORD_HINTS)
    if not words and _OP_NEAR_DIGIT.search(prompt) is None:
        return None
    text = prompt
    if words:
        text = _WORDS.sub(lambda m: f" {_WORD_OPS[' '.join(m.group(0).lower().split())]} ", text)
    for match in _EXPR.finditer(text):
        expr = match.group(0).replace("×", "*").replace("÷", "/").replace("x", "*").strip()
        if expr.count("(") != expr.count(")"):
            expr = expr.strip("()")
        try:
            simple = _SIMPLE.fullmatch(expr)
            if simple is not None:
                left, op, right = simple.groups()
                value = _BINOPS[_OPS[op]](_parse_number(left), _parse_number(right))
                return _format_number(value)
            return _format_number(_evaluate(ast.parse(expr, mode="eval")))
        except ZeroDivisionError:
            return "undefined"
        except (SyntaxError, ValueError, TypeError, OverflowError):
            continue
    return None


_PHRASES = (
    "only the answer",
    "just the answer",
    "only the result",
    "just the result",
    "nothing else",
)


def wants_single_number(text: str) -> bool:
    """Does the prompt ask for a bare number ("Answer with a single number.")?"""
    lower = text.lower()
    if any(phrase in lower for phrase in _PHRASES):
        return True
    for noun in ("number", "integer", "numeral"):
        at = lower.find(noun)
        while at >= 0:
            before = lower[max(0, at - 16) : at].split()
            after = lower[at + len(noun) : at + len(noun) + 8].split()
            if before and before[-1] in ("single", "one", "a"):
                return True
            if len(before) >= 2 and before[-2] in ("only", "just") and before[-1] in ("a", "the"):
                return True
            if after and after[0].strip(".,;:!") == "only":
                return True
            at = lower.find(noun, at + 1)
    return False


_UNSET: Any = object()


def reply_text(params: dict[str, Any], *, prompt: str | None = None, answer: Any = _UNSET) -> str:
    """The default reply: arithmetic answered correctly, anything else a short echo."""
    if prompt is None:
        prompt = last_user_text(params)
    if answer is _UNSET:
        answer = arithmetic_answer(prompt)
    if answer is not None:
        if wants_single_number(prompt) or wants_single_number(_system_text(params)):
            return answer
        return f"The answer is {answer}."
    snippet = " ".join(prompt.split())
    if len(snippet) > 80:
        snippet = snippet[:77] + "..."
    return f"Emulated reply to: {snippet}" if snippet else "Emulated reply."


# --- JSON schema examples -----------------------------------------------------------------------


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


_STRING_FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
}


def _number(schema: dict[str, Any], hint: float | None, integer: bool) -> int | float:
    value: float = hint if hint is not None else 0
    if integer and not float(value).is_integer():
        value = math.floor(value)
    lo, hi = schema.get("minimum"), schema.get("maximum")
    xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = 1 if integer else 0.5
    if isinstance(lo, int | float) and value < lo:
        value = math.ceil(lo) if integer else lo
    if isinstance(xlo, int | float) and value <= xlo:
        value = math.floor(xlo) + 1 if integer else xlo + step
    if isinstance(hi, int | float) and value > hi:
        value = math.floor(hi) if integer else hi
    if isinstance(xhi, int | float) and value >= xhi:
        value = math.ceil(xhi) - 1 if integer else xhi - step
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and multiple > 0:
        value = math.ceil(value / multiple) * multiple
    return int(value) if integer else value


def schema_example(
    schema: Any,
    *,
    root: dict[str, Any] | None = None,
    name: str = "value",
    number: float | None = None,
    _depth: int = 0,
) -> Any:
    """A small value that validates against ``schema`` (objects carry all their properties).

    ``number`` is used for numeric fields, so a structured answer to an arithmetic
    question holds the right number.
    """
    if schema is True or not isinstance(schema, dict):
        return name
    root = schema if root is None else root
    if _depth > 12:
        return None
    if "$ref" in schema:
        target = _resolve(str(schema["$ref"]), root)
        resolved = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema_example(resolved, root=root, name=name, number=number, _depth=_depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return schema_example(
                (non_null or options)[0], root=root, name=name, number=number, _depth=_depth + 1
            )
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                part = _resolve(part["$ref"], root) if "$ref" in part else part
                for k, v in part.items():
                    if k in ("properties",) and isinstance(v, dict):
                        merged["properties"] = {**merged.get("properties", {}), **v}
                    elif k == "required" and isinstance(v, list):
                        merged["required"] = [*merged.get("required", []), *v]
                    else:
                        merged.setdefault(k, v)
        return schema_example(merged, root=root, name=name, number=number, _depth=_depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or kind
        kind = kinds[0] if kinds else None
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        out: dict[str, Any] = {}
        for key, sub in props.items():
            out[key] = schema_example(sub, root=root, name=key, number=number, _depth=_depth + 1)
        for key in schema.get("required") or ():
            if key not in out:
                out[key] = key
        return out
    if kind == "array":
        items = schema.get("items", {})
        if isinstance(schema.get("prefixItems"), list):
            return [
                schema_example(s, root=root, name=name, number=number, _depth=_depth + 1)
                for s in schema["prefixItems"]
            ]
        count = max(int(schema.get("minItems", 1) or 0), 1)
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        item = schema_example(items, root=root, name=name, number=number, _depth=_depth + 1)
        if schema.get("uniqueItems") and count > 1 and isinstance(item, str):
            return [f"{item}{i}" for i in range(count)]
        return [item] * count
    if kind == "integer":
        return _number(schema, number, integer=True)
    if kind == "number":
        return _number(schema, number, integer=False)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = schema.get("format")
    value = (
        _STRING_FORMATS.get(fmt, f"example {name}") if isinstance(fmt, str) else f"example {name}"
    )
    min_len = schema.get("minLength")
    if isinstance(min_len, int) and len(value) < min_len:
        value = value + "x" * (min_len - len(value))
    max_len = schema.get("maxLength")
    if isinstance(max_len, int) and len(value) > max_len:
        value = value[:max_len]
    return value


# --- the message ------------------------------------------------------------------------------


def _digest(*parts: str, size: int = 12) -> str:
    raw = hashlib.blake2b("\x00".join(parts).encode(), digest_size=size).digest()
    return base64.b32encode(raw).decode().rstrip("=").lower()


def _output_schema(params: dict[str, Any]) -> dict[str, Any] | None:
    for holder in (params.get("output_config"), params):
        fmt = holder.get("format" if holder is not params else "output_format") if holder else None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            schema = fmt.get("schema")
            return schema if isinstance(schema, dict) else {}
    return None


def _chosen_tool(params: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t for t in params.get("tools") or () if isinstance(t, dict) and "input_schema" in t]
    if not tools:
        return None
    choice = params.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type") if isinstance(choice, dict) else "auto"
    if kind == "none":
        return None
    if kind == "tool":
        named = [t for t in tools if t.get("name") == choice.get("name")]
        return named[0] if named else tools[0]
    return tools[0]


def _cut(text: str, params: dict[str, Any], budget: int) -> tuple[str, str, str | None]:
    """Apply stop sequences then the token budget -> (text, stop_reason, stop_sequence)."""
    stops = [s for s in params.get("stop_sequences") or () if isinstance(s, str) and s]
    first: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (first is None or at < first[0]):
            first = (at, stop)
    reason, sequence = "end_turn", None
    if first is not None:
        text, reason, sequence = text[: first[0]], "stop_sequence", first[1]
    if text_tokens(text) > budget:
        text, reason, sequence = text[: max(budget, 0) * 4], "max_tokens", None
    return text, reason, sequence


def build_message(
    params: dict[str, Any],
    *,
    msg_id: str,
    service_tier: str,
    cache: tuple[int, int, int, int] | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """A complete Message dict for ``params``; ``text`` replaces the default reply text."""
    max_tokens = params.get("max_tokens")
    budget = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 4096
    content: list[dict[str, Any]] = []
    used = 0
    thinking_used: int | None = None
    stop_reason, stop_sequence = "end_turn", None
    prompt = last_user_text(params)

    thinking = params.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        snippet = " ".join(prompt.split())[:120]
        thought = f"The user asks: {snippet}. I will answer briefly and precisely."
        limit = budget
        if isinstance(thinking.get("budget_tokens"), int):
            limit = min(limit, thinking["budget_tokens"])
        if text_tokens(thought) > limit:
            thought = thought[: limit * 4]
        used += text_tokens(thought)
        signature = (
            "EmuSig"
            + base64.b64encode(hashlib.blake2b(thought.encode(), digest_size=24).digest()).decode()
        )
        if features.REDACTED_THINKING_TRIGGER in prompt:
            content.append({"type": "redacted_thinking", "data": signature + "Redacted"})
        else:
            content.append({"type": "thinking", "thinking": thought, "signature": signature})
        thinking_used = used

    answer = arithmetic_answer(prompt)
    hint = float(answer) if answer is not None and answer != "undefined" else None
    tool = _chosen_tool(params) if text is None else None
    schema = _output_schema(params) if text is None else None
    if tool is not None:
        tool_input = schema_example(tool.get("input_schema") or {}, number=hint)
        if not isinstance(tool_input, dict):
            tool_input = {}
        content.append(
            {
                "type": "tool_use",
                "id": "toolu_" + _digest(msg_id, str(tool.get("name")), size=15),
                "name": str(tool.get("name", "tool")),
                "input": tool_input,
            }
        )
        used += text_tokens(orjson.dumps(tool_input).decode())
        stop_reason = "tool_use"
    elif used >= budget:
        stop_reason = "max_tokens"
    else:
        if text is None:
            if schema is not None:
                text = orjson.dumps(schema_example(schema, number=hint)).decode()
            else:
                text = reply_text(params, prompt=prompt, answer=answer)
        text, stop_reason, stop_sequence = _cut(text, params, budget - used)
        used += text_tokens(text)
        content.append({"type": "text", "text": text})

    uncached, write_5m, write_1h, read = cache if cache else (count_input_tokens(params), 0, 0, 0)
    message: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": params.get("model"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": uncached,
            "cache_creation_input_tokens": write_5m + write_1h,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": write_5m,
                "ephemeral_1h_input_tokens": write_1h,
            },
            "output_tokens": max(used, 1),
            "service_tier": service_tier,
        },
    }
    if thinking_used is not None:
        usage: dict[str, Any] = message["usage"]
        usage["output_tokens_details"] = {"thinking_tokens": thinking_used}
    return message


def content_output_tokens(content: list[Any]) -> int:
    """Output tokens for user-supplied content blocks (when a responder overrides content)."""
    total = 0
    for block in content:
        total += text_tokens(_block_text(block))
    return max(total, 1)
