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
from collections.abc import Iterator
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
    legend_counts,
    widget_ids_code,
)

SETUP = """
import asyncio, json, os, time
import claude_lab
from claude_lab.demo import load_sample
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
    args = ", ".join(f"{k}={v!r}" for k, v in {"seed": 0, **options}.items())
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
            "emu = serve(counts='incremental', seed=0).start()\nclient = emu.client()",
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
            assert ex.reply["execution_count"] == n
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
    # The cell returned a job, not a table: it did not wait for the batch.
    assert kernel.value("type(job).__name__") == "BatchJob"
    assert WIDGET_VIEW_MIME in shown.of_type("display_data")[0]["content"]["data"]
    ids = kernel.value(widget_ids_code("job"))

    blocking = kernel.run("time.sleep(2.0)\njob.done()")
    assert blocking.result == "False", "the batch should outlast the blocking cell"
    during = [
        v
        for _, v in kernel.updates_of(ids["progress"], "value", blocking.busy_at, blocking.idle_at)
    ]
    assert len(set(during)) >= 3, f"too few live updates while another cell ran: {during}"
    assert during == sorted(during) and during[0] > 0 and during[-1] < 40

    kernel.run("out = job.result(timeout=20)")
    kernel.drain(0.3)
    assert kernel.widgets[ids["progress"]]["value"] == kernel.value("job.snapshot().requests")


def test_widget_counts_match_request_counts(kernel: Kernel) -> None:
    start_emulator(
        kernel,
        counts="incremental",
        request_seconds=0.1,
        concurrency=2,
        faults={"error_rate": 0.15},
    )
    cell = kernel.run("job = " + batch_call(40, wait=False) + "\nout = job.result(timeout=30)")
    ids = kernel.value(widget_ids_code("job"))
    size = kernel.value("job.snapshot().requests")
    counts = kernel.value("job.request_counts")
    assert size == 39  # 40 rows, one question asked twice: sent once
    assert sum(counts.values()) == size and counts["errored"] > 0 and counts["processing"] == 0

    seen = [
        legend_counts(v) for _, v in kernel.updates_of(ids["legend"], "value", cell.busy_at) if v
    ]  # (the legend is empty until the first render)
    assert seen and all(
        set(c) == {"processing", "succeeded", "errored", "canceled", "expired"} for c in seen
    )
    # Before the batch exists the widget shows zeros; from then on the five counts add up.
    assert all(sum(c.values()) in (0, size) for c in seen), seen
    seen = [c for c in seen if sum(c.values())]
    assert len(seen) >= 3
    finished = [size - c["processing"] for c in seen]
    assert finished == sorted(finished)
    assert any(0 < f < size for f in finished), f"no intermediate counts: {finished}"
    labels = [v for _, v in kernel.updates_of(ids["progress_label"], "value", cell.busy_at) if v]
    assert labels[0] in ("preparing…", "submitting…"), labels
    assert all(re.fullmatch(rf"\d+ / {size} finished", v) for v in labels[1:] if "…" not in v)
    assert labels[-1] == f"{size} / {size} finished"

    kernel.drain(0.3)
    final = {k: kernel.widgets[ids[k]] for k in ("progress", "legend", "totals", "cancel_button")}
    assert legend_counts(final["legend"]["value"]) == counts
    assert final["progress"]["value"] == final["progress"]["max"] == size
    assert final["progress"]["bar_style"] == "warning"  # some rows errored
    assert final["totals"]["value"].startswith("<b>Done, some rows failed:</b>")
    assert f"errored {counts['errored']}" in final["totals"]["value"]
    assert final["cancel_button"]["disabled"] is True


def test_cancel_button_cancels_the_job(kernel: Kernel) -> None:
    start_emulator(kernel, counts="incremental", request_seconds=0.25, concurrency=2)
    kernel.run("job = " + batch_call(40, wait=False))
    ids = kernel.value(widget_ids_code("job"))
    wait_in_kernel(kernel, "job.batch_ids and job.request_counts['succeeded'] >= 2")

    kernel.click(ids["cancel_button"])  # as JupyterLab sends a click
    kernel.run("out = job.result(timeout=20)", timeout=30)
    status = kernel.value("out.claude_status.value_counts().to_dict()")
    assert kernel.value("job.status") == "canceled"
    assert status.get("canceled", 0) > 0 and status.get("succeeded", 0) >= 2
    assert sum(status.values()) == 40
    assert kernel.value("emu.count('POST', '/v1/messages/batches/*/cancel')") == 1

    kernel.drain(0.3)
    assert kernel.widgets[ids["cancel_button"]]["disabled"] is True
    assert kernel.widgets[ids["progress"]]["bar_style"] == "danger"
    assert kernel.widgets[ids["totals"]]["value"].startswith("<b>Stopped:</b>")
    assert "canceled" in kernel.widgets[ids["legend"]]["value"]


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
        from claude_lab.demo import load_sample
        from claude_lab.emulator import serve

        async def main():
            df = load_sample().head(20)
            kw = dict(model="claude-haiku-4-5", max_tokens=32, poll_interval=0.1)
            with serve(seed=0) as emu:
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
        nbformat.v4.new_code_cell(SETUP + "emu = serve(seed=0).start()\nclient = emu.client()"),
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
        assert WIDGET_VIEW_MIME in data
        assert data["text/plain"] == plain
        assert not VOLATILE_ID.search(data["text/plain"])
        html = data["text/html"]
        assert html.startswith('<div class="claude-lab-summary">')
        assert "<td><b>ended</b></td>" in html
        assert re.search(r'<span class="claude-lab-ids">job_[0-9a-f]+ · msgbatch_', html)
    assert saved.cells[3].outputs == []
