"""`freqseg segment` and `freqseg models`: outputs on the input's exact grid, batches, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from synthetic import make_blob_volume

from napari_freqseg.cli import main
from napari_freqseg.inference import device
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import read_volume, write_volume
from napari_freqseg.models import registry
from napari_freqseg.models.preprocess import Normalization

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def _no_installed_models(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(registry.USER_DIR_ENV, str(tmp_path / "no-user"))


def _scan(path: Path, geometry: Geometry, seed: int = 0) -> np.ndarray:
    image, _ = make_blob_volume(geometry.shape_zyx, seed)
    write_volume(image, geometry, path)
    return (Normalization()(read_volume(path).array) > 2.0).astype(np.uint8)


def test_segment_writes_labels_on_the_exact_input_grid(tmp_path, threshold_model, oblique_geometry, capsys) -> None:
    expected = _scan(tmp_path / "scan.nii.gz", oblique_geometry)
    out, out_u = tmp_path / "seg.nii.gz", tmp_path / "u.nrrd"
    args = ["segment", str(tmp_path / "scan.nii.gz"), "-o", str(out), "--model", str(threshold_model),
            "--device", "cpu", "--no-largest-component", "--uncertainty", str(out_u), "--quiet"]  # fmt: skip
    assert main(args) == 0
    labels = read_volume(out)
    assert labels.geometry.same_grid(read_volume(tmp_path / "scan.nii.gz").geometry)
    assert labels.geometry.direction == pytest.approx(oblique_geometry.direction, abs=1e-6)
    assert labels.array.dtype == np.uint8
    np.testing.assert_array_equal(labels.array, expected)
    u = read_volume(out_u)
    assert u.array.dtype == np.float32 and u.geometry.same_grid(labels.geometry) and 0 <= u.array.min() <= u.array.max() <= 1
    assert "blob" in capsys.readouterr().out


def test_folder_batch_mirrors_the_input_tree(tmp_path, threshold_model, monkeypatch, capsys) -> None:
    g = Geometry(size=(20, 18, 16), spacing=(1.0, 1.2, 2.0), origin=(5.0, -3.0, 1.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    (tmp_path / "in" / "site2").mkdir(parents=True)
    _scan(tmp_path / "in" / "a.nii.gz", g)
    _scan(tmp_path / "in" / "site2" / "b.nrrd", g, seed=1)
    write_volume(np.zeros(g.shape_zyx, np.uint8), g, tmp_path / "in" / "a_label.nii.gz")  # skipped
    # Left by a killed write and by a session folder: hidden, never inputs.
    _scan(tmp_path / "in" / ".freqseg-x1y2.nii.gz", g)
    (tmp_path / "in" / ".hidden").mkdir()
    _scan(tmp_path / "in" / ".hidden" / "c.nii.gz", g)
    args = ["segment", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "threshold", "--json",
            "--uncertainty", str(tmp_path / "unc")]  # fmt: skip
    monkeypatch.setenv(registry.USER_DIR_ENV, str(threshold_model.parent))  # found by name in the user folder
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(Path(r["output"]).relative_to(tmp_path / "out").as_posix() for r in report["results"]) == [
        "a.nii.gz",
        "site2/b.nrrd",
    ]
    assert report["failed"] == 0 and report["results"][0]["classes"][0]["name"] == "blob"
    assert (tmp_path / "unc" / "site2" / "b.nrrd").is_file() and not (tmp_path / "out" / "a_label.nii.gz").exists()
    assert read_volume(tmp_path / "out" / "site2" / "b.nrrd").geometry.same_grid(g)


def test_errors_are_one_line(tmp_path, threshold_model, monkeypatch, capsys) -> None:
    g = Geometry(size=(16, 16, 16), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    _scan(tmp_path / "scan.nii.gz", g)
    base = ["segment", str(tmp_path / "scan.nii.gz"), "-o", str(tmp_path / "o.nii.gz")]
    monkeypatch.setattr(device, "cuda_available", lambda: False)
    cases = [
        (base + ["--model", str(threshold_model), "--device", "cuda"], "CUDA was asked for but is not available"),
        (base, "no model installed"),
        (base + ["--model", "nonexistent"], "no model named 'nonexistent'"),
        (["segment", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "o.nii.gz")], "no such file"),
    ]
    (tmp_path / "corrupt.safetensors").write_bytes(threshold_model.read_bytes()[:200])
    cases.append((base + ["--model", str(tmp_path / "corrupt.safetensors")], "corrupt.safetensors"))
    for argv, message in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.nii.gz").exists()


def test_models_lists_the_user_folder(threshold_model, monkeypatch, capsys) -> None:
    monkeypatch.setenv(registry.USER_DIR_ENV, str(threshold_model.parent))
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listing["models"]] == ["threshold"]
    assert listing["models"][0]["classes"] == ["background", "blob"] and listing["models"][0]["source"] == "user"
    assert main(["models"]) == 0
    assert "threshold" in capsys.readouterr().out


def test_segment_shows_what_the_reader_changed(tmp_path, threshold_model, oblique_geometry, capsys) -> None:
    """NaN voxels replaced by the reader: said on stderr, the run still succeeds."""
    image, _ = make_blob_volume(oblique_geometry.shape_zyx, 0)
    image = image.astype(np.float32)
    image[0, 0, :2] = np.nan
    write_volume(image, oblique_geometry, tmp_path / "holes.nrrd")
    args = ["segment", str(tmp_path / "holes.nrrd"), "-o", str(tmp_path / "seg.nii.gz"), "--model", str(threshold_model),
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"note: {tmp_path / 'holes.nrrd'}: 2 NaN/Inf voxels replaced by the lowest finite value {float(np.nanmin(image)):.4g}"
    )


def test_a_round_tuned_for_the_scans_site_is_used_and_said(
    tmp_path, threshold_model, oblique_geometry, monkeypatch, capsys
) -> None:
    """`--model threshold` on a scan of a site with a tuned round `threshold@<site>-ftN` uses the
    round (and says so); --no-site-model and a model given as a file use the model itself."""
    from synthetic import ThresholdNet, threshold_meta

    from napari_freqseg.models.modelfile import save_model

    monkeypatch.setenv(registry.USER_DIR_ENV, str(threshold_model.parent))
    expected = _scan(tmp_path / "scan.nii.gz", oblique_geometry)
    save_model(threshold_model.parent / "threshold@scan-ft1.safetensors", ThresholdNet(threshold=99.0),
               threshold_meta(name="threshold@scan-ft1", arch_args={"threshold": 99.0}, parent="threshold"))  # fmt: skip
    run = [
        "segment",
        str(tmp_path / "scan.nii.gz"),
        "-o",
        str(tmp_path / "seg.nii.gz"),
        "--no-largest-component",
        "--quiet",
        "--json",
    ]
    capsys.readouterr()
    assert main([*run, "--model", "threshold"]) == 0
    out = capsys.readouterr()
    assert (
        "using threshold@scan-ft1, tuned for this site" in out.err
        and json.loads(out.out)["results"][0]["model"] == "threshold@scan-ft1"
    )
    assert read_volume(tmp_path / "seg.nii.gz").array.sum() == 0  # the round's threshold 99: nothing
    for choice in (["--model", "threshold", "--no-site-model"], ["--model", str(threshold_model)]):
        assert main([*run, *choice]) == 0
        assert json.loads(capsys.readouterr().out)["results"][0]["model"] == "threshold"
        np.testing.assert_array_equal(read_volume(tmp_path / "seg.nii.gz").array, expected)
    save_model(threshold_model.parent / "threshold@scan-ft2.safetensors", ThresholdNet(threshold=99.0),
               threshold_meta(name="threshold@scan-ft2", arch_args={"threshold": 99.0}, parent="threshold"))  # fmt: skip
    assert main([*run, "--model", "threshold@scan-ft1"]) == 0  # a round named itself is used as named
    assert json.loads(capsys.readouterr().out)["results"][0]["model"] == "threshold@scan-ft1"


def test_no_output_lands_on_an_input_or_on_another_output(tmp_path, threshold_model, capsys) -> None:
    """`-o` beside the scan, one folder for labels and uncertainty, two inputs with one output name,
    results of an earlier run inside the input folder: refused before anything runs, or skipped."""
    g = Geometry(size=(16, 16, 16), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    scans = tmp_path / "scans"
    scans.mkdir()
    _scan(scans / "a.nii.gz", g)
    before = (scans / "a.nii.gz").read_bytes()
    model = ["--model", str(threshold_model), "--quiet"]
    refused = [
        (["segment", str(scans / "a.nii.gz"), "-o", str(scans)], "this is the input file"),
        (["segment", str(scans / "a.nii.gz"), "-o", str(tmp_path / "o.nii.gz"), "--uncertainty", str(tmp_path / "o.nii.gz")],
         "written twice"),
        (["segment", str(scans), "-o", str(tmp_path / "out"), "--uncertainty", str(tmp_path / "out")], "written twice"),
    ]  # fmt: skip
    sitk.WriteImage(sitk.ReadImage(str(scans / "a.nii.gz")), str(scans / "b.nhdr"))  # written as b.nii.gz, as is
    _scan(scans / "b.nii.gz", g, seed=1)
    refused.append((["segment", str(scans), "-o", str(tmp_path / "out2")], "written twice"))
    for argv, message in refused:
        assert main([*argv, *model]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert (scans / "a.nii.gz").read_bytes() == before and not (tmp_path / "o.nii.gz").exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()
    for f in scans.glob("b.*"):
        f.unlink()
    assert main(["segment", str(scans), "-o", str(scans / "seg"), *model, "--json"]) == 0
    capsys.readouterr()
    assert main(["segment", str(scans), "-o", str(scans / "seg"), *model, "--json"]) == 0  # again: seg/ is not an input
    assert [Path(r["input"]).name for r in json.loads(capsys.readouterr().out)["results"]] == ["a.nii.gz"]
    assert not (scans / "seg" / "seg").exists()
