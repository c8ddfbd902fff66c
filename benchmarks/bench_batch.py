"""100,000 rows end to end against the emulator, phase by phase, with same-run baselines.

    python benchmarks/bench_batch.py [--rows 100000]

Prints, per phase (render, encode, submit, poll, results -> columns), the time and
the peak traced memory, then ratios measured in this run on the same results
file: our results path against a bare orjson parse of the file and against the
SDK's typed path (``client.messages.batches.results()`` turned into the same
columns). Times are reported, never asserted. The emulator runs as a separate
process (fastest mode) so its CPU does not count against ours.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import anthropic
import numpy as np
import orjson
import pandas as pd

from claude_lab import _collector as results
from claude_lab import _requests as requests
from claude_lab import _templates as templates
from claude_lab._plan import build_params
from claude_lab.emulator._process import spawned

PROMPT = "Question: What is {a} + {b}?\nAnswer with a single number."


def emulator() -> AbstractContextManager[str]:
    """The emulator in its own process, fastest mode: batches end as they are made."""
    return spawned("--request-seconds", "0", "--concurrency", "1000000")


def measure(fn: Callable[[], Any], memory: bool) -> tuple[Any, float, float]:
    """(result, seconds, peak MiB traced); memory tracing is off in the timing pass."""
    gc.collect()
    if memory:
        tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = 0.0
    if memory:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out, dt, peak


def sdk_columns(client: anthropic.Anthropic, batch_id: str) -> dict[str, Any]:
    """The straightforward SDK way: typed objects per line, then the same columns."""
    ids, text, status, error, stop, tin, tout, cr, cw, model = ([] for _ in range(10))
    for item in client.messages.batches.results(batch_id):
        ids.append(item.custom_id)
        r = item.result
        status.append(r.type)
        if r.type == "succeeded":
            m = r.message
            text.append("".join(b.text for b in m.content if b.type == "text"))
            stop.append(m.stop_reason)
            tin.append(m.usage.input_tokens)
            tout.append(m.usage.output_tokens)
            cr.append(m.usage.cache_read_input_tokens)
            cw.append(m.usage.cache_creation_input_tokens)
            model.append(m.model)
            error.append(None)
        else:
            for lst in (text, stop, tin, tout, cr, cw, model):
                lst.append(None)
            err = getattr(r, "error", None)
            error.append(f"{err.error.type}: {err.error.message}" if err is not None else r.type)
    return {
        "custom_id": pd.array(ids, dtype="string"),
        "claude": pd.array(text, dtype="string"),
        "status": pd.array(status, dtype="string"),
        "error": pd.array(error, dtype="string"),
        "stop": pd.array(stop, dtype="string"),
        "in": pd.array(tin, dtype="Int64"),
        "out": pd.array(tout, dtype="Int64"),
        "cr": pd.array(cr, dtype="Int64"),
        "cw": pd.array(cw, dtype="Int64"),
        "model": pd.array(model, dtype="string"),
    }


def run(rows: int, memory: bool) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.integers(0, 1000, rows), "b": rng.integers(0, 1000, rows)})
    figures: dict[str, tuple[float, float]] = {}
    with emulator() as base_url:
        client = anthropic.Anthropic(base_url=base_url, api_key="bench", timeout=600)
        base = build_params("claude-haiku-4-5", {"max_tokens": 16}, None, None)
        prompt = templates.compile_prompt(PROMPT)
        rendered, dt, peak = measure(lambda: templates.render(df, prompt, base), memory)
        figures["render"] = (dt, peak)

        params = rendered.params

        def enc() -> tuple[requests.Encoded, list[requests.Chunk]]:
            e = requests.encode(params)
            return e, requests.split(e.sizes, np.arange(len(e.custom_ids)))

        (encoded, chunks), dt, peak = measure(enc, memory)
        figures["encode"] = (dt, peak)
        assert len(chunks) == 1, "benchmark expects one batch"

        def submit() -> Any:
            body = requests.request_body(encoded.custom_ids, encoded.params, chunks[0])
            return client.post(
                "/v1/messages/batches",
                cast_to=anthropic.types.messages.MessageBatch,
                content=body,
                options={"headers": {"Content-Type": "application/json"}},
            )

        batch, dt, peak = measure(submit, memory)
        figures["submit"] = (dt, peak)

        def poll() -> Any:
            while True:
                b = client.messages.batches.retrieve(batch.id)
                if b.processing_status == "ended":
                    return b
                time.sleep(0.05)

        ended, dt, peak = measure(poll, memory)
        figures["poll"] = (dt, peak)

        def ours() -> dict[str, Any]:
            acc = results.ResultAccumulator(encoded.custom_ids)
            acc.begin_pass(batch_id=batch.id)
            with client.messages.batches.with_streaming_response.results(batch.id) as resp:
                for line in results.iter_lines(resp.iter_bytes(1 << 16)):  # as job.py reads it
                    acc.feed(line)
            return acc.columns(encoded.row_uid)

        cols, dt, peak = measure(ours, memory)
        figures["results -> columns"] = (dt, peak)
        table = pd.DataFrame(cols)
        figures["final table"] = (0.0, table.memory_usage(deep=True).sum() / 2**20)

        raw = client.get(ended.results_url or "", cast_to=bytes)
        _, dt, _ = measure(lambda: [orjson.loads(x) for x in raw.splitlines()], False)
        figures["baseline: bare orjson parse"] = (dt, 0.0)

        def ours_offline() -> dict[str, Any]:
            acc = results.ResultAccumulator(encoded.custom_ids)
            acc.begin_pass(batch_id=batch.id)
            for line in results.iter_lines(iter([raw])):
                acc.feed(line)
            return acc.columns(encoded.row_uid)

        _, dt, _ = measure(ours_offline, False)
        figures["ours on the same bytes"] = (dt, 0.0)
        _, dt, _ = measure(lambda: sdk_columns(client, batch.id), False)
        figures["baseline: SDK typed path"] = (dt, 0.0)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    timing = run(args.rows, memory=False)
    mem = run(args.rows, memory=True)
    print(f"{args.rows:,} rows, one batch, emulator in its fastest mode\n")
    print(f"{'phase':32} {'seconds':>9} {'peak MiB':>10}")
    for phase in ("render", "encode", "submit", "poll", "results -> columns"):
        print(f"{phase:32} {timing[phase][0]:9.3f} {mem[phase][1]:10.1f}")
    table_mib = mem["final table"][1]
    print(f"{'final table (memory)':32} {'':9} {table_mib:10.1f}\n")
    render_encode = timing["render"][0] + timing["encode"][0]
    ours = timing["results -> columns"][0]
    bare = timing["baseline: bare orjson parse"][0]
    offline = timing["ours on the same bytes"][0]
    sdk = timing["baseline: SDK typed path"][0]
    print(f"render + encode:                           {render_encode:.3f} s (target <= 1 s)")
    print(f"ours on the file bytes / bare orjson parse: {offline / bare:.2f}x (target <= 2x)")
    print(f"SDK typed path / ours (both over HTTP):     {sdk / ours:.1f}x faster (target >= 10x)")
    peak = mem["results -> columns"][1]
    print(f"results peak memory / final table:          {peak / table_mib:.2f}x (target <= ~3x)")


if __name__ == "__main__":
    main()
