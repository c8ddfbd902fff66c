"""``df.claude.batch`` against the plain SDK path, as a user runs them: client CPU and peak RSS.

    python benchmarks/bench_engine.py [--rows 100000]

The emulator runs in its own process (fastest mode) and each side runs in a
fresh client subprocess, so each side's CPU time (``time.process_time``, all
threads) and peak RSS (``ru_maxrss``) are its own. Measured from the call to
the finished table:

* ours: ``df.claude.batch(...)`` with a fresh journal (``CLAUDE_LAB_HOME`` in a
  temporary folder), then the journal's size on disk;
* restart: the same call in a new process over that journal (a kernel restart,
  then Run All): everything comes from the journal, nothing may be sent;
* sdk: what a user would write with the SDK alone: one request dict per row,
  ``client.messages.batches.create(requests=...)``, poll ``retrieve``, the typed
  ``client.messages.batches.results()`` turned into a DataFrame.

Each side also reports its resting RSS: after the call, once its garbage is collected
and glibc's freed pages are handed back, with only the table alive. It is the floor
the peak stands on (the table plus what the run's allocations leave behind).

Ratios (ours / SDK) come from the same run. Our time is also split into stages
(per-thread CPU, exclusive of nested stages), so the next person sees where it
goes. Figures are printed, never asserted. The machine may be shared: run once.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

PROMPT = "Question: What is {a} + {b}?\nAnswer with a single number."
MODEL = "claude-haiku-4-5"
MAX_TOKENS = 16
POLL_S = 0.2


def emulator() -> AbstractContextManager[str]:
    """The emulator in its own process, fastest mode: batches end as they are made."""
    # Imported here: this module runs the SDK side too, which must not import claude_lab.
    from claude_lab.emulator._process import spawned

    return spawned("--request-seconds", "0", "--concurrency", "1000000")


def frame(rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.integers(0, 1000, rows), "b": rng.integers(0, 1000, rows)})


# -- stage accounting (ours) -------------------------------------------------------------

_stage_cpu: dict[str, float] = {}
_local = threading.local()


def _timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Charge ``fn``'s thread CPU to ``stage``, minus what nested timed calls charge."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack: list[float] = getattr(_local, "stack", None) or []
        _local.stack = stack
        t0 = time.thread_time()
        stack.append(0.0)
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.thread_time() - t0
            nested = stack.pop()
            _stage_cpu[stage] = _stage_cpu.get(stage, 0.0) + spent - nested
            if stack:
                stack[-1] += spent

    return wrapper


def _instrument() -> None:
    import anthropic.resources.messages.batches as sdk_batches

    from claude_lab import _collector as results
    from claude_lab import _gateway as gateway
    from claude_lab import _ledger as journal
    from claude_lab import _plan as plan
    from claude_lab import _requests as requests
    from claude_lab import _table as table
    from claude_lab import _templates as templates
    from claude_lab import _worker as worker

    templates.render = _timed("plan: render", templates.render)  # type: ignore[assignment]
    plan.templates.render = templates.render  # type: ignore[attr-defined]
    templates.render_json = _timed("plan: render", templates.render_json)  # type: ignore[assignment]
    plan.templates.render_json = templates.render_json  # type: ignore[attr-defined]
    requests.encode = _timed("plan: encode", requests.encode)  # type: ignore[assignment]
    plan.requests.encode = requests.encode  # type: ignore[attr-defined]
    requests.split = _timed("plan: split", requests.split)  # type: ignore[assignment]
    plan.requests.split = requests.split  # type: ignore[attr-defined]
    for name in dir(journal.Journal):
        attr = getattr(journal.Journal, name)
        if callable(attr) and not name.startswith("_"):
            label = f"journal.{name}" if os.environ.get("BENCH_JOURNAL_DETAIL") else "journal"
            setattr(journal.Journal, name, _timed(label, attr))
    gateway.Gateway.create = _timed("submit: create call", gateway.Gateway.create)  # type: ignore[method-assign]
    sdk_batches.Batches.retrieve = _timed("poll", sdk_batches.Batches.retrieve)  # type: ignore[method-assign]
    worker.Worker._download = _timed("download + parse", worker.Worker._download)  # type: ignore[method-assign]
    table.build = _timed("build table", table.build)  # type: ignore[assignment]
    results.ResultAccumulator.columns = _timed(  # type: ignore[method-assign]
        "build table", results.ResultAccumulator.columns
    )


def _call(df: Any, client: Any) -> Any:
    """The call a user makes: ``df.claude.batch`` with the benchmark's prompt and model."""
    return df.claude.batch(
        PROMPT, model=MODEL, max_tokens=MAX_TOKENS, client=client, progress=None,
        poll_interval=POLL_S,
    )  # fmt: skip


