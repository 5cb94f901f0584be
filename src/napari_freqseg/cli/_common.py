"""Helpers shared by sub-commands: reading inputs with their notes, JSON output, a terminal progress reporter."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..io.volume import Volume


def read_input(path: str | os.PathLike) -> Volume:
    """Read a volume for a command and say on stderr what the reader changed or chose (NaN
    replaced, 4D reduced, one of several DICOM series), one line per note."""
    from ..io.volume import read_volume

    volume = read_volume(path)
    for note in volume.notes:
        print(f"note: {path}: {note}", file=sys.stderr)
    return volume


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=_default)
    sys.stdout.write("\n")


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class TerminalProgress:
    """`progress(done, total, message)` callback that draws a bar on stderr (a line when not a TTY)."""

    def __init__(self, label: str, quiet: bool = False, min_interval: float = 0.2) -> None:
        self.label = label
        self.quiet = quiet
        self.min_interval = min_interval
        self._last = 0.0
        self._start = time.monotonic()
        self._tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self.quiet:
            return
        now = time.monotonic()
        final = total > 0 and done >= total
        if not final and now - self._last < (self.min_interval if self._tty else 5.0):
            return
        self._last = now
        frac = done / total if total else 0.0
        elapsed = now - self._start
        eta = f" eta {elapsed / frac - elapsed:5.0f}s" if 0 < frac < 1 else ""
        bar = "#" * int(frac * 30)
        line = f"{self.label} [{bar:<30}] {done}/{total} {message}{eta}"
        if self._tty:
            sys.stderr.write("\r" + line[:120].ljust(120) + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
