"""A run, checked and rendered before anything is sent: arguments, templates, requests.

``plan()`` validates every argument, renders and encodes every row and cuts the
requests into batches. Nothing here touches the network or the journal, so a
bad call fails here, spending nothing; ``estimate()`` reports a plan's size and
its worst-case cost.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anthropic
import numpy as np
import orjson
import pandas as pd

from claude_lab import _auto as auto
from claude_lab import _collector as results
from claude_lab import _features as features
from claude_lab import _media as media
from claude_lab import _models as models
from claude_lab import _pricing as pricing
from claude_lab import _progress as progress
from claude_lab import _requests as requests
from claude_lab import _templates as templates
from claude_lab import _tooldefs as tooldefs
from claude_lab import _variants as variants
from claude_lab._errors import InputError

__all__ = [
    "DEFAULT_MAX_QUEUED",
    "Plan",
    "RunConfig",
    "build_params",
    "check_options",
    "clashing_columns",
    "cost_ceiling",
    "estimate_plan",
    "now_iso",
    "plan",
    "poll_schedule",
    "progress_choice",
]


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def poll_schedule(poll_interval: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(poll_interval, (int, float)):
        first = last = float(poll_interval)
    else:
        try:
            first, last = (float(x) for x in poll_interval)
        except (TypeError, ValueError):
            raise InputError(
                f"poll_interval={poll_interval!r}: pass seconds, or (first, ceiling) seconds."
            ) from None
    if not (first > 0 and last >= first):
        raise InputError(
            f"poll_interval={poll_interval!r}: seconds must be > 0 and ceiling >= first."
        )
    return first, last


def cost_ceiling(config: RunConfig, input_tokens: int, n: int) -> float | None:
    """Upper-bound cost of sending n requests (4 characters a token); None for unknown models."""
    model, prices = config.model, config.prices
    if pricing.resolve_price(model, prices) is None:
        return None
    max_out = int(config.params.get("max_tokens", 0)) * n
    ttl = (config.features or {}).get("prompt_cache")
    if ttl:
        # Worst case: every request writes its prompt to the cache (rows run concurrently).
        price = pricing.resolve_price(model, prices)
        assert price is not None
        rate = price.cache_write_1h_rate if ttl == "1h" else price.cache_write_rate
        input_tokens = int(input_tokens * max(rate / price.input, 1.0))
    return pricing.estimate_cost(model, input_tokens, max_out, requests=max(n, 1), prices=prices)


_SETTINGS = (
    "max_tokens",
    "stop_sequences",
    "thinking",
    "tools",
    "tool_choice",
    "metadata",
)


def _output_config(output: Any) -> dict[str, Any] | None:
    if output is None:
        return None
    try:
        schema = anthropic.transform_schema(output)
    except Exception as exc:
        raise InputError(
            f"output= must be a pydantic model class or a JSON-schema dict ({exc})."
        ) from exc
    return {"format": {"type": "json_schema", "schema": schema}}


def build_params(
    model: str | None, settings: Mapping[str, Any], extra: Mapping[str, Any] | None, output: Any
) -> dict[str, Any]:
    """The Messages params every row shares, checked before anything is sent."""
    if not isinstance(model, str) or not model:
        raise InputError(
            "Pass model=..., e.g. model='claude-haiku-4-5'. Known models: "
            + ", ".join(pricing.known_models())
        )
    base: dict[str, Any] = {"model": model}
    for key in _SETTINGS:
        value = settings.get(key)
        if value is not None:
            base[key] = value
    mt = base.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        raise InputError(f"max_tokens must be a whole number >= 1, got {mt!r}.")
    stops = base.get("stop_sequences")
    if stops is not None and (isinstance(stops, str) or not all(isinstance(s, str) for s in stops)):
        raise InputError("stop_sequences must be a list of strings.")
    if stops is not None:
        base["stop_sequences"] = list(stops)
    if extra:
        if not isinstance(extra, Mapping):
            raise InputError("params= must be a dict of extra Messages API fields.")
        clash = sorted(set(extra) & (set(base) | {"messages", "system", "stream"}))
        if clash:
            raise InputError(
                f"params= repeats {clash}; pass those as keyword arguments instead "
                "(messages and system come from the templates; batches cannot stream)."
            )
        base.update(extra)
    oc = _output_config(output)
    if oc is not None:
        base["output_config"] = {**base.get("output_config", {}), **oc}
    try:
        orjson.dumps(base)
    except TypeError as exc:
        raise InputError(f"The request settings are not JSON-serialisable: {exc}.") from None
    return base


@dataclass(frozen=True)
class RunConfig:
    """A run's settings, fixed once checked: what the later stages read (and the
    ledger keeps, JSON-able parts only, for re-attaching)."""

    name: str
    model: str  # "a, b" for a run of several models (see ``variants``)
    templates: Any
    params: Mapping[str, Any]  # the Messages params every request shares, less the model
    created_at: str
    output: Any = None
    parse: Callable[[str], Any] | str | None = None
    prices: Mapping[str, Any] | None = None
    max_queued: int | None = None
    variants: list[dict[str, Any]] | None = None
    features: Mapping[str, Any] | None = None
    endpoint: str | None = None  # the API's base URL, once a client is known

    @property
    def betas(self) -> list[str]:
        return list((self.features or {}).get("betas") or ())

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Plan:
    """Everything checked and rendered for a run, before any request is sent."""

    df: pd.DataFrame
    encoded: requests.Encoded
    chunks: list[requests.Chunk]
    config: RunConfig
    cache: bool
    poll: tuple[float, float]
    make_display: Callable[[Callable[[], None] | None], progress.Display]


# Requests of one job allowed in the API's batch queue at once. The organisation's
# queue holds about 200k requests at the lowest tier (300k, 500k above), shared by
# all its jobs: 100k (one full batch) leaves room for others on every tier, and a
# bigger job goes in waves of it instead of being refused with 429.
DEFAULT_MAX_QUEUED = 100_000


def plan(
    df: pd.DataFrame,
    prompt: templates.PromptArg,
    *,
    system: Any = None,
    model: str | Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    epochs: int = 1,
    max_tokens: int = 1024,
    stop_sequences: Sequence[str] | None = None,
    thinking: int | str | Mapping[str, Any] | None = None,
    tools: Sequence[Any] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    output: Any = None,
    parse: Callable[[str], Any] | str | None = None,
    name: str = "claude",
    on_missing: templates.OnMissing = "skip",
    progress: str | None = "auto",
    cache: bool = True,
    poll_interval: float | tuple[float, float] = (1.0, 30.0),
    prices: Mapping[str, tuple[float, float]] | None = None,
    overwrite: bool = False,
    max_queued: int | None = DEFAULT_MAX_QUEUED,
    images: str | Sequence[str] | None = None,
    documents: str | Sequence[str] | None = None,
    prompt_cache: str | None = None,
    long_output: bool = False,
) -> Plan:
    """Check every argument and template, render and encode every row; send nothing."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"Expected a pandas DataFrame, got {type(df).__name__}.")
    if not isinstance(name, str) or not name.isidentifier():
        raise InputError(f"name={name!r} must be a valid identifier such as 'claude'.")
    if not isinstance(cache, bool):
        raise InputError(f"cache must be True or False, got {cache!r}.")
    if parse is not None and not (callable(parse) or isinstance(parse, str)):
        raise InputError("parse= must be a callable, 'json', or a regular expression string.")
    if isinstance(parse, str) and parse != "json":
        try:
            re.compile(parse)
        except re.error as exc:
            raise InputError(f"parse={parse!r} is not a valid regular expression: {exc}.") from None
    if not isinstance(overwrite, bool):
        raise InputError(f"overwrite must be True or False, got {overwrite!r}.")
    if max_queued is not None and (
        not isinstance(max_queued, int) or isinstance(max_queued, bool) or max_queued < 1
    ):
        raise InputError(
            f"max_queued={max_queued!r}: pass a whole number of requests >= 1 (how many of "
            "this job's requests may wait in the API's batch queue at once), or None."
        )
    try:
        pricing.validate_prices(prices)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    tools = tooldefs.definitions(tools)
    tool_choice = tooldefs.choice_param(tool_choice, tools)
    _check_shapes(metadata=metadata, tools=tools)
    poll = poll_schedule(poll_interval)
    make_display = progress_choice(progress)
    settings = {
        "max_tokens": max_tokens,
        "stop_sequences": stop_sequences,
        "thinking": thinking,
        "tools": tools,
        "tool_choice": tool_choice,
        "metadata": metadata,
    }
    vs = variants.variants(model, names, epochs, name)
    models: list[Any] = list(dict.fromkeys(v["model"] for v in vs)) if vs else [model]
    bases = {m: build_params(m, {**settings, "thinking": None}, params, output) for m in models}
    base = bases[models[0]]
    compiled = templates.compile_prompt(prompt, system)
    spec = media.MediaSpec.build(images, documents, compiled)
    extras = _features(bases, compiled, spec, thinking, tools, tool_choice, long_output)
    extras["prompt_cache"] = prompt_cache
    if output is not None and extras.get("tool_schema"):
        raise InputError(
            "output= and a forced tool (tool_choice) both ask for one column per field; "
            "pass one of them."
        )
    fields_schema = output if output is not None else extras.get("tool_schema")
    clashes = clashing_columns(df, name, fields_schema) if vs is None else []
    for prefix in dict.fromkeys(v["name"] for v in vs or ()):
        clashes += [c for c in clashing_columns(df, prefix, fields_schema) if c not in clashes]
    if vs is not None and epochs > 1 and variants.EPOCH_COLUMN in df.columns:
        clashes.append(variants.EPOCH_COLUMN)
    if clashes and not overwrite and vs is not None:
        raise InputError(
            f"The DataFrame already has the result column(s) {clashes} that this call would "
            "write, e.g. from an earlier run. Pass names=[...] (one new prefix per model) to "
            "keep both, or overwrite=True to replace them."
        )
    if clashes and not overwrite:
        raise InputError(
            f"The DataFrame already has the result column(s) {clashes} that this call would "
            f"write, e.g. from an earlier run. Pass name={_free_name(df, name, output)!r} (or "
            "another prefix) to keep both, or overwrite=True to replace them."
        )
    per_model = {
        m: _render(df, compiled, b, on_missing, spec, prompt_cache) for m, b in bases.items()
    }
    if vs is None:
        encoded = requests.encode(per_model.pop(models[0]))
    else:
        encoded = requests.encode(
            [p for v in vs for p in per_model[v["model"]]],
            [v["epoch"] for v in vs for _ in range(len(df))],
        )
    del per_model
    # Each request is named by the first row that asks for it (u is numbered first-seen).
    sent = np.flatnonzero(encoded.row_uid >= 0)
    _, first = np.unique(encoded.row_uid[sent], return_index=True)
    # An Index, not a list: 100k labels as Python objects only to name a too-large row.
    labels_by_uid = df.index.take(sent[first] % max(len(df), 1))
    # Every request must fit before anything is sent, even those the cache may answer.
    n = len(encoded.custom_ids)
    chunks = requests.split(encoded.sizes, np.arange(n), row_labels=labels_by_uid)
    extras = {k: v for k, v in extras.items() if v}
    config = RunConfig(
        name=name,
        model=str(model) if vs is None else ", ".join(models),
        templates=compiled.describe(),
        params={k: v for k, v in base.items() if k != "model"},
        created_at=now_iso(),
        output=output,
        parse=parse,
        prices=prices,
        max_queued=max_queued,
        variants=vs,
        features=extras or None,
    )
    # The templates have read the old columns; the result replaces them.
    frame = df.drop(columns=clashes) if clashes else df
    return Plan(frame, encoded, chunks, config, cache, poll, make_display)