def side_ours(base_url: str, rows: int) -> dict[str, Any]:
    import anthropic

    import claude_lab  # noqa: F401  (registers the accessor)

    _instrument()
    df = frame(rows)
    client = anthropic.Anthropic(base_url=base_url, api_key="bench", timeout=600)
    before = _rss_now()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    out = _call(df, client)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    status_col = next(c for c in out.columns if c.endswith("_status"))
    assert (out[status_col] == "succeeded").all(), out[status_col].value_counts()
    home = Path(os.environ["CLAUDE_LAB_HOME"])
    size = sum(p.stat().st_size for p in home.glob("journal.sqlite3*"))
    maxrss = _peak()  # before the re-run
    rest = _resting()
    stages = dict(_stage_cpu)
    cpu1 = time.process_time()
    again = _call(df, client)
    rerun_cpu = time.process_time() - cpu1
    return {
        "cpu": cpu,
        "wall": wall,
        "stages": stages,
        "journal_bytes": size,
        "table_bytes": int(out.memory_usage(deep=True).sum()),
        "rerun_cpu": rerun_cpu,
        "rerun_same_batches": again.attrs["claude_lab"]["batch_ids"]
        == out.attrs["claude_lab"]["batch_ids"],
        "maxrss_mib": maxrss,
        "before_mib": before,
        "rest_mib": rest,
        "batch_ids": out.attrs["claude_lab"]["batch_ids"],
    }


def side_restart(base_url: str, rows: int) -> dict[str, Any]:
    """The same call in a new process over the journal a first run left: a kernel restart,
    then Run All. Everything comes from the journal; nothing may be sent."""
    import anthropic

    import claude_lab  # noqa: F401  (registers the accessor)

    df = frame(rows)
    client = anthropic.Anthropic(base_url=base_url, api_key="bench", timeout=600)
    before = _rss_now()
    cpu0 = time.process_time()
    out = _call(df, client)
    cpu = time.process_time() - cpu0
    return {"cpu": cpu, "before_mib": before, "batch_ids": out.attrs["claude_lab"]["batch_ids"]}


def side_sdk(base_url: str, rows: int) -> dict[str, Any]:
    import anthropic
    import pandas as pd

    df = frame(rows)
    client = anthropic.Anthropic(base_url=base_url, api_key="bench", timeout=600)
    before = _rss_now()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    reqs = [
        {
            "custom_id": f"row-{i}",
            "params": {
                "model": MODEL,
                "max_tokens": MAX_TOKENS,
                "messages": [{"role": "user", "content": PROMPT.format(a=a, b=b)}],
            },
        }
        for i, (a, b) in enumerate(zip(df["a"].tolist(), df["b"].tolist()))
    ]
    batch = client.messages.batches.create(requests=reqs)  # type: ignore[arg-type]
    while batch.processing_status != "ended":
        time.sleep(POLL_S)
        batch = client.messages.batches.retrieve(batch.id)
    records = []
    for item in client.messages.batches.results(batch.id):
        r = item.result
        if r.type == "succeeded":
            m = r.message
            text = "".join(b.text for b in m.content if b.type == "text")
            records.append(
                (item.custom_id, "succeeded", text, m.usage.input_tokens, m.usage.output_tokens)
            )
        else:
            records.append((item.custom_id, r.type, None, None, None))
    res = pd.DataFrame.from_records(
        records, columns=["custom_id", "status", "text", "input_tokens", "output_tokens"]
    )
    res.index = res["custom_id"].str.slice(4).astype("int64")
    out = df.join(res.drop(columns="custom_id"))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert (out["status"] == "succeeded").all()
    return {
        "cpu": cpu,
        "wall": wall,
        "table_bytes": int(out.memory_usage(deep=True).sum()),
        "before_mib": before,
        "maxrss_mib": _peak(),
        "rest_mib": _resting(),
    }


