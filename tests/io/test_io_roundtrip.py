"""A label map written in any format comes back on exactly its source grid (core, npe2 writer, napari layer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_freqseg._writer import write_image, write_labels
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import WRITE_SUFFIXES, read_volume, write_volume
from napari_freqseg.layers import GEOMETRY_KEY, labels_layer_data

# NIfTI stores spacing, origin and direction as float32; NRRD as text "space directions" (spacing
# times direction, so a few 1e-9 off); MetaImage as text, exactly.
ATOL = {".nii.gz": 1e-5, ".nii": 1e-5, ".nrrd": 1e-8, ".mha": 1e-9, ".nhdr": 1e-8, ".mhd": 1e-9}


def assert_same_geometry(got: Geometry, want: Geometry, suffix: str) -> None:
    atol = ATOL[suffix]
    assert got.size == want.size
    np.testing.assert_allclose(got.spacing, want.spacing, rtol=0, atol=atol)
    np.testing.assert_allclose(got.origin, want.origin, rtol=0, atol=atol * 100)  # |origin| ~ 100 mm
    np.testing.assert_allclose(got.direction, want.direction, rtol=0, atol=atol)
    assert got.same_grid(want)


def labels_on(geometry: Geometry, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, size=geometry.shape_zyx, dtype=np.uint8)


@pytest.mark.parametrize("suffix", WRITE_SUFFIXES)
def test_core_write_read_keeps_oblique_anisotropic_grid(tmp_path: Path, oblique_geometry: Geometry, suffix: str):
    assert oblique_geometry.is_oblique and len(set(oblique_geometry.spacing)) == 3
    labels = labels_on(oblique_geometry)
    out = write_volume(labels, oblique_geometry, tmp_path / f"seg{suffix}")
    back = read_volume(out)
    assert_same_geometry(back.geometry, oblique_geometry, suffix)
    np.testing.assert_array_equal(back.array, labels)
    assert back.array.dtype == np.uint8


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_detached_headers_read_with_geometry(tmp_path: Path, oblique_geometry: Geometry, suffix: str):
    image = (np.arange(np.prod(oblique_geometry.shape_zyx)) % 251).reshape(oblique_geometry.shape_zyx)
    image = image.astype(np.int16)
    sitk.WriteImage(oblique_geometry.apply_to(sitk.GetImageFromArray(image)), str(tmp_path / f"vol{suffix}"))
    assert len(list(tmp_path.iterdir())) == 2  # header + separate data file
    back = read_volume(tmp_path / f"vol{suffix}")
    assert_same_geometry(back.geometry, oblique_geometry, suffix)
    np.testing.assert_array_equal(back.array, image)


@pytest.mark.parametrize("source_suffix", [".nrrd", ".nii.gz", ".mha"])
@pytest.mark.parametrize("out_suffix", WRITE_SUFFIXES)
def test_npe2_writer_gives_labels_the_source_grid(
    tmp_path: Path, oblique_geometry: Geometry, source_suffix: str, out_suffix: str
):
    """Image in one format -> labels layer on its grid -> npe2 writer in another format."""
    image = np.linspace(0, 1000, np.prod(oblique_geometry.shape_zyx)).reshape(oblique_geometry.shape_zyx)
    source = write_volume(image.astype(np.int16), oblique_geometry, tmp_path / f"scan{source_suffix}")
    volume = read_volume(source)
    labels = labels_on(volume.geometry, seed=1)
    data, meta, kind = labels_layer_data(labels, volume.geometry, "seg", volume.metadata())
    assert kind == "labels"
    written = write_labels(str(tmp_path / f"seg{out_suffix}"), data, meta)
    assert written == [str(tmp_path / f"seg{out_suffix}")]
    back = read_volume(written[0])
    lossiest = max(source_suffix, out_suffix, key=ATOL.__getitem__)
    assert_same_geometry(back.geometry, oblique_geometry, lossiest)
    np.testing.assert_array_equal(back.array, labels)
    # storage keys of the source header (NIfTI scaling, data type) never leak into the label file
    assert back.header.get("scl_slope", "1") == "1"
    assert back.array.dtype == np.uint8


def test_writer_without_stored_geometry_uses_scale_and_translate(tmp_path: Path):
    labels = np.zeros((6, 7, 8), np.uint8)
    labels[2:4, 3:5, 1:6] = 3
    meta = {"scale": (2.5, 0.8, 0.6), "translate": (10.0, -4.0, 7.5), "metadata": {}}
    back = read_volume(write_labels(str(tmp_path / "plain.nrrd"), labels, meta)[0])
    assert back.geometry.size == (8, 7, 6)
    np.testing.assert_allclose(back.geometry.spacing, (0.6, 0.8, 2.5))
    np.testing.assert_allclose(back.geometry.origin, (7.5, -4.0, 10.0))
    np.testing.assert_array_equal(back.array, labels)


def test_writer_uses_uint16_beyond_255_labels(tmp_path: Path, oblique_geometry: Geometry):
    labels = np.zeros(oblique_geometry.shape_zyx, np.int32)
    labels[0, 0, :3] = (1, 300, 65535)
    data, meta, _ = labels_layer_data(labels.astype(np.uint16), oblique_geometry, "many")
    meta["metadata"] = meta.pop("metadata")
    back = read_volume(write_labels(str(tmp_path / "many.nii.gz"), labels, meta)[0])
    assert back.array.dtype == np.uint16
    assert back.array[0, 0, :3].tolist() == [1, 300, 65535]


def test_image_writer_keeps_dtype_and_grid(tmp_path: Path, oblique_geometry: Geometry):
    image = np.random.default_rng(3).normal(size=oblique_geometry.shape_zyx).astype(np.float32)
    meta = {"metadata": {"freqseg_geometry": oblique_geometry.to_dict()}, "scale": (1, 1, 1), "translate": (0, 0, 0)}
    back = read_volume(write_image(str(tmp_path / "img.mha"), image, meta)[0])
    assert_same_geometry(back.geometry, oblique_geometry, ".mha")
    np.testing.assert_array_equal(back.array, image)


def test_nii_gz_beside_uncompressed_twin_reads_its_own_voxels(tmp_path: Path, oblique_geometry: Geometry):
    """niftilib would open x.nii when asked for x.nii.gz; the reader must not."""
    a, b = labels_on(oblique_geometry, 1), labels_on(oblique_geometry, 2)
    write_volume(a, oblique_geometry, tmp_path / "x.nii")
    write_volume(b, oblique_geometry, tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(read_volume(tmp_path / "x.nii.gz").array, b)
    np.testing.assert_array_equal(read_volume(tmp_path / "x.nii").array, a)


def test_written_files_get_usual_permissions(tmp_path: Path, oblique_geometry: Geometry):
    out = write_volume(labels_on(oblique_geometry), oblique_geometry, tmp_path / "perm.nrrd")
    assert out.stat().st_mode & 0o044 == 0o044  # readable by group and others (umask 022), not 0600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".freqseg-")]


def test_napari_labels_layer_round_trip(tmp_path: Path, oblique_geometry: Geometry, make_napari_viewer):
    """Open an oblique NRRD in napari, add labels on its grid, save them through napari in each format."""
    image = np.linspace(0, 255, np.prod(oblique_geometry.shape_zyx)).reshape(oblique_geometry.shape_zyx)
    source = write_volume(image.astype(np.uint8), oblique_geometry, tmp_path / "oblique_scan.nrrd")
    viewer = make_napari_viewer()
    [image_layer] = viewer.open(str(source), plugin="napari-freqseg")
    assert tuple(image_layer.scale) == pytest.approx(oblique_geometry.scale_zyx)
    assert tuple(image_layer.translate) == pytest.approx(oblique_geometry.translate_zyx)
    assert image_layer.metadata["freqseg_geometry"]["direction"] == pytest.approx(oblique_geometry.direction)
    labels = labels_on(oblique_geometry, seed=5)
    data, kwargs, _ = labels_layer_data(labels, oblique_geometry, "seg", {"header": image_layer.metadata["header"]})
    layer = viewer.add_labels(data, **kwargs)
    for suffix in WRITE_SUFFIXES:
        out = tmp_path / f"napari_seg{suffix}"
        assert layer.save(str(out), plugin="napari-freqseg") == [str(out)]
        back = read_volume(out)
        assert_same_geometry(back.geometry, oblique_geometry, suffix)
        np.testing.assert_array_equal(back.array, labels)


def test_label_layers_keep_every_value(tmp_path: Path, oblique_geometry: Geometry):
    """MM-WHS-style values (205..850) and -1 are kept, not wrapped into uint8; 0..255 stays uint8."""
    for values, dtype in (((0, 1, 7), np.uint8), ((205, 420, 850), np.uint16), ((-1, 0, 3), np.int32)):
        labels = np.zeros(oblique_geometry.shape_zyx, np.int64)
        labels[0, 0, :3] = values
        data, _, _ = labels_layer_data(labels, oblique_geometry, "seg")
        assert data.dtype == dtype and data[0, 0, :3].tolist() == list(values)

    labels = np.zeros(oblique_geometry.shape_zyx, np.int32)
    labels[0, 0, :2] = (-1, 850)
    meta = labels_layer_data(labels, oblique_geometry, "seg")[1]
    back = read_volume(write_labels(str(tmp_path / "signed.nii.gz"), labels, meta)[0])
    assert back.array[0, 0, :2].tolist() == [-1, 850]


def test_new_labels_over_a_scan_are_written_on_its_grid(tmp_path: Path, oblique_geometry: Geometry, make_napari_viewer):
    """napari's New Labels copies only the scan's shape, scale and translate: the writer still finds
    the scan's direction (the labels would be rotated or mirrored in other viewers without it)."""
    image = np.linspace(0, 255, np.prod(oblique_geometry.shape_zyx)).reshape(oblique_geometry.shape_zyx)
    source = write_volume(image.astype(np.uint8), oblique_geometry, tmp_path / "scan.nii.gz")
    viewer = make_napari_viewer()
    [scan] = viewer.open(str(source), plugin="napari-freqseg")
    labels = labels_on(oblique_geometry, seed=2)
    layer = viewer.add_labels(labels, scale=scan.scale, translate=scan.translate)
    out = tmp_path / "drawn.nrrd"
    assert layer.save(str(out), plugin="napari-freqseg") == [str(out)]
    back = read_volume(out)
    assert_same_geometry(back.geometry, oblique_geometry, ".nii.gz")
    np.testing.assert_array_equal(back.array, labels)


