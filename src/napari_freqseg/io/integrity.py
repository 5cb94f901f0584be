"""Catch truncated volume files before ITK reads their pixels.

ITK's NIfTI reader fills the missing part of a truncated `.nii`/`.nii.gz` without a word, and its
MetaImage reader prints to the terminal before failing with an unrelated reason. Comparing the
number of bytes the header announces with what the file holds turns both into one clear message.
NRRD needs no check here: ITK already refuses a short NRRD with a clear reason.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Mapping
from pathlib import Path

from ..errors import VolumeReadError

# MetaIO element sizes in bytes (metaTypes.h).
_MET_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}  # fmt: skip


def check_complete(path: Path, suffix: str, header: Mapping[str, str], name: str | None = None) -> None:
    """Raise VolumeReadError when `path` holds fewer data bytes than its header announces, or its
    compressed data is damaged. `name` is how messages call the file (default: its own name; a
    temporary link or file passes the user's file name).

    `header` is the metadata ITK read from the header alone (ImageFileReader.ReadImageInformation).
    """
    try:
        if suffix in (".nii", ".nii.gz"):
            _check_nifti(path, suffix, header)
        elif suffix in (".mha", ".mhd"):
            _check_metaimage(path)
    except VolumeReadError as exc:
        if name is None:
            raise
        raise VolumeReadError(str(exc).replace(path.name, name, 1)) from None


def _truncated(path: Path, actual: int, expected: int) -> VolumeReadError:
    return VolumeReadError(f"{path.name}: truncated or corrupt (holds {actual} of the {expected} bytes its header announces)")


def _check_nifti(path: Path, suffix: str, header: Mapping[str, str]) -> None:
    try:
        ndim = int(header["dim[0]"])
        voxels = math.prod(int(header[f"dim[{i}]"]) for i in range(1, ndim + 1))
        expected = int(float(header["vox_offset"])) + voxels * int(header["bitpix"]) // 8
    except (KeyError, ValueError):
        return  # not the header we know: leave the judgement to ITK
    actual = path.stat().st_size if suffix == ".nii" else _gunzipped_size(path, expected)
    if actual < expected:
        raise _truncated(path, actual, expected)


def _gunzipped_size(path: Path, expected: int) -> int:
    """Uncompressed size of a gzip file, decompressing it all (which checks each member's CRC-32 and
    length); damaged data is an error."""
    size, damage = _gunzip(path)  # all of it: the trailer's length can match while the data's CRC does not
    if damage:
        raise VolumeReadError(f"{path.name}: truncated or corrupt ({damage})")
    return size


def gzip_damage(path: Path) -> str | None:
    """Why a file that starts like gzip cannot be decompressed, or None (also when it is not gzip)."""
    with open(path, "rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            return None
    return _gunzip(path)[1]


def _gunzip(path: Path) -> tuple[int, str | None]:
    size = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                size += len(chunk)
    except EOFError:
        return size, "compressed data ends early"
    except (OSError, zlib.error) as exc:
        return size, f"compressed data damaged: {exc}"
    return size, None


def _check_metaimage(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    start = head.find(b"ElementDataFile")
    end = head.find(b"\n", start)
    if start < 0 or end < 0:
        return
    fields = {}
    for line in head[:end].decode("latin-1").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    data_file = fields.get("ElementDataFile", "")
    if data_file == "LOCAL":
        actual = path.stat().st_size - (end + 1)
    elif data_file and "%" not in data_file and not data_file.upper().startswith("LIST"):
        data_path = path.parent / data_file
        if not data_path.is_file():
            raise VolumeReadError(f"{path.name}: its data file {data_file} is missing")
        actual = data_path.stat().st_size - max(int(fields.get("HeaderSize", "0") or 0), 0)
    else:
        return  # slice lists and file patterns: ITK checks those itself
    try:
        if fields.get("CompressedData", "False").lower() == "true":
            expected = int(fields["CompressedDataSize"])
        else:
            channels = int(fields.get("ElementNumberOfChannels", "1"))
            voxels = math.prod(int(v) for v in fields["DimSize"].split())
            expected = voxels * channels * _MET_BYTES[fields["ElementType"]]
    except (KeyError, ValueError):
        return
    if actual < expected:
        raise _truncated(path, actual, expected)
