"""README.md stays true: every setting the hub reads is in its configuration table."""

from __future__ import annotations

from pathlib import Path

from crossdock.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"`CROSSDOCK_{name.upper()}`" not in text]
    assert missing == []
