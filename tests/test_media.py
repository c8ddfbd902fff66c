"""Images and PDFs from columns reach the API as the right blocks; bad ones fail before sending."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from emulator_helpers import Recorder
from PIL import Image

import claude_lab  # noqa: F401  (registers df.claude)
from claude_lab import _media as media
from claude_lab import _shapes as shapes
from claude_lab._errors import InputError, TemplateError
from claude_lab.emulator import Emulator, serve

CREATE = ("POST", "/v1/messages/batches")
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}


@pytest.fixture
def recorded() -> Any:
    rec = Recorder()
    with serve(request_seconds=0, concurrency=100_000, responder=rec) as emulator:
        yield emulator, rec


def _jpeg(width: int = 30, height: int = 20, colour: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="JPEG")
    return buf.getvalue()


def _pdf(pages: int) -> bytes:
    objs = "".join(f"{3 + k} 0 obj << /Type /Page /Parent 2 0 R >> endobj\n" for k in range(pages))
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        + f"2 0 obj << /Type /Pages /Count {pages} >> endobj\n{objs}%%EOF\n".encode()
    )


def _user_blocks(params: dict[str, Any]) -> list[dict[str, Any]]:
    content = params["messages"][-1]["content"]
    assert isinstance(content, list)
    return content


def test_png_and_jpeg_bytes_columns_become_image_blocks_before_the_text(
    recorded: tuple[Emulator, Recorder],
) -> None:
    emu, rec = recorded
    png = shapes.draw("circle", "red")
    jpg = _jpeg()
    df = pd.DataFrame({"photo": [png, jpg], "q": ["What colour?", "What shape?"]})
    out = df.claude.batch("{q}", images="photo", client=emu.client(), **FAST)
    assert (out["claude_status"] == "succeeded").all()
    by_text = {_user_blocks(p)[-1]["text"]: _user_blocks(p) for p in rec.seen}
    first, second = by_text["What colour?"], by_text["What shape?"]
    assert [b["type"] for b in first] == ["image", "text"]
    assert first[0]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": base64.b64encode(png).decode(),
    }
    assert second[0]["source"]["media_type"] == "image/jpeg"
    assert base64.b64decode(second[0]["source"]["data"]) == jpg


def test_a_column_of_paths_sends_the_files_bytes(recorded: tuple[Emulator, Recorder]) -> None:
    emu, rec = recorded
    df = shapes.shapes().head(3)
    out = df.claude.batch("Which shape is this?", images=["path"], client=emu.client(), **FAST)
    assert (out["claude_status"] == "succeeded").all()
    sent = {base64.b64decode(_user_blocks(p)[0]["source"]["data"]) for p in rec.seen}
    assert sent == {Path(p).read_bytes() for p in df["path"]}
    assert all(_user_blocks(p)[0]["source"]["media_type"] == "image/png" for p in rec.seen)


def test_a_column_of_pdfs_becomes_document_blocks_priced_by_page(
    recorded: tuple[Emulator, Recorder],
) -> None:
    emu, rec = recorded
    df = pd.DataFrame({"pdf": [_pdf(1), _pdf(3)]})
    out = df.claude.batch("Summarise.", documents="pdf", client=emu.client(), **FAST)
    assert (out["claude_status"] == "succeeded").all()
    blocks = [_user_blocks(p)[0] for p in rec.seen]
    assert {b["type"] for b in blocks} == {"document"}
    assert {b["source"]["media_type"] for b in blocks} == {"application/pdf"}
    tokens = out["claude_input_tokens"].tolist()
    # 1,500 tokens a page in the emulator: the 3-page PDF costs 3,000 more.
    assert tokens[1] - tokens[0] == 3000


def test_image_tokens_follow_the_real_size(recorded: tuple[Emulator, Recorder]) -> None:
    emu, _ = recorded
    df = pd.DataFrame({"photo": [_jpeg(750, 1000), _jpeg(75, 100)]})
    out = df.claude.batch("Describe.", images="photo", client=emu.client(), **FAST)
    big, small = out["claude_input_tokens"].tolist()
    assert big - small == 1000 - 10  # width * height / 750


def test_identical_images_share_one_request(recorded: tuple[Emulator, Recorder]) -> None:
    emu, rec = recorded
    path = shapes.shapes()["path"][0]
    df = pd.DataFrame({"photo": [path, Path(path), Path(path).read_bytes()]})
    out = df.claude.batch("Label it.", images="photo", client=emu.client(), **FAST)
    assert out["claude_custom_id"].nunique() == 1
    assert len(rec.seen) == 1
    again = df.claude.batch("Label it.", images="photo", client=emu.client(), **FAST)
    assert again["claude_cached"].all() and len(rec.seen) == 1  # the result cache answered


def test_urls_pil_images_lists_and_markers(recorded: tuple[Emulator, Recorder]) -> None:
    emu, rec = recorded
    pil = Image.new("RGB", (10, 10), "blue")
    df = pd.DataFrame(
        {
            "photo": ["https://example.com/cat.png", pil],
            "extra": [[shapes.draw("square", "green"), shapes.draw("circle", "blue")], None],
        }
    )
    prompt = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Compare"}, {"type": "image", "column": "photo"}],
        },
    ]
    out = df.claude.batch(prompt, images="extra", on_missing="empty", client=emu.client(), **FAST)
    assert (out["claude_status"] == "succeeded").all()
    kinds = sorted(
        [
            b["source"]["type"] + ":" + b["source"].get("media_type", "")
            for b in _user_blocks(p)
            if b["type"] == "image"
        ]
        for p in rec.seen
    )
    assert kinds == [["base64:image/png"], ["base64:image/png", "base64:image/png", "url:"]]
    with_url = next(p for p in rec.seen if len(_user_blocks(p)) == 4)
    # images= blocks go first; the marker's block stays where the template put it.
    assert [b["type"] for b in _user_blocks(with_url)] == ["image", "image", "text", "image"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"II*\x00 a tiff", "not PNG, JPEG, GIF or WEBP"),
        (_pdf(1), "pass its column in documents="),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (9000).to_bytes(4, "big") * 2, "9000x9000"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (4 * 1024 * 1024), "5 MB"),
        ("/no/such/file.png", "cannot read"),
    ],
)
def test_bad_images_fail_before_sending_naming_the_row(
    fast: Emulator, value: Any, expected: str
) -> None:
    good = shapes.draw("circle", "red")
    df = pd.DataFrame({"photo": [good, value]}, index=["ok", "bad_row"])
    with pytest.raises(InputError, match=expected) as info:
        df.claude.batch("Label.", images="photo", client=fast.client(), **FAST)
    assert "'bad_row'" in str(info.value) and "'ok'" not in str(info.value)
    assert fast.count(*CREATE) == 0


def test_too_many_pages_for_the_model_fails_before_sending(fast: Emulator) -> None:
    df = pd.DataFrame({"pdf": [_pdf(101)]}, index=["long"])
    with pytest.raises(InputError, match=r"101 PDF pages.*at most 100"):
        df.claude.batch("Summarise.", documents="pdf", client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 0


def test_missing_media_follows_on_missing(fast: Emulator) -> None:
    df = pd.DataFrame({"photo": [shapes.draw("circle", "red"), None]})
    out = df.claude.batch("Label.", images="photo", client=fast.client(), **FAST)
    assert out["claude_status"].tolist() == ["succeeded", "skipped"]
    with pytest.raises(InputError, match="no value in a media column"):
        df.claude.batch("Label.", images="photo", on_missing="raise", client=fast.client(), **FAST)
    with pytest.raises(TemplateError, match="'nope'"):
        df.claude.batch("Label.", images="nope", client=fast.client(), **FAST)


def test_model_without_image_input_is_refused() -> None:
    media.check_capabilities(
        "m", {"image_input": {"supported": True}}, images=True, documents=False
    )
    with pytest.raises(InputError, match="does not accept PDFs"):
        media.check_capabilities(
            "m", {"pdf_input": {"supported": False}}, images=False, documents=True
        )


def test_estimate_counts_image_tokens_not_base64_characters() -> None:
    df = pd.DataFrame({"photo": [_jpeg(750, 1000, "white")]})
    est = df.claude.estimate("Describe.", images="photo", **{"model": "claude-haiku-4-5"})
    assert 1000 <= est["input_tokens_estimate"] < 1100


def test_emulator_refuses_a_media_type_that_does_not_match(emu: Emulator) -> None:
    client = emu.client()
    block = {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/jpeg",
            "data": base64.b64encode(shapes.draw("circle", "red")).decode(),
        },
    }
    import anthropic

    with pytest.raises(anthropic.BadRequestError, match="does not match the provided media type"):
        client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": [block]}],  # type: ignore[list-item]
        )


def test_the_shipped_shape_images_are_the_drawn_ones() -> None:
    frame = shapes.shapes()
    assert len(frame) == 9
    for path, shape, colour in zip(frame["path"], frame["shape"], frame["colour"]):
        data = Path(path).read_bytes()  # committed package data, never downloaded
        assert data == shapes.draw(shape, colour)
        assert shapes.look(data) == {"shape": shape, "colour": colour}


def test_a_model_whose_catalogue_says_no_images_is_refused_before_sending(
    fast: Emulator,
) -> None:
    caps = fast.core.catalogue.models["claude-haiku-4-5-20251001"]["capabilities"]
    caps["image_input"]["supported"] = False
    df = pd.DataFrame({"photo": [shapes.draw("circle", "red")]})
    with pytest.raises(InputError, match=r"does not accept images \(image_input\)"):
        df.claude.batch("Label.", images="photo", client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 0
    caps["image_input"]["supported"] = True
    noise = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="JPEG", quality=95)
    assert 1_000_000 < len(buf.getvalue()) < 3_500_000  # base64 over 200k tokens at 4 bytes each
    # Counted by its size (~1,600 tokens), not its base64, the image fits the context window.
    big = pd.DataFrame({"photo": [buf.getvalue()]})
    out = big.claude.batch("Label.", images="photo", client=fast.client(), **FAST)
    assert out["claude_status"][0] == "succeeded"
