"""Results JSONL -> columns: speed against a bare orjson parse and the SDK's typed objects.

Builds N synthetic result lines in the real Message Batches shape (mostly
succeeded, some errored / canceled / expired, shuffled), then times in one run:

- bare:      ``[orjson.loads(line) for line in lines]`` (keeps every dict)
- parse:     ``for line in lines: orjson.loads(line)`` (pure parse, dicts dropped)
- ours:      ``ResultAccumulator.feed`` on every line + ``columns()`` for the rows
- validate:  ``MessageBatchIndividualResponse.model_validate(orjson.loads(line))``
- sdk:       what ``client.messages.batches.results()`` does per line
             (``construct_type_unchecked(json.loads(line))``)

The two SDK paths run on a sample (they are slow) and are scaled to N. Targets:
ours within 2x of bare, and at least 10x faster than the SDK's typed objects.

    python benchmarks/bench_results.py [--rows 100000] [--sdk-sample 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from anthropic._models import construct_type_unchecked
from anthropic.types.messages import MessageBatchIndividualResponse

try:
    from claude_lab._collector import ResultAccumulator, iter_lines
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from claude_lab._collector import ResultAccumulator, iter_lines


def make_lines(n: int, seed: int = 0) -> tuple[list[str], list[bytes]]:
    rng = random.Random(seed)
    ids = [f"r{i:032x}" for i in range(n)]
    lines = []
    for i, cid in enumerate(ids):
        roll = rng.random()
        if roll < 0.96:
            words = " ".join(rng.choice(("alpha", "beta", "gamma", "delta")) for _ in range(30))
            result: dict[str, Any] = {
                "type": "succeeded",
                "message": {
                    "id": f"msg_{i:024d}",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-haiku-4-5-20251001",
                    "content": [{"type": "text", "text": f"The answer is {i}. {words}"}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": rng.randint(20, 400),
                        "output_tokens": rng.randint(5, 200),
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "service_tier": "batch",
                    },
                },
            }
        elif roll < 0.98:
            result = {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "max_tokens: too big"},
                    "request_id": f"req_{i:024d}",
                },
            }
        elif roll < 0.99:
            result = {"type": "canceled"}
        else:
            result = {"type": "expired"}
        lines.append(orjson.dumps({"custom_id": cid, "result": result}))
    rng.shuffle(lines)
    return ids, lines


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--sdk-sample", type=int, default=20_000)
    args = ap.parse_args()

    ids, lines = make_lines(args.rows)
    # Every request fanned out to one row, plus 10% extra rows sharing a request.
    row_uid = np.concatenate([np.arange(len(ids)), np.arange(0, len(ids), 10)]).astype(np.int64)
    size_mb = sum(map(len, lines)) / 1e6

    def bare() -> None:
        [orjson.loads(line) for line in lines]

    def ours() -> None:
        acc = ResultAccumulator(ids)
        acc.begin_pass("msgbatch_bench")
        feed = acc.feed
        for line in lines:
            feed(line)
        acc.columns(row_uid)

    def ours_stream() -> None:
        body = b"\n".join(lines) + b"\n"
        chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
        acc = ResultAccumulator(ids)
        for line in iter_lines(chunks):
            acc.feed(line)
        acc.columns(row_uid)

    def parse() -> None:
        for line in lines:
            orjson.loads(line)

    sample = lines[: args.sdk_sample]
    scale = len(lines) / max(len(sample), 1)

    def validate() -> None:
        for line in sample:
            MessageBatchIndividualResponse.model_validate(orjson.loads(line))

    def sdk() -> None:
        for line in sample:
            construct_type_unchecked(value=json.loads(line), type_=MessageBatchIndividualResponse)

    t_bare = timed(bare)
    t_parse = timed(parse)
    t_ours = timed(ours)
    t_stream = timed(ours_stream)
    t_validate = timed(validate, repeat=1) * scale
    t_sdk = timed(sdk, repeat=1) * scale

    print(f"{len(lines):,} result lines, {size_mb:.1f} MB, {len(row_uid):,} rows")
    print(f"bare [orjson.loads(l) ...]      {t_bare:7.3f} s")
    print(f"orjson parse, dicts dropped     {t_parse:7.3f} s")
    print(
        f"feed + columns                  {t_ours:7.3f} s   "
        f"{t_ours / t_bare:5.2f}x bare, {t_ours / t_parse:5.2f}x parse-only"
    )
    print(
        f"iter_lines + feed + columns     {t_stream:7.3f} s   "
        f"{t_stream / t_bare:5.2f}x bare, {t_stream / t_parse:5.2f}x parse-only"
    )
    print(
        f"SDK model_validate per line     {t_validate:7.3f} s   "
        f"ours is {t_validate / t_ours:5.1f}x faster  (scaled from {len(sample):,} lines)"
    )
    print(
        f"SDK results() decode per line   {t_sdk:7.3f} s   "
        f"ours is {t_sdk / t_ours:5.1f}x faster  (scaled from {len(sample):,} lines)"
    )


if __name__ == "__main__":
    main()
