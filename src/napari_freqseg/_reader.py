"""npe2 reader: medical volumes (NIfTI, NRRD, MetaImage, DICOM folders) with physical geometry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .errors import FreqsegError
from .io.volume import is_readable_path, read_volume
from .layers import image_layer_data, labels_layer_data, looks_like_labels

LayerData = tuple


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return the reader for paths this plugin handles, None otherwise (never raises)."""
    try:
        paths = [path] if isinstance(path, str) else list(path)
        if not paths or not all(isinstance(p, str) and is_readable_path(p) for p in paths):
            return None
    except (OSError, TypeError, ValueError):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read each path as an Image (or Labels, for label maps) layer.

    Errors become a napari notification (a one-line message), not an exception dialog; when no
    path could be read the result is napari's "read, nothing to show" sentinel `[(None,)]`, so
    that napari adds no second error of its own.
    """
    paths = [path] if isinstance(path, str) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        try:
            volume = read_volume(p)
        except FreqsegError as exc:
            _notify(str(exc), error=True)
            continue
        except Exception as exc:  # noqa: BLE001 - a library's own failure on an odd file: one line, napari keeps running
            _notify(f"{Path(p).name}: could not be read ({type(exc).__name__}: {exc})", error=True)
            continue
        for note in volume.notes:
            _notify(f"{Path(p).name}: {note}")
        if looks_like_labels(volume):
            layers.append(labels_layer_data(volume.array, volume.geometry, volume.name, volume.metadata()))
        else:
            layers.append(image_layer_data(volume))
    return layers or [(None,)]


def _notify(message: str, error: bool = False) -> None:
    from napari.utils.notifications import show_error, show_warning

    (show_error if error else show_warning)(message)