def _capabilities(model: str) -> Mapping[str, Any] | None:
    """The model's capabilities (ModelCapabilities shape) when a catalogue knows them."""
    return None


def _features(
    bases: Mapping[str, dict[str, Any]],
    compiled: templates.Prompt,
    spec: media.MediaSpec,
    thinking: Any,
    tools: list[dict[str, Any]] | None,
    tool_choice: Mapping[str, Any] | None,
    long_output: bool,
) -> dict[str, Any]:
    """Thinking, media, prefill and extended output checked for every model of the run;
    -> what the result table and the create call need to know."""
    betas: list[str] = []
    thinks = False
    for model, base in bases.items():
        caps = _capabilities(model)
        t = features.thinking_param(
            thinking, model=model, max_tokens=int(base["max_tokens"]), capabilities=caps
        )
        if t is not None:
            base["thinking"] = t
            thinks = thinks or t.get("type") in ("enabled", "adaptive")
            if tool_choice and tool_choice.get("type") in ("any", "tool"):
                raise InputError(
                    "thinking= cannot be combined with a forced tool_choice (the API refuses "
                    "it); use tool_choice='auto' or drop thinking."
                )
        betas = features.betas_for(
            long_output=long_output,
            model=model,
            max_tokens=int(base["max_tokens"]),
            capabilities=caps,
        )
        features.check_prefill(compiled.messages, model=model, thinking=t, capabilities=caps)
        media.check_capabilities(
            model,
            caps,
            images=bool(spec.images) or any(_marker_kinds(compiled, "image")),
            documents=bool(spec.documents) or any(_marker_kinds(compiled, "document")),
        )
    kinds = [
        kind
        for kind, named in (("image", spec.images), ("document", spec.documents))
        if named or any(_marker_kinds(compiled, kind))
    ]
    return {
        "media": kinds,
        "tools": bool(tools),
        "thinking": thinks,
        "tool_schema": tooldefs.forced_schema(tools, tool_choice),
        "betas": betas,
    }


