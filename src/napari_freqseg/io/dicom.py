"""DICOM series folders: find the series, read the largest, keep the scanner and site tags."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import VolumeReadError, VolumeWriteError
from ._itk import itk_reason, printable, quiet_itk
from .atomic import write_atomically


def dicom_series(folder: str | os.PathLike) -> list[tuple[str, list[str]]]:
    """DICOM series in `folder` as (series UID, files), largest first."""
    reader = sitk.ImageSeriesReader()
    try:
        with quiet_itk():
            uids = reader.GetGDCMSeriesIDs(str(folder))
            series = [(uid, list(reader.GetGDCMSeriesFileNames(str(folder), uid))) for uid in uids]
    except RuntimeError:
        return []
    return sorted(series, key=lambda s: len(s[1]), reverse=True)


def first_files(folder: Path, n: int) -> list[Path]:
    """The first `n` files of `folder` by name (a cheap sample for `looks_like_dicom`)."""
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file():
            out.append(entry)
            if len(out) >= n:
                break
    return out


def looks_like_dicom(path: Path) -> bool:
    """A .dcm/.ima ending or the DICM magic at byte 128."""
    if path.suffix.lower() in (".dcm", ".ima"):
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


DICOM_TAGS = {
    "0008|0060": "Modality", "0008|0070": "Manufacturer", "0008|1090": "ManufacturerModelName",
    "0008|0080": "InstitutionName", "0018|0087": "MagneticFieldStrength", "0008|103e": "SeriesDescription",
    "0020|000d": "StudyInstanceUID", "0020|000e": "SeriesInstanceUID",
}  # fmt: skip


def read_dicom_folder(p: Path) -> tuple[sitk.Image, str, dict[str, str]]:
    series = dicom_series(p)
    if not series:
        raise VolumeReadError(f"{p}: folder holds no DICOM series")
    uid, files = series[0]
    if len(files) == 1:
        from .dicom_seg import is_dicom_seg

        if is_dicom_seg(files[0]):
            raise VolumeReadError(
                f"{p}: holds a DICOM SEG ({Path(files[0]).name}), not a scan: open the SEG file itself to see its labels"
            )
    note = ""
    if len(series) > 1:
        others = ", ".join(f"{u} ({len(f)} files)" for u, f in series[1:])
        note = f"took the largest DICOM series {uid} ({len(files)} files); others: {others}"
    if len(files) < 2:
        raise VolumeReadError(f"{p}: DICOM series {uid} has a single slice, not a 3D volume")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        with quiet_itk():
            image = reader.Execute()
    except RuntimeError as exc:
        raise VolumeReadError(f"{p}: DICOM series {uid} could not be read ({itk_reason(exc)})") from None
    check_even_spacing(reader, len(files), f"{p}: DICOM series {uid}")
    header = {
        tag: reader.GetMetaData(0, tag).strip()
        for tag in DICOM_TAGS
        if reader.HasMetaDataKey(0, tag) and printable(reader.GetMetaData(0, tag))
    }
    return image, note, header


#: Relative deviation of one slice gap from the median gap that counts as a gap in the series.
GAP_TOLERANCE = 0.05


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.strip().split("\\") if v.strip()]


def check_even_spacing(reader: sitk.ImageSeriesReader, n: int, where: str) -> None:
    """Refuse a series whose slice positions (0020|0032, along the normal of 0020|0037) are not
    evenly spaced: ITK would spread the slices over the whole extent, stretching the spacing
    silently (one damaged or missing slice)."""
    try:
        orientation = _floats(reader.GetMetaData(0, "0020|0037"))
        positions = np.array([_floats(reader.GetMetaData(i, "0020|0032")) for i in range(n)])
    except (RuntimeError, ValueError):
        return  # no per-slice positions: nothing to compare (ITK then uses the slice spacing tag)
    if len(orientation) != 6 or positions.shape != (n, 3):
        return
    normal = np.cross(orientation[:3], orientation[3:])
    gaps = np.abs(np.diff(positions @ normal))
    typical = float(np.median(gaps))
    if typical <= 0:
        raise VolumeReadError(f"{where}: slices share one position; not a 3D volume (nothing was read)")
    worst = int(np.argmax(np.abs(gaps - typical)))
    if abs(gaps[worst] - typical) > GAP_TOLERANCE * typical:
        raise VolumeReadError(
            f"{where}: slices are not evenly spaced ({gaps[worst]:.3f} mm between slices {worst + 1} and {worst + 2}, "
            f"{typical:.3f} mm elsewhere): a missing or damaged slice? (nothing was read)"
        )
    offsets = positions - positions[0]
    drift = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)  # in-plane, from the first slice
    try:
        pixel = min(_floats(reader.GetMetaData(0, "0028|0030"))[:2])
    except (RuntimeError, ValueError):
        pixel = typical
    if drift.max() > 0.5 * pixel:  # gantry tilt: a sheared grid, which an image's direction cannot hold
        tilt = float(np.degrees(np.arctan2(drift[-1], abs(float(offsets[-1] @ normal)))))
        raise VolumeReadError(
            f"{where}: the slices drift {drift.max():.1f} mm sideways across the series (gantry tilt of {tilt:.1f}°): "
            "the grid is sheared; resample the series to an orthogonal grid first (nothing was read)"
        )


def save_dataset(ds: object, path: Path) -> Path:
    """Write a pydicom Dataset as a DICOM file, atomically (temp file, then rename); one-line
    VolumeWriteError on failure, an existing file left as it was."""
    try:
        write_atomically(path, ".dcm", lambda tmp: ds.save_as(tmp, enforce_file_format=True))  # type: ignore[attr-defined]
    except OSError as exc:
        raise VolumeWriteError(f"{path}: could not be written ({exc.strerror or exc})") from None
    return path
