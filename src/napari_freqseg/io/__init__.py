"""Volumes with exact geometry, and multi-centre cohorts. No Qt, no napari."""

from .cohort import Case, Cohort, load_cohort
from .geometry import Geometry
from .volume import (
    VOLUME_SUFFIXES,
    WRITE_SUFFIXES,
    Volume,
    is_readable_path,
    read_volume,
    volume_stem,
    write_volume,
)

__all__ = [
    "Case",
    "Cohort",
    "Geometry",
    "VOLUME_SUFFIXES",
    "Volume",
    "WRITE_SUFFIXES",
    "is_readable_path",
    "load_cohort",
    "read_volume",
    "volume_stem",
    "write_volume",
]