def test_multiscale_layers_are_written_at_full_resolution(tmp_path: Path, oblique_geometry: Geometry):
    """numpy reads napari's multiscale data as its coarsest level; the writer saves level 0."""
    from napari.layers import Labels

    labels = labels_on(oblique_geometry, seed=3)
    meta = {GEOMETRY_KEY: oblique_geometry.to_dict()}
    layer = Labels([labels, labels[::2, ::2, ::2]], multiscale=True, scale=oblique_geometry.scale_zyx, metadata=meta)
    data, state, _ = layer.as_layer_data_tuple()
    back = read_volume(write_labels(str(tmp_path / "ms.nii.gz"), data, state)[0])
    assert_same_geometry(back.geometry, oblique_geometry, ".nii.gz")
    np.testing.assert_array_equal(back.array, labels)


def test_a_layer_rotated_in_the_viewer_is_saved_on_its_grid_and_says_so(tmp_path: Path, oblique_geometry: Geometry):
    """rotate/shear/affine exist only in napari: the file keeps the voxel grid, and the person is told."""
    from napari.layers import Labels
    from napari.utils.notifications import notification_manager

    labels = labels_on(oblique_geometry, seed=4)
    meta = {GEOMETRY_KEY: oblique_geometry.to_dict()}
    for name, kwargs in (("plain", {}), ("turned", {"rotate": 25}), ("sheared", {"shear": [0.2, 0.0, 0.0]})):
        before = len(notification_manager.records)
        data, state, _ = Labels(labels, scale=oblique_geometry.scale_zyx, metadata=meta, **kwargs).as_layer_data_tuple()
        back = read_volume(write_labels(str(tmp_path / f"{name}.nii.gz"), data, state)[0])
        assert_same_geometry(back.geometry, oblique_geometry, ".nii.gz")
        said = [r.message for r in notification_manager.records[before:]]
        assert said == (
            []
            if name == "plain"
            else [f"{name}.nii.gz: saved on its voxel grid; the layer's rotate/shear/affine in the viewer are not in the file"]
        )
