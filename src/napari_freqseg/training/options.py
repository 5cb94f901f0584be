"""Validation of a component's config table against typed defaults (one-line `ConfigError`s)."""

from __future__ import annotations

import difflib
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

from .config import ConfigError

T = TypeVar("T")


def read_options(component: str, table: dict[str, Any], defaults: T, ranges: dict[str, tuple[float, float]] | None = None) -> T:
    """`defaults` (a frozen dataclass instance) updated from `table`: unknown keys, wrong types and
    values outside `ranges[key] = (low, high)` (inclusive) raise `ConfigError`."""
    assert is_dataclass(defaults)
    known = {f.name: getattr(defaults, f.name) for f in fields(defaults)}
    place = f"[components.{component}]"
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
            raise ConfigError(f"{place} unknown key '{key}'{hint}")
        default = known[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ConfigError(f"{place} {key} must be a {type(default).__name__}, not {value!r}")
        if ranges and key in ranges:
            low, high = ranges[key]
            if not low <= value <= high:
                raise ConfigError(f"{place} {key} must be between {low} and {high}, not {value!r}")
        values[key] = value
    return replace(defaults, **values)
