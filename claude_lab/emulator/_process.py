"""The emulator as its own process: start ``python -m claude_lab.emulator``, yield its URL.

For what must look like a remote API (tests across processes, benchmarks that measure
the client alone). Private: tests and benchmarks import it; users run the command.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["spawned"]


@contextmanager
def spawned(*args: str) -> Iterator[str]:
    """Run the emulator on a free port with ``args`` (CLI flags) until the block ends;
    yields its base URL, read from the line it prints when it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_lab.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = ""
        for line in proc.stdout:
            if "http://127.0.0.1:" in line:
                base_url = "http://" + line.split("http://", 1)[1].split()[0].rstrip("/")
                break
        if not base_url:
            raise RuntimeError(f"the emulator exited ({proc.wait()}) without listening")
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
