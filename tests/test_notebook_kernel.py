"""The notebook experience on a real ipykernel, driven over the Jupyter protocol.

Every test talks to an emulator started inside the kernel; the kernel has no API
key and its own ``CLAUDE_LAB_HOME``. Widget state is read the way a frontend sees
it: from the ``comm_open`` / ``comm_msg`` messages on IOPub.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from notebook_helpers import (
    VOLATILE_ID,
    WIDGET_VIEW_MIME,
    Kernel,
    KernelError,
    child_env,
    finished_of,
    legend_counts,
    widget_ids_code,
)

SETUP = """
import asyncio, json, os, time
import claude_lab
from claude_lab._demo import load_sample
from claude_lab.emulator import serve
df = load_sample()
PROMPT = "Question: {question}\\nAnswer with a single number."
"""


def batch_call(rows: int, *, wait: bool = True, extra: str = "", prompt: str = "PROMPT") -> str:
    """Kernel code for a batch over the first ``rows`` sample rows (polling fast).

    Identical requests are answered from the result cache: give a later batch over the
    same rows another ``prompt`` when it must really be sent.
    """
    return (
        f"df.head({rows}).claude.batch({prompt}, model='claude-haiku-4-5', max_tokens=32, "
        f"client=client, poll_interval=(0.1, 0.3), wait={wait}{extra})"
    )


def start_emulator(kernel: Kernel, **options: object) -> None:
    args = ", ".join(f"{k}={v!r}" for k, v in {"seed": 0, "transport": "socket", **options}.items())
    kernel.run(f"emu = serve({args}).start()\nclient = emu.client()")


def wait_in_kernel(kernel: Kernel, condition: str, timeout: float = 15.0) -> None:
    """Block a cell until ``condition`` holds in the kernel (polling there, not here)."""
    kernel.run(
        f"_end = time.monotonic() + {timeout}\n"
        f"while not ({condition}):\n"
        "    assert time.monotonic() < _end, 'condition not reached'\n"
        "    time.sleep(0.02)",
        timeout=timeout + 10,
    )


@pytest.fixture(scope="module")
def shared_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    kernel = Kernel(home=tmp_path_factory.mktemp("home"), cwd=tmp_path_factory.mktemp("cwd"))
    try:
        kernel.run(SETUP, timeout=60)
        yield kernel
    finally:
        kernel.shutdown()


@pytest.fixture
def kernel(shared_kernel: Kernel, tmp_path: Path) -> Iterator[Kernel]:
    """The module's kernel with a journal of this test's own; its emulator stopped after."""
    k = shared_kernel
    k.run(f"os.environ['CLAUDE_LAB_HOME'] = {str(tmp_path / 'home')!r}")
    yield k
    cleanup = "if 'emu' in globals():\n    emu.stop()\n    del emu"
    try:
        k.run(cleanup, timeout=15)
    except KernelError:  # a test failed with a cell still running: stop it, then clean up
        k.interrupt()
        k.drain(1.0)
        k.run(cleanup, timeout=15, allow_error=True)


# -- Run All ----------------------------------------------------------------------------


def test_run_all_runs_every_queued_cell(tmp_path: Path) -> None:
    """Run All queues every cell at once; each one must run, in order, with its output."""
    kernel = Kernel(home=tmp_path / "home", cwd=tmp_path)
    try:
        cells = [
            SETUP,
            "emu = serve(counts='incremental', seed=0, transport='socket').start()\n"
            "client = emu.client()",
            "out = " + batch_call(60, extra=", parse=r'(-?\\d+)'"),
            "correct = out.claude_parsed.astype('Int64').eq(out.answer)\n"
            "arithmetic = out.kind != 'word problem'\n"
            "print(f'{correct[arithmetic].sum()} of {arithmetic.sum()} correct')",
            "job = "
            + batch_call(30, wait=False, extra=", name='second'", prompt="'Q: {question}'"),
            "res = await job\nres.second_status.value_counts().to_dict()",
            "print(emu.count('POST', '/v1/messages/batches'), 'batches created')",
        ]
        queued = [kernel.send(code) for code in cells]  # no waiting in between
        for ex in queued:
            kernel.wait(ex, timeout=60)
        for n, ex in enumerate(queued, start=1):
            assert ex.reply is not None and ex.reply["status"] == "ok", (n, ex.traceback())
            assert ex.reply["execution_count"] == n, [
                (q.code[:20], q.reply and q.reply["execution_count"], q.busy_at) for q in queued
            ]
        batch_cell = queued[2]
        shown = batch_cell.of_type("display_data")
        assert len(shown) == 1 and WIDGET_VIEW_MIME in shown[0]["content"]["data"]
        final = batch_cell.of_type("update_display_data")
        assert final, "the batch cell's display never got its final summary"
        assert final[-1]["content"]["data"]["text/plain"].startswith("claude_lab job ended")
        assert queued[3].stdout == "44 of 44 correct\n"  # the emulator does arithmetic
        assert queued[5].result == "{'succeeded': 30}"
        assert queued[6].stdout == "2 batches created\n"
    finally:
        kernel.shutdown()


# -- live widget ----------------------------------------------------------------------------


def test_widget_keeps_updating_after_the_cell_returns(kernel: Kernel) -> None:
    # 40 rows, 2 at a time, 0.15 s each: about 3 s of batch.
    start_emulator(kernel, counts="incremental", request_seconds=0.15, concurrency=2)
    shown = kernel.run("job = " + batch_call(40, wait=False))
    assert WIDGET_VIEW_MIME in shown.of_type("display_data")[0]["content"]["data"]
    ids = kernel.value(widget_ids_code("job"))

    # Another cell blocks until the batch is part done (polled in the kernel, no sleeps).
    blocking = kernel.run(
        "_end = time.monotonic() + 20\n"
        "while job.request_counts['succeeded'] < 20:\n"
        "    assert time.monotonic() < _end\n"
        "    time.sleep(0.02)\n"
        "job.done()"
    )
    assert blocking.result == "False", "the batch should outlast the blocking cell"
    during = [
        f[0]
        for _, v in kernel.updates_of(ids["header"], "value", blocking.busy_at, blocking.idle_at)
        if (f := finished_of(v))
    ]
    assert len(set(during)) >= 2, f"too few live updates while another cell ran: {during}"
    assert during == sorted(during)

    kernel.run("out = job.result(timeout=20)")
    kernel.drain(0.3)
    final = [m for m in kernel.log if m["msg_type"] == "update_display_data"][-1]
    assert final["content"]["data"]["text/plain"].startswith("claude_lab job ended")


def test_widget_counts_match_request_counts(kernel: Kernel) -> None:
    start_emulator(
        kernel,
        counts="incremental",
        request_seconds=0.1,
        concurrency=2,
        faults={"error_rate": 0.15},
    )
    shown = kernel.run("job = " + batch_call(40, wait=False))
    ids = kernel.value(widget_ids_code("job"))  # (while it runs: at the end they are closed)
    kernel.run("out = job.result(timeout=30)")
    size = kernel.value("job.snapshot().requests")
    counts = kernel.value("job.request_counts")
    assert size == 39  # 40 rows, one question asked twice: sent once
    assert sum(counts.values()) == size and counts["errored"] > 0 and counts["processing"] == 0

    seen = [
        legend_counts(v) for _, v in kernel.updates_of(ids["detail"], "value", shown.busy_at) if v
    ]
    assert seen and all(
        set(c) == {"processing", "succeeded", "errored", "canceled", "expired"} for c in seen
    )
    # Before the batch exists the display shows zeros; from then on the five counts add up.
    assert all(sum(c.values()) in (0, size) for c in seen), seen
    finished = [
        f
        for _, v in kernel.updates_of(ids["header"], "value", shown.busy_at)
        if (f := finished_of(v))
    ]
    assert all(total == size for _, total in finished)
    done = [n for n, _ in finished]
    assert done == sorted(done) and any(0 < n < size for n in done), done
    assert seen[-1] == counts

    # The end: the output is the static card (no widget view), with the next step.
    kernel.drain(0.3)
    final = [m for m in kernel.log if m["msg_type"] == "update_display_data"][-1]["content"]["data"]
    assert WIDGET_VIEW_MIME not in final
    assert f"{counts['errored']} errored → <code>job.retry()</code>" in final["text/html"]
    assert (
        f"Done: {counts['succeeded']} succeeded, {counts['errored']} errored" in final["text/html"]
    )


def _wait_for_log(kernel: Kernel, found: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not found():
        assert time.monotonic() < deadline, "the kernel never showed it"
        kernel.pump(0.05)


def test_cancel_click_lands_while_a_wait_true_cell_blocks(kernel: Kernel) -> None:
    """The default call blocks its cell; the Cancel click must still be handled then,
    and Run All's next cell must still run after it, in order."""
    start_emulator(kernel, counts="incremental", request_seconds=0.25, concurrency=2)
    since = len(kernel.log)
    cell = kernel.send("out = " + batch_call(40))
    queued = kernel.send("after = out.claude_status.value_counts().to_dict()")  # Run All

    buttons: list[str] = []
    headers: list[str] = []

    def two_finished() -> bool:
        buttons[:] = kernel.comm_opened("ButtonModel", since)
        headers[:] = kernel.comm_opened("HTMLModel", since)[:1]
        if not (buttons and headers):
            return False
        return any(
            (f := finished_of(v)) is not None and f[0] >= 2
            for _, v in kernel.updates_of(headers[0], "value", since)
        )

    _wait_for_log(kernel, two_finished)
    assert not cell.done, "the wait=True cell should still be blocking"
    kernel.click(buttons[0])  # as JupyterLab sends a click, while the cell blocks

    kernel.wait(cell, timeout=30)
    kernel.wait(queued, timeout=30)
    assert cell.reply is not None and cell.reply["status"] == "ok", cell.traceback()
    assert queued.reply is not None and queued.reply["status"] == "ok", queued.traceback()
    assert cell.idle_at < queued.busy_at, "the queued cell must run after the blocked one"
    status = kernel.value("after")
    assert status.get("canceled", 0) > 0 and status.get("succeeded", 0) >= 2
    assert sum(status.values()) == 40
    assert kernel.value("emu.count('POST', '/v1/messages/batches/*/cancel')") == 1
    clicks = [v for _, v in kernel.updates_of(buttons[0], "description", since)]
    assert "Canceling…" in clicks

    final = cell.of_type("update_display_data")[-1]["content"]["data"]
    assert WIDGET_VIEW_MIME not in final, "a finished job's output must not need the widget"
    card = re.search(r"Canceled: (\d+) kept, (\d+) canceled", final["text/html"])
    assert card, final["text/html"]
    kept, canceled = int(card.group(1)), int(card.group(2))
    assert kept >= 2 and canceled > 0
    assert kept + canceled == kernel.value("out.attrs['claude_lab']['requests']")
    assert final["text/plain"].startswith("claude_lab job canceled")


