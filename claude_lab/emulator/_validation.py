"""Request checks: what the API refuses before answering, with its kind of message.

Owns the body parse, the Messages params rules (per ``anthropic-version``: the
2026-10-21 rules come from :mod:`claude_lab.emulator._versions`), a batch's
structure (size, custom_id pattern and uniqueness: a failure fails the create)
and its per-row params (a failure is that row's errored result line).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from claude_lab.emulator import _versions as versions

__all__ = [
    "CUSTOM_ID_PATTERN",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_REQUESTS",
    "Invalid",
    "load_body",
    "validate_batch",
    "validate_params",
]

MAX_BATCH_REQUESTS = 100_000
#: 256 MiB: the API says "256 MB"; the binary reading is the larger, so a client that
#: splits at 256_000_000 bytes is never refused here.
MAX_BATCH_BYTES = 256 * 1024 * 1024
CUSTOM_ID_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


class Invalid(Exception):
    """A request the API refuses (400 ``invalid_request_error``) with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _at(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise Invalid(f"{where}: Input should be a valid string or a list of content blocks")
    for k, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise Invalid(f"{where}.{k}: Input should be a content block object with a `type`")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise Invalid(f"{where}.{k}.text: Field required")


def validate_params(
    params: Any,
    prefix: str = "",
    *,
    batch: bool = False,
    count_tokens: bool = False,
    version: str | None = None,
) -> None:
    """Raise ``Invalid`` with the API's kind of message when ``params`` cannot be accepted.

    ``version`` is the request's ``anthropic-version``; 2026-10-21 and later add the
    rules of :mod:`claude_lab.emulator._versions` (None: the permissive 2023-06-01 rules).
    """
    current = versions.is_current(version)
    if not isinstance(params, dict):
        raise Invalid(f"{prefix or 'body'}: Input should be a valid dictionary")
    model = params.get("model")
    if "model" not in params:
        raise Invalid(f"{_at(prefix, 'model')}: Field required")
    if not isinstance(model, str) or not model:
        raise Invalid(f"{_at(prefix, 'model')}: Input should be a valid string")
    if not count_tokens:
        if "max_tokens" not in params:
            raise Invalid(f"{_at(prefix, 'max_tokens')}: Field required")
        max_tokens = params["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise Invalid(f"{_at(prefix, 'max_tokens')}: Input should be a valid integer")
        # 2026-10-21: max_tokens 0 pre-warms the prompt cache (refused in a batch, below).
        if max_tokens < (0 if current else 1):
            raise Invalid(
                f"{_at(prefix, 'max_tokens')}: Input should be greater than or equal to 1"
            )
    if "messages" not in params:
        raise Invalid(f"{_at(prefix, 'messages')}: Field required")
    messages = params["messages"]
    if not isinstance(messages, list):
        raise Invalid(f"{_at(prefix, 'messages')}: Input should be a valid list")
    if not messages:
        raise Invalid(f"{_at(prefix, 'messages')}: at least one message is required")
    for j, message in enumerate(messages):
        where = _at(prefix, f"messages.{j}")
        if not isinstance(message, dict):
            raise Invalid(f"{where}: Input should be a valid dictionary")
        if message.get("role") not in ("user", "assistant"):
            raise Invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise Invalid(f"{where}.content: Field required")
        _check_content(message["content"], f"{where}.content")
    system = params.get("system")
    if system is not None:
        _check_content(system, _at(prefix, "system"))
    stream = params.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise Invalid(f"{_at(prefix, 'stream')}: Input should be a valid boolean")
    if batch and stream:
        raise Invalid(
            f"{_at(prefix, 'stream')}: streaming is not supported for requests in a Message Batch"
        )
    if current:
        problem = versions.version_problem(params, prefix, version=str(version), batch=batch)
        if problem is not None:
            raise Invalid(problem)
    _check_sampling(params, prefix)
    stops = params.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
    ):
        raise Invalid(f"{_at(prefix, 'stop_sequences')}: Input should be a list of strings")
    tools = params.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise Invalid(f"{_at(prefix, 'tools')}: Input should be a valid list")
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise Invalid(f"{_at(prefix, f'tools.{k}.name')}: Field required")
    thinking = params.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        where = _at(prefix, "thinking.budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise Invalid(f"{where}: Field required")
        if budget < 1024:
            raise Invalid(f"{where}: Input should be greater than or equal to 1024")
        if not count_tokens and budget >= params["max_tokens"]:
            raise Invalid(
                f"{_at(prefix, 'max_tokens')}: must be greater than thinking.budget_tokens"
            )


def _check_sampling(params: dict[str, Any], prefix: str) -> None:
    """Ranges of the sampling parameters, where a version still accepts them."""
    temperature = params.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0 <= temperature <= 1
    ):
        raise Invalid(f"{_at(prefix, 'temperature')}: Input should be a number between 0 and 1")
    top_p = params.get("top_p")
    if top_p is not None and (not isinstance(top_p, int | float) or not 0 <= top_p <= 1):
        raise Invalid(f"{_at(prefix, 'top_p')}: Input should be a number between 0 and 1")
    top_k = params.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        raise Invalid(f"{_at(prefix, 'top_k')}: Input should be an integer >= 0")


def load_body(body: bytes) -> Any:
    """The request's JSON body; ``Invalid`` with the API's message when it does not parse."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"There was an error parsing the body of your request: {exc}") from exc


def validate_batch(
    data: Any, version: str | None = None
) -> tuple[list[str], list[dict[str, Any]], dict[int, str]]:
    """Check the batch's structure (a failure fails the create) and each request's params.

    Params are validated asynchronously by the API: a bad one is not a failed create
    but an errored result line, so those messages come back by row index.
    """
    if not isinstance(data, dict):
        raise Invalid("body: Input should be a valid dictionary")
    if "requests" not in data:
        raise Invalid("requests: Field required")
    requests = data["requests"]
    if not isinstance(requests, list):
        raise Invalid("requests: Input should be a valid list")
    n = len(requests)
    if n == 0:
        raise Invalid("requests: List should have at least 1 item after validation, not 0")
    if n > MAX_BATCH_REQUESTS:
        raise Invalid(
            f"requests: List should have at most {MAX_BATCH_REQUESTS} items after validation, "
            f"not {n}; split the work into several batches."
        )
    seen: dict[str, int] = {}
    custom_ids: list[str] = []
    params_list: list[dict[str, Any]] = []
    invalid: dict[int, str] = {}
    match = _CUSTOM_ID.fullmatch
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            raise Invalid(f"requests.{i}: Input should be a valid dictionary")
        if len(item) != 2:
            for key in item:
                if key not in ("custom_id", "params"):
                    raise Invalid(f"requests.{i}.{key}: Extra inputs are not permitted")
            missing = "custom_id" if "custom_id" not in item else "params"
            raise Invalid(f"requests.{i}.{missing}: Field required")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or match(custom_id) is None:
            raise Invalid(
                f"requests.{i}.custom_id: String should match pattern '{CUSTOM_ID_PATTERN}'"
            )
        first = seen.setdefault(custom_id, i)
        if first != i:
            raise Invalid(
                f"requests.{i}.custom_id: duplicate custom_id {custom_id!r} (also used by "
                f"requests.{first}.custom_id); custom_id must be unique within a batch"
            )
        params = item.get("params")
        if params is None:
            raise Invalid(f"requests.{i}.params: Field required")
        if not isinstance(params, dict):
            raise Invalid(f"requests.{i}.params: Input should be a valid dictionary")
        try:
            validate_params(params, f"requests.{i}.params", batch=True, version=version)
        except Invalid as exc:
            invalid[i] = exc.message
        custom_ids.append(custom_id)
        params_list.append(params)
    return custom_ids, params_list, invalid
