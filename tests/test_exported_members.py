"""The public surface is exactly ``claude_lab.__all__``, sorted (as httpx keeps its own)."""

from __future__ import annotations

import types

import claude_lab


def test_all_is_sorted_and_complete() -> None:
    public = sorted(
        name
        for name, value in vars(claude_lab).items()
        if (not name.startswith("_") or name == "__version__")
        # Submodules imported as a side effect (claude_lab.emulator) are not names of
        # this namespace; a private module bound to a public name (shapes) is.
        and (not isinstance(value, types.ModuleType) or value.__name__ == f"claude_lab._{name}")
    )
    assert claude_lab.__all__ == public
    assert claude_lab.__all__ == sorted(claude_lab.__all__)


def test_every_exported_name_resolves() -> None:
    for name in claude_lab.__all__:
        assert getattr(claude_lab, name) is not None


def test_importing_registers_the_accessor_without_state() -> None:
    import pandas as pd

    df = pd.DataFrame({"a": [1]})
    # pandas may build a new accessor on every access, so it must keep nothing but the frame.
    assert vars(df.claude).keys() == {"_df"}


def test_internal_modules_are_private() -> None:
    """Only ``claude_lab`` itself and ``claude_lab.emulator`` are public modules."""
    import pathlib

    package = pathlib.Path(claude_lab.__file__).parent
    public = sorted(p.stem for p in package.glob("*.py") if not p.stem.startswith("_")) + sorted(
        p.name for p in package.iterdir() if (p / "__init__.py").exists()
    )
    assert public == ["emulator"]