def test_job_idiom_shows_one_live_view(kernel: Kernel) -> None:
    start_emulator(kernel, counts="incremental", request_seconds=0.2, concurrency=2)
    first = kernel.run("job = " + batch_call(20, wait=False))
    again = kernel.run("job")
    views = [
        m
        for ex in (first, again)
        for m in ex.of_type("display_data", "execute_result")
        if WIDGET_VIEW_MIME in m["content"]["data"]
    ]
    assert len(views) == 1, "the `job` idiom must show one live view"
    assert (
        "live progress above" in again.of_type("display_data")[0]["content"]["data"]["text/plain"]
    )
    kernel.run("out = job.result(timeout=30)")
    kernel.drain(0.3)
    # Both outputs end as the result card; a `job` shown after the end is the card too.
    for ex in (first, again):
        display_id = ex.of_type("display_data")[0]["content"]["transient"]["display_id"]
        updates = [
            m
            for m in kernel.log
            if m["msg_type"] == "update_display_data"
            and m["content"]["transient"]["display_id"] == display_id
        ]
        assert updates and updates[-1]["content"]["data"]["text/plain"].startswith(
            "claude_lab job ended"
        )
    late = kernel.run("job")
    (out,) = late.of_type("display_data")
    assert WIDGET_VIEW_MIME not in out["content"]["data"]
    assert "Done: 20 succeeded" in out["content"]["data"]["text/html"]


