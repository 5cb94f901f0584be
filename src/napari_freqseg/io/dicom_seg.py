"""DICOM Segmentation objects (highdicom): labels out on a DICOM series' exact slices, and back.

A SEG written here is binary and multiframe, one segment per class (segment number = label value),
each frame on one source slice, with the source instances referenced, so that OHIF, 3D Slicer and a
PACS viewer show it over the scan. Reading maps the frames back onto the referenced series' grid
(found in a given folder, or beside the SEG), or, without the series, onto the grid the SEG's own
frames describe when they form a full stack (as the SEGs written here do).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..errors import VolumeReadError, VolumeWriteError
from .dicom import save_dataset
from .geometry import Geometry

T = TypeVar("T")

#: SOP Class UIDs.
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: Position tolerance (mm) when matching a source slice to a row of the grid, relative to the spacing.
POSITION_TOLERANCE = 0.01
#: Class names that pydicom's SNOMED CT dictionary spells otherwise.
_CODE_SYNONYMS = {"csf": "CerebrospinalFluid", "grey matter": "GrayMatter", "la": "LeftAtrium"}
_SOFTWARE = "napari-freqseg"


@dataclass(frozen=True)
class Algorithm:
    """What made the segmentation: the model's name and its recipe/version (in every segment)."""

    name: str
    version: str


def is_dicom_seg(path: str | os.PathLike) -> bool:
    """A file whose SOP Class is Segmentation Storage (header read only)."""
    import pydicom

    p = Path(path)
    if not p.is_file():
        return False
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - any unreadable file is simply not a SEG
        return False
    return str(ds.get("SOPClassUID", "")) == SEG_STORAGE


