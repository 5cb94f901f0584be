"""Read and write 3D medical volumes with their exact geometry (SimpleITK underneath)."""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import VolumeReadError, VolumeWriteError
from ._itk import itk_reason, printable, quiet_itk
from .atomic import write_atomically
from .dicom import first_files, looks_like_dicom, read_dicom_folder
from .dicom_seg import is_dicom_seg, read_dicom_seg
from .geometry import Geometry, fmt_size
from .integrity import check_complete, gzip_damage

#: File endings read as single files (lower-case, longest first where they overlap).
VOLUME_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: File endings we can write.
WRITE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")

# Header keys that describe the source file's storage or grid: never copied to an output, whose grid
# comes from `geometry` and whose storage from its own pixel type (descriptions and DICOM tags are).
_STORAGE_KEYS = (
    "ITK_", "NRRD_", "dim[", "dim_info", "pixdim[", "srow_", "qoffset", "quatern", "qform", "sform", "scl_",
    "cal_", "bitpix", "datatype", "vox_offset", "nifti_type", "xyzt_units", "slice_", "toffset", "intent_",
)  # fmt: skip

# SimpleITK pixel types we accept for intensities (complex/vector types are refused).
_SCALAR_KINDS = "biuf"


@dataclass
class Volume:
    """A 3D volume: array in (z, y, x) order plus its physical geometry and header."""

    array: np.ndarray
    geometry: Geometry
    header: dict[str, str] = field(default_factory=dict)
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return volume_stem(self.source) if self.source else "volume"

    def metadata(self) -> dict[str, Any]:
        """What a napari layer keeps so that writing gives back this exact grid."""
        return {
            "freqseg_geometry": self.geometry.to_dict(),
            "header": dict(self.header),
            "source": self.source,
        }


def volume_suffix(path: str | os.PathLike) -> str | None:
    """Supported ending of `path` (e.g. '.nii.gz'), or None."""
    name = str(path).lower()
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def volume_stem(path: str | os.PathLike) -> str:
    """File name without its volume ending; for 'case/image.nii.gz' the case folder's name."""
    p = Path(path)
    suffix = volume_suffix(p)
    stem = p.name[: -len(suffix)] if suffix else p.name
    if stem in ("image", "img", "label", "seg") and p.parent.name:
        return p.parent.name if stem in ("image", "img") else f"{p.parent.name}_{stem}"
    return stem


def is_readable_path(path: str | os.PathLike) -> bool:
    """Cheap check (no pixel read): a volume file by ending, or a folder holding DICOM files."""
    p = Path(path)
    if p.is_dir():
        return any(looks_like_dicom(f) for f in first_files(p, 20))
    return volume_suffix(p) is not None or (p.suffix.lower() == ".dcm" and is_dicom_seg(p))


def read_volume(path: str | os.PathLike, like: str | os.PathLike | None = None) -> Volume:
    """Read a 3D volume (NIfTI, NRRD, MetaImage, a DICOM series folder, or a DICOM SEG file).

    A DICOM SEG gives its labels on the referenced series' grid: the series in `like` when given,
    else one found beside the SEG, else the SEG's own full stack of frames (see io.dicom_seg).

    Raises VolumeReadError with a one-line message for anything that is not a readable 3D volume.
    4D images give their first volume (said in `notes`); non-finite intensities are replaced by the
    lowest finite value (said in `notes`).
    """
    p = Path(path)
    if not p.exists():
        raise VolumeReadError(f"{p}: no such file or folder")
    notes: list[str] = []
    dicom_header: dict[str, str] = {}
    if p.is_dir():
        image, dicom_note, dicom_header = read_dicom_folder(p)
        if dicom_note:
            notes.append(dicom_note)
    elif p.suffix.lower() == ".dcm" and is_dicom_seg(p):
        array, geometry, header, notes = read_dicom_seg(p, like)
        check_grid(geometry, p.name)
        return Volume(array=array, geometry=geometry, header=header, source=str(p), notes=notes)
    else:
        if volume_suffix(p) is None:
            raise VolumeReadError(f"{p.name}: not a supported volume (use {', '.join(VOLUME_SUFFIXES)} or a DICOM folder)")
        image = _read_file(p, volume_suffix(p) or "")
    image, dim_note = _as_3d(image, p)
    if dim_note:
        notes.append(dim_note)
    header = {k: image.GetMetaData(k) for k in image.GetMetaDataKeys() if printable(image.GetMetaData(k))}
    header.update(dicom_header)
    geometry = Geometry.from_image(image)
    check_grid(geometry, p.name)
    array = sitk.GetArrayFromImage(image)
    if array.dtype.kind not in _SCALAR_KINDS:
        raise VolumeReadError(f"{p.name}: pixel type {array.dtype} is not a scalar intensity")
    array, note = replace_nonfinite(array, p.name)
    if note:
        notes.append(note)
    return Volume(array=array, geometry=geometry, header=header, source=str(p), notes=notes)