# -- interrupt ----------------------------------------------------------------------------


def test_interrupt_stops_waiting_and_the_job_can_be_picked_up(kernel: Kernel) -> None:
    # 2 requests at a time, 1 s each: the batch would take 20 s.
    start_emulator(kernel, counts="incremental", request_seconds=1.0, concurrency=2)
    call = "out = " + batch_call(40)
    since = len(kernel.log)
    cell = kernel.send(call)
    deadline = time.monotonic() + 15
    while not any(  # the widget's title names the batch once it is created
        pos >= since and "msgbatch_" in str(delta.get("value", ""))
        for pos, _, delta in kernel.widget_updates
    ):
        assert time.monotonic() < deadline, "the batch was never created"
        kernel.pump(0.05)

    kernel.interrupt()
    # The batch runs 20 s: a cell that ends with KeyboardInterrupt well before that was
    # ended by the interrupt, not by the batch.
    kernel.wait(cell, timeout=15)
    assert cell.error is not None and cell.error["ename"] == "KeyboardInterrupt"
    hint = re.search(r"claude_lab\.attach\('(job_[0-9a-f]+)'\)", cell.stderr)
    assert hint, cell.stderr
    assert "re-run the same cell" in cell.stderr
    job_id = hint.group(1)

    kernel.run("emu.clock.advance(3600)")  # let the batch finish without waiting 20 s
    again = kernel.run(call, timeout=30)  # re-running the cell re-attaches
    assert kernel.value("out.claude_status.value_counts().to_dict()") == {"succeeded": 40}
    assert kernel.value("out.attrs['claude_lab']['job_id']") == job_id
    assert again.of_type("update_display_data")
    attached = kernel.value(
        f"claude_lab.attach({job_id!r}, client=client).result(timeout=20)"
        ".claude_status.value_counts().to_dict()"
    )
    assert attached == {"succeeded": 40}
    assert kernel.value("emu.count('POST', '/v1/messages/batches')") == 1