def _marker_kinds(compiled: templates.Prompt, kind: str) -> list[bool]:
    return [
        isinstance(b, Mapping) and b.get("type") == kind and "column" in b
        for _, content in compiled.messages or ()
        if isinstance(content, list)
        for b in content
    ]


def _render(
    df: pd.DataFrame,
    compiled: templates.Prompt,
    base: Mapping[str, Any],
    on_missing: templates.OnMissing,
    spec: media.MediaSpec,
    prompt_cache: str | None,
) -> list[Any]:
    """Every row's params (None: skipped): canonical bytes when nothing is added per row
    afterwards (no dict per row, the cheap path), else dicts with media and cache marker."""
    if not spec and prompt_cache is None:
        fast = templates.render_json(df, compiled, base, on_missing)
        if fast is not None:
            return fast
    rows: list[Any] = templates.render(df, compiled, base, on_missing).params
    _attach(df, rows, compiled, spec, on_missing, prompt_cache)
    return rows


def _attach(
    df: pd.DataFrame,
    rows: list[dict[str, Any] | None],
    compiled: templates.Prompt,
    spec: media.MediaSpec,
    on_missing: str,
    prompt_cache: str | None,
) -> None:
    """Media blocks and the prompt-cache marker, placed into rendered rows in place."""
    media.attach(df, rows, spec, on_missing)
    features.mark_shared_prefix(
        rows, compiled, prompt_cache, media_in_last_turn=bool(spec.images or spec.documents)
    )


