"""DICOM SEG and DICOM series export: exact round trips (anisotropic, oblique, left-handed grids),
segment codes and algorithm, the CLI paths, and a SEG that references another series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from synthetic import threshold_meta

from napari_freqseg._reader import get_reader
from napari_freqseg.cli import main
from napari_freqseg.errors import VolumeReadError, VolumeWriteError
from napari_freqseg.io.dicom_export import SeriesInfo, write_dicom_series
from napari_freqseg.io.dicom_seg import Algorithm, read_dicom_seg, write_dicom_seg
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import read_volume, write_volume

OBLIQUE = (0.8660254, -0.5, 0.0, 0.5, 0.8660254, 0.0, 0.0, 0.0, 1.0)
LEFT_HANDED = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0)  # x -> L, y -> S, z -> P: det -1

GRIDS = {
    "anisotropic": Geometry(size=(14, 11, 6), spacing=(0.7, 0.9, 2.5), origin=(-12.5, 30.25, 101.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)),
    "oblique": Geometry(size=(12, 10, 7), spacing=(0.7, 0.9, 2.5), origin=(-12.5, 30.25, 101.0), direction=OBLIQUE),
    "left-handed": Geometry(size=(9, 8, 5), spacing=(1.0, 1.5, 3.0), origin=(4.0, -2.0, 7.5), direction=LEFT_HANDED),
}  # fmt: skip


def labels_for(geometry: Geometry) -> np.ndarray:
    """Two classes, asymmetric along every axis, with empty slices."""
    lab = np.zeros(geometry.shape_zyx, np.uint8)
    nz, ny, nx = lab.shape
    lab[1 : nz - 1, 2 : ny - 1, 1 : nx // 2] = 1
    lab[1, 1:3, nx - 3 : nx - 1] = 2
    return lab


def series(tmp_path: Path, geometry: Geometry, name: str = "series") -> tuple[Path, Geometry, SeriesInfo]:
    """A DICOM MR series of a ramp on `geometry`, and the grid a reader gives back."""
    image = (np.arange(np.prod(geometry.shape_zyx)) % 997).reshape(geometry.shape_zyx).astype(np.int16)
    info = write_dicom_series(image, geometry, tmp_path / name, SeriesInfo(patient_id="P1"))
    return tmp_path / name, read_volume(tmp_path / name).geometry, info


@pytest.mark.parametrize("grid", list(GRIDS))
def test_series_export_gives_back_the_voxels_in_space(tmp_path: Path, grid: str) -> None:
    geometry = GRIDS[grid]
    image = (np.arange(np.prod(geometry.shape_zyx)) % 997).reshape(geometry.shape_zyx).astype(np.int16)
    write_dicom_series(image, geometry, tmp_path / "s")
    back = read_volume(tmp_path / "s")
    if grid == "left-handed":  # stacked along the row x column normal: the same voxels, slices reversed
        assert np.array_equal(back.array, image[::-1])
        last = np.array(geometry.origin) + (geometry.size[2] - 1) * geometry.spacing[2] * geometry.direction_matrix[:, 2]
        np.testing.assert_allclose(back.geometry.origin, last, atol=1e-5)
    else:
        assert np.array_equal(back.array, image) and back.geometry.same_grid(geometry)


def test_series_export_keeps_float_intensities_within_16_bit_steps(tmp_path: Path) -> None:
    geometry = GRIDS["anisotropic"]
    image = np.random.default_rng(0).normal(5.0, 2.0, geometry.shape_zyx).astype(np.float32)
    info = write_dicom_series(image, geometry, tmp_path / "s")
    back = read_volume(tmp_path / "s").array.astype(np.float64)
    step = (image.max() - image.min()) / 65535
    assert np.abs(back - image).max() <= step and "slope" in info.notes[0]


@pytest.mark.parametrize("grid", list(GRIDS))
def test_seg_round_trip_is_exact_with_and_without_the_series(tmp_path: Path, grid: str) -> None:
    folder, geometry, info = series(tmp_path, GRIDS[grid])
    labels = labels_for(geometry)
    out = write_dicom_seg(labels, geometry, folder, tmp_path / "seg.dcm", classes=["background", "left atrium", "CSF"],
                          algorithm=Algorithm("la-vnet-sup", "1 supervised"))  # fmt: skip
    array, back, header, notes = read_dicom_seg(out, like=folder)
    assert np.array_equal(array, labels) and back.same_grid(geometry) and notes == []
    assert header["freqseg_referenced_series"] == info.series_uid
    alone = tmp_path / "elsewhere" / "deeper"
    alone.mkdir(parents=True)
    array, back, _, notes = read_dicom_seg(out.rename(alone / "seg.dcm"))  # no series beside it: its own frames
    assert np.array_equal(array, labels) and back.same_grid(geometry) and "not found beside" in notes[0]


def test_seg_names_segments_codes_and_the_model(tmp_path: Path) -> None:
    folder, geometry, info = series(tmp_path, GRIDS["oblique"])
    out = write_dicom_seg(labels_for(geometry), geometry, folder, tmp_path / "seg.dcm", classes=["background", "left atrium", "CSF", "blob"],
                          algorithm=Algorithm("la-vnet-sup", "1 supervised"))  # fmt: skip
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == info.study_uid and ds.PatientID == "P1"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == info.series_uid
    la, csf, blob = ds.SegmentSequence
    assert (la.SegmentNumber, la.SegmentLabel, la.SegmentedPropertyTypeCodeSequence[0].CodeValue) == (
        1,
        "left atrium",
        "82471001",
    )
    assert csf.SegmentedPropertyTypeCodeSequence[0].CodeValue == "65216001"  # SNOMED CT cerebrospinal fluid
    assert blob.SegmentedPropertyTypeCodeSequence[0].CodeValue == "85756007"  # no code known: 'Tissue'
    assert la.SegmentAlgorithmName == "la-vnet-sup" and la.SegmentAlgorithmType == "AUTOMATIC"
    assert int(ds.NumberOfFrames) == 3 * geometry.size[2]  # every source slice, per segment (empty class 3 too)


def test_seg_refuses_labels_off_the_series_grid_and_another_series(tmp_path: Path) -> None:
    folder, geometry, _ = series(tmp_path, GRIDS["anisotropic"])
    other, other_geometry, _ = series(tmp_path, GRIDS["oblique"], "other")
    with pytest.raises(VolumeWriteError, match="not on the series' slices"):
        write_dicom_seg(labels_for(other_geometry), other_geometry, folder, tmp_path / "seg.dcm", classes=["bg", "x"])
    assert not (tmp_path / "seg.dcm").exists()
    out = write_dicom_seg(labels_for(geometry), geometry, folder, tmp_path / "seg.dcm", classes=["bg", "x", "y"])
    with pytest.raises(VolumeReadError, match="references series .* which .*other does not hold"):
        read_dicom_seg(out, like=other)


def test_cli_segment_writes_a_seg_for_a_dicom_series_only(tmp_path: Path, threshold_model: Path, capsys) -> None:
    geometry = GRIDS["oblique"]
    image = np.zeros(geometry.shape_zyx, np.int16)
    image[2:5, 3:7, 4:9] = 1000
    write_dicom_series(image, geometry, tmp_path / "scan")
    assert (
        main(["segment", str(tmp_path / "scan"), "-o", str(tmp_path / "seg.dcm"), "--model", str(threshold_model), "--quiet"])
        == 0
    )
    assert main(["convert", str(tmp_path / "seg.dcm"), str(tmp_path / "seg.nii.gz"), "--like", str(tmp_path / "scan")]) == 0
    assert (
        main(["segment", str(tmp_path / "scan"), "-o", str(tmp_path / "ref.nii.gz"), "--model", str(threshold_model), "--quiet"])
        == 0
    )
    seg, ref = read_volume(tmp_path / "seg.nii.gz"), read_volume(tmp_path / "ref.nii.gz")
    assert np.array_equal(seg.array, ref.array) and seg.array.sum() > 0 and seg.geometry.same_grid(ref.geometry)
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert ds.SegmentSequence[0].SegmentAlgorithmName == threshold_meta().name
    write_volume(image, geometry, tmp_path / "scan.nii.gz")
    capsys.readouterr()
    assert main(["segment", str(tmp_path / "scan.nii.gz"), "-o", str(tmp_path / "x.dcm"), "--model", str(threshold_model)]) == 1
    assert "needs a DICOM series input" in capsys.readouterr().err and not (tmp_path / "x.dcm").exists()


def test_cli_convert_label_map_to_seg_and_reader_opens_it_as_labels(tmp_path: Path, capsys) -> None:
    folder, geometry, _ = series(tmp_path, GRIDS["anisotropic"])
    labels = labels_for(geometry)
    write_volume(labels, geometry, tmp_path / "labels.nii.gz")
    assert main(["convert", str(tmp_path / "labels.nii.gz"), str(tmp_path / "seg.dcm"), "--like", str(folder)]) == 0
    layers = get_reader(str(tmp_path / "seg.dcm"))(str(tmp_path / "seg.dcm"))
    ((data, meta, kind),) = layers
    assert kind == "labels" and np.array_equal(data, labels)
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "labels.nii.gz"), str(tmp_path / "seg2.dcm")]) == 1
    assert "--like DICOM_FOLDER" in capsys.readouterr().err


def test_napari_saves_a_labels_layer_of_a_dicom_series_as_seg_through_the_manifest(tmp_path: Path) -> None:
    """File > Save with a .dcm name reaches the plugin's DICOM SEG writer (declared in napari.yaml)."""
    import npe2

    folder, geometry, info = series(tmp_path, GRIDS["oblique"])
    labels = labels_for(geometry)
    meta = {"name": "seg", "metadata": {"source": str(folder), "freqseg_geometry": geometry.to_dict(),
                                         "header": {"0020|000e": info.series_uid}, "freqseg_classes": ["bg", "left atrium", "x"]}}  # fmt: skip
    npe2.PluginManager.instance().discover()  # as napari does at start
    written = npe2.write(str(tmp_path / "out.dcm"), [(labels, meta, "labels")], plugin_name="napari-freqseg")
    assert written == [str(tmp_path / "out.dcm")]
    array, back, _, _ = read_dicom_seg(tmp_path / "out.dcm", like=folder)
    assert np.array_equal(array, labels) and back.same_grid(geometry)


