"""The example notebooks run, on a real kernel against the emulator, and still produce
the outputs stored in them (nbval, volatile values sanitized by notebooks/sanitize.cfg).

Each notebook runs in a pytest subprocess: nbval is a pytest plugin that collects
``.ipynb`` files, and running it apart keeps its kernel and its options out of this
session. Cells whose output is a live job display are tagged ``nbval-ignore-output``
(nbval sees the display as first shown, not its final update); every other cell's
output is compared. The stored outputs must also show each job's final summary.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from notebook_helpers import VOLATILE_ID, WIDGET_VIEW_MIME, child_env

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SANITIZE = NOTEBOOKS / "sanitize.cfg"
NAMES = ["quickstart", "evaluation", "images"]


def _load(name: str) -> dict:
    return json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_reproduces_its_stored_outputs(name: str, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(SANITIZE),
        "--nbval-cell-timeout=120",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:benchmark",
        # This session's ini (testpaths, filterwarnings=error, addopts) is not for nbval's run.
        "-c",
        str(tmp_path / "empty.ini"),
        "--rootdir",
        str(NOTEBOOKS),
        "-q",
        str(NOTEBOOKS / f"{name}.ipynb"),
    ]
    (tmp_path / "empty.ini").write_text("[pytest]\n")
    proc = subprocess.run(
        cmd,
        cwd=tmp_path,
        env=child_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, f"nbval failed for {name}.ipynb:\n{report}"
    code_cells = sum(c["cell_type"] == "code" for c in _load(name)["cells"])
    assert re.search(rf"\b{code_cells} passed\b", proc.stdout), report


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebook_shows_final_job_summaries(name: str) -> None:
    """What a reader on GitHub sees: every job display holds its final summary."""
    nb = _load(name)
    displays = [
        out
        for cell in nb["cells"]
        if cell["cell_type"] == "code"
        for out in cell["outputs"]
        if "claude-lab-summary" in "".join(out.get("data", {}).get("text/html", ""))
    ]
    assert displays, "the notebook shows no job display"
    for out in displays:
        plain = "".join(out["data"]["text/plain"])
        html = "".join(out["data"]["text/html"])
        assert plain.startswith("claude_lab job ended · requests "), plain
        assert "processing 0," in plain, plain
        assert not VOLATILE_ID.search(plain), f"volatile id in text/plain: {plain}"
        assert "<table" in html and "<b>ended</b>" in html, html
        # ids only inside the span a sanitizer (or a reader) can recognise
        outside = re.sub(r'<span class="claude-lab-ids">.*?</span>', "", html)
        assert not VOLATILE_ID.search(outside), html
        # A reopened notebook must show the card, not "model not found".
        assert WIDGET_VIEW_MIME not in out["data"], "a saved job output carries a widget view"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["execution_count"] is not None, "stored notebook has unrun cells"
            assert not any(o["output_type"] == "error" for o in cell["outputs"])
    assert "widgets" not in nb["metadata"], "stored widget state is volatile; strip it"
