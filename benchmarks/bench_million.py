"""1,000,000 rows end to end against the emulator: wall, CPU and peak RSS against the table.

    python benchmarks/bench_million.py [--rows 1000000] [--max-queued N]

The emulator runs in its own process (fastest mode); this process is the client.
Prints wall time, client CPU (all threads), peak RSS, the interpreter's baseline
RSS (after imports, before the frame exists) and the final table's
``memory_usage(deep=True)``, and the ratio the target is set on:
(peak RSS - baseline) / table memory (target <= 3). Run it once: the machine may
be shared. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import MAX_TOKENS, MODEL, PROMPT, emulator, frame


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--max-queued", type=int, default=None, help="default: the library's")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="claude_lab_million_")
    os.environ["CLAUDE_LAB_HOME"] = home

    import anthropic

    import claude_lab  # noqa: F401  (registers the accessor)

    with emulator() as base_url:
        client = anthropic.Anthropic(base_url=base_url, api_key="bench", timeout=600)
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        df = frame(args.rows)
        options = {} if args.max_queued is None else {"max_queued": args.max_queued}
        cpu0, wall0 = time.process_time(), time.perf_counter()
        out = df.claude.batch(
            PROMPT, model=MODEL, max_tokens=MAX_TOKENS, client=client, progress=None,
            poll_interval=(0.2, 2.0), **options,
        )  # fmt: skip
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = out.memory_usage(deep=True).sum() / 2**20
    statuses = out["claude_status"].value_counts().to_dict()
    journal = sum(p.stat().st_size for p in Path(home).glob("journal.sqlite3*")) / 2**20
    print(f"{args.rows:,} rows, {len(out.attrs['claude_lab']['batch_ids'])} batches: {statuses}")
    print(f"wall {wall:.1f} s, client CPU {cpu:.1f} s")
    print(f"peak RSS {peak:.0f} MiB; interpreter baseline {baseline:.0f} MiB")
    print(f"final table (deep) {table:.0f} MiB; journal {journal:.0f} MiB ({home})")
    print(f"(peak RSS - baseline) / table: {(peak - baseline) / table:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
