"""The live widget in a real JupyterLab, in headless Chromium, read back from the DOM.

Starts JupyterLab on 127.0.0.1 (random port, token) over a temporary folder holding
one small notebook that runs a batch against a slowed emulator, runs its cells with
Shift+Enter like a user, and polls the page while the batch runs. Skips only when
Debian's chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
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
from notebook_helpers import child_env

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[1] / "browser_check.png"
ROWS = 60

CELLS = [
    # 60 rows, 2 at a time, 0.1 s each: about 3 s of batch with moving counts.
    "import claude_lab\n"
    "from claude_lab.demo import load_sample\n"
    "from claude_lab.emulator import serve\n"
    f"df = load_sample().head({ROWS})\n"
    "emu = serve(counts='incremental', request_seconds=0.1, concurrency=2, seed=0).start()\n"
    "client = emu.client()",
    "out = df.claude.batch('Question: {question}\\nAnswer with a single number.', "
    "model='claude-haiku-4-5', max_tokens=32, client=client, poll_interval=(0.1, 0.3))",
    "print('requests', out.attrs['claude_lab']['requests'], "
    "'status', out.claude_status.value_counts().to_dict())",
]

# What the batch cell's output area shows, read in the page.
READ_WIDGET = """
() => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[1];
  if (!cell) return null;
  const out = cell.querySelector('.jp-OutputArea');
  const bar = out.querySelector('.widget-hprogress');
  const labels = [...out.querySelectorAll('.widget-label')].map(e => e.textContent.trim());
  const fill = bar ? bar.querySelector('.progress-bar') : null;
  return {
    text: out.innerText,
    bar: !!bar,
    fallback: !!out.querySelector('.claude-lab-summary'),
    finished: labels.find(t => / finished$/.test(t)) || null,
    barClass: fill ? fill.className : null,
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
        yield {"base": base, "token": token, "log": tmp_path / "jupyterlab.log"}
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
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            if _prompt(page, index) != before:
                return
            page.wait_for_timeout(50)
        page.locator(".jp-Notebook .jp-CodeCell").nth(index).click()
    raise AssertionError(f"cell {index} never started")


def _wait_done(page: Any, index: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not re.fullmatch(r"\[\d+\]:", _prompt(page, index).strip()):
        assert time.monotonic() < deadline, f"cell {index} did not finish"
        page.wait_for_timeout(100)


def test_widget_renders_live_in_jupyterlab(lab: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
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
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{lab['base']}/lab/tree/check.ipynb?token={lab['token']}")
            page.wait_for_selector(
                '.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=40_000
            )
            page.locator(".jp-Notebook .jp-CodeCell").first.click()

            _run_cell(page, 0)
            _wait_done(page, 0)
            _run_cell(page, 1)

            states = []
            deadline = time.monotonic() + 40
            while not re.fullmatch(r"\[\d+\]:", _prompt(page, 1).strip()):
                assert time.monotonic() < deadline, "the batch cell did not finish"
                state = page.evaluate(READ_WIDGET)
                if state and state["finished"]:
                    states.append(state["finished"])
                page.wait_for_timeout(100)
            _run_cell(page, 2)
            _wait_done(page, 2)

            printed = page.locator(".jp-Notebook .jp-CodeCell").nth(2).inner_text()
            match = re.search(r"requests (\d+) status \{'succeeded': (\d+)\}", printed)
            assert match, printed
            requests, rows = int(match.group(1)), int(match.group(2))
            assert rows == ROWS

            page.wait_for_timeout(300)  # let the last comm messages render
            final = page.evaluate(READ_WIDGET)
            page.screenshot(path=str(tmp_path / "browser_check.png"), full_page=True)
            shutil.copyfile(tmp_path / "browser_check.png", SCREENSHOT)
        finally:
            browser.close()

    assert final["bar"], f"no widget in the output, it shows: {final['text']!r}"
    assert not final["fallback"], "the text/html fallback is shown instead of the widget"
    assert "Loading widget" not in final["text"] and "Error displaying widget" not in final["text"]
    counts = [tuple(map(int, re.findall(r"\d+", s))) for s in states]
    assert all(total == requests for _, total in counts), states
    assert any(0 < done < requests for done, _ in counts), f"no intermediate counts: {states}"
    assert final["finished"] == f"{requests} / {requests} finished"
    assert "progress-bar-success" in final["barClass"], final["barClass"]
    assert f"Done: succeeded {requests}" in final["text"], final["text"]
