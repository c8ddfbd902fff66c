"""Templates: what is refused, what is rendered, and the missing-value policy."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from claude_lab import _templates as templates
from claude_lab._errors import InputError, TemplateError

BASE = {"model": "claude-haiku-4-5", "max_tokens": 16}


def _render(df: pd.DataFrame, prompt: object, system: object = None, **kw: object):
    return templates.render(df, templates.compile_prompt(prompt, system), BASE, **kw)


@pytest.mark.parametrize("bad", ["{a.b}", "{a[0]}", "{0}", "{}", "{a!r}", "{__class__.__init__}"])
def test_non_plain_fields_are_refused(bad: str) -> None:
    with pytest.raises(TemplateError, match="plain column names"):
        templates.compile_prompt(f"Q: {bad}")


def test_unbalanced_brace_names_the_fix() -> None:
    with pytest.raises(TemplateError, match="literal brace"):
        templates.compile_prompt("Q: {question")


def test_one_error_lists_every_missing_column_and_the_existing_ones() -> None:
    df = pd.DataFrame({"question": ["x"], "answer": ["y"]})
    with pytest.raises(TemplateError) as info:
        _render(df, "{question} {topic}", system="Grade {level}")
    msg = str(info.value)
    assert "'topic'" in msg and "'level'" in msg
    assert "'question', 'answer'" in msg


def test_renders_user_and_system_per_row_and_keeps_literal_braces() -> None:
    df = pd.DataFrame({"q": ["2+2", "3*3"], "n": [1, 2]})
    r = _render(df, "#{n}: {q} {{json}}", system="Row {n}")
    assert r.params[0] == {
        **BASE,
        "system": "Row 1",
        "messages": [{"role": "user", "content": "#1: 2+2 {json}"}],
    }
    assert r.params[1]["messages"][0]["content"] == "#2: 3*3 {json}"
    assert not r.skipped.any()


@pytest.mark.parametrize("bad", ["{q:{other}}", "{q:>10}", "{q:.2f}", "{q!r:>3}", "{q!s}"])
def test_format_specs_and_conversions_are_refused_before_rendering(bad: str) -> None:
    df = pd.DataFrame({"q": [0.12345], "other": [">5"]})
    with pytest.raises(TemplateError, match="plain column names") as info:
        _render(df, f"Q: {bad}")
    assert "format" in str(info.value) or "!" in bad
    with pytest.raises(TemplateError, match="plain column names"):
        templates.compile_prompt("hi", system=f"S {bad}")


def test_multi_turn_and_content_blocks() -> None:
    df = pd.DataFrame({"q": ["hi"], "a": ["hello"]})
    prompt = [
        {"role": "user", "content": "{q}"},
        {"role": "assistant", "content": "{a}"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "again {q}", "cache_control": {"type": "ephemeral"}}
            ],
        },
    ]
    msgs = _render(df, prompt).params[0]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[2]["content"][0] == {
        "type": "text",
        "text": "again hi",
        "cache_control": {"type": "ephemeral"},
    }


@pytest.mark.parametrize(
    "prompt",
    [[{"role": "system", "content": "x"}], [{"role": "assistant", "content": "x"}], [], 42],
)
def test_bad_prompt_shapes(prompt: object) -> None:
    with pytest.raises(InputError):
        templates.compile_prompt(prompt)  # type: ignore[arg-type]


def test_missing_values_skip_raise_empty() -> None:
    df = pd.DataFrame({"q": ["a", None, np.nan, "d"]}, index=["w", "x", "y", "z"])
    skipped = _render(df, "{q}")
    assert skipped.skipped.tolist() == [False, True, True, False]
    assert skipped.params[1] is None and skipped.params[3] is not None
    with pytest.raises(InputError, match=r"2 row\(s\).*'x', 'y'"):
        _render(df, "{q}", on_missing="raise")
    empty = _render(df, "<{q}>", on_missing="empty")
    assert [p["messages"][0]["content"] for p in empty.params] == ["<a>", "<>", "<>", "<d>"]
    with pytest.raises(InputError, match="on_missing"):
        _render(df, "{q}", on_missing="drop")  # type: ignore[arg-type]


def test_callable_prompt_and_none_skips() -> None:
    df = pd.DataFrame({"q": ["a", "b"]})
    r = _render(df, lambda row: None if row["q"] == "b" else f"say {row['q']}")
    assert r.params[0]["messages"] == [{"role": "user", "content": "say a"}]
    assert r.params[1] is None and r.skipped.tolist() == [False, True]


def test_callable_failure_names_the_row() -> None:
    df = pd.DataFrame({"q": ["a"]}, index=["row-a"])
    with pytest.raises(InputError, match=r"'row-a'.*KeyError"):
        _render(df, lambda row: row["nope"])


def test_non_string_values_render_as_text() -> None:
    df = pd.DataFrame({"n": pd.array([1, 2], dtype="Int64"), "f": [1.5, 2.0]})
    r = _render(df, "{n}|{f}")
    assert [p["messages"][0]["content"] for p in r.params] == ["1|1.5", "2|2.0"]


@pytest.mark.parametrize(
    ("prompt", "system"),
    [("Q {q} {a}", None), ("Q {q}", "Be {s}"), ("literal", "plain system"), ("{q}", None)],
)
@pytest.mark.parametrize("on_missing", ["skip", "empty"])
def test_json_rendering_sends_the_same_bytes_as_the_dicts(
    prompt: str, system: str | None, on_missing: str
) -> None:
    # The bytes sent decide each request's custom_id, hence the result cache: the fast
    # path must be byte-for-byte the canonical encoding of what render() builds.
    df = pd.DataFrame(
        {
            "a": [1.5, 2, None, 4],
            "q": ['he said "hi"\n', "é😀\\ \x00", "x", None],
            "s": ["brief", "S\t", "z", "w"],
        }
    )
    base = {
        **BASE,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u"},
        "zeta": [1, {"b": 2, "a": 1}],
    }
    compiled = templates.compile_prompt(prompt, system)
    dicts = templates.render(df, compiled, base, on_missing).params  # type: ignore[arg-type]
    want = [None if p is None else orjson.dumps(p, option=orjson.OPT_SORT_KEYS) for p in dicts]
    assert templates.render_json(df, compiled, base, on_missing) == want  # type: ignore[arg-type]


def test_json_rendering_declines_what_it_cannot_splice() -> None:
    df = pd.DataFrame({"q": ["x"]})
    two_turns = templates.compile_prompt(
        [{"role": "user", "content": "{q}"}, {"role": "assistant", "content": "ok"}]
    )
    assert templates.render_json(df, two_turns, BASE) is None
    assert templates.render_json(df, templates.compile_prompt(lambda row: "x"), BASE) is None
