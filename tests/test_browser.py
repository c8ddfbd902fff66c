"""The live widget in a real JupyterLab, in headless Chromium, read back from the DOM.

Starts JupyterLab on 127.0.0.1 (random port, token) over a temporary folder holding
one small notebook that runs a batch against a slowed emulator, runs its cells with
Shift+Enter like a user, and polls the page while the batch runs. Skips only when
Debian's chromium or Playwright is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from notebook_helpers import CHROMIUM, child_env, headless_chromium

pytestmark = pytest.mark.browser

ROWS = 60
#: Set to a folder to keep the screenshots (docs/display-light.png is made this way).
SHOTS = os.environ.get("CLAUDE_LAB_SCREENSHOTS")
#: "light" or "dark": the JupyterLab theme of the run.
THEME = os.environ.get("CLAUDE_LAB_THEME", "light")

CELLS = [
    "import claude_lab\n"
    "from claude_lab._demo import load_sample\n"
    "from claude_lab.emulator import serve\n"
    f"df = load_sample().head({ROWS})\n"
    "emu = serve(counts='incremental', request_seconds=0.1, concurrency=2, seed=0,\n"
    "            transport='socket',\n"
    "            faults={'error_rate': 0.2, 'error_types': ['overloaded_error']}).start()\n"
    "client = emu.client()",
    # A small job that ends with errors, after its cell returned (wait=False): its
    # output still becomes the result card.
    "first = df.head(12).claude.batch('Q: {question}', model='claude-haiku-4-5', "
    "max_tokens=32, client=client, poll_interval=(0.1, 0.3), wait=False)",
    # 60 rows, 2 at a time, 0.1 s each: about 3 s of batch with moving counts.
    "first.wait()\nemu.faults = {}\n"
    "out = df.claude.batch('Question: {question}\\nAnswer with a single number.', "
    "model='claude-haiku-4-5', max_tokens=32, client=client, poll_interval=(0.1, 0.3))",
    # A live display whose cost line holds two dollar amounts (as on a multi-batch job).
    "from claude_lab._progress import Snapshot\n"
    "from claude_lab._widget import WidgetDisplay\n"
    "shown = WidgetDisplay(on_cancel=lambda: None, min_interval=0)\n"
    "shown.update(Snapshot(job_id='job_cost', batch_ids=(), status='in_progress', "
    "counts={'processing': 5, 'succeeded': 5}, requests=10, rows=10, counts_move=True, "
    "cost_usd=0.0123, estimated_cost_usd=0.05))\n"
    "display(shown.widget)",
    "print('requests', out.attrs['claude_lab']['requests'], "
    "'status', out.claude_status.value_counts().to_dict())",
    # Canceled from the page while this wait=True cell blocks.
    "late = df.claude.batch('Again: {question}', model='claude-haiku-4-5', max_tokens=32, "
    "client=client, poll_interval=(0.1, 0.3))",
]

# What one cell's output area shows, read in the page.
READ_OUTPUT = """
(index) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[index];
  const out = cell && cell.querySelector('.jp-OutputArea');
  // A notebook still rendering (e.g. just reopened) has no such cell yet: read as empty.
  if (!out) return {text: '', live: false, card: false, math: 0};
  return {
    text: out.innerText,
    live: !!out.querySelector('.claude-lab-bar') && !!out.querySelector('.widget-button'),
    card: !!out.querySelector('.claude-lab-summary .claude-lab-headline'),
    math: out.querySelectorAll('mjx-container, .MathJax, .katex').length,
  };
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A JupyterLab server over a folder holding check.ipynb; shut down cleanly after."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (Debian package 'chromium')")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

    root = tmp_path / "lab"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "check.ipynb")

    port, token = _free_port(), secrets.token_hex(16)
    env = child_env(tmp_path / "home")
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
    ):
        env[var] = str(tmp_path / sub)
    # No "get notified about Jupyter news?" toast over the screenshot.
    notification = (
        tmp_path / "settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    )
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false"}')
    theme = tmp_path / "settings/@jupyterlab/apputils-extension/themes.jupyterlab-settings"
    name = "JupyterLab Dark" if THEME == "dark" else "JupyterLab Light"
    theme.write_text(f'{{"theme": "{name}"}}')
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--allow-root",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = (tmp_path / "jupyterlab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "jupyterlab.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not start within 30 s"
                time.sleep(0.2)
        yield {"base": base, "token": token, "log": tmp_path / "jupyterlab.log", "root": root}
    finally:
        try:  # the clean way: the server stops its kernels and exits
            req = urllib.request.Request(
                f"{base}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"}
            )
            urllib.request.urlopen(req, timeout=5).close()
            proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _prompt(page: Any, index: int) -> str:
    return page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").nth(index).inner_text()


def _run_cell(page: Any, index: int) -> None:
    """Shift+Enter on cell ``index`` (selected); retry while the keypress is lost."""
    before = _prompt(page, index)
    for _ in range(10):
        page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if _prompt(page, index) != before:
                return
            page.wait_for_timeout(50)
        page.locator(".jp-Notebook .jp-CodeCell").nth(index).click()
    raise AssertionError(f"cell {index} never started")


