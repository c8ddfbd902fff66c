"""Never lose a run, never pay twice: re-attach, result cache, retry, recovery, interrupts."""

from __future__ import annotations

import _thread
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from emulator_helpers import until as _until
from test_results import errored, succeeded

import claude_lab
from claude_lab import _job
from claude_lab._ledger import open_journal
from claude_lab.emulator import Emulator, RowError, serve
from claude_lab.emulator._process import spawned

CREATE = ("POST", "/v1/messages/batches")
SUM = "What is {a} + {b}? Answer with a single number."
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    a = list(range(start, start + n))
    return pd.DataFrame({"a": a, "b": [x * 2 for x in a]})


def test_rerunning_a_finished_call_sends_nothing(fast: Emulator) -> None:
    df = _frame(30)
    first = df.claude.batch(SUM, client=fast.client(), **FAST)
    seen = len(fast.requests)
    again = df.claude.batch(SUM, client=fast.client(), **FAST)
    # Not even a retrieve or a download: only the new client's read of the model catalogue.
    assert [r.path for r in fast.requests[seen:]] == ["/v1/models"]
    assert not first["claude_cached"].any() and again["claude_cached"].all()  # not paid again
    pd.testing.assert_frame_equal(
        first.drop(columns="claude_cached"), again.drop(columns="claude_cached")
    )


def test_changed_rows_send_only_what_changed(fast: Emulator) -> None:
    df = _frame(10)
    first = df.claude.batch(SUM, client=fast.client(), **FAST)
    changed = df.copy()
    changed.loc[[2, 5, 7], "b"] = [1000, 1001, 1002]
    out = changed.claude.batch(SUM, client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 2
    new_batch = out.loc[2, "claude_batch_id"]
    sent = fast.client().messages.batches.retrieve(new_batch).request_counts.succeeded
    assert sent == 3
    assert out["claude_cached"].tolist() == [r not in (2, 5, 7) for r in range(10)]
    # A cached row keeps the price of its reply; this call did not pay it again.
    cached = out.claude_cached
    assert out.loc[cached, "claude_cost_usd"].equals(first.loc[cached, "claude_cost_usd"])
    assert out.loc[5, "claude_text"] == "1006"
    assert (out["claude_status"] == "succeeded").all()


def test_cache_false_sends_everything_again(fast: Emulator) -> None:
    df = _frame(5)
    df.claude.batch(SUM, client=fast.client(), **FAST)
    out = df.claude.batch(SUM, client=fast.client(), cache=False, **FAST)
    assert fast.count(*CREATE) == 2
    assert not out["claude_cached"].any()


def test_same_call_in_flight_reattaches_in_the_same_process(emu: Emulator) -> None:
    df = _frame(20)
    first = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    _until(lambda: len(first.batch_ids) == 1)
    second = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    assert second.id == first.id and second.batch_ids == first.batch_ids
    emu.clock.advance(3600)
    a, b = first.result(timeout=30), second.result(timeout=30)
    assert emu.count(*CREATE) == 1
    pd.testing.assert_frame_equal(a, b)


def test_retry_resubmits_only_transient_failures_and_merges_in_place(fast: Emulator) -> None:
    attempts: Counter[str] = Counter()

    def responder(params: dict[str, Any]) -> Any:
        text = params["messages"][0]["content"]
        attempts[text] += 1
        if text.startswith("bad"):
            return RowError("invalid_request_error", "messages.0.content: too odd")
        if text.startswith("flaky") and attempts[text] == 1:
            return RowError("overloaded_error", "Overloaded")
        return None

    kinds = ["ok", "flaky", "bad", "flaky", "ok", "flaky"]
    df = pd.DataFrame({"q": [f"{k} {i}" for i, k in enumerate(kinds)]}, index=list("uvwxyz"))
    with serve(request_seconds=0, responder=responder) as emu:
        job = df.claude.batch("{q}", client=emu.client(), wait=False, **FAST)
        first = job.result(timeout=30)
        assert first["claude_status"].tolist() == [
            "succeeded",
            "errored",
            "errored",
            "errored",
            "succeeded",
            "errored",
        ]
        out = job.retry()
        assert emu.count(*CREATE) == 2
        retry_batch = job.batch_ids[-1]
        carried = emu.client().messages.batches.retrieve(retry_batch).request_counts
    assert carried.succeeded == 3 and carried.errored == 0  # only the flaky rows went again
    assert isinstance(out, pd.DataFrame)
    assert out.index.equals(df.index) and len(out) == len(df)
    assert out["claude_status"].tolist() == [
        "succeeded",
        "succeeded",
        "errored",
        "succeeded",
        "succeeded",
        "succeeded",
    ]
    assert out.loc["w", "claude_error"].startswith("invalid_request_error")
    assert (out.loc[["v", "x", "z"], "claude_batch_id"] == retry_batch).all()
    assert attempts["bad 2"] == 1


def test_attach_by_batch_id_rebuilds_the_table_from_stored_rows(fast: Emulator) -> None:
    index = pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)])
    df = pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]}, index=index)
    out = df.claude.batch(SUM, client=fast.client(), **FAST)
    job = claude_lab.attach(out["claude_batch_id"].iloc[0], client=fast.client(), progress=None)
    again = job.result(timeout=30)
    assert again.index.equals(index)
    assert again["claude_text"].tolist() == out["claude_text"].tolist()
    with_frame = claude_lab.attach(job.id, client=fast.client(), frame=df, progress=None)
    assert with_frame.result(timeout=30)["a"].tolist() == [1, 2, 3]
    listing = claude_lab.jobs()
    assert listing.loc[listing.job_id == job.id, "succeeded"].item() == 3


