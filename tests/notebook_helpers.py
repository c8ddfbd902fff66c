"""Driving a real Jupyter kernel from tests, the way a notebook frontend does.

`Kernel` starts an ipykernel on this interpreter with ``CLAUDE_LAB_HOME`` in a
temporary folder and no ``ANTHROPIC_API_KEY`` (nothing can reach the internet:
every test talks to an emulator started inside the kernel). It reads every
IOPub message into one ordered log, so a test can ask what arrived while a
given cell was running, and it mirrors widget state from ``comm_open`` /
``comm_msg`` the way a frontend's widget manager does.
"""

from __future__ import annotations

import json
import os
import queue
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
#: Ids that must never appear in a plain-text summary (nbval compares it verbatim).
VOLATILE_ID = re.compile(r"job_[0-9a-f]{6,}|msgbatch_\w+|127\.0\.0\.1:\d+")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def child_env(home: Path) -> dict[str, str]:
    """The environment of a kernel or subprocess: private journal, no API key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["CLAUDE_LAB_HOME"] = str(home)
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    return env


@dataclass
class Execution:
    """Everything one execute request produced."""

    msg_id: str
    code: str
    reply: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    busy_at: int = -1  # positions in Kernel.log
    idle_at: int = -1

    @property
    def done(self) -> bool:
        return self.idle_at >= 0 and self.reply is not None

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in types]

    def stream(self, name: str) -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == name
        )

    @property
    def stdout(self) -> str:
        return self.stream("stdout")

    @property
    def stderr(self) -> str:
        return self.stream("stderr")

    @property
    def error(self) -> dict[str, Any] | None:
        errors = self.of_type("error")
        return errors[0]["content"] if errors else None

    @property
    def result(self) -> str | None:
        """text/plain of the execute_result, if any."""
        results = self.of_type("execute_result")
        return results[-1]["content"]["data"].get("text/plain") if results else None

    def traceback(self) -> str:
        err = self.error
        return _ANSI.sub("", "\n".join(err["traceback"])) if err else ""


class KernelError(AssertionError):
    pass


class Kernel:
    """One running ipykernel, its IOPub log and a mirror of its widgets' state."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=child_env(home), cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=60)
        except BaseException:
            self.shutdown()
            raise
        self.log: list[dict[str, Any]] = []
        self.executions: dict[str, Execution] = {}
        # comm_id -> state, as a frontend's widget manager would hold it
        self.widgets: dict[str, dict[str, Any]] = {}
        # (position in log, comm_id, state delta) for every widget update
        self.widget_updates: list[tuple[int, str, dict[str, Any]]] = []

    # -- lifecycle --------------------------------------------------------------------

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    # -- executing --------------------------------------------------------------------

    def send(self, code: str) -> Execution:
        """Queue an execute request without waiting (what Run All does for every cell)."""
        msg_id = self.kc.execute(code, store_history=True, stop_on_error=True)
        ex = Execution(msg_id, code)
        self.executions[msg_id] = ex
        return ex

    def wait(self, ex: Execution, timeout: float = 30.0) -> Execution:
        """Read IOPub (and shell replies) until ``ex`` has gone idle and been answered."""
        deadline = time.monotonic() + timeout
        while not ex.done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KernelError(f"cell did not finish within {timeout} s:\n{ex.code}")
            self.pump(min(left, 0.5))
        return ex

    def run(self, code: str, timeout: float = 30.0, *, allow_error: bool = False) -> Execution:
        ex = self.wait(self.send(code), timeout)
        if not allow_error and ex.error is not None:
            raise KernelError(f"cell failed:\n{code}\n{ex.traceback()}")
        return ex

    def value(self, expr: str, timeout: float = 30.0) -> Any:
        """Evaluate ``expr`` in the kernel and return it (it must be JSON-serialisable)."""
        ex = self.run(f"import json as _j; print(_j.dumps({expr}, default=str))", timeout)
        return json.loads(ex.stdout.strip().splitlines()[-1])

    def send_comm(self, comm_id: str, data: Mapping[str, Any]) -> None:
        """A comm message from the 'frontend' to a widget, e.g. a button click."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": dict(data)})
        self.kc.shell_channel.send(msg)

    def click(self, button_model_id: str) -> None:
        """Click an ipywidgets Button the way JupyterLab does."""
        self.send_comm(button_model_id, {"method": "custom", "content": {"event": "click"}})

    # -- reading ----------------------------------------------------------------------

    def pump(self, timeout: float) -> bool:
        """Read whatever arrives within ``timeout``; True if anything did."""
        got = False
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            msg = None
        while msg is not None:
            got = True
            self._record(msg)
            try:
                msg = self.kc.get_iopub_msg(timeout=0)
            except queue.Empty:
                msg = None
        while True:
            try:
                reply = self.kc.get_shell_msg(timeout=0)
            except queue.Empty:
                break
            ex = self.executions.get(reply["parent_header"].get("msg_id"))
            if ex is not None:
                ex.reply = reply["content"]
        return got

    def drain(self, seconds: float) -> None:
        """Keep reading for ``seconds`` (lets a background thread's messages arrive)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump(max(0.0, min(0.1, end - time.monotonic())))

    def _record(self, msg: dict[str, Any]) -> None:
        pos = len(self.log)
        self.log.append(msg)
        kind, content = msg["msg_type"], msg["content"]
        if kind == "comm_open":
            state = dict((content.get("data") or {}).get("state") or {})
            self.widgets[content["comm_id"]] = dict(state)
            self.widget_updates.append((pos, content["comm_id"], state))
        elif kind == "comm_msg":
            data = content.get("data") or {}
            if data.get("method") in ("update", "echo_update"):
                delta = dict(data.get("state") or {})
                self.widgets.setdefault(content["comm_id"], {}).update(delta)
                self.widget_updates.append((pos, content["comm_id"], delta))
        ex = self.executions.get(msg["parent_header"].get("msg_id"))
        if ex is None:
            return
        ex.messages.append(msg)
        if kind == "status":
            if content["execution_state"] == "busy":
                ex.busy_at = pos
            elif content["execution_state"] == "idle":
                ex.idle_at = pos

    def comm_opened(self, model_name: str, start: int = 0) -> list[str]:
        """comm ids of the widgets of one model class opened since log position ``start``."""
        return [
            m["content"]["comm_id"]
            for m in self.log[start:]
            if m["msg_type"] == "comm_open"
            and ((m["content"].get("data") or {}).get("state") or {}).get("_model_name")
            == model_name
        ]

    def updates_of(
        self, comm_id: str, key: str, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, Any]]:
        """(log position, value) of every update of one widget attribute in [start, stop)."""
        for pos, cid, delta in self.widget_updates:
            if cid == comm_id and key in delta and pos >= start and (stop is None or pos < stop):
                yield pos, delta[key]


def widget_ids_code(job: str) -> str:
    """Kernel expression: the model ids of the parts of ``job``'s widget display."""
    parts = "('widget', 'header', 'bar', 'cancel_button', 'hint', 'detail')"
    return f"{{k: getattr({job}._display, k).model_id for k in {parts}}}"


LEGEND_COUNT = re.compile(r"(processing|succeeded|errored|canceled|expired) <b>([\d,]+)</b>")
FINISHED = re.compile(r"([\d,]+)/([\d,]+) finished")


def legend_counts(legend_html: str) -> dict[str, int]:
    """The five counts the widget's fold-out shows, parsed from its HTML."""
    return {k: int(v.replace(",", "")) for k, v in LEGEND_COUNT.findall(legend_html)}


def finished_of(header_html: str) -> tuple[int, int] | None:
    """(finished, total) from the widget's header line, if it shows them."""
    m = FINISHED.search(header_html)
    return (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) if m else None


#: Debian's chromium: Playwright's own browser download does not work on this machine.
CHROMIUM = "/usr/bin/chromium"


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A headless Debian chromium driven by Playwright, closed after the block; the
    calling test skips when chromium or playwright is not installed."""
    import pytest

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (Debian package 'chromium')")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()