# -- async --------------------------------------------------------------------------------


def test_top_level_await_in_a_cell(kernel: Kernel) -> None:
    start_emulator(kernel, counts="incremental")
    kernel.run(
        "out = await df.head(20).claude.abatch(PROMPT, model='claude-haiku-4-5', "
        "max_tokens=32, client=client, poll_interval=0.1)"
    )
    assert kernel.value("out.claude_status.value_counts().to_dict()") == {"succeeded": 20}
    kernel.run("job = " + batch_call(25, wait=False, extra=", name='later'"))
    awaited = kernel.run(
        "res = await job\n(job.done(), len(res), res.later_status.unique().tolist())"
    )
    assert awaited.result == "(True, 25, ['succeeded'])"
    assert kernel.value("emu.count('POST', '/v1/messages/batches')") == 2


def test_await_in_a_plain_asyncio_program(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, json
        import claude_lab
        from claude_lab._demo import load_sample
        from claude_lab.emulator import serve

        async def main():
            df = load_sample().head(20)
            kw = dict(model="claude-haiku-4-5", max_tokens=32, poll_interval=0.1)
            with serve(seed=0, transport="socket") as emu:
                kw["client"] = emu.client()
                one = await df.claude.abatch("One: {question}", **kw)
                job = df.claude.batch("Two: {question}", wait=False, **kw)
                assert not job.done()
                two = await job
                three, four = await asyncio.gather(
                    df.claude.abatch("Three: {question}", **kw),
                    df.claude.abatch("Four: {question}", **kw),
                )
                created = emu.count("POST", "/v1/messages/batches")
            tables = (one, two, three, four)
            print(json.dumps({"rows": [len(t) for t in tables], "created": created,
                              "ok": all((t.claude_status == "succeeded").all() for t in tables)}))

        asyncio.run(main())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=child_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "rows": [20, 20, 20, 20],
        "created": 4,
        "ok": True,
    }


# -- what a saved notebook shows ----------------------------------------------------------


def test_saved_outputs_carry_final_text_and_html_fallbacks(tmp_path: Path) -> None:
    """Executed and saved the way nbconvert does: every job output ends as a final summary."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            SETUP + "emu = serve(seed=0, transport='socket').start()\nclient = emu.client()"
        ),
        nbformat.v4.new_code_cell("out = " + batch_call(30)),
        nbformat.v4.new_code_cell(
            "job = " + batch_call(12, wait=False, extra=", name='bg'", prompt="'Q: {question}'")
        ),
        nbformat.v4.new_code_cell("res = await job"),
        nbformat.v4.new_code_cell("emu.stop()"),
    ]
    client = NotebookClient(
        nb,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
        record_timing=False,
    )
    client.execute(env=child_env(tmp_path / "home"))
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)

    expected = {
        1: "claude_lab job ended · requests 30: processing 0, succeeded 30, errored 0, "
        "canceled 0, expired 0 · rows 30 (cached 0, skipped 0)",
        2: "claude_lab job ended · requests 12: processing 0, succeeded 12, errored 0, "
        "canceled 0, expired 0 · rows 12 (cached 0, skipped 0)",
    }
    for index, plain in expected.items():
        (output,) = saved.cells[index].outputs
        data = output["data"]
        assert WIDGET_VIEW_MIME not in data, "a saved job output must not need the widget"
        assert data["text/plain"] == plain
        assert not VOLATILE_ID.search(data["text/plain"])
        html = data["text/html"]
        assert html.startswith('<div class="claude-lab-summary"')
        assert "<td><b>ended</b></td>" in html
        assert re.search(r'<span class="claude-lab-ids">job_[0-9a-f]+ · msgbatch_', html)
    assert saved.cells[3].outputs == []


def test_result_table_shows_blank_error_cells_and_keeps_the_data_exact(kernel: Kernel) -> None:
    start_emulator(kernel, faults={"error_rate": 0.3})
    kernel.run("out = " + batch_call(20, extra=", progress=None"))
    shown = kernel.run("out[['question', 'claude_status', 'claude_error']]")
    page = shown.of_type("execute_result")[0]["content"]["data"]["text/html"]
    assert "&lt;NA&gt;" not in page and "<NA>" not in page
    assert "errored" in page and "succeeded" in page
    # Only the view changed: no error is still a missing value.
    ok, missing = kernel.value(
        "[int((out.claude_status == 'succeeded').sum()), int(out.claude_error.isna().sum())]"
    )
    assert ok == missing > 0
    # Other frames render exactly as pandas renders them.
    plain = kernel.run("import pandas as pd\npd.DataFrame({'a': [pd.NA, 1]}, dtype='Int64')")
    assert "&lt;NA&gt;" in plain.of_type("execute_result")[0]["content"]["data"]["text/html"]