def test_results_outlive_the_apis_29_day_archive(emu: Emulator) -> None:
    df = _frame(8)
    job = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    emu.wait_count(*CREATE)
    emu.clock.advance(3600)
    out = job.result(timeout=30)
    emu.clock.advance(30 * 24 * 3600)
    batch = emu.client().messages.batches.retrieve(job.batch_ids[0])
    assert batch.archived_at is not None and batch.results_url is None
    downloads = emu.count("GET", f"/v1/messages/batches/{job.batch_ids[0]}/results")
    again = claude_lab.attach(job.id, client=emu.client(), progress=None).result(timeout=30)
    assert again["claude_text"].tolist() == out["claude_text"].tolist()
    assert emu.count("GET", f"/v1/messages/batches/{job.batch_ids[0]}/results") == downloads


def test_a_create_that_was_never_journaled_is_adopted_not_repeated(emu: Emulator) -> None:
    """A crash between the create call and the journal write leaves only the intent behind."""
    from claude_lab import _plan as plan_mod
    from claude_lab import _requests as requests
    from claude_lab._ledger import open_journal

    df = _frame(6)
    client = emu.client()
    p = plan_mod.plan(df, SUM, **FAST)
    jnl = open_journal()
    endpoint = str(client.base_url)
    job_id = jnl.create_job(
        fingerprint=requests.fingerprint(p.encoded.custom_ids, endpoint),
        endpoint=endpoint,
        model="claude-haiku-4-5",
        templates=p.config.templates,
        params=p.config.params,
        name="claude",
        row_count=6,
        request_count=6,
        package_version=claude_lab.__version__,
        meta={"cache": True},
        rows=(list(df.index), [p.encoded.custom_ids[u] for u in p.encoded.row_uid]),
        requests=(p.encoded.custom_ids, p.encoded.params),
    )
    body = requests.request_body(p.encoded.custom_ids, p.encoded.params, p.chunks[0])
    # The intent, as logged by a worker whose process is gone now (no live owner):
    jnl.begin_submission(job_id, 0, 6, len(body), p.encoded.custom_ids, owner=None)
    client.post(
        "/v1/messages/batches",
        cast_to=object,
        content=body,
        options={"headers": {"Content-Type": "application/json"}},
    )  # ... and the process died here, before finish_submission.
    assert emu.count(*CREATE) == 1

    job = df.claude.batch(SUM, client=client, wait=False, **FAST)
    assert job.id == job_id
    _until(lambda: len(job.batch_ids) == 1)
    emu.clock.advance(3600)
    out = job.result(timeout=30)
    assert emu.count(*CREATE) == 1
    assert (out["claude_status"] == "succeeded").all()


def _interrupt_once_waiting() -> threading.Thread:
    """Ctrl-C the main thread once it is inside BatchJob.wait: the moment a user would press
    it, found from the thread's stack rather than guessed with a timer."""
    main = threading.main_thread().ident
    assert main is not None
    from claude_lab import _job

    job_py = _job.__file__  # where BatchJob.wait lives, however the package is laid out

    def waiting() -> bool:
        frame = sys._current_frames().get(main)
        while frame is not None:
            code = frame.f_code
            if code.co_name == "wait" and code.co_filename == job_py:
                return True
            frame = frame.f_back
        return False

    def fire() -> None:
        _until(waiting, timeout=30)
        _thread.interrupt_main()

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread


def test_interrupt_stops_waiting_not_the_batch(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    df = _frame(12)
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's here (e.g. ignored by a background shell)")
    interrupter = _interrupt_once_waiting()
    try:
        with pytest.raises(KeyboardInterrupt):
            df.claude.batch(SUM, client=emu.client(), **FAST)
    finally:
        interrupter.join(timeout=30)
    hint = capsys.readouterr().err
    assert "claude_lab.attach(" in hint and "nothing is lost" in hint
    job_id = hint.split("claude_lab.attach('")[1].split("'")[0]
    emu.clock.advance(3600)
    out = claude_lab.attach(job_id, client=emu.client(), frame=df, progress=None).result(30)
    assert (out["claude_status"] == "succeeded").all()
    assert emu.count(*CREATE) == 1


def test_the_api_key_is_never_written_anywhere(tmp_path: Path) -> None:
    key = "sk-ant-api03-" + secrets.token_urlsafe(32)
    df = _frame(4)
    with serve(request_seconds=0) as emu:
        job = df.claude.batch(SUM, client=emu.client(api_key=key), wait=False, **FAST)
        out = job.result(timeout=30)
        texts = [repr(job), str(job._repr_mimebundle_()), repr(out.attrs)]
    paths = [claude_lab.export(out, tmp_path / f"out.{ext}") for ext in ("csv", "jsonl", "parquet")]
    home = Path(os.environ["CLAUDE_LAB_HOME"])
    files = [*home.rglob("*"), *tmp_path.rglob("*")]
    assert len(files) >= 6 and paths
    needle = key.encode()
    for f in files:
        if f.is_file():
            assert needle not in f.read_bytes(), f"API key found in {f}"
    assert all(key not in t for t in texts)


# -- across processes ------------------------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import sys, anthropic, orjson, pandas as pd, claude_lab
    base_url, n, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    a = list(range(start, start + n))
    df = pd.DataFrame({"a": a, "b": [x * 2 for x in a]})
    client = anthropic.Anthropic(base_url=base_url, api_key="test-key")
    print("submitting", flush=True)
    out = df.claude.batch("What is {a} + {b}? Answer with a single number.",
                          model="claude-haiku-4-5", client=client, progress=None,
                          poll_interval=0.05)
    ok = bool((out["claude_text"] == (out["a"] + out["b"]).astype(str)).all())
    print(orjson.dumps({"status": out["claude_status"].value_counts().to_dict(),
                        "rows": len(out), "correct": ok}).decode(), flush=True)
    """
)


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[tuple[str, Callable[[], list[dict[str, Any]]]]]:
    """The emulator as its own process with a frozen clock, like a remote API."""
    import urllib.request

    with spawned("--speed", "0") as base_url:

        def log() -> list[dict[str, Any]]:
            with urllib.request.urlopen(f"{base_url}/_emulator/requests") as resp:
                return list(orjson.loads(resp.read()))

        yield base_url, log


def _advance(base_url: str, seconds: float) -> None:
    import urllib.request

    req = urllib.request.Request(f"{base_url}/_emulator/advance?seconds={seconds}", method="POST")
    with urllib.request.urlopen(req) as resp:
        resp.read()


def _creates(log: list[dict[str, Any]]) -> int:
    return sum(1 for r in log if r["method"] == "POST" and r["path"] == "/v1/messages/batches")


@pytest.fixture
def script(tmp_path: Path) -> Path:
    """RUNNER as a file: one df.claude.batch call in its own process."""
    path = tmp_path / "runner.py"
    path.write_text(RUNNER)
    return path


def test_killed_process_rerun_attaches_and_gets_every_row(
    standalone: tuple[str, Callable[[], list[dict[str, Any]]]], script: Path
) -> None:
    base_url, log = standalone
    env = {**os.environ}
    first = subprocess.Popen(
        [sys.executable, str(script), base_url, "40", "0"], env=env, stdout=subprocess.PIPE
    )
    try:
        _until(lambda: _creates(log()) == 1, timeout=60)
        _until(lambda: any(r["method"] == "GET" for r in log()), timeout=30)  # waiting
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
        if first.stdout is not None:
            first.stdout.close()
    _advance(base_url, 3600)
    second = subprocess.run(
        [sys.executable, str(script), base_url, "40", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    report = orjson.loads(second.stdout.strip().splitlines()[-1])
    assert report == {"status": {"succeeded": 40}, "rows": 40, "correct": True}
    assert _creates(log()) == 1


def test_two_processes_share_one_journal(
    standalone: tuple[str, Callable[[], list[dict[str, Any]]]], script: Path
) -> None:
    base_url, log = standalone
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), base_url, "25", str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in (0, 1000)
    ]
    try:
        _until(lambda: _creates(log()) == 2, timeout=60)
        _advance(base_url, 3600)
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (stdout, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr
        assert orjson.loads(stdout.strip().splitlines()[-1])["correct"] is True
    listing = claude_lab.jobs()
    assert len(listing) == 2 and (listing["succeeded"] == 25).all()


def test_cli_lists_shows_waits_and_exports(
    standalone: tuple[str, Callable[[], list[dict[str, Any]]]], script: Path, tmp_path: Path
) -> None:
    base_url, _ = standalone
    job_proc = subprocess.Popen(
        [sys.executable, str(script), base_url, "10", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        _until(lambda: len(claude_lab.jobs()) == 1 and claude_lab.jobs().batches.item() == 1)
        job_proc.kill()
        job_proc.wait(timeout=10)
    finally:
        if job_proc.stdout is not None:
            job_proc.stdout.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ANTHROPIC_API_KEY": "test-key"}
        return subprocess.run(
            [sys.executable, "-m", "claude_lab", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    job_id = claude_lab.jobs().job_id.item()
    listed = cli("jobs")
    assert listed.returncode == 0 and job_id in listed.stdout
    shown = cli("show", job_id[:8])
    assert shown.returncode == 0 and "msgbatch_" in shown.stdout
    _advance(base_url, 3600)
    waited = cli("wait", job_id)
    assert waited.returncode == 0 and "'succeeded': 10" in waited.stdout
    out = tmp_path / "results.csv"
    exported = cli("results", job_id, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    table = pd.read_csv(out)
    assert len(table) == 10 and (table["claude_status"] == "succeeded").all()
    missing = cli("show", "job_doesnotexist")
    assert missing.returncode == 1 and "claude-lab jobs" in missing.stderr


# -- found in review: each of these once paid twice or lost rows ------------------------------


@pytest.mark.parametrize("route", ["retrieve", "results"])
def test_a_burst_of_api_errors_while_polling_does_not_fail_the_job(
    fast: Emulator, route: str
) -> None:
    fast.faults.server_error = {route: 4}  # more than the SDK's own two retries
    out = _frame(10).claude.batch(SUM, client=fast.client(), **FAST)
    assert (out["claude_status"] == "succeeded").all()
    assert fast.count(*CREATE) == 1


def test_rerun_while_the_first_run_is_still_creating_waits_for_it(emu: Emulator) -> None:
    df = _frame(10)
    with emu.faults.hold_creates() as gate:
        first = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
        gate.wait_arrived()  # the first create is in flight
        second = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
        assert second.id == first.id
    _until(lambda: len(first.batch_ids) == 1 and len(second.batch_ids) == 1)
    emu.clock.advance(3600)
    a, b = first.result(timeout=30), second.result(timeout=30)
    assert emu.count(*CREATE) == 1
    assert (a["claude_status"] == "succeeded").all() and (b["claude_status"] == "succeeded").all()


def test_same_size_jobs_with_lost_creates_each_keep_their_own_batch(fast: Emulator) -> None:
    fast.faults.drop_after_create = 2
    a = _frame(6).claude.batch(SUM, client=fast.client(), wait=False, **FAST)
    b = _frame(6, start=100).claude.batch(SUM, client=fast.client(), wait=False, **FAST)
    out_a, out_b = a.result(timeout=30), b.result(timeout=30)
    for out in (out_a, out_b):
        assert (out["claude_status"] == "succeeded").all()
        assert (out["claude_text"] == (out["a"] + out["b"]).astype(str)).all()
    assert fast.count(*CREATE) == 2 and set(a.batch_ids).isdisjoint(b.batch_ids)


def test_cancel_while_the_create_is_in_flight_cancels_that_batch() -> None:
    with serve(speed=0, request_seconds=3600, cancel_seconds=1) as emu:
        _cancel_while_creating(emu)


def _cancel_while_creating(emu: Emulator) -> None:
    df = _frame(8)
    with emu.faults.hold_creates() as gate:
        job = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
        gate.wait_arrived()  # the create is in flight: it reached the API, no batch yet
        job.cancel()
    # Released: the batch is created, and the job cancels it as soon as it hears of it.
    emu.wait_count("POST", "/v1/messages/batches/*/cancel")
    emu.clock.advance(3600)
    out = job.result(timeout=30)
    assert job.status == "canceled"
    assert (out["claude_status"] == "canceled").all()
    assert claude_lab.jobs().status.item() == "canceled"
    # A canceled run re-run on purpose starts afresh (the canceled rows were never paid).
    again = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    assert again.id != job.id
    emu.wait_count(*CREATE, n=2)
    emu.clock.advance(30 * 3600)  # slow requests: this emulator takes an hour per row
    assert set(again.result(timeout=30)["claude_status"]) <= {"succeeded", "expired"}
    assert emu.count(*CREATE) == 2


def test_reattach_after_adoption_sends_nothing_more(emu: Emulator) -> None:
    emu.faults.drop_after_create = 1
    df = _frame(6)
    job = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    _until(lambda: len(job.batch_ids) == 1)
    again = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    assert again.id == job.id
    emu.clock.advance(3600)
    assert (again.result(timeout=30)["claude_status"] == "succeeded").all()
    assert emu.count(*CREATE) == 1


def test_attach_reapplies_parse_and_output_of_the_original_call(fast: Emulator) -> None:
    import pydantic

    class Answer(pydantic.BaseModel):
        score: int

    df = _frame(3)
    out = df.claude.batch(SUM, client=fast.client(), parse=r"(\d+)", **FAST)
    again = claude_lab.attach(out["claude_batch_id"].iloc[0], client=fast.client(), progress=None)
    assert again.result(timeout=30)["claude_parsed"].tolist() == out["claude_parsed"].tolist()
    structured = df.claude.batch("{a}", client=fast.client(), output=Answer, **FAST)
    job = claude_lab.attach(structured["claude_batch_id"].iloc[0], client=fast.client())
    rebuilt = job.result(timeout=30)
    assert rebuilt["claude_score"].tolist() == structured["claude_score"].tolist()


def test_rebuilding_a_job_whose_result_files_interleave_with_another_jobs() -> None:
    # Two jobs downloading at once store their result files in turn: job A's batch is
    # split around job B's. Rebuilt offline, every row of A gets its best line: its own
    # successes, B's successes where A's own try errored (cached: B paid), and missing.
    endpoint = "https://api.example.test"
    ids = [f"r{n:032x}" for n in range(40)]
    a_ids, b_ids = ids[:30], ids[20:]
    jnl = open_journal()

    def job(fingerprint: str, cids: list[str], batch_id: str) -> str:
        job_id = jnl.create_job(
            fingerprint=fingerprint, endpoint=endpoint, model="claude-haiku-4-5",
            templates={"prompt": "{x}"}, params={"max_tokens": 10}, name="claude",
            row_count=len(cids), request_count=len(cids), package_version="0",
            meta={"cache": True}, rows=(list(range(len(cids))), cids),
            requests=(cids, [b"{}"] * len(cids)),
        )  # fmt: skip
        sub = jnl.begin_submission(job_id, 0, len(cids), 10)
        jnl.finish_submission(sub, batch_id, None, None, cids)
        return job_id

    def store(batch_id: str, cids: list[str], line: Callable[[str], bytes]) -> None:
        ok = "succeeded" if line is succeeded else "errored"
        jnl.store_lines(batch_id, cids, [ok] * len(cids), [line(c) for c in cids])

    a = job("fa", a_ids, "batch_a")
    job("fb", b_ids, "batch_b")
    store("batch_a", a_ids[:10], succeeded)
    store("batch_b", b_ids[:7], succeeded)  # ids 20-26
    store("batch_a", a_ids[10:25], errored)  # 20-24 also succeeded in B
    jnl.set_job_status(a, "ended")

    out, _ = _job.load_result(a)
    status = out["claude_status"].tolist()
    assert status == ["succeeded"] * 10 + ["errored"] * 10 + ["succeeded"] * 7 + ["missing"] * 3
    assert out["claude_batch_id"].tolist()[:10] == ["batch_a"] * 10
    assert (
        out["claude_error"].notna().tolist()
        == [False] * 10 + [True] * 10 + [False] * 7 + [True] * 3
    )
    assert out["claude_cached"].tolist()[20:27] == [True] * 7
    assert out["claude_custom_id"].tolist() == a_ids
    counts = {kind: n for kind, n in jnl.row_counts(a)[a].items() if n}
    assert counts == {"succeeded": 17, "errored": 10, "missing": 3, "cached": 7}