def series_instances(folder: str | os.PathLike, series_uid: str | None = None) -> list:
    """Headers (no pixels) of one image series in `folder`: the one with `series_uid`, else the largest."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    groups: dict[str, list] = {}
    for f in sorted(Path(folder).iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "ImagePositionPatient" not in ds or str(ds.get("SOPClassUID", "")) == SEG_STORAGE:
            continue
        groups.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    if series_uid is not None:
        if series_uid not in groups:
            found = ", ".join(groups) or "no image series"
            raise VolumeReadError(f"{folder}: holds no series {series_uid} (found: {found})")
        return groups[series_uid]
    if not groups:
        raise VolumeReadError(f"{folder}: holds no DICOM image series")
    return max(groups.values(), key=len)


def order_on_grid(instances: Sequence, geometry: Geometry, where: str) -> list:
    """The instances as the z rows of `geometry` (one each), or VolumeWriteError/ReadError naming
    what does not fit: labels must land on the source slices exactly."""
    d = geometry.direction_matrix
    origin = np.asarray(geometry.origin, float)
    nx, ny, nz = geometry.size
    rows: list = [None] * nz
    for ds in instances:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        if not (np.allclose(iop[:3], d[:, 0], atol=1e-4) and np.allclose(iop[3:], d[:, 1], atol=1e-4)):
            raise VolumeReadError(f"{where}: slice orientation {iop.round(4).tolist()} differs from the volume's")
        if (int(ds.Columns), int(ds.Rows)) != (nx, ny):
            raise VolumeReadError(f"{where}: slices are {ds.Columns}x{ds.Rows}, the volume {nx}x{ny}")
        offset = np.asarray([float(v) for v in ds.ImagePositionPatient]) - origin
        k = float(offset @ d[:, 2]) / geometry.spacing[2]
        kk = int(round(k))
        residual = offset - kk * geometry.spacing[2] * d[:, 2]
        if (
            abs(k - kk) > POSITION_TOLERANCE
            or not 0 <= kk < nz
            or np.abs(residual).max() > POSITION_TOLERANCE * min(geometry.spacing)
        ):
            raise VolumeReadError(f"{where}: slice {ds.SOPInstanceUID} is not on the volume's grid")
        if rows[kk] is not None:
            raise VolumeReadError(f"{where}: two slices at row {kk} ({rows[kk].SOPInstanceUID}, {ds.SOPInstanceUID})")
        rows[kk] = ds
    missing = [k for k, ds in enumerate(rows) if ds is None]
    if missing:
        raise VolumeReadError(f"{where}: no slice for {len(missing)} of {nz} rows (first: {missing[0]})")
    return rows


def segment_code(name: str):
    """(category, type) codes for a class name: SNOMED CT where pydicom knows it, else 'Tissue'."""
    from pydicom.sr.codedict import codes

    key = _CODE_SYNONYMS.get(name.strip().lower()) or "".join(w[:1].upper() + w[1:] for w in re.split(r"[\s_-]+", name.strip()))
    try:
        code = getattr(codes.SCT, key)
        return codes.SCT.AnatomicalStructure, code
    except AttributeError:
        return codes.SCT.Tissue, codes.SCT.Tissue


def write_dicom_seg(
    labels: np.ndarray,
    geometry: Geometry,
    series_folder: str | os.PathLike,
    path: str | os.PathLike,
    classes: Sequence[str] = (),
    algorithm: Algorithm | None = None,
    series_uid: str | None = None,
    description: str = "freqseg segmentation",
) -> Path:
    """Write `labels` (z, y, x, on `geometry`, the grid of the series in `series_folder`) as a binary
    DICOM SEG at `path`, atomically. Segment v is label value v, named classes[v] (or 'label v')."""
    import highdicom as hd

    p = Path(path)
    labels = np.asarray(labels)
    if labels.shape != geometry.shape_zyx:
        raise VolumeWriteError(f"{p.name}: labels {labels.shape} do not fit the series grid {geometry.shape_zyx}")
    if labels.dtype.kind not in "iub" or (labels.size and int(labels.min()) < 0):
        raise VolumeWriteError(f"{p.name}: labels must be non-negative integers")
    top = int(labels.max()) if labels.size else 0
    n_segments = max(top, len(classes) - 1)
    if n_segments < 1:
        raise VolumeWriteError(f"{p.name}: no class to write (labels are all 0 and no classes were named)")
    try:
        instances = order_on_grid(series_instances(series_folder, series_uid), geometry, str(series_folder))
    except VolumeReadError as exc:
        raise VolumeWriteError(f"{p.name}: the labels are not on the series' slices ({exc})") from None
    descriptions = []
    for v in range(1, n_segments + 1):
        name = classes[v] if v < len(classes) else f"label {v}"
        category, kind = segment_code(name)
        ident = None
        if algorithm is not None:
            from pydicom.sr.codedict import codes

            ident = hd.AlgorithmIdentificationSequence(
                name=algorithm.name[:64], version=algorithm.version[:64], family=codes.cid7162.ArtificialIntelligence
            )
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=v, segment_label=name[:64], segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if algorithm else hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            algorithm_identification=ident,
        ))  # fmt: skip
    pixel = labels.astype(np.uint16 if n_segments > 255 else np.uint8, copy=False)
    seg = hd.seg.Segmentation(
        source_images=instances, pixel_array=pixel, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=int(instances[0].get("SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=_SOFTWARE, manufacturer_model_name=algorithm.name[:64] if algorithm else _SOFTWARE,
        software_versions=_software_version(), device_serial_number="0", series_description=description[:64],
        content_label="FREQSEG", content_description=description[:64], omit_empty_frames=False,
    )  # fmt: skip
    return save_dataset(seg, p)


def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-freqseg")
    except PackageNotFoundError:
        return "0"


def referenced_series(seg) -> str:
    """The SeriesInstanceUID a SEG's frames lie on."""
    try:
        return str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
    except (AttributeError, IndexError):
        raise VolumeReadError("the SEG names no referenced series") from None


