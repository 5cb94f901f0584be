"""Voxel-grid geometry: one place for the (x, y, z) <-> (z, y, x) conventions.

SimpleITK reports size, spacing, origin and direction in (x, y, z) order while numpy arrays are
(z, y, x). `Geometry` keeps the SimpleITK order and offers the napari (z, y, x) views.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryMismatchError

# Tolerances for "same grid": spacing/origin in mm, direction cosines unitless.
_SPACING_TOL = 1e-4
_ORIGIN_TOL = 1e-3
_DIRECTION_TOL = 1e-5


@dataclass(frozen=True)
class Geometry:
    """Physical grid of a 3D volume, in SimpleITK (x, y, z) order, millimetres."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major 3x3

    @classmethod
    def from_image(cls, image: sitk.Image) -> Geometry:
        return cls(
            size=tuple(int(v) for v in image.GetSize()),
            spacing=tuple(float(v) for v in image.GetSpacing()),
            origin=tuple(float(v) for v in image.GetOrigin()),
            direction=tuple(float(v) for v in image.GetDirection()),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        return cls(
            size=tuple(int(v) for v in d["size"]),
            spacing=tuple(float(v) for v in d["spacing"]),
            origin=tuple(float(v) for v in d["origin"]),
            direction=tuple(float(v) for v in d["direction"]),
        )

    @classmethod
    def from_scale_translate(
        cls, shape_zyx: tuple[int, ...], scale_zyx: tuple[float, ...], translate_zyx: tuple[float, ...]
    ) -> Geometry:
        """Geometry of a layer that has no stored header: identity direction."""
        return cls(
            size=tuple(int(v) for v in shape_zyx[::-1]),
            spacing=tuple(float(v) for v in scale_zyx[::-1]),
            origin=tuple(float(v) for v in translate_zyx[::-1]),
            direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in asdict(self).items()}

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return self.size[::-1]

    @property
    def scale_zyx(self) -> tuple[float, float, float]:
        """napari layer `scale` (mm per voxel along z, y, x)."""
        return self.spacing[::-1]

    @property
    def translate_zyx(self) -> tuple[float, float, float]:
        """napari layer `translate` (origin along z, y, x)."""
        return self.origin[::-1]

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def is_oblique(self) -> bool:
        """True when the axes are not a signed permutation of the world axes."""
        m = np.abs(self.direction_matrix)
        return not np.allclose(np.sort(m, axis=1)[:, :2], 0.0, atol=_DIRECTION_TOL)

    @property
    def orientation(self) -> str:
        """Three-letter code of where the x, y, z index axes point in the LPS world (ITK/DICOM),
        e.g. 'LPS' for an identity direction, 'RAS' for diag(-1, -1, 1)."""
        return orientation_code(self.direction_matrix)

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Give `image` (same size) this geometry."""
        if tuple(image.GetSize()) != self.size:
            raise GeometryMismatchError(f"array of size {fmt_size(image.GetSize())} does not fit the grid {fmt_size(self.size)}")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def same_grid(self, other: Geometry) -> bool:
        return (
            self.size == other.size
            and np.allclose(self.spacing, other.spacing, atol=_SPACING_TOL)
            and np.allclose(self.origin, other.origin, atol=_ORIGIN_TOL)
            and np.allclose(self.direction, other.direction, atol=_DIRECTION_TOL)
        )

    def check_same_grid(self, other: Geometry, what: str = "label") -> None:
        """Raise a one-line GeometryMismatchError naming the first difference."""
        if self.same_grid(other):
            return
        if self.size != other.size:
            diff = f"size {fmt_size(other.size)} vs {fmt_size(self.size)}"
        elif not np.allclose(self.spacing, other.spacing, atol=_SPACING_TOL):
            diff = f"spacing {fmt_vec(other.spacing)} vs {fmt_vec(self.spacing)} mm"
        elif not np.allclose(self.origin, other.origin, atol=_ORIGIN_TOL):
            diff = f"origin {fmt_vec(other.origin)} vs {fmt_vec(self.origin)} mm"
        else:
            diff = "direction differs"
        raise GeometryMismatchError(f"{what} grid differs from its image: {diff}")


_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))  # LPS world: +x left, +y posterior, +z superior


def orientation_code(direction: np.ndarray) -> str:
    """ITK orientation code of a 3x3 direction matrix: for each index axis (a column), the letter of
    the world axis it points along most (same result as SimpleITK's DICOMOrientImageFilter)."""
    m = np.asarray(direction, dtype=float)
    mag = np.abs(m)
    letters = [""] * 3
    for _ in range(3):  # each world axis once: strongest remaining (world, index-axis) pair first
        world, axis = np.unravel_index(int(np.argmax(mag)), mag.shape)
        letters[axis] = _AXIS_LETTERS[world][0 if m[world, axis] > 0 else 1]
        mag[world, :] = -1.0
        mag[:, axis] = -1.0
    return "".join(letters)


def fmt_size(size: tuple[int, ...] | list[int]) -> str:
    return "×".join(str(int(v)) for v in size)


def fmt_vec(v: tuple[float, ...] | list[float]) -> str:
    return "(" + ", ".join(f"{float(x):.4g}" for x in v) + ")"
