"""A journal claude_lab cannot use (not a database, truncated, read-only) is one clear
JournalError naming the file and the way out, and the file is left exactly as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

import claude_lab
from claude_lab._errors import ConfigError, JournalError
from claude_lab._ledger import Journal, default_home
from claude_lab.emulator import Emulator

SUM = "What is {a} + {b}?"
FAST = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}


def _journal_path() -> Path:
    return (default_home() / "journal.sqlite3").resolve()


def _filled_journal(path: Path) -> None:
    """A real journal of several pages (so a cut one loses tables' pages, not just rows)."""
    with Journal(path) as j:
        for n in range(40):
            job = j.create_job(
                fingerprint=f"fp{n}",
                endpoint="https://api.example.test",
                model="claude-haiku-4-5",
                templates={"prompt": "x" * 2000},
                params={},
                name="claude",
                row_count=1,
                request_count=1,
                package_version="0",
            )
            j.add_rows(job, [n], [f"r{n:032x}"])
    # Fold the WAL into the main file, as after any clean exit.
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _says_what_to_do(message: str, path: Path) -> None:
    assert str(path) in message
    assert "CLAUDE_LAB_HOME" in message
    assert "cache=False does not avoid the journal" in message
    assert "never deletes or overwrites" in message


def _batch_refused(emu: Emulator, path: Path) -> JournalError:
    df = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    with pytest.raises(JournalError) as info:
        df.claude.batch(SUM, client=emu.client(), **FAST)
    # Nothing sent: the model catalogue is the only thing read before the journal.
    assert not [r for r in emu.requests if r.path.startswith("/v1/") and r.path != "/v1/models"]
    _says_what_to_do(str(info.value), path)
    return info.value


def test_a_file_that_is_not_a_database(fast: Emulator) -> None:
    path = _journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    junk = b"these are someone's notes, not a journal\n" * 200
    path.write_bytes(junk)
    err = _batch_refused(fast, path)
    assert "is not a SQLite database" in str(err) and "mv " in str(err)
    assert path.read_bytes() == junk  # never overwritten
    assert isinstance(err, ConfigError) and "JournalError" in claude_lab.__all__


@pytest.mark.parametrize("keep", [0.5, 0.1, 50])
def test_a_truncated_journal(fast: Emulator, keep: float) -> None:
    path = _journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    _filled_journal(path)
    data = path.read_bytes()
    cut = data[: int(len(data) * keep)] if keep < 1 else data[: int(keep)]
    path.write_bytes(cut)
    with pytest.raises(JournalError) as info:
        Journal(path).list_jobs()
    assert "damaged or truncated" in str(info.value)
    _says_what_to_do(str(info.value), path)
    _batch_refused(fast, path)
    assert path.read_bytes() == cut


def _read_only(target: Path) -> Callable[[], None] | None:
    """Make ``target`` truly read-only for this process and return how to undo it.

    chmod stops writes for ordinary users; root ignores file modes, so as root the
    immutable attribute is used (it binds root too). None if neither holds here.
    """
    mode = target.stat().st_mode
    target.chmod(0o555 if target.is_dir() else 0o444)

    def writable() -> bool:
        if target.is_dir():
            probe = target / ".probe"
            try:
                probe.write_bytes(b"")
            except OSError:
                return False
            probe.unlink()
            return True
        try:
            os.close(os.open(target, os.O_RDWR))
        except OSError:
            return False
        return True

    if not writable():
        return lambda: target.chmod(mode)
    target.chmod(mode)
    chattr = shutil.which("chattr")
    if chattr is None:
        return None
    if subprocess.run([chattr, "+i", str(target)], capture_output=True).returncode != 0:
        return None
    if writable():
        subprocess.run([chattr, "-i", str(target)], capture_output=True)
        return None
    return lambda: subprocess.run([chattr, "-i", str(target)], check=True)


@pytest.fixture
def undo() -> Iterator[list[Callable[[], None]]]:
    undos: list[Callable[[], None]] = []
    yield undos
    for step in reversed(undos):
        step()


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_journal(fast: Emulator, what: str, undo: list[Callable[[], None]]) -> None:
    path = _journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    _filled_journal(path)
    before = path.read_bytes()
    step = _read_only(path if what == "file" else path.parent)
    if step is None:
        pytest.skip("cannot make a file read-only for this user here (no chattr as root)")
    undo.append(step)
    err = _batch_refused(fast, path)
    assert "read-only" in str(err) and "writable" in str(err)
    assert path.read_bytes() == before


def test_another_applications_database_is_left_untouched(fast: Emulator) -> None:
    import sqlite3

    path = _journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    err = _batch_refused(fast, path)
    assert "not a claude_lab journal" in str(err)
    assert path.read_bytes() == before  # not switched to WAL, no tables added
