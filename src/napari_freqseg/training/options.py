"""Reading a component's config table: typed values with defaults and one-line errors."""

from __future__ import annotations

import difflib
from typing import Any

from .config import ConfigError


class Options:
    """A component's `[components.<name>]` table. Call `get` for every key, then `done()`, which
    refuses keys that no `get` asked for (typos)."""

    def __init__(self, name: str, table: dict[str, Any]) -> None:
        self.name = name
        self.table = dict(table)
        self.known: list[str] = []

    def get(
        self, key: str, default: Any, low: float | None = None, high: float | None = None, choices: tuple[str, ...] | None = None
    ) -> Any:
        """The value of `key` (type of `default`), checked against bounds or choices."""
        self.known.append(key)
        v = self.table.get(key, default)
        where = f"[components.{self.name}] {key}"
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise ConfigError(f"{where} must be true or false, not {v!r}")
            return v
        if isinstance(default, (int, float)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(default, int) and not isinstance(v, int)):
                raise ConfigError(f"{where} must be {'an integer' if isinstance(default, int) else 'a number'}, not {v!r}")
            if (low is not None and v < low) or (high is not None and v > high):
                raise ConfigError(f"{where} = {v} is out of range [{low}, {high if high is not None else 'inf'}]")
            return type(default)(v)
        if isinstance(default, str):
            if not isinstance(v, str) or (choices and v not in choices):
                raise ConfigError(f"{where} = {v!r} (choose from {', '.join(choices or ())})")
            return v
        return v

    def done(self) -> None:
        for key in self.table:
            if key not in self.known:
                close = difflib.get_close_matches(key, self.known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(self.known)})"
                raise ConfigError(f"[components.{self.name}]: unknown key '{key}'{hint}")
