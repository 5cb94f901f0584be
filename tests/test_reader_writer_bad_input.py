"""npe2 reader and writer on bad input: None for paths not ours, a notification (never a crash) otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from napari_freqseg._reader import get_reader
from napari_freqseg._writer import write_image, write_labels
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import write_volume
from napari_freqseg.layers import labels_layer_data

GRID = Geometry(size=(14, 12, 10), spacing=(0.8, 0.8, 2.0), origin=(1, 2, 3), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def messages(notifications: list, severity: str | None = None) -> list[str]:
    return [str(n.message) for n in notifications if severity is None or str(n.severity) == severity]


def test_reader_declines_paths_it_does_not_handle(tmp_path: Path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "table.csv").write_text("a,b\n")
    (tmp_path / "plain_folder").mkdir()
    (tmp_path / "plain_folder" / "notes.txt").write_text("x")
    good = write_volume(np.zeros(GRID.shape_zyx, np.uint8), GRID, tmp_path / "scan.nii.gz")
    for path in ("photo.png", "table.csv", "plain_folder", "no_such_folder"):
        assert get_reader(str(tmp_path / path)) is None
    assert get_reader([str(good), str(tmp_path / "photo.png")]) is None
    assert get_reader([]) is None
    assert get_reader(None) is None  # type: ignore[arg-type]
    assert get_reader(str(good)) is not None


def bad_files(tmp_path: Path) -> dict[str, str]:
    good = write_volume(np.ones(GRID.shape_zyx, np.float32), GRID, tmp_path / "good.nii.gz")
    (tmp_path / "cut.nii.gz").write_bytes(good.read_bytes()[:150])
    (tmp_path / "text.mha").write_text("hello")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.uint8)), str(tmp_path / "flat.nrrd"))
    write_volume(np.full(GRID.shape_zyx, np.nan, np.float32), GRID, tmp_path / "void.nrrd")
    plane = sitk.GetImageFromArray(np.zeros((1, 16, 16), np.float32))
    sitk.WriteImage(sitk.JoinSeries([plane] * 5), str(tmp_path / "cine.nii.gz"))  # 16×16×1, 5 time points
    return {
        "cine.nii.gz": "cine.nii.gz: 2D image over time",
        "cut.nii.gz": "cut.nii.gz: truncated or corrupt",
        "text.mha": "text.mha: not an image",
        "flat.nrrd": "flat.nrrd: 2D image",
        "void.nrrd": "void.nrrd: every voxel is NaN or infinite",
        "missing.nrrd": "no such file or folder",
    }


def test_reader_turns_bad_files_into_one_notification(tmp_path: Path, notifications: list):
    for name, message in bad_files(tmp_path).items():
        notifications.clear()
        reader = get_reader(str(tmp_path / name))
        assert reader is not None
        assert reader(str(tmp_path / name)) == [(None,)]  # "read, nothing to show": napari adds no error of its own
        [shown] = messages(notifications)
        assert message in shown and "\n" not in shown


def test_reader_keeps_good_files_of_a_mixed_list_and_reports_notes(tmp_path: Path, notifications: list):
    img = GRID.apply_to(sitk.GetImageFromArray(np.ones(GRID.shape_zyx, np.float32)))
    sitk.WriteImage(sitk.JoinSeries([img, img]), str(tmp_path / "dyn.nii.gz"))
    bad_files(tmp_path)
    layers = get_reader(str(tmp_path / "dyn.nii.gz"))([str(tmp_path / "dyn.nii.gz"), str(tmp_path / "text.mha")])
    assert [kind for _, _, kind in layers] == ["image"]
    assert layers[0][0].shape == GRID.shape_zyx
    shown = messages(notifications)
    assert any("dyn.nii.gz: 4D image with 2 volumes: took volume 0" in m for m in shown)
    assert any("text.mha: not an image" in m for m in shown)


def test_viewer_open_bad_file_adds_nothing_and_does_not_raise(tmp_path: Path, make_napari_viewer, notifications: list):
    bad_files(tmp_path)
    viewer = make_napari_viewer()
    assert viewer.open(str(tmp_path / "cut.nii.gz"), plugin="napari-freqseg") == []
    assert len(viewer.layers) == 0
    assert any("cut.nii.gz: truncated or corrupt" in m for m in messages(notifications))


def test_writer_unwritable_path_notifies_and_keeps_existing_file(tmp_path: Path, notifications: list):
    data, meta, _ = labels_layer_data(np.ones(GRID.shape_zyx, np.uint8), GRID, "seg")
    assert write_labels(str(tmp_path / "no" / "dir" / "seg.nii.gz"), data, meta) == []
    assert any("output folder does not exist" in m for m in messages(notifications))
    if Path("/sys").is_dir():
        assert write_labels("/sys/freqseg-seg.nrrd", data, meta) == []
        assert any("could not be written" in m for m in messages(notifications))


def test_writer_failure_midway_keeps_existing_file(tmp_path: Path, notifications: list, monkeypatch):
    from napari_freqseg.io import volume as volume_module

    def disk_full(image: sitk.Image, path: str, useCompression: bool) -> None:  # noqa: N803
        Path(path).write_bytes(b"partial")
        raise RuntimeError("sitk::ERROR: No space left on device")

    monkeypatch.setattr(volume_module.sitk, "WriteImage", disk_full)
    existing = tmp_path / "seg.mha"
    existing.write_bytes(b"keep me")
    data, meta, _ = labels_layer_data(np.ones(GRID.shape_zyx, np.uint8), GRID, "seg")
    assert write_labels(str(existing), data, meta) == []
    assert existing.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.mha"]
    assert any("seg.mha: could not be written (No space left on device)" in m for m in messages(notifications))


def test_writer_refuses_non_3d_layers(tmp_path: Path, notifications: list):
    assert write_image(str(tmp_path / "x.nrrd"), np.zeros((5, 6)), {"scale": (1, 1), "translate": (0, 0)}) == []
    assert any("only 3D layers can be saved" in m for m in messages(notifications))
    assert not (tmp_path / "x.nrrd").exists()


def test_a_library_failure_on_an_odd_file_is_one_notification(tmp_path: Path, notifications: list, monkeypatch):
    from napari_freqseg import _reader

    good = write_volume(np.ones(GRID.shape_zyx, np.float32), GRID, tmp_path / "odd.nii.gz")

    def fail(path: str) -> None:
        raise RuntimeError("Cannot combine segments because segments overlap.")

    monkeypatch.setattr(_reader, "read_volume", fail)
    assert get_reader(str(good))(str(good)) == [(None,)]
    [shown] = messages(notifications)
    assert shown == "odd.nii.gz: could not be read (RuntimeError: Cannot combine segments because segments overlap.)"