def clashing_columns(df: pd.DataFrame, name: str, output: Any = None) -> list[str]:
    """The input's columns a run named ``name`` would write over, in the input's order."""
    ours = set(results.result_columns(name, output))
    return [c for c in df.columns if isinstance(c, str) and c in ours]


def _free_name(df: pd.DataFrame, name: str, output: Any) -> str:
    base = name.rstrip("0123456789") or name
    k = 2
    while clashing_columns(df, f"{base}{k}", output):
        k += 1
    return f"{base}{k}"


def _check_shapes(**settings: Any) -> None:
    """Settings that must be JSON objects (or a list of them), checked before the journal."""
    for key, value in settings.items():
        if value is None:
            continue
        if key == "tools":
            ok = not isinstance(value, (str, bytes, Mapping)) and all(
                isinstance(t, Mapping) for t in value
            )
            if not ok:
                raise InputError(f"tools= must be a list of tool definitions (dicts): {value!r}.")
        elif not isinstance(value, Mapping):
            raise InputError(f"{key}= must be a dict (a JSON object), got {value!r}.")


def check_options(options: Mapping[str, Any], where: str, also: Sequence[str] = ()) -> None:
    """TypeError for a keyword ``where`` does not take, naming the nearest one it does."""
    known = [
        name
        for name, param in inspect.signature(plan).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    known += list(also)
    models.check_sampling_options(options)  # removed options get their own explanation
    for key in options:
        if key in known:
            continue
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}=?" if near else "its options are " + ", ".join(known)
        raise TypeError(f"{where}() got an unexpected keyword argument {key!r}; {hint}")


def estimate_plan(p: Plan, todo: np.ndarray | None = None) -> dict[str, Any]:
    """What a run of plan ``p`` would send: rows, unique requests, batches, bytes, and an
    upper-bound cost, of the requests ``todo`` (u; None: all of them).

    Input tokens are estimated at four characters per token; output at ``max_tokens``
    per request, so the cost is a ceiling (batch prices). ``cached_requests`` is how
    many requests are left out of ``todo`` (their replies are in the journal, or a batch
    already carries them): they cost this run nothing.
    """
    df, enc = p.df, p.encoded
    n = len(enc.custom_ids)
    uids = np.arange(n, dtype=np.int64) if todo is None else np.asarray(todo, dtype=np.int64)
    params = enc.params if len(uids) == n else [enc.params[u] for u in uids.tolist()]
    chunks = p.chunks if len(uids) == n else requests.split(enc.sizes, uids)
    in_tokens = int(media.prompt_tokens_many(params).sum()) if len(uids) else 0
    out_tokens = int(p.config.params.get("max_tokens", 0)) * len(uids)
    ceiling = variants.ceiling(p.config, enc.params, enc.row_uid, uids) if len(uids) else 0.0
    return {
        "rows": len(df),
        "skipped": int((enc.row_uid[: len(df)] < 0).sum()),
        "requests": n,
        "cached_requests": n - len(uids),
        "batches": len(chunks),
        "bytes": sum(c.body_bytes for c in chunks),
        "input_tokens_estimate": in_tokens,
        "max_output_tokens": out_tokens,
        "max_cost_usd": ceiling,
    }


def progress_choice(choice: str | None) -> Callable[[Callable[[], None] | None], progress.Display]:
    """Validate ``progress=`` now (before sending); build the display later."""
    if choice not in auto.PROGRESS_CHOICES or isinstance(choice, bool):
        raise InputError(
            f"progress={choice!r} is not one of 'auto', 'widget', 'console', 'log' or None."
        )

    def make(on_cancel: Callable[[], None] | None) -> progress.Display:
        return auto.make_display(choice, on_cancel=on_cancel or (lambda: None))

    return make
