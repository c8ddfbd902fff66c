"""The model catalogue a client sees, and the checks a run makes against it before sending.

One Models API call per client (``GET /v1/models``, every lifecycle, cached for
the session). Offline, or behind a gateway without that route, the installed
SDK's ``Model`` list stands in, with a warning: names are still checked, limits
and capabilities are not. :func:`preflight` turns a :class:`~claude_lab._plan.Plan`
into ONE :class:`InputError` listing every problem (unknown or retired model,
``max_tokens`` over the limit, rows over the context window, unsupported
features, sampling parameters the API version refuses), before the journal is
touched. See docs/api_rules.md for the rules and where they come from.
"""

from __future__ import annotations

import difflib
import re
import threading
import typing
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anthropic
import numpy as np

from claude_lab._errors import InputError
from claude_lab._features import LONG_OUTPUT_BETA, LONG_OUTPUT_MAX_TOKENS
from claude_lab._media import prompt_tokens_many

if TYPE_CHECKING:
    from claude_lab._plan import Plan, RunConfig

__all__ = [
    "API_VERSION",
    "SAMPLING",
    "Catalogue",
    "ModelsWarning",
    "catalogue",
    "check_sampling_options",
    "estimate_tokens",
    "preflight",
    "sampling_message",
]

#: The ``anthropic-version`` the installed SDK sends.
API_VERSION: str = getattr(
    getattr(anthropic, "_constants", None), "ANTHROPIC_API_VERSION", "2026-10-21"
)
SAMPLING = ("temperature", "top_p", "top_k")
_REMOVED_IN = "2026-10-21"
_DATED = re.compile(r"^(.+)-\d{8}$")
#: Bytes of encoded request JSON per input token, for the context-window estimate.
BYTES_PER_TOKEN = 4


class ModelsWarning(UserWarning):
    """The Models API could not be asked; model names were checked against the SDK's list."""


@dataclass(frozen=True)
class Catalogue:
    """Model id -> ModelInfo fields (plain dicts); ``source`` is "api" or "sdk"."""

    models: dict[str, dict[str, Any]]
    source: str
    reason: str = ""
    aliases: dict[str, str] = field(default_factory=dict)

    def find(self, model: str) -> dict[str, Any] | None:
        return self.models.get(model) or self.models.get(self.aliases.get(model, ""))

    def suggest(self, model: str) -> list[str]:
        live = {m for m, r in self.models.items() if r.get("lifecycle") != "retired"}
        names = [*live, *(a for a, m in self.aliases.items() if m in live)]
        return difflib.get_close_matches(model, names, n=3, cutoff=0.6)


