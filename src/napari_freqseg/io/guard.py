"""Refuse to write an output over one of the job's own inputs (the scan replaced by its labels)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import VolumeWriteError


def same_path(a: str | Path, b: str | Path) -> bool:
    """True when a and b name the same file or folder (after links; by inode where both exist)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def refuse_output_over_input(outputs: Iterable[str | Path], inputs: Iterable[str | Path]) -> None:
    """Raise VolumeWriteError when an output names an existing input file or folder."""
    existing = [Path(i) for i in inputs if Path(i).exists()]
    for out in outputs:
        for src in existing:
            if same_path(out, src):
                kind = "folder" if src.is_dir() else "file"
                raise VolumeWriteError(f"{out}: this is the input {kind} {src}; choose another output (nothing was written)")
