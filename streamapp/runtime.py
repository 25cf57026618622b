"""The process's settings: loaded once, by the CLI before the app is imported, or lazily."""
from __future__ import annotations

from typing import Optional

from streamapp.settings import Settings, load_settings

_settings: Optional[Settings] = None


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def use(value: Settings) -> None:
    global _settings
    _settings = value
