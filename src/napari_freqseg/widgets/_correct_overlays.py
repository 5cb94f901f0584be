"""Overlays of the Correct widget: the boundary of the labels being corrected, and a frame on
every corrected slice (visible on that slice in 2D, as planes in 3D)."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels, Layer, Shapes
from napari.viewer import Viewer

from ..correction import CorrectionRecord

OVERLAY_KEY = "freqseg_overlay"
MARK_COLOR = "#33dd55"


def is_overlay(layer: Layer) -> bool:
    """Layers this module made: never offered as inputs."""
    return bool(layer.metadata.get(OVERLAY_KEY))


def _find(viewer: Viewer, kind: str, source: Labels) -> Layer | None:
    for layer in viewer.layers:
        meta = layer.metadata.get(OVERLAY_KEY)
        if meta and meta["kind"] == kind and meta["source"] == id(source):
            return layer
    return None


def show_boundary(viewer: Viewer, labels: Labels) -> Labels:
    """A contour-mode Labels layer on the same array as `labels` (no copy, on the same grid),
    redrawn whenever `labels` is painted, edited or undone."""
    layer = _find(viewer, "boundary", labels)
    if layer is None:
        layer = viewer.add_labels(
            labels.data,
            name=f"{labels.name} boundary",
            scale=labels.scale,
            translate=labels.translate,
            units=labels.units,
            axis_labels=labels.axis_labels,
            opacity=1.0,
            blending="translucent_no_depth",
            metadata={OVERLAY_KEY: {"kind": "boundary", "source": id(labels)}},
        )
        layer.contour = 1
        layer.editable = False
        labels.events.set_data.connect(layer.refresh)  # after paint, data_setitem, undo and redo
        labels.events.paint.connect(layer.refresh)
        viewer.layers.selection.active = labels
    elif layer.data is not labels.data:
        layer.data = labels.data
    return layer


def hide_boundary(viewer: Viewer, labels: Labels) -> None:
    layer = _find(viewer, "boundary", labels)
    if layer is not None:
        labels.events.set_data.disconnect(layer.refresh)
        labels.events.paint.disconnect(layer.refresh)
        viewer.layers.remove(layer)


def slice_frame(shape: tuple[int, int, int], axis: int, index: int) -> np.ndarray:
    """Corners (4, 3) of a rectangle through the outermost voxel centres of slice `index` along
    `axis`, in data coordinates (inside the labels' extent, so the viewer's slider grid is kept)."""
    p, q = (a for a in range(3) if a != axis)
    corners = np.zeros((4, 3))
    corners[:, axis] = index
    corners[:, p] = [0, 0, shape[p] - 1, shape[p] - 1]
    corners[:, q] = [0, shape[q] - 1, shape[q] - 1, 0]
    return corners


def show_marks(viewer: Viewer, labels: Labels, record: CorrectionRecord) -> Shapes | None:
    """Frames on the corrected slices of `record` (a Shapes layer), or none when nothing is marked.

    Frames are added and removed one by one: rebuilding all shapes costs ~0.1 s per mark."""
    layer = _find(viewer, "marks", labels)
    wanted = list(record)
    if not wanted:
        if layer is not None:
            viewer.layers.remove(layer)
        return None
    style = {"edge_color": MARK_COLOR, "face_color": "transparent", "edge_width": max(1.0, 0.01 * max(record.shape))}
    if layer is None:
        layer = viewer.add_shapes(
            [slice_frame(record.shape, a, i) for a, i in wanted],
            shape_type="rectangle",
            name=f"{labels.name} corrected slices",
            scale=labels.scale,
            translate=labels.translate,
            units=labels.units,
            axis_labels=labels.axis_labels,
            metadata={OVERLAY_KEY: {"kind": "marks", "source": id(labels), "slices": wanted}},
            **style,
        )
        layer.editable = False
        viewer.layers.selection.active = labels
        return layer
    shown: list[tuple[int, int]] = layer.metadata[OVERLAY_KEY]["slices"]
    gone = {k for k, key in enumerate(shown) if key not in wanted}
    if gone:
        layer.selected_data = gone
        layer.remove_selected()
        shown = [key for key in shown if key in wanted]
    new = [key for key in wanted if key not in shown]
    if new:
        layer.add_rectangles([slice_frame(record.shape, a, i) for a, i in new], **style)
    layer.metadata[OVERLAY_KEY]["slices"] = shown + new
    return layer


def remove_overlays(viewer: Viewer, labels: Labels) -> None:
    hide_boundary(viewer, labels)
    marks = _find(viewer, "marks", labels)
    if marks is not None:
        viewer.layers.remove(marks)