def read_dicom_seg(
    path: str | os.PathLike, like: str | os.PathLike | None = None
) -> tuple[np.ndarray, Geometry, dict[str, str], list[str]]:
    """Labels (z, y, x; value = segment number), their grid, header and notes from a DICOM SEG.

    The grid is the referenced series' own: in `like` when given (which must hold that series),
    else in the SEG's folder or a folder beside it, else the full stack of the SEG's frames.
    """
    import highdicom as hd
    import pydicom

    p = Path(path)
    try:
        seg = hd.seg.segread(p)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, AttributeError, KeyError) as exc:
        raise VolumeReadError(f"{p.name}: not a readable DICOM SEG ({exc})") from None
    uid = referenced_series(seg)
    header = {"0020|000e": str(seg.SeriesInstanceUID), "0008|103e": str(seg.get("SeriesDescription", "")),
              "freqseg_referenced_series": uid, "0020|000d": str(seg.StudyInstanceUID)}  # fmt: skip
    notes: list[str] = []
    folder = Path(like) if like is not None else _find_series_near(p, uid)
    if folder is not None:
        try:
            instances = series_instances(folder, uid)
        except VolumeReadError:
            if like is not None:
                raise VolumeReadError(f"{p.name}: references series {uid}, which {folder} does not hold") from None
            raise
        geometry = _geometry_of(instances)
        ordered = order_on_grid(instances, geometry, str(folder))
        uids = [str(ds.SOPInstanceUID) for ds in ordered]
        array = _combined(lambda skip: seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, combine_segments=True, relabel=False, assert_missing_frames_are_empty=False,
            skip_overlap_checks=skip), notes)  # fmt: skip
        return np.ascontiguousarray(array), geometry, header, notes
    try:
        volume = _combined(lambda skip: seg.get_volume(combine_segments=True, relabel=False, skip_overlap_checks=skip), notes)
    except (ValueError, RuntimeError) as exc:
        raise VolumeReadError(
            f"{p.name}: its frames do not form a full volume and the referenced series {uid} is not beside it "
            f"(give the series folder: --like) ({exc})"
        ) from None
    notes.append(f"referenced series {uid} not found beside the SEG: grid taken from the SEG's own frames")
    array, geometry = _right_handed(volume.array, volume.affine)
    return np.ascontiguousarray(array), geometry, header, notes


def _combined(read: Callable[[bool], T], notes: list[str]) -> T:
    """One label map from the SEG's segments; where segments overlap (an organ and a lesion inside
    it, as Slicer and many tools write them) the higher segment number wins, and a note says so."""
    try:
        return read(False)
    except RuntimeError as exc:
        if "overlap" not in str(exc):
            raise
    notes.append("segments overlap: where they do, the voxel shows the higher segment number")
    return read(True)


def _geometry_of(instances: Sequence) -> Geometry:
    """The grid of a series from its headers (slices sorted along the normal)."""
    iop = np.asarray([float(v) for v in instances[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    positions = sorted(
        (np.asarray([float(v) for v in ds.ImagePositionPatient]) for ds in instances), key=lambda q: float(q @ normal)
    )
    dz = float(np.median(np.diff([q @ normal for q in positions]))) if len(positions) > 1 else 1.0
    row, col = (float(v) for v in instances[0].PixelSpacing)
    direction = np.stack([iop[:3], iop[3:], normal], axis=1)
    return Geometry(size=(int(instances[0].Columns), int(instances[0].Rows), len(instances)), spacing=(col, row, dz),
                    origin=tuple(float(v) for v in positions[0]), direction=tuple(float(v) for v in direction.ravel()))  # fmt: skip


def _right_handed(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, Geometry]:
    """Our (z, y, x) array and grid from highdicom's (slice, row, column) -> LPS affine, with the
    slices along the row x column normal, as a DICOM reader stacks the series."""
    x, y, z = affine[:3, 2], affine[:3, 1], affine[:3, 0].copy()
    origin = affine[:3, 3].copy()
    if float(np.cross(x, y) @ z) < 0:
        array, origin, z = array[::-1], origin + (array.shape[0] - 1) * z, -z
    spacing = tuple(float(np.linalg.norm(c)) for c in (x, y, z))
    direction = np.stack([c / s for c, s in zip((x, y, z), spacing, strict=True)], axis=1) + 0.0  # no -0
    geometry = Geometry(
        size=(int(array.shape[2]), int(array.shape[1]), int(array.shape[0])),
        spacing=spacing,  # type: ignore[arg-type]
        origin=tuple(float(v) for v in origin),
        direction=tuple(float(v) for v in direction.ravel()),
    )  # type: ignore[arg-type]
    return array, geometry


def _find_series_near(seg_path: Path, uid: str) -> Path | None:
    """The folder near a SEG that holds series `uid`: its own folder, a folder below it (two levels:
    a pull's OUT/<series UID>/), or a sibling folder. At most 64 folders are looked into."""
    here = seg_path.parent

    def subfolders(folder: Path) -> list[Path]:
        try:
            return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        except OSError:
            return []

    inside = subfolders(here)
    below = [d for folder in inside[:16] for d in subfolders(folder)]
    beside = [d for d in subfolders(here.parent) if d != here] if here.parent != here else []
    for folder in ([here] + inside + below + beside)[:64]:
        try:
            series_instances(folder, uid)
        except (VolumeReadError, OSError):
            continue
        return folder
    return None