def _wait_done(page: Any, index: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not re.fullmatch(r"\[\d+\]:", _prompt(page, index).strip()):
        assert time.monotonic() < deadline, f"cell {index} did not finish"
        page.wait_for_timeout(100)


def _until(page: Any, ready: Any, timeout: float = 120) -> None:
    """Wait for a DOM condition instead of a fixed pause (slow under load, fast otherwise)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "the page never reached the expected state"
        page.wait_for_timeout(100)


def _open(browser: Any, lab: dict[str, Any]) -> Any:
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    # Generous bounds, not timings: a loaded 2-core CI box renders JupyterLab slowly.
    page.set_default_timeout(120_000)
    page.goto(f"{lab['base']}/lab/tree/check.ipynb?token={lab['token']}")
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=40_000)
    return page


def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.locator(".jp-NotebookPanel").screenshot(path=str(Path(SHOTS) / f"{name}-{THEME}.png"))


def test_display_live_then_a_card_that_survives_reopening(lab: dict[str, Any]) -> None:
    with headless_chromium() as browser:
        page = _open(browser, lab)
        page.locator(".jp-Notebook .jp-CodeCell").first.click()
        for index in (0, 1):
            _run_cell(page, index)
            _wait_done(page, index)
        _run_cell(page, 2)

        states, shot = [], False
        deadline = time.monotonic() + 120
        while not re.fullmatch(r"\[\d+\]:", _prompt(page, 2).strip()):
            assert time.monotonic() < deadline, "the batch cell did not finish"
            state = page.evaluate(READ_OUTPUT, 2)
            if state and state["live"]:
                found = re.search(r"(\d+)/(\d+) finished", state["text"])
                if found:
                    states.append((int(found.group(1)), int(found.group(2))))
                    if not shot and 0 < states[-1][0] < states[-1][1]:
                        _shot(page, "display")  # the card above, the live view below
                        shot = True
            page.wait_for_timeout(100)
        for index in (3, 4):
            _run_cell(page, index)
            _wait_done(page, index)
        _until(page, lambda: all(page.evaluate(READ_OUTPUT, i)["card"] for i in (1, 2)))
        first, final, cost = (page.evaluate(READ_OUTPUT, i) for i in (1, 2, 3))
        printed = page.locator(".jp-Notebook .jp-CodeCell").nth(4).inner_text()

        _run_cell(page, 5)
        late = page.locator(".jp-Notebook .jp-CodeCell").nth(5)
        deadline = time.monotonic() + 120
        while True:  # click Cancel once some requests finished; the cell still blocks
            assert time.monotonic() < deadline, "the last batch never moved"
            found = re.search(r"(\d+)/\d+ finished", late.inner_text())
            if found and int(found.group(1)) >= 2:
                break
            page.wait_for_timeout(50)
        assert _prompt(page, 5).strip() == "[*]:"
        late.locator(".widget-button").click()
        _wait_done(page, 5)
        _until(page, lambda: page.evaluate(READ_OUTPUT, 5)["card"])
        canceled = page.evaluate(READ_OUTPUT, 5)

        # Save, stop the kernel, open the notebook again: widget models are gone.
        # A keypress can be lost under load (as _run_cell knows): press again until saved.
        for _ in range(24):
            page.keyboard.press("Control+s")
            with contextlib.suppress(AssertionError):
                _until(
                    page,
                    lambda: "Canceled:" in _api(lab, "GET", "/api/contents/check.ipynb"),
                    timeout=5,
                )
                break
        assert "Canceled:" in _api(lab, "GET", "/api/contents/check.ipynb"), "never saved"
        page.close()
        sessions = json.loads(_api(lab, "GET", "/api/sessions"))
        for session in sessions:
            _api(lab, "DELETE", f"/api/sessions/{session['id']}")
        page = _open(browser, lab)
        _until(page, lambda: bool(page.evaluate(READ_OUTPUT, 2)["text"].strip()))
        reopened = page.evaluate(READ_OUTPUT, 2)
        reopened_first = page.evaluate(READ_OUTPUT, 1)
        _shot(page, "reopened")

    match = re.search(r"requests (\d+) status \{'succeeded': (\d+)\}", printed)
    assert match and int(match.group(2)) == ROWS, printed
    requests = int(match.group(1))
    assert states and all(total == requests for _, total in states), states
    assert any(0 < done < requests for done, _ in states), f"no intermediate counts: {states}"

    # At the end each job output is the static card, not the widget.
    assert final["card"] and not final["live"], final["text"]
    assert f"Done: {requests} succeeded" in final["text"], final["text"]
    assert first["card"] and re.search(r"\d+ errored → job\.retry\(\)", first["text"]), first
    # Two dollar amounts on one line stay text: nothing typeset as maths.
    assert "cost $0.0123 / estimated ≤ $0.0500" in cost["text"], cost["text"]
    assert cost["math"] == 0

    # Cancel clicked in the page while the wait=True cell blocked.
    assert canceled["card"], canceled["text"]
    assert re.search(r"Canceled: \d+ kept, [1-9]\d* canceled", canceled["text"]), canceled

    # Reopened with no kernel: the saved card, never "model not found".
    for shown in (reopened, reopened_first):
        assert shown["card"], shown["text"]
        assert "Error displaying widget" not in shown["text"]
        assert "model not found" not in shown["text"]
    assert f"Done: {requests} succeeded" in reopened["text"]
    assert saved_outputs_have_no_widget_view(lab["root"] / "check.ipynb")


def _api(lab: dict[str, Any], method: str, path: str) -> str:
    req = urllib.request.Request(
        f"{lab['base']}{path}", method=method, headers={"Authorization": f"token {lab['token']}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode() or "null"


def saved_outputs_have_no_widget_view(path: Path) -> bool:
    """The saved notebook's job outputs hold the card only (cells 1 and 2)."""
    nb = nbformat.read(path, as_version=4)
    outputs = [o for cell in nb.cells[1:3] for o in cell.outputs]
    return bool(outputs) and all(
        "application/vnd.jupyter.widget-view+json" not in o.get("data", {}) for o in outputs
    )
