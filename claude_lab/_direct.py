"""Rows straight through the Messages API: ``df.claude.pilot`` and ``df.claude.messages``.

The same plan, checks, encoded requests and result columns as a batch run, but
each request is POSTed to ``/v1/messages`` on a small thread pool (bounded
concurrency; 429/529/5xx and dropped connections are retried after the
``retry-after`` the API asks for). Replies are wrapped as batch result lines, so
``results.ResultAccumulator`` builds the columns; costs are at standard prices.

``pilot`` sends a seeded sample and projects the full batch's cost from the
sample's real token usage; nothing is journaled and no batch is created.
``messages`` runs the whole frame, journaled and cached like a batch run.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from typing import Any

import anthropic
import httpx2
import numpy as np
import orjson
import pandas as pd

from claude_lab import _collector as results
from claude_lab import _models as models
from claude_lab import _pricing as pricing
from claude_lab import _progress as progress
from claude_lab._errors import InputError
from claude_lab._gateway import retry_after as _retry_after
from claude_lab._plan import Plan, now_iso, plan
from claude_lab._version import __version__

__all__ = ["messages", "pilot", "project_batch_cost", "send"]

_ATTEMPTS = 8
# A 429/529 is a refusal that says when to come back and costs nothing; a busy
# organisation can refuse one row many times in a row, so refusals get a budget of
# their own rather than eating the attempts meant for real failures.
_REFUSALS = 100
_MAX_WAIT_S = 60.0


def _errored(custom_id: str, kind: str, message: str, request_id: str | None = None) -> bytes:
    error = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id:
        error["request_id"] = request_id
    return orjson.dumps({"custom_id": custom_id, "result": {"type": "errored", "error": error}})


def _one(api: anthropic.Anthropic, custom_id: str, body: bytes) -> bytes:
    """POST one request; the reply (or the API's error) as a batch result line."""
    delay = 0.5
    attempt = refusals = 0
    while True:
        try:
            resp = api.post(
                "/v1/messages",
                cast_to=httpx2.Response,
                content=body,
                options={"headers": {"Content-Type": "application/json"}},
            )
            return (
                b'{"custom_id":"'
                + custom_id.encode()
                + b'","result":{"type":"succeeded","message":'
                + resp.read()
                + b"}}"
            )
        except anthropic.APIStatusError as exc:
            code = exc.status_code
            refused = code in (429, 529) and refusals < _REFUSALS
            retryable = code in (408, 409, 429) or code >= 500
            if not refused and (not retryable or attempt == _ATTEMPTS - 1):
                err: Any = exc.body
                inner = err.get("error") if isinstance(err, dict) else None
                kind = inner.get("type") if isinstance(inner, dict) else None
                message = inner.get("message") if isinstance(inner, dict) else str(exc)
                return _errored(custom_id, str(kind or "api_error"), str(message), exc.request_id)
            wait = _retry_after(exc.response) or delay
            refusals, attempt = (refusals + 1, attempt) if refused else (refusals, attempt + 1)
        except anthropic.APIConnectionError as exc:
            if attempt == _ATTEMPTS - 1:
                return _errored(custom_id, "api_error", f"connection failed: {exc}")
            wait = delay
            attempt += 1
        time.sleep(min(wait, _MAX_WAIT_S))
        delay = min(delay * 2, 8.0)


def send(
    client: anthropic.Anthropic,
    custom_ids: Sequence[str],
    bodies: Sequence[bytes],
    *,
    concurrency: int = 8,
    on_done: Callable[[int, bytes], None] | None = None,
) -> list[bytes]:
    """POST every body to /v1/messages, ``concurrency`` at a time; result lines in input order.

    Per-request failures are errored lines, never exceptions. The SDK's own retries
    are off: this loop honours ``retry-after``: up to 100 refusals (429/529) and 8 other
    failed attempts per request.
    """
    api = client.with_options(max_retries=0)
    out: list[bytes | None] = [None] * len(bodies)
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {
            pool.submit(_one, api, cid, body): k
            for k, (cid, body) in enumerate(zip(custom_ids, bodies))
        }
        for future in concurrent.futures.as_completed(futures):
            k = futures[future]
            out[k] = future.result()
            if on_done is not None:
                on_done(k, out[k])  # type: ignore[arg-type]
    return [line for line in out if line is not None]


def _check(options: dict[str, Any], concurrency: int) -> None:
    if isinstance(options.get("model"), (list, tuple)) or options.get("epochs", 1) != 1:
        raise InputError(
            "pilot() and messages() run one model once per row; for model=[...] or epochs=, "
            "call them once per model, or use df.claude.batch(...)."
        )
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise InputError(f"concurrency={concurrency!r}: pass a whole number >= 1.")


def _standard_prices(cols: dict[str, Any], name: str) -> None:
    # The columns price at batch rates; a Messages call costs the list price.
    key = f"{name}_cost_usd"
    cols[key] = cols[key] / pricing.BATCH_DISCOUNT


def project_batch_cost(p: Plan, sample: Sequence[int], lines: Sequence[bytes]) -> dict[str, Any]:
    """The full batch's cost projected from a sample's real usage.

    Input tokens of every request = its request bytes x the sample's input tokens per
    request byte; output tokens = the sample's mean per reply; batch prices, no cache.
    """
    tokens_in = tokens_out = sample_bytes = 0
    ok = 0
    for u, line in zip(sample, lines):
        result = orjson.loads(line).get("result") or {}
        if result.get("type") != "succeeded":
            continue
        usage = result["message"].get("usage") or {}
        tokens_in += int(usage.get("input_tokens") or 0)
        tokens_in += int(usage.get("cache_read_input_tokens") or 0)
        tokens_in += int(usage.get("cache_creation_input_tokens") or 0)
        tokens_out += int(usage.get("output_tokens") or 0)
        sample_bytes += len(p.encoded.params[u])
        ok += 1
    model = str(p.config.model)
    n = len(p.encoded.custom_ids)
    projection: dict[str, Any] = {
        "model": model,
        "requests": n,
        "sampled": len(sample),
        "sample_succeeded": ok,
        "tokens_per_byte": None,
        "mean_output_tokens": None,
        "projected_batch_cost_usd": None,
        "method": (
            "input tokens of each request = its request bytes x the pilot's input tokens per "
            "byte; output tokens = the pilot's mean per reply; batch prices (50% of list); "
            "no prompt-cache hits assumed"
        ),
    }
    if not ok or not n:
        return projection
    ratio = tokens_in / max(sample_bytes, 1)
    mean_out = tokens_out / ok
    sizes = models.estimate_tokens(p.encoded.params) * models.BYTES_PER_TOKEN
    per = pricing.cost(
        model,
        sizes * ratio,
        np.full(n, mean_out),
        batch=True,
        prices=p.config.prices,
        warn=False,
    )
    total = float(np.nansum(per)) if not np.isnan(per).all() else None
    projection.update(
        tokens_per_byte=ratio, mean_output_tokens=mean_out, projected_batch_cost_usd=total
    )
    return projection


def _summary(cols: dict[str, Any], name: str, projection: dict[str, Any]) -> str:
    spent = float(pd.Series(cols[f"{name}_cost_usd"]).sum())
    statuses = pd.Series(cols[f"{name}_status"]).value_counts().to_dict()
    status = ", ".join(f"{v} {k}" for k, v in statuses.items())
    cost = projection["projected_batch_cost_usd"]
    projected = (
        f"~${cost:,.4f} at batch prices" if cost is not None else "unknown (no price or no reply)"
    )
    return (
        f"Pilot: {projection['sampled']} request(s) via the Messages API ({status}), "
        f"${spent:,.4f} at standard prices.\n"
        f"Projected full batch: {projection['requests']} request(s), {projected} "
        f"({projection['method']})."
    )


def pilot(
    df: pd.DataFrame,
    prompt: Any,
    *,
    n: int = 5,
    seed: int = 0,
    rows: Sequence[Any] | None = None,
    client: anthropic.Anthropic | None = None,
    concurrency: int = 8,
    **options: Any,
) -> pd.DataFrame:
    """Send ``n`` sampled rows (seeded; ``rows=`` labels to pick them) through the Messages API.

    Returns those rows with the same result columns as a batch run plus
    ``<name>_request`` (the rendered request JSON), costs at standard prices, and
    prints the projected cost of the full batch (also in ``attrs["claude_lab"]``).
    Nothing is journaled; no batch is created.
    """
    from claude_lab._gateway import resolve_client

    _check(options, concurrency)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"n={n!r}: pass how many rows to try, a whole number >= 1.")
    options.setdefault("progress", None)
    p = plan(df, prompt, **options)
    name = p.config.name
    row_uid = p.encoded.row_uid[: len(p.df)]
    if rows is not None:
        positions = p.df.index.get_indexer(pd.Index(list(rows)))
        missing = [r for r, k in zip(rows, positions) if k < 0]
        if missing:
            raise InputError(f"rows={missing!r} are not in the frame's index.")
    else:
        pool = np.flatnonzero(row_uid >= 0)
        rng = np.random.default_rng(seed)
        positions = np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))
    client = resolve_client(client)
    models.preflight(p, client, batch=False)
    uids = list(dict.fromkeys(int(u) for u in row_uid[positions] if u >= 0))
    cids = [p.encoded.custom_ids[u] for u in uids]
    lines = send(client, cids, [p.encoded.params[u] for u in uids], concurrency=concurrency)
    acc = results.ResultAccumulator(p.encoded.custom_ids)
    for line in lines:
        acc.feed(line)
    sub_uid = row_uid[positions]
    cols = acc.columns(
        sub_uid,
        prefix=name,
        output=p.config.output,
        parse=p.config.parse,
        prices=p.config.prices,
    )
    _standard_prices(cols, name)
    out = p.df.iloc[positions].copy()
    for key, values in cols.items():
        out[key] = values
    out[f"{name}_request"] = pd.array(
        [p.encoded.params[u].decode() if u >= 0 else None for u in sub_uid], dtype="string"
    )
    projection = project_batch_cost(p, uids, lines)
    out.attrs["claude_lab"] = {
        "mode": "pilot",
        "package": f"claude-lab {__version__}",
        "model": p.config.model,
        "params": p.config.params,
        "templates": p.config.templates,
        "endpoint": str(client.base_url),
        "created_at": p.config.created_at,
        "finished_at": now_iso(),
        "projection": projection,
    }
    print(_summary(cols, name, projection), flush=True)
    return out