_CACHE: weakref.WeakKeyDictionary[anthropic.Anthropic, Catalogue] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _aliases(ids: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for mid in ids:
        m = _DATED.match(mid)
        if m:
            out.setdefault(m.group(1), mid)
    return out


def _sdk_catalogue(reason: str) -> Catalogue:
    from anthropic.types.model import Model

    ids = [a for arg in typing.get_args(Model) for a in typing.get_args(arg) if isinstance(a, str)]
    models: dict[str, dict[str, Any]] = {mid: {"id": mid, "lifecycle": "active"} for mid in ids}
    return Catalogue(models, "sdk", reason, _aliases(models))


def catalogue(client: anthropic.Anthropic) -> Catalogue:
    """The models ``client`` can use: one Models API call per client, then cached."""
    with _LOCK:
        found = _CACHE.get(client)
    if found is not None:
        return found
    try:
        page = client.with_options(max_retries=1).models.list(
            limit=1000, lifecycle=["active", "deprecated", "retired"]
        )
        models = {m.id: m.model_dump(mode="json") for m in page}
        cat = Catalogue(models, "api", "", _aliases(models))
    except anthropic.APIConnectionError as exc:
        cat = _sdk_catalogue(f"the API could not be reached ({type(exc).__name__})")
    except anthropic.APIStatusError as exc:
        if exc.status_code in (401, 429) or exc.status_code >= 500:
            cat = _sdk_catalogue(f"the Models API answered {exc.status_code}")
        else:  # 403/404/405: a gateway or proxy without the route
            cat = _sdk_catalogue(f"{client.base_url} has no Models API ({exc.status_code})")
    if cat.source == "sdk":
        warnings.warn(
            f"claude_lab could not read the model catalogue: {cat.reason}. Model names were "
            f"checked against the anthropic SDK's list instead; max_tokens, context-window "
            "and capability checks were skipped.",
            ModelsWarning,
            stacklevel=3,
        )
    with _LOCK:
        _CACHE[client] = cat
    return cat


def sampling_message(names: Sequence[str], via: str = "keyword") -> str:
    """Why sampling parameters are refused, and what to do instead."""
    shown = ", ".join(names)
    where = "as keyword arguments" if via == "keyword" else "in params="
    return (
        f"{shown} {'is' if len(names) == 1 else 'are'} not accepted {where}: the API version "
        f"the anthropic SDK sends (anthropic-version: {API_VERSION}) removed temperature, "
        "top_p and top_k (current models do not use sampling parameters), so every request "
        "would come back errored - after the batch's wait. Remove "
        f"{'it' if len(names) == 1 else 'them'}. For an older model that still honours them, "
        "pass them as params={...} with a client on the older API version: "
        "anthropic.Anthropic(default_headers={'anthropic-version': '2023-06-01'})."
    )


def check_sampling_options(options: Mapping[str, Any]) -> None:
    """InputError for ``temperature=`` / ``top_p=`` / ``top_k=`` passed as options."""
    found = [k for k in SAMPLING if k in options]
    if found:
        raise InputError(sampling_message(found))


def _client_version(client: anthropic.Anthropic) -> str:
    headers = {k.lower(): v for k, v in client.default_headers.items() if isinstance(v, str)}
    return headers.get("anthropic-version", API_VERSION)


def estimate_tokens(params: Sequence[bytes]) -> np.ndarray:
    """Input tokens per encoded request: UTF-8 bytes of its JSON / 4, except that images
    and PDFs count by their size and pages, not by their base64 text (media.prompt_tokens).

    How it errs: it counts JSON keys, quotes and escapes as prompt (a few dozen
    tokens too many per request), and English prose runs about 4 characters a
    token, so it is close there; text that tokenizes densely - code, numbers,
    non-Latin scripts (3 bytes a character but often a token or more each) -
    can count more than this says. Use ``client.messages.count_tokens`` when a
    request is near the limit.
    """
    return prompt_tokens_many(params)


def _rows_text(labels: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(x) for x in labels[:limit])
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return f"{shown}{more}"


def preflight(p: Plan, client: anthropic.Anthropic, *, batch: bool = True) -> None:
    """Raise one InputError listing every model problem of this plan; send nothing else.

    ``batch=False`` for the Messages API (pilot, messages): batch support is not needed.
    """
    cat = catalogue(client)
    vs = p.config.variants
    models = list(dict.fromkeys(v["model"] for v in vs)) if vs else [str(p.config.model)]
    params = p.config.params
    problems: list[str] = []
    version = _client_version(client)
    sampling = [k for k in SAMPLING if k in params]
    if sampling and version >= _REMOVED_IN:
        problems.append(sampling_message(sampling, via="params"))
    records: dict[str, dict[str, Any]] = {}
    for model in models:
        record = cat.find(model)
        if record is None:
            near = cat.suggest(model)
            hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            problems.append(
                f"model {model!r} does not exist (not in the {cat.source} model list).{hint}"
            )
            continue
        if record.get("lifecycle") == "retired":
            near = [n for n in cat.suggest(model) if n != model]
            hint = f" Try {' or '.join(repr(n) for n in near)}." if near else ""
            problems.append(
                f"model {model!r} is retired ({record.get('retires_at') or 'no date'}): "
                f"requests naming it fail.{hint}"
            )
            continue
        records[model] = record
    max_tokens = params.get("max_tokens")
    betas = (p.config.features or {}).get("betas") or ()
    for model, record in records.items():
        limit = record.get("max_tokens")
        if LONG_OUTPUT_BETA in betas and isinstance(limit, int):  # extended output (batch)
            limit = max(limit, LONG_OUTPUT_MAX_TOKENS)
        if isinstance(limit, int) and isinstance(max_tokens, int) and max_tokens > limit:
            problems.append(
                f"max_tokens={max_tokens} is over {model}'s limit of {limit}; pass "
                f"max_tokens={limit} or less."
            )
        problems += _capability_problems(model, record, params, p.config, batch)
    problems += _window_problems(p, records)
    if problems:
        head = (
            "Nothing was sent: "
            + ("this run has a problem" if len(problems) == 1 else f"{len(problems)} problems")
            + " the API would refuse."
        )
        raise InputError(head + "\n- " + "\n- ".join(problems))


def _supported(record: dict[str, Any], *path: str) -> bool | None:
    node: Any = record.get("capabilities")
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    if isinstance(node, dict):
        value = node.get("supported")
        return bool(value) if value is not None else None
    return None


def _capability_problems(
    model: str,
    record: dict[str, Any],
    params: Mapping[str, Any],
    config: RunConfig,
    batch: bool,
) -> list[str]:
    out: list[str] = []
    if record.get("capabilities") is None:
        return out
    if batch and _supported(record, "batch") is False:
        out.append(
            f"{model} does not support the Message Batches API; use df.claude.messages(...) "
            "or another model."
        )
    if (config.output is not None or "output_config" in params) and _supported(
        record, "structured_outputs"
    ) is False:
        out.append(f"{model} does not support structured outputs (output=); use parse= instead.")
    media_kinds = (config.features or {}).get("media") or ()
    for kind, key, what in (("image", "image_input", "images"), ("document", "pdf_input", "PDFs")):
        if kind in media_kinds and _supported(record, key) is False:
            out.append(f"{model} does not accept {what} ({key}); pick a model that does.")
    thinking = params.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") not in (None, "disabled"):
        kind = str(thinking.get("type"))
        if _supported(record, "thinking") is False:
            out.append(f"{model} does not support extended thinking; drop thinking=.")
        elif _supported(record, "thinking", "types", kind) is False:
            out.append(f"{model} does not accept thinking={{'type': {kind!r}}}.")
    return out


def _window_problems(p: Plan, records: Mapping[str, dict[str, Any]]) -> list[str]:
    enc = p.encoded
    if not enc.custom_ids:
        return []
    tokens = estimate_tokens(enc.params)
    vs = p.config.variants
    n = len(p.df)
    out: list[str] = []
    models = [v["model"] for v in vs] if vs else [str(p.config.model)]
    for model in dict.fromkeys(models):
        window = records.get(model, {}).get("max_input_tokens")
        if not isinstance(window, int):
            continue
        ks = [k for k, m in enumerate(models) if m == model]
        uid = np.concatenate([enc.row_uid[k * n : (k + 1) * n] for k in ks]) if vs else enc.row_uid
        pos = np.flatnonzero((uid >= 0) & (tokens[np.maximum(uid, 0)] > window))
        if not len(pos):
            continue
        labels = list(dict.fromkeys(p.df.index[pos % n]))
        worst = int(tokens[uid[pos]].max())
        out.append(
            f"{len(labels)} row(s) have a prompt over {model}'s context window of {window} "
            f"tokens (estimated at {BYTES_PER_TOKEN} bytes of request per token, largest "
            f"~{worst}): rows {_rows_text(labels)}. Shorten them, or drop them from the frame."
        )
    return out