def test_a_seg_whose_segments_overlap_opens_with_the_higher_segment_on_top(tmp_path: Path) -> None:
    """An organ and a lesion inside it as two overlapping binary segments (as Slicer writes them)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    folder, geometry, _ = series(tmp_path, GRIDS["anisotropic"])
    organ = np.zeros(geometry.shape_zyx, bool)
    organ[1:5, 2:9, 2:12] = True
    lesion = np.zeros_like(organ)
    lesion[2:4, 4:6, 5:8] = True  # inside the organ
    instances = sorted((pydicom.dcmread(f) for f in folder.iterdir()), key=lambda ds: int(ds.InstanceNumber))
    descriptions = [
        hd.seg.SegmentDescription(segment_number=n, segment_label=name, segmented_property_category=codes.SCT.Tissue,
                                  segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, name in ((1, "organ"), (2, "lesion"))
    ]  # fmt: skip
    seg = hd.seg.Segmentation(
        source_images=instances, pixel_array=np.stack([organ, lesion], axis=-1), segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=99, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="test", software_versions="0", device_serial_number="0",
        omit_empty_frames=False,
    )  # fmt: skip
    seg.save_as(tmp_path / "overlap.dcm")
    expected = np.where(lesion, 2, np.where(organ, 1, 0))
    for like in (folder, None):
        array, back, _, notes = read_dicom_seg(tmp_path / "overlap.dcm", like=like)
        assert np.array_equal(array, expected) and back.same_grid(geometry)
        assert any("segments overlap" in n for n in notes)
