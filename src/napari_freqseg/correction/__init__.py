"""Human-in-the-loop correction, without Qt: which slices to correct, which are corrected, label
edits that napari's Labels tools lack, and crash-safe autosave of a correction session."""

from .edits import (
    between_key,
    copy_slice,
    fill_holes,
    interpolate_slices,
    region_changes,
    remove_small_components,
    smooth,
    weak_labels,
)
from .ranking import disagreement, rank_slices, slice_scores
from .record import AXIS_NAMES, CorrectionRecord, format_slice_spec, parse_slice_spec, slice_key
from .session import SessionState, discard_session, find_session, load_session, save_session, session_dir

__all__ = [
    "AXIS_NAMES",
    "CorrectionRecord",
    "SessionState",
    "between_key",
    "copy_slice",
    "disagreement",
    "discard_session",
    "fill_holes",
    "find_session",
    "format_slice_spec",
    "interpolate_slices",
    "load_session",
    "parse_slice_spec",
    "region_changes",
    "rank_slices",
    "remove_small_components",
    "save_session",
    "session_dir",
    "slice_key",
    "slice_scores",
    "smooth",
    "weak_labels",
]
