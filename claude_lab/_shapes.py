"""The sample images the package ships: tiny PNGs of coloured shapes, drawn with zlib/struct.

``shapes()`` lists them (path, shape, colour) as a DataFrame for the images
notebook and tests; ``python -m claude_lab._shapes`` redraws the files under
``claude_lab/data/shapes/`` (they are committed, never downloaded). No imaging
library is needed.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pandas as pd

__all__ = ["COLOURS", "SHAPES", "draw", "look", "png", "shapes", "write_all"]

DIR = Path(__file__).parent / "data" / "shapes"
SIZE = 48
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 220),
}
SHAPES = ("circle", "square", "triangle")


def png(width: int, height: int, rows: list[bytes]) -> bytes:
    """A PNG (8-bit RGB) from ``height`` rows of ``3 * width`` bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _inside(shape: str, x: int, y: int, n: int) -> bool:
    c = (n - 1) / 2
    if shape == "circle":
        return (x - c) ** 2 + (y - c) ** 2 <= (n * 0.4) ** 2
    if shape == "square":
        return n * 0.15 <= x <= n * 0.85 and n * 0.15 <= y <= n * 0.85
    if shape == "triangle":
        top, bottom = n * 0.12, n * 0.88
        if not top <= y <= bottom:
            return False
        half = (y - top) / (bottom - top) * n * 0.4
        return abs(x - c) <= half
    raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}")


def draw(shape: str, colour: str, size: int = SIZE) -> bytes:
    """One shape in one colour on white, as PNG bytes."""
    ink = bytes(COLOURS[colour])
    white = b"\xff\xff\xff"
    rows = [
        b"".join(ink if _inside(shape, x, y, size) else white for x in range(size))
        for y in range(size)
    ]
    return png(size, size, rows)


def look(data: bytes) -> dict[str, str]:
    """What a PNG drawn by :func:`draw` shows: ``{"shape": ..., "colour": ...}``.

    A stand-in for vision in the offline demo: it reads the pixels back (8-bit RGB,
    unfiltered rows, as :func:`png` writes them) and judges the shape by how much of its
    bounding box the ink fills (square ~1, circle ~0.79, triangle ~0.5).
    """
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    ink: list[tuple[int, int, tuple[int, int, int]]] = []
    for y in range(height):
        row = raw[y * stride + 1 : (y + 1) * stride]
        for x in range(width):
            px = (row[3 * x], row[3 * x + 1], row[3 * x + 2])
            if px != (255, 255, 255):
                ink.append((x, y, px))
    if not ink:
        return {"shape": "none", "colour": "none"}
    xs, ys = [p[0] for p in ink], [p[1] for p in ink]
    fill = len(ink) / ((max(xs) - min(xs) + 1) * (max(ys) - min(ys) + 1))
    shape = "square" if fill > 0.95 else "circle" if fill > 0.65 else "triangle"
    rgb = ink[len(ink) // 2][2]
    colour = min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], rgb)))
    return {"shape": shape, "colour": colour}


def write_all(directory: Path = DIR) -> list[Path]:
    """Draw every shape in every colour into ``directory``; -> the files."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for shape in SHAPES:
        for colour in COLOURS:
            path = directory / f"{colour}_{shape}.png"
            path.write_bytes(draw(shape, colour))
            paths.append(path)
    return paths


def shapes() -> pd.DataFrame:
    """The shipped images: one row per file, with its ``path``, ``shape`` and ``colour``."""
    rows = []
    for shape in SHAPES:
        for colour in COLOURS:
            rows.append(
                {"path": str(DIR / f"{colour}_{shape}.png"), "shape": shape, "colour": colour}
            )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    for written in write_all():
        print(written)