def replace_nonfinite(array: np.ndarray, name: str) -> tuple[np.ndarray, str]:
    """`array` with its NaN/Inf voxels set to its lowest finite value (a copy; `array` itself when
    all are finite), and a note saying so ('' when nothing changed). VolumeReadError naming `name`
    when no voxel is finite."""
    array = np.asarray(array)
    if array.dtype.kind != "f":
        return array, ""
    bad = ~np.isfinite(array)
    n_bad = int(bad.sum())
    if not n_bad:
        return array, ""
    if n_bad == array.size:
        raise VolumeReadError(f"{name}: every voxel is NaN or infinite")
    low = float(array[~bad].min())
    array = array.copy()
    array[bad] = low
    return array, f"{n_bad} NaN/Inf voxels replaced by the lowest finite value {low:.4g}"


#: Deflate expands data at most about 1032 times; a file declaring more than this per stored byte lies.
MAX_EXPANSION = 1100


def check_declared_size(path: Path, suffix: str, reader: sitk.ImageFileReader, name: str) -> None:
    """Refuse, before any pixel is allocated, a header that declares more voxels than the file can
    hold (even compressed) or than the free memory can take: a tiny file must not make the reader
    allocate gigabytes."""
    import psutil

    size = [int(v) for v in reader.GetSize()]
    probe = sitk.Image([1] * len(size), reader.GetPixelID(), max(1, reader.GetNumberOfComponents()))
    declared = math.prod(size) * sitk.GetArrayViewFromImage(probe).itemsize
    stored = path.stat().st_size
    free = psutil.virtual_memory().available
    shape = "×".join(map(str, size))
    if suffix not in (".nhdr", ".mhd") and declared > MAX_EXPANSION * stored + (1 << 20):
        raise VolumeReadError(
            f"{name}: its header declares a {shape} volume ({declared / 1e9:.3g} GB) that a {stored}-byte file cannot hold"
        )
    if declared > free // 2:  # the reader and the array each need a copy
        raise VolumeReadError(
            f"{name}: its {shape} volume needs {declared / 1e9:.3g} GB, more than the free memory allows ({free / 1e9:.3g} GB free)"
        )


def check_grid(geometry: Geometry, name: str) -> None:
    """Refuse voxel sizes that are not finite and positive, and a direction matrix that is not a
    rotation (skewed or scaled axes): a segmentation could not land on that grid exactly."""
    spacing = np.asarray(geometry.spacing, dtype=float)
    if not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise VolumeReadError(f"{name}: voxel size {tuple(float(v) for v in spacing)} mm is not positive")
    d = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(d)) or np.abs(d.T @ d - np.eye(3)).max() > 1e-4:
        raise VolumeReadError(
            f"{name}: its axes are skewed or scaled (direction matrix not orthonormal); "
            "resample it to an orthogonal grid first (e.g. in 3D Slicer)"
        )


def check_nifti_voxel_size(path: Path, suffix: str, name: str) -> None:
    """Refuse a NIfTI-1/2 header whose voxel size (pixdim) is zero or not finite on a spatial axis:
    ITK would read it as 1 mm without a word."""
    opener = gzip.open if suffix == ".nii.gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(540)
    except (OSError, EOFError):
        return  # the integrity check names a damaged file
    layouts = {348: (40, "h", 76, "f"), 540: (16, "q", 104, "d")}  # NIfTI-1, NIfTI-2: dim and pixdim
    for endian in "<>":
        if len(head) >= 348 and (size := struct.unpack_from(endian + "i", head, 0)[0]) in layouts:
            dim_at, dim_fmt, pix_at, pix_fmt = layouts[size]
            ndim = struct.unpack_from(endian + dim_fmt, head, dim_at)[0]
            pixdim = struct.unpack_from(endian + pix_fmt * 4, head, pix_at)[1 : 1 + min(max(ndim, 0), 3)]
            bad = [i + 1 for i, v in enumerate(pixdim) if not (np.isfinite(v) and v > 0)]
            if bad:
                axes = ", ".join(map(str, bad))
                raise VolumeReadError(f"{name}: its header gives no voxel size on axis {axes} (pixdim); ITK would assume 1 mm")
            return


