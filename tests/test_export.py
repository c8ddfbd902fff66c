"""export.py: parquet / csv / jsonl with provenance, and the credential scrub."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from claude_lab._errors import ConfigError, InputError
from claude_lab._export import export, read_provenance, scrub

PROV: dict[str, Any] = {
    "job_id": "job_1",
    "model": "claude-haiku-4-5",
    "templates": {"prompt": "Q: {question}"},
    "params": {"max_tokens": 64, "metadata": {"user_id": "u1"}},
    "batch_ids": ["msgbatch_1", "msgbatch_2"],
    "status_counts": {"succeeded": 2, "errored": 1},
}


def table() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "question": ["1+1", "2+2", "3+3"],
            "claude_text": pd.array(["2", "4", None], dtype="string"),
            "claude_status": pd.array(["succeeded", "succeeded", "errored"], dtype="string"),
            "claude_output_tokens": pd.array([1, 1, None], dtype="Int64"),
            "claude_cost_usd": pd.array([0.001, 0.002, 0.0], dtype="Float64"),
            "claude_cached": pd.array([False, True, False], dtype="boolean"),
        }
    )
    df.attrs["claude_lab"] = PROV
    return df


def test_parquet_roundtrip_with_provenance(tmp_path: Path) -> None:
    df = table()
    path = export(df, tmp_path / "out" / "res.parquet")
    assert path.exists()
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(
        back.reset_index(drop=True), df.reset_index(drop=True), check_dtype=False
    )
    assert back["claude_output_tokens"].isna().tolist() == [False, False, True]
    prov = read_provenance(path)
    assert prov is not None
    assert prov["batch_ids"] == ["msgbatch_1", "msgbatch_2"]
    assert prov["export"]["format"] == "parquet" and prov["export"]["rows"] == 3
    assert "exported_at" in prov and prov["package"].startswith("claude-lab")
    assert not (tmp_path / "out" / "res.parquet.provenance.json").exists()


@pytest.mark.parametrize("name", ["res.csv", "res.jsonl", "res.csv.gz"])
def test_text_formats_write_a_sidecar(tmp_path: Path, name: str) -> None:
    path = export(table(), tmp_path / name)
    sidecar = tmp_path / f"{name}.provenance.json"
    assert sidecar.exists()
    assert read_provenance(path)["model"] == "claude-haiku-4-5"  # type: ignore[index]
    back = pd.read_csv(path) if name.startswith("res.csv") else pd.read_json(path, lines=True)
    assert back["question"].tolist() == ["1+1", "2+2", "3+3"]
    assert "index" not in back.columns


def test_explicit_provenance_wins_and_index_is_kept(tmp_path: Path) -> None:
    df = table()
    df.index = pd.Index(["a", "b", "b"], name="item")
    path = export(df, tmp_path / "res.jsonl", provenance={"note": "mine"})
    prov = read_provenance(path)
    assert prov is not None and prov["note"] == "mine" and "job_id" not in prov
    rows = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    assert [r["item"] for r in rows] == ["a", "b", "b"]
    assert rows[2]["claude_text"] is None
    csv = export(df, tmp_path / "res.csv")
    assert pd.read_csv(csv, index_col=0).index.tolist() == ["a", "b", "b"]


def test_no_provenance_anywhere_still_records_the_export(tmp_path: Path) -> None:
    path = export(pd.DataFrame({"x": [1]}), tmp_path / "plain.csv")
    prov = read_provenance(path)
    assert prov is not None and prov["export"]["columns"] == ["x"]
    assert read_provenance(tmp_path / "never_written.csv") is None


def test_nested_cells_become_json(tmp_path: Path) -> None:
    df = pd.DataFrame({"claude_tool_calls": [[{"name": "f", "input": {"a": 1}}], None]})
    path = export(df, tmp_path / "t.csv")
    first = pd.read_csv(path)["claude_tool_calls"][0]
    assert orjson.loads(first) == [{"name": "f", "input": {"a": 1}}]
    # Heterogeneous nested values have no single arrow type; parquet still writes.
    mixed = pd.DataFrame({"v": [{"a": 1}, [1, 2], "x"]})
    export(mixed, tmp_path / "m.parquet")
    assert len(pd.read_parquet(tmp_path / "m.parquet")) == 3


def test_credentials_never_written(tmp_path: Path) -> None:
    key = "sk-ant-api03-" + "A" * 40
    prov = {
        "model": "claude-haiku-4-5",
        "api_key": key,
        "client": {"X-Api-Key": key, "Authorization": f"Bearer {key}", "base_url": "http://x"},
        "ANTHROPIC_API_KEY": key,
        "headers": [{"authorization": "Bearer abc"}],
        "templates": {"prompt": f"oops {key} pasted"},
    }
    for name in ("p.parquet", "p.csv", "p.jsonl"):
        path = export(table(), tmp_path / name, provenance=prov)
        raw = (
            path.read_bytes()
            if name.endswith("parquet")
            else Path(f"{path}.provenance.json").read_bytes()
        )
        assert key.encode() not in raw and b"Bearer" not in raw
        got = read_provenance(path)
        assert got is not None
        assert "api_key" not in got and "ANTHROPIC_API_KEY" not in got
        assert got["client"] == {"base_url": "http://x"}
        assert got["headers"] == [{}]
        assert got["templates"]["prompt"] == "oops [redacted] pasted"


def test_attrs_are_scrubbed_in_parquet_pandas_metadata(tmp_path: Path) -> None:
    key = "sk-ant-api03-" + "B" * 40
    df = table()
    df.attrs = {"claude_lab": {**PROV, "api_key": key}, "mine": {"token_secret": key, "x": 1}}
    path = export(df, tmp_path / "a.parquet")
    assert key.encode() not in path.read_bytes()
    back = pd.read_parquet(path)
    assert back.attrs["claude_lab"]["job_id"] == "job_1"
    assert "api_key" not in back.attrs["claude_lab"]
    assert back.attrs["mine"] == {"x": 1}


def test_scrub_is_a_copy() -> None:
    src = {"a": {"api-key": 1, "b": 2}}
    assert scrub(src) == {"a": {"b": 2}}
    assert src == {"a": {"api-key": 1, "b": 2}}


def test_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.parquet, \.csv or \.jsonl"):
        export(table(), tmp_path / "out.xlsx")
    with pytest.raises(InputError):
        export(table(), tmp_path / "out.parquet.gz")
    with pytest.raises(InputError):
        export([1, 2], tmp_path / "out.csv")  # type: ignore[arg-type]


def test_missing_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"pip install 'claude-lab\[parquet\]'"):
        export(table(), tmp_path / "x.parquet")
    # csv needs nothing extra
    export(table(), tmp_path / "x.csv")
