"""Errors say what is wrong and what to do, in the user's terms, before anything is spent."""

from __future__ import annotations

import socket
from typing import Any

import anthropic
import pandas as pd
import pytest

import claude_lab
from claude_lab._cli import main
from claude_lab._demo import run_demo
from claude_lab._errors import InputError, JobError
from claude_lab._models import ModelsWarning
from claude_lab.emulator import Emulator

CREATE = ("POST", "/v1/messages/batches")
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}
DF = pd.DataFrame({"q": ["a", "b"]})


@pytest.mark.parametrize(
    ("call", "where"),
    [
        (lambda kw: DF.claude.batch("{q}", **kw), "df.claude.batch"),
        (lambda kw: DF.claude.estimate("{q}", **kw), "df.claude.estimate"),
    ],
)
def test_a_misspelt_keyword_names_the_call_and_the_nearest_option(call: Any, where: str) -> None:
    with pytest.raises(TypeError) as info:
        call({"model": "claude-haiku-4-5", "max_token": 5})
    message = str(info.value)
    assert message.startswith(f"{where}() got an unexpected keyword argument 'max_token'")
    assert "did you mean max_tokens=?" in message
    assert "plan()" not in message
    assert len(claude_lab.jobs()) == 0


def test_abatch_names_itself_too() -> None:
    coro = DF.claude.abatch("{q}", model="claude-haiku-4-5", on_mising="skip")
    with pytest.raises(TypeError, match=r"df\.claude\.abatch\(\).*did you mean on_missing=\?"):
        coro.send(None)
    coro.close()


def test_a_keyword_with_no_near_match_lists_the_options() -> None:
    with pytest.raises(TypeError, match=r"its options are .*max_tokens.*wait"):
        DF.claude.batch("{q}", model="claude-haiku-4-5", zzzz=1)


@pytest.mark.parametrize(
    "prices",
    [{"m": "cheap"}, {"m": (1.0,)}, {"m": (-1.0, 2.0)}, {"m": (float("nan"), 1)}, ["x"]],
)
def test_bad_prices_are_refused_before_the_journal(fast: Emulator, prices: Any) -> None:
    with pytest.raises(InputError, match=r"prices"):
        DF.claude.batch("{q}", prices=prices, client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 0 and len(claude_lab.jobs()) == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [("thinking", "on"), ("tool_choice", 3), ("metadata", ["x"]), ("tools", "search")],
)
def test_settings_of_the_wrong_shape_are_refused_before_the_journal(
    fast: Emulator, key: str, value: Any
) -> None:
    # "auto" is a valid tool_choice shorthand, so a number stands for the wrong shape.
    with pytest.raises(InputError, match=rf"{key}(=|\[0\])"):
        DF.claude.batch("{q}", client=fast.client(), **{key: value}, **FAST)
    assert len(claude_lab.jobs()) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_connection_error_names_the_url_and_suggests_the_emulator() -> None:
    port = _free_port()
    client = anthropic.Anthropic(api_key="test", base_url=f"http://127.0.0.1:{port}", max_retries=0)
    # The model catalogue cannot be read either: the SDK's model list stands in, with a warning.
    with pytest.raises(JobError) as info, pytest.warns(ModelsWarning, match="could not be reached"):
        DF.claude.batch("{q}", client=client, **FAST)
    message = str(info.value)
    assert f"http://127.0.0.1:{port}" in message
    assert f"Nothing is listening on 127.0.0.1:{port}" in message
    assert "claude_lab.emulator" in message
    assert isinstance(info.value.__cause__, anthropic.APIConnectionError)


def test_demo_refuses_a_negative_row_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--rows", "-5"])
    assert info.value.code == 2
    assert "must be 1 or more, got -5" in capsys.readouterr().err
    with pytest.raises(InputError, match="rows=-5"):
        run_demo(rows=-5)
