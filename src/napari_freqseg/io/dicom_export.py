"""Write a volume as a DICOM MR image series (pydicom): one file per slice, exact geometry.

Used to bring a NIfTI case into a PACS (and by the tests and the README's round trip). Integer
intensities are stored as they are; other values are mapped linearly onto 16 bits with the
rescale slope and intercept (said in the returned notes).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VolumeWriteError
from .dicom import save_dataset
from .geometry import Geometry

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass
class SeriesInfo:
    """Who and what the series belongs to; UIDs are made when not given."""

    patient_id: str = "ANON"
    patient_name: str = "Anonymous^"
    study_uid: str = ""
    series_uid: str = ""
    series_number: int = 1
    description: str = ""
    study_description: str = ""
    institution: str = ""
    frame_of_reference_uid: str = ""
    notes: list[str] = field(default_factory=list)


def _stored_pixels(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The array as 16-bit stored values with (slope, intercept) giving back the intensities."""
    if array.dtype.kind in "iub":
        lo, hi = int(array.min()), int(array.max())
        if 0 <= lo and hi <= 65535:
            return array.astype(np.uint16), 1.0, 0.0
        if -32768 <= lo and hi <= 32767:
            return array.astype(np.int16), 1.0, 0.0
    lo, hi = float(array.min()), float(array.max())
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    return np.round((array - lo) / slope).astype(np.uint16), slope, lo


def write_dicom_series(
    array: np.ndarray, geometry: Geometry, folder: str | os.PathLike, info: SeriesInfo | None = None
) -> SeriesInfo:
    """Write `array` (z, y, x) on `geometry` as an MR series into `folder` (created; files
    IM0001.dcm ...). A left-handed grid is written with its slices reversed, so that DICOM readers,
    which stack slices along the row x column normal, give back the same voxels in space."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    info = info or SeriesInfo()
    info.study_uid = info.study_uid or generate_uid()
    info.series_uid = info.series_uid or generate_uid()
    info.frame_of_reference_uid = info.frame_of_reference_uid or generate_uid()
    out = Path(folder)
    arr = np.asarray(array)
    if arr.shape != geometry.shape_zyx:
        raise VolumeWriteError(f"{out}: array {arr.shape} does not fit the grid {geometry.shape_zyx}")
    d = geometry.direction_matrix.copy()
    origin = np.asarray(geometry.origin, float)
    if float(np.cross(d[:, 0], d[:, 1]) @ d[:, 2]) < 0:  # left-handed: reverse the slices
        origin = origin + (arr.shape[0] - 1) * geometry.spacing[2] * d[:, 2]
        d[:, 2] = -d[:, 2]
        arr = arr[::-1]
    stored, slope, intercept = _stored_pixels(arr)
    if slope != 1.0 or intercept != 0.0:
        info.notes.append(f"intensities stored as 16-bit values (slope {slope:.6g}, intercept {intercept:.6g})")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VolumeWriteError(f"{out}: cannot create the folder ({exc.strerror or exc})") from None
    now = _dt.datetime.now()
    for k in range(arr.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = info.patient_id, info.patient_name, "", ""
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = info.study_uid, now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyDescription = "1", "", "", info.study_description
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = info.series_uid, info.series_number, info.description
        ds.Modality, ds.Manufacturer, ds.InstitutionName = "MR", "napari-freqseg", info.institution
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = info.frame_of_reference_uid, ""
        ds.InstanceNumber, ds.ImageType = k + 1, ["DERIVED", "SECONDARY"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "NONE", "", "3D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "0", "0", "1"
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*d[:, 0], *d[:, 1])]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in origin + k * geometry.spacing[2] * d[:, 2]]
        ds.PixelSpacing = [f"{geometry.spacing[1]:.8g}", f"{geometry.spacing[0]:.8g}"]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{geometry.spacing[2]:.8g}"
        ds.SpacingBetweenSlices = f"{geometry.spacing[2]:.8g}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[2])
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:.10g}", f"{intercept:.10g}", "US"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        save_dataset(ds, out / f"IM{k + 1:04d}.dcm")
    return info