def _rss_now() -> float:
    """This process's resident memory now (MiB): imports, the frame and the client."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak() -> float:
    """This process's peak resident memory so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _resting() -> float:
    """RSS (MiB) once the call has returned, its garbage collected and glibc's freed pages
    handed back (``malloc_trim``), with the table still alive: the floor any peak sits on."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    # Not glibc: nothing is handed back, and the figure reads higher.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return _rss_now()


def child(side: str, base_url: str, rows: int) -> None:
    out = {"ours": side_ours, "restart": side_restart, "sdk": side_sdk}[side](base_url, rows)
    out.setdefault("maxrss_mib", _peak())
    print("RESULT " + json.dumps(out))


def spawn(side: str, base_url: str, rows: int, home: str) -> dict[str, Any]:
    env = {**os.environ, "CLAUDE_LAB_HOME": home}
    cmd = [sys.executable, __file__, "--child", side, "--base-url", base_url]
    done = subprocess.run(
        [*cmd, "--rows", str(rows)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"{side} failed:\n{done.stdout}\n{done.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--child", choices=("ours", "restart", "sdk"))
    ap.add_argument("--base-url")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.base_url, args.rows)
        return
    with emulator() as base_url:
        with tempfile.TemporaryDirectory() as home:
            ours = spawn("ours", base_url, args.rows, home)
            restart = spawn("restart", base_url, args.rows, home)  # same journal
        with tempfile.TemporaryDirectory() as home:
            sdk = spawn("sdk", base_url, args.rows, home)
    print(f"{args.rows:,} rows, one client process per side, emulator in its own process\n")
    print(f"{'':22} {'ours':>10} {'SDK':>10} {'ours/SDK':>9}")
    for key, label, unit in (
        ("cpu", "client CPU", "s"),
        ("wall", "wall", "s"),
        ("maxrss_mib", "peak RSS", "MiB"),
    ):
        print(
            f"{label + ' (' + unit + ')':22} {ours[key]:10.2f} {sdk[key]:10.2f}"
            f" {ours[key] / sdk[key]:9.2f}x"
        )
    grown = {side: r["maxrss_mib"] - r["before_mib"] for side, r in (("ours", ours), ("sdk", sdk))}
    print(
        f"{'peak above the start':22} {grown['ours']:10.2f} {grown['sdk']:10.2f}"
        f" {grown['ours'] / grown['sdk']:9.2f}x  (MiB; the start is the interpreter with"
        f" anthropic and pandas, the frame and the client: {ours['before_mib']:.0f} /"
        f" {sdk['before_mib']:.0f} MiB)"
    )
    print(
        f"{'resting, table alive':22} {ours['rest_mib']:10.2f} {sdk['rest_mib']:10.2f}"
        f" {ours['rest_mib'] / sdk['rest_mib']:9.2f}x  (MiB, after the call, gc and malloc_trim;"
        f" ours is {ours['rest_mib'] / sdk['maxrss_mib']:.2f}x the SDK path's peak)"
    )
    print(f"\njournal after the run:  {ours['journal_bytes'] / 2**20:.1f} MiB")
    print(f"final table (deep):     {ours['table_bytes'] / 2**20:.1f} MiB")
    print(
        f"re-run of the same call: {ours['rerun_cpu']:.2f} s CPU, "
        + ("same batches, nothing sent" if ours["rerun_same_batches"] else "NEW BATCHES SENT")
    )
    print(
        f"re-run after a restart:  {restart['cpu']:.2f} s CPU, peak RSS"
        f" {restart['maxrss_mib']:.1f} MiB ({restart['maxrss_mib'] / sdk['maxrss_mib']:.2f}x the"
        " SDK path's), "
        + (
            "same batches, nothing sent"
            if restart["batch_ids"] == ours["batch_ids"]
            else "NEW BATCHES SENT"
        )
    )
    print("\nour CPU by stage (thread CPU, exclusive; 'other' = the rest of the process):")
    stages = ours["stages"]
    other = max(0.0, ours["cpu"] - sum(stages.values()))
    for name, spent in sorted({**stages, "other": other}.items(), key=lambda kv: -kv[1]):
        print(f"  {name:24} {spent:7.2f} s  {100 * spent / ours['cpu']:5.1f} %")


if __name__ == "__main__":
    main()
