"""The record of corrected slices of one volume: (axis, index) pairs, JSON-serialisable.

A corrected slice is one whose labels a person has checked and fixed; fine-tuning supervises only
these voxels. Axes are array axes of the (z, y, x) volume, written as 'z', 'y', 'x' for people.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

AXIS_NAMES = ("z", "y", "x")
FORMAT = "napari-freqseg-corrections"
_SPEC_PART = re.compile(r"^\s*([zyx])\s*:\s*([0-9,\s]+?)\s*$")


def axis_index(axis: int | str) -> int:
    """0, 1, 2 for 'z', 'y', 'x' (or the int itself)."""
    if isinstance(axis, str):
        if axis not in AXIS_NAMES:
            raise ValueError(f"axis must be one of z, y, x, got {axis!r}")
        return AXIS_NAMES.index(axis)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    return int(axis)


@dataclass
class CorrectionRecord:
    """Corrected slices of one volume of shape `shape` (z, y, x), with when each was marked."""

    shape: tuple[int, int, int]
    marked: dict[tuple[int, int], float] = field(default_factory=dict)  # (axis, index) -> unix time

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        if len(self.shape) != 3:
            raise ValueError(f"shape must be (z, y, x), got {self.shape}")

    def _key(self, axis: int | str, index: int) -> tuple[int, int]:
        a = axis_index(axis)
        i = int(index)
        if not 0 <= i < self.shape[a]:
            raise ValueError(f"slice {AXIS_NAMES[a]}={i} is outside 0..{self.shape[a] - 1}")
        return a, i

    def mark(self, axis: int | str, index: int, when: float | None = None) -> None:
        self.marked[self._key(axis, index)] = time.time() if when is None else float(when)

    def unmark(self, axis: int | str, index: int) -> None:
        self.marked.pop(self._key(axis, index), None)

    def is_marked(self, axis: int | str, index: int) -> bool:
        return self._key(axis, index) in self.marked

    def indices(self, axis: int | str) -> list[int]:
        """Corrected slice indices along `axis`, ascending."""
        a = axis_index(axis)
        return sorted(i for ax, i in self.marked if ax == a)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """(axis, index) pairs in axis then index order."""
        return iter(sorted(self.marked))

    def __len__(self) -> int:
        return len(self.marked)

    def labeled_mask(self) -> np.ndarray:
        """Boolean (z, y, x) mask of the voxels on corrected slices: the supervised voxels."""
        mask = np.zeros(self.shape, dtype=bool)
        for axis, index in self.marked:
            mask[slice_key(axis, index)] = True
        return mask

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1,
            "shape": list(self.shape),
            "slices": [{"axis": AXIS_NAMES[a], "index": i, "marked_at": self.marked[(a, i)]} for a, i in self],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CorrectionRecord:
        if d.get("format") != FORMAT:
            raise ValueError("not a corrected-slice record")
        record = cls(shape=tuple(d["shape"]))
        for s in d.get("slices", []):
            record.mark(s["axis"], s["index"], when=s.get("marked_at", 0.0))
        return record

    @classmethod
    def from_spec(cls, shape: tuple[int, int, int], spec: str) -> CorrectionRecord:
        """A record of the slices named in the command-line syntax (see parse_slice_spec)."""
        record = cls(shape=shape)
        for axis, indices in parse_slice_spec(spec).items():
            for index in indices:
                record.mark(axis, index)
        return record

    def spec(self) -> str:
        """The slices in the command-line syntax, e.g. 'z:12,40;x:7'."""
        return format_slice_spec({AXIS_NAMES[a]: self.indices(a) for a in range(3)})


def slice_key(axis: int, index: int, ndim: int = 3) -> tuple[slice | int, ...]:
    """Index tuple of slice `index` along `axis` of an `ndim`-D array."""
    key: list[slice | int] = [slice(None)] * ndim
    key[axis] = int(index)
    return tuple(key)


def parse_slice_spec(spec: str) -> dict[str, list[int]]:
    """'z:12,40,77' or 'z:12,40;x:30' -> {'z': [12, 40, 77], 'x': [30]} (sorted; a slice named twice
    is refused: a typo there would silently drop a correction)."""
    out: dict[str, list[int]] = {}
    for part in (p for p in spec.split(";") if p.strip()):
        m = _SPEC_PART.match(part)
        if not m:
            raise ValueError(f"bad slice list {part.strip()!r}: use AXIS:I,J,... with AXIS one of z, y, x")
        numbers = [n for n in m.group(2).replace(" ", "").split(",") if n]
        if not numbers:
            raise ValueError(f"bad slice list {part.strip()!r}: no slice numbers")
        out.setdefault(m.group(1), []).extend(int(n) for n in numbers)
    if not out:
        raise ValueError("empty slice list: use AXIS:I,J,... e.g. z:12,40,77")
    for axis, v in out.items():
        twice = sorted({i for i in v if v.count(i) > 1})
        if twice:
            raise ValueError(f"slice {axis}={twice[0]} is named twice: name each corrected slice once")
    return {axis: sorted(v) for axis, v in out.items()}


def format_slice_spec(slices: dict[str, list[int]]) -> str:
    """Inverse of parse_slice_spec; axes without slices are left out."""
    return ";".join(f"{a}:{','.join(str(i) for i in sorted(v))}" for a, v in slices.items() if v)