def messages(
    df: pd.DataFrame,
    prompt: Any,
    *,
    client: anthropic.Anthropic | None = None,
    concurrency: int = 8,
    **options: Any,
) -> pd.DataFrame:
    """Every row through the Messages API (standard prices, answers in seconds).

    Same checks, columns (status and error included), journal entry and result cache
    as ``df.claude.batch``; ``concurrency`` requests at a time; 429 ``retry-after``
    honoured; a progress display.
    """
    from claude_lab import _ledger as journal_mod
    from claude_lab import _requests as requests_mod
    from claude_lab._gateway import resolve_client

    _check(options, concurrency)
    p = plan(df, prompt, **options)
    enc, config = p.encoded, p.config
    name = config.name
    frame = p.df
    acc = results.ResultAccumulator(enc.custom_ids)
    job_id = None
    if enc.custom_ids:
        client = resolve_client(client)
        models.preflight(p, client, batch=False)
        endpoint = str(client.base_url)
        config = config.replace(endpoint=endpoint)
        jnl = journal_mod.open_journal()
        fp = requests_mod.fingerprint(enc.custom_ids, endpoint + "#messages")
        _, job_id = jnl.find_or_create_job(
            fp,
            endpoint,
            model=str(config.model),
            templates=config.templates,
            params=config.params,
            name=name,
            row_count=len(frame),
            request_count=len(enc.custom_ids),
            package_version=__version__,
            meta={"cache": p.cache, "mode": "messages"},
            rows=(list(frame.index), [enc.custom_ids[u] if u >= 0 else None for u in enc.row_uid]),
            requests=(enc.custom_ids, enc.params),
        )
        if p.cache:
            for _, pos, lines in jnl.results(enc.custom_ids, endpoint, succeeded_only=True):
                acc.feed_many(lines, uids=pos, cached=True)
        todo = [u for u in range(len(enc.custom_ids)) if not acc.filled[u]]
        display = p.make_display(None)
        started = time.monotonic()
        done = {"succeeded": 0, "errored": 0}
        cached = int(len(enc.custom_ids) - len(todo))

        def snap(final: bool) -> progress.Snapshot:
            finished = done["succeeded"] + done["errored"]
            return progress.Snapshot(
                job_id=str(job_id),
                batch_ids=(),
                status="ended" if final else "in_progress",
                counts={
                    "processing": len(todo) - finished,
                    "succeeded": done["succeeded"],
                    "errored": done["errored"],
                    "canceled": 0,
                    "expired": 0,
                },
                requests=len(todo),
                rows=len(frame),
                cached=cached,
                skipped=int((enc.row_uid < 0).sum()),
                elapsed=time.monotonic() - started,
                counts_move=True,
                cost_usd=None,
                estimated_cost_usd=None,
                error=None,
                done=final,
            )

        show = getattr(display, "show", None)
        if callable(show):  # a notebook display goes in the calling cell
            show(snap(False))

        def on_done(k: int, line: bytes) -> None:
            key = "succeeded" if b'"type":"succeeded"' in line[:200] else "errored"
            done[key] += 1
            display.update(snap(False))

        lines = send(
            client,
            [enc.custom_ids[u] for u in todo],
            [enc.params[u] for u in todo],
            concurrency=concurrency,
            on_done=on_done,
        )
        for line in lines:
            acc.feed(line)
        if lines:
            pseudo = f"messages_{job_id}_{int(time.time() * 1000)}"
            sub = jnl.begin_submission(str(job_id), 0, len(todo), 0, [])
            jnl.finish_submission(
                sub, pseudo, now_iso(), now_iso(), [enc.custom_ids[u] for u in todo]
            )
            jnl.update_batch(
                pseudo,
                "ended",
                {"processing": 0, **done, "canceled": 0, "expired": 0},
                now_iso(),
            )
            jnl.store_results(
                pseudo,
                [(enc.custom_ids[u], acc.status_of(u), line) for u, line in zip(todo, lines)],
            )
            jnl.mark_fetched(pseudo)
        jnl.set_job_status(str(job_id), "ended")
        display.close(snap(True))
    cols = acc.columns(
        enc.row_uid,
        prefix=name,
        output=config.output,
        parse=config.parse,
        prices=config.prices,
    )
    _standard_prices(cols, name)
    out = frame.copy()
    for key, values in cols.items():
        out[key] = values
    status = cols[f"{name}_status"]
    out.attrs["claude_lab"] = {
        "mode": "messages",
        "job_id": job_id,
        "package": f"claude-lab {__version__}",
        "model": config.model,
        "templates": config.templates,
        "params": config.params,
        "name": name,
        "endpoint": config.endpoint,
        "created_at": config.created_at,
        "finished_at": now_iso(),
        "rows": len(out),
        "requests": len(enc.custom_ids),
        "status_counts": {str(k): int(v) for k, v in pd.Series(status).value_counts().items()},
        "cost_usd": float(pd.Series(cols[f"{name}_cost_usd"]).sum()),
    }
    return out
