"""DICOM series folders: geometry, the largest of several series, mixed and empty folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_freqseg._reader import get_reader
from napari_freqseg.errors import VolumeReadError
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import is_readable_path, read_volume

UID_ROOT = "1.2.826.0.1.3680043.2.1125.7"  # example root, as in SimpleITK's DICOM series example


def write_dicom_series(folder: Path, array: np.ndarray, geometry: Geometry, series: int, prefix: str) -> str:
    """Write `array` (z, y, x, int16) slice by slice as one MR series with the tags readers need."""
    folder.mkdir(parents=True, exist_ok=True)
    image = geometry.apply_to(sitk.GetImageFromArray(array))
    d = geometry.direction
    series_uid = f"{UID_ROOT}.{series}"
    common = {
        "0008|0060": "MR",
        "0008|0008": "DERIVED\\SECONDARY",
        "0020|000d": f"{UID_ROOT}.100",  # study
        "0020|000e": series_uid,
        "0020|0011": str(series),
        "0008|103e": f"series {series}",
        "0020|0037": "\\".join(f"{v:.7f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
        "0018|0050": f"{geometry.spacing[2]:.6f}",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        plane = image[:, :, k]
        for tag, value in common.items():
            plane.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        plane.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))
        plane.SetMetaData("0020|0013", str(k + 1))
        plane.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
        writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
        writer.Execute(plane)
    return series_uid


def ramp(shape: tuple[int, int, int]) -> np.ndarray:
    return (np.arange(np.prod(shape)) % 1000).reshape(shape).astype(np.int16)


def small_oblique(nz: int) -> Geometry:
    return Geometry(
        size=(12, 10, nz), spacing=(0.7, 0.9, 2.5), origin=(-12.5, 30.25, 101.0),
        direction=(0.8660254, -0.5, 0.0, 0.5, 0.8660254, 0.0, 0.0, 0.0, 1.0),
    )  # fmt: skip


def test_dicom_series_keeps_geometry_and_voxels(tmp_path: Path):
    geometry = small_oblique(6)
    array = ramp(geometry.shape_zyx)
    write_dicom_series(tmp_path / "ct", array, geometry, series=1, prefix="s1_")
    vol = read_volume(tmp_path / "ct")
    assert vol.geometry.size == geometry.size
    np.testing.assert_allclose(vol.geometry.spacing, geometry.spacing, atol=1e-5)
    np.testing.assert_allclose(vol.geometry.origin, geometry.origin, atol=1e-5)
    np.testing.assert_allclose(vol.geometry.direction, geometry.direction, atol=1e-6)
    np.testing.assert_array_equal(vol.array, array)
    assert vol.notes == []
    assert vol.header.get("0008|0060", "").strip() == "MR"


def test_largest_of_two_series_is_taken_and_the_other_named(tmp_path: Path):
    big, small = small_oblique(6), small_oblique(4)
    write_dicom_series(tmp_path, ramp(big.shape_zyx), big, series=1, prefix="a_")
    other_uid = write_dicom_series(tmp_path, np.ones(small.shape_zyx, np.int16), small, series=2, prefix="b_")
    vol = read_volume(tmp_path)
    assert vol.geometry.size == big.size
    np.testing.assert_array_equal(vol.array, ramp(big.shape_zyx))
    [note] = vol.notes
    assert "largest DICOM series" in note and f"{UID_ROOT}.1 (6 files)" in note
    assert f"{other_uid} (4 files)" in note


def test_mixed_folder_with_non_dicom_files_reads_the_series(tmp_path: Path):
    geometry = small_oblique(5)
    write_dicom_series(tmp_path, ramp(geometry.shape_zyx), geometry, series=3, prefix="x_")
    (tmp_path / "README.txt").write_text("scanner export notes")
    (tmp_path / "broken.dcm").write_bytes(b"\x00" * 200)
    (tmp_path / "thumb.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    vol = read_volume(tmp_path)
    assert vol.geometry.size == geometry.size
    np.testing.assert_array_equal(vol.array, ramp(geometry.shape_zyx))


def test_empty_folder_is_refused_and_not_offered_to_napari(tmp_path: Path):
    with pytest.raises(VolumeReadError, match="holds no DICOM series"):
        read_volume(tmp_path)
    assert not is_readable_path(tmp_path)
    assert get_reader(str(tmp_path)) is None


def test_folder_of_non_dicom_files_is_refused(tmp_path: Path):
    (tmp_path / "a.dcm").write_text("not really DICOM")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(VolumeReadError, match="holds no DICOM series"):
        read_volume(tmp_path)


def test_single_slice_series_is_not_a_volume(tmp_path: Path):
    geometry = small_oblique(1)
    write_dicom_series(tmp_path, ramp(geometry.shape_zyx), geometry, series=4, prefix="one_")
    with pytest.raises(VolumeReadError, match="single slice"):
        read_volume(tmp_path)


def test_napari_reader_opens_a_dicom_folder(tmp_path: Path):
    geometry = small_oblique(4)
    write_dicom_series(tmp_path / "mr", ramp(geometry.shape_zyx), geometry, series=5, prefix="m_")
    reader = get_reader(str(tmp_path / "mr"))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(tmp_path / "mr"))
    assert kind == "image" and data.shape == geometry.shape_zyx
    assert kwargs["scale"] == pytest.approx(geometry.scale_zyx, abs=1e-5)
    assert kwargs["metadata"]["freqseg_geometry"]["direction"] == pytest.approx(geometry.direction, abs=1e-6)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_or_missing_slice_is_named_not_stretched_over(tmp_path: Path, damage: str):
    """One slice of a series unreadable or gone: ITK would read the rest with a stretched z spacing."""
    geometry = small_oblique(8)
    write_dicom_series(tmp_path, ramp(geometry.shape_zyx), geometry, series=4, prefix="s_")
    victim = tmp_path / "s_004.dcm"
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:300])
    else:
        victim.unlink()
    with pytest.raises(VolumeReadError, match=r"not evenly spaced \(5\.000 mm between slices 4 and 5, 2\.500 mm elsewhere\)"):
        read_volume(tmp_path)


def test_a_gantry_tilted_series_is_refused_not_read_as_straight(tmp_path: Path):
    """Each slice 0.7 mm further along the rows (a tilted CT gantry): ITK would read a straight grid
    with the slant distance as spacing, misplacing the last slice by several mm."""
    pydicom = pytest.importorskip("pydicom")
    geometry = small_oblique(10)
    write_dicom_series(tmp_path, ramp(geometry.shape_zyx), geometry, series=5, prefix="t_")
    row = np.array(geometry.direction[0::3])
    for k, f in enumerate(sorted(tmp_path.glob("t_*.dcm"))):
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = [float(v) for v in np.asarray(ds.ImagePositionPatient, float) + 0.7 * k * row]
        ds.save_as(f)
    with pytest.raises(VolumeReadError, match=r"drift 6\.3 mm sideways across the series \(gantry tilt of 15\.6°\)"):
        read_volume(tmp_path)