def verify_written(path: Path, suffix: str, name: str) -> None:
    """Re-read the header of a file just written and check that its data is all there (and, for
    .nii.gz, that it decompresses with a correct CRC): ITK reports a failed write only as a warning."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise VolumeReadError(f"{name}: the written header does not read back ({itk_reason(exc)})") from None
    check_complete(path, suffix, {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}, name=name)


def _read_file(p: Path, suffix: str) -> sitk.Image:
    reader = sitk.ImageFileReader()
    try:
        with quiet_itk(), _unambiguous(p, suffix) as path:
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            check_declared_size(path, suffix, reader, p.name)
            check_complete(path, suffix, {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}, name=p.name)
            if suffix in (".nii", ".nii.gz"):
                check_nifti_voxel_size(path, suffix, p.name)
            return reader.Execute()
    except RuntimeError as exc:
        reason = itk_reason(exc)
        damage = gzip_damage(p) if suffix == ".nii.gz" else None
        if damage:
            raise VolumeReadError(f"{p.name}: truncated or corrupt ({damage})") from None
        if "unable to determine imageio" in reason.lower():
            raise VolumeReadError(f"{p.name}: not an image (no reader knows its content)") from None
        if re.search(r"expected .* but received|truncat|end of file|not read completely", reason, re.I):
            raise VolumeReadError(f"{p.name}: truncated or corrupt ({reason})") from None
        raise VolumeReadError(f"{p.name}: not a readable image ({reason})") from None


@contextmanager
def _unambiguous(p: Path, suffix: str) -> Iterator[Path]:
    """niftilib opens `x.nii` (or `x.hdr`) when asked for `x.nii.gz` and both exist: read such a
    file through a link with a name of its own."""
    base = p.name[: -len(".gz")]
    if suffix != ".nii.gz" or not any((p.parent / n).exists() for n in (base, base[:-4] + ".hdr")):
        yield p
        return
    with tempfile.TemporaryDirectory(prefix="freqseg-") as tmp:
        link = Path(tmp) / "volume.nii.gz"
        os.symlink(p.resolve(), link)
        yield link


def _as_3d(image: sitk.Image, p: Path) -> tuple[sitk.Image, str]:
    """Reduce to one scalar 3D volume or refuse with a clear message."""
    if 0 in image.GetSize():  # MetaImage allows DimSize 0: an array with no voxels breaks every later step
        raise VolumeReadError(f"{p.name}: empty image ({fmt_size(image.GetSize())}); a 3D volume is needed")
    note = ""
    if image.GetNumberOfComponentsPerPixel() > 1:
        n = image.GetNumberOfComponentsPerPixel()
        image = sitk.VectorIndexSelectionCast(image, 0)
        note = f"multi-component image ({n} components): took component 0"
    dim = image.GetDimension()
    size = image.GetSize()
    if dim == 4:
        if min(size[:3]) == 1:  # 2D + time (a cine series): no volume in it
            raise VolumeReadError(f"{p.name}: 2D image over time ({fmt_size(size)}); a 3D volume is needed")
        if size[3] == 1:
            return image[:, :, :, 0], note
        extractor = sitk.ExtractImageFilter()
        extractor.SetSize([size[0], size[1], size[2], 0])
        extractor.SetIndex([0, 0, 0, 0])
        image = extractor.Execute(image)
        return image, f"4D image with {size[3]} volumes: took volume 0"
    if dim == 2 or (dim == 3 and min(size) == 1):
        raise VolumeReadError(f"{p.name}: 2D image ({fmt_size(size)}); a 3D volume is needed")
    if dim != 3:
        raise VolumeReadError(f"{p.name}: {dim}D image; a 3D volume is needed")
    return image, note


def write_volume(
    array: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike,
    header: dict[str, str] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write `array` (z, y, x) with exactly `geometry`, atomically (temp file, then rename).

    The format follows the ending of `path` (see WRITE_SUFFIXES). Raises VolumeWriteError with a
    one-line message; an existing file at `path` is left untouched on any failure.
    """
    p = Path(path)
    suffix = volume_suffix(p)
    if suffix not in WRITE_SUFFIXES:
        raise VolumeWriteError(f"{p.name}: cannot write this format (use {', '.join(WRITE_SUFFIXES)})")
    if p.exists() and not overwrite:
        raise VolumeWriteError(f"{p}: exists (not overwritten)")
    if p.is_dir():
        raise VolumeWriteError(f"{p}: is a folder")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise VolumeWriteError(f"{folder}: output folder does not exist")
    if not os.access(folder, os.W_OK):
        raise VolumeWriteError(f"{folder}: output folder is not writable")
    arr = np.asarray(array)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if tuple(arr.shape) != geometry.shape_zyx:
        raise VolumeWriteError(
            f"{p.name}: array shape {fmt_size(arr.shape)} (z, y, x) does not fit the grid "
            f"{fmt_size(geometry.shape_zyx)} (z, y, x)"
        )
    image = geometry.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(arr)))
    for key, value in (header or {}).items():
        if not key.startswith(_STORAGE_KEYS):
            image.SetMetaData(key, value)

    def write(tmp: str) -> None:
        with quiet_itk():
            sitk.WriteImage(image, tmp, useCompression=suffix in (".nii.gz", ".nrrd", ".mha"))
        verify_written(Path(tmp), suffix, p.name)

    try:
        write_atomically(p, suffix, write)
    except VolumeReadError as exc:  # the written file is short or damaged (ITK only warns on a full disk)
        raise VolumeWriteError(f"{p}: could not be written ({str(exc).split(': ', 1)[-1]}; is the disk full?)") from None
    except OSError as exc:
        raise VolumeWriteError(f"{p}: could not be written ({exc.strerror or exc})") from None
    except RuntimeError as exc:
        raise VolumeWriteError(f"{p}: could not be written ({itk_reason(exc)})") from None
    return p
