"""`freqseg info | cohort | convert` on good and bad input: one line on stderr and exit 1 on errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_freqseg.cli import main
from napari_freqseg.errors import FreqsegError
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import read_volume, write_volume

SRC = Path(__file__).resolve().parents[2] / "src"
SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
GRID = Geometry(size=(14, 12, 10), spacing=(0.8, 0.8, 2.0), origin=(1, 2, 3), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))


def volume(path: Path, grid: Geometry = GRID, dtype: type = np.int16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_volume((np.arange(np.prod(grid.shape_zyx)) % 50).reshape(grid.shape_zyx).astype(dtype), grid, path)


def run_in_process(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, command: str, fragment: str) -> None:
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"freqseg {command}: error: ") and fragment in lines[0]
    assert "Traceback" not in err


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = volume(tmp_path / "good.nii.gz")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:200])
    (tmp_path / "notes.nrrd").write_text("not an image at all")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.uint8)), str(tmp_path / "flat.nii.gz"))
    (tmp_path / "empty_dicom").mkdir()
    (tmp_path / "junk_dicom").mkdir()
    (tmp_path / "junk_dicom" / "x.dcm").write_bytes(bytes(300))
    return {
        "truncated": (truncated, "truncated or corrupt"),
        "not an image": (tmp_path / "notes.nrrd", "not an image"),
        "2D": (tmp_path / "flat.nii.gz", "2D image"),
        "empty DICOM folder": (tmp_path / "empty_dicom", "holds no DICOM series"),
        "mixed junk folder": (tmp_path / "junk_dicom", "holds no DICOM series"),
        "missing": (tmp_path / "missing.nii.gz", "no such file or folder"),
    }


def test_info_bad_inputs_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture):
    for _, (path, fragment) in bad_inputs(tmp_path).items():
        code, out, err = run_in_process(capsys, "info", str(path))
        assert_one_line_error(code, err, "info", fragment)
        assert out == ""


def test_debug_shows_the_exception(tmp_path: Path):
    with pytest.raises(FreqsegError, match="no such file or folder"):
        main(["--debug", "info", str(tmp_path / "missing.nii.gz")])


@pytest.mark.parametrize("case", ["truncated", "empty DICOM folder"])
def test_console_stderr_has_only_our_line(tmp_path: Path, case: str):
    """In a real process: no ITK/GDCM warning printed by C++ beside the message."""
    path, fragment = bad_inputs(tmp_path)[case]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "napari_freqseg.cli", "info", str(path)], capture_output=True, text=True, env=env
    )
    assert_one_line_error(proc.returncode, proc.stderr, "info", fragment)


def test_info_reports_geometry_orientation_and_intensities(tmp_path: Path, capsys: pytest.CaptureFixture):
    path = volume(tmp_path / "scan.nrrd")
    code, out, err = run_in_process(capsys, "info", str(path), "--json")
    assert code == 0 and err == ""
    info = json.loads(out)
    assert info["size"] == [14, 12, 10] and info["spacing"] == pytest.approx([0.8, 0.8, 2.0])
    assert info["origin"] == pytest.approx([1, 2, 3]) and info["orientation"] == "RAS" and not info["oblique"]
    assert info["dtype"] == "int16" and info["percentiles"]["p99"] == pytest.approx(49, abs=0.5)
    code, out, _ = run_in_process(capsys, "info", str(path))
    assert code == 0 and "orientation     RAS" in out and "spacing (mm)    (0.8, 0.8, 2)" in out


def test_info_on_4d_and_nan_prints_notes(tmp_path: Path, capsys: pytest.CaptureFixture):
    img = GRID.apply_to(sitk.GetImageFromArray(np.ones(GRID.shape_zyx, np.float32)))
    sitk.WriteImage(sitk.JoinSeries([img, img]), str(tmp_path / "dyn.nii.gz"))
    code, out, _ = run_in_process(capsys, "info", str(tmp_path / "dyn.nii.gz"))
    assert code == 0 and "note            4D image with 2 volumes: took volume 0" in out
    arr = np.ones(GRID.shape_zyx, np.float32)
    arr[0, 0, 0] = np.nan
    write_volume(arr, GRID, tmp_path / "nan.mha")
    code, out, _ = run_in_process(capsys, "info", str(tmp_path / "nan.mha"))
    assert code == 0 and "1 NaN/Inf voxels replaced" in out


def test_convert_keeps_grid_and_refuses_a_label_on_another_grid(tmp_path: Path, capsys: pytest.CaptureFixture):
    image = volume(tmp_path / "scan.nii.gz")
    label = volume(tmp_path / "seg.nrrd", dtype=np.uint8)
    code, out, err = run_in_process(capsys, "convert", str(label), str(tmp_path / "seg.mha"), "--like", str(image))
    assert code == 0 and out.startswith("wrote ")
    assert read_volume(tmp_path / "seg.mha").geometry.same_grid(GRID)
    shifted = Geometry(GRID.size, GRID.spacing, (1, 2, 9), GRID.direction)
    volume(tmp_path / "other.nrrd", shifted, np.uint8)
    code, _, err = run_in_process(capsys, "convert", str(tmp_path / "other.nrrd"), str(tmp_path / "o.nii.gz"),
                                  "--like", str(image))  # fmt: skip
    assert_one_line_error(code, err, "convert", "grid differs from its image: origin (1, 2, 9) vs (1, 2, 3) mm")
    assert not (tmp_path / "o.nii.gz").exists()


def test_convert_to_unwritable_or_existing_output_leaves_it_untouched(tmp_path: Path, capsys: pytest.CaptureFixture):
    image = volume(tmp_path / "scan.nii.gz")
    existing = tmp_path / "out.nrrd"
    existing.write_bytes(b"keep me")
    code, _, err = run_in_process(capsys, "convert", str(image), str(existing), "--no-overwrite")
    assert_one_line_error(code, err, "convert", "exists (not overwritten)")
    code, _, err = run_in_process(capsys, "convert", str(image), str(tmp_path / "no" / "dir" / "x.nrrd"))
    assert_one_line_error(code, err, "convert", "output folder does not exist")
    if Path("/sys").is_dir():
        code, _, err = run_in_process(capsys, "convert", str(image), "/sys/freqseg-out.nrrd")
        assert_one_line_error(code, err, "convert", "could not be written")
    assert existing.read_bytes() == b"keep me"


def test_cohort_listing_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture):
    code, out, err = run_in_process(capsys, "cohort", str(SAMPLES / "cohort.csv"), "--json")
    assert code == 0
    listing = json.loads(out)
    assert listing["sites"] == ["la-challenge", "mni-icbm152", "mni-colin27"]
    assert [c["labeled"] for c in listing["cases"]] == [True, True, True]
    root = tmp_path / "cohort"
    volume(root / "site_a" / "p1.nii.gz")
    volume(root / "site_a" / "p1_label.nii.gz", dtype=np.uint8)
    volume(root / "site_b" / "q1.nrrd")
    code, out, _ = run_in_process(capsys, "cohort", str(root), "--stats", "--write", str(tmp_path / "m.csv"))
    assert code == 0 and out.startswith("2 cases, 2 sites (site_a, site_b)")
    assert "14×12×10" in out and (tmp_path / "m.csv").read_text().startswith("case,image,label,site,split")


def test_cohort_stats_refuse_label_on_another_grid(tmp_path: Path, capsys: pytest.CaptureFixture):
    root = tmp_path / "cohort"
    volume(root / "site_a" / "p1.nii.gz")
    volume(root / "site_a" / "p1_label.nii.gz", Geometry((14, 12, 9), GRID.spacing, GRID.origin, GRID.direction))
    code, _, err = run_in_process(capsys, "cohort", str(root), "--stats")
    assert_one_line_error(code, err, "cohort", "site_a/p1: label grid differs from its image: size 14×12×9")


def test_cohort_bad_manifest_and_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "m.csv").write_text("path\nx\n")
    code, _, err = run_in_process(capsys, "cohort", str(tmp_path / "m.csv"))
    assert_one_line_error(code, err, "cohort", "needs an 'image' column")
    if Path("/sys").is_dir():
        code, _, err = run_in_process(capsys, "cohort", str(SAMPLES / "cohort.csv"), "--write", "/sys/m.csv")
        assert_one_line_error(code, err, "cohort", "could not be written")


@pytest.mark.parametrize(
    "argv",
    [
        ["segment", "{scan}", "-o", "{scan}", "--model", "{scan}"],
        ["shift", "{link}", "-o", "{scan}", "--kind", "bias"],
        ["convert", "{scan}", "{link}"],
        ["augment", "{scan}", "-o", "{scan}", "--method", "fda", "--reference", "{other}"],
        ["spectrum", "{scan}", "--out", "{scan}"],
        ["segment", "{folder}", "-o", "{folder}"],
    ],
)
def test_no_command_writes_over_its_input(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An output that is an input (same file or folder, also through a link) is refused before any work."""
    scan = volume(tmp_path / "scans" / "scan.nii.gz")
    other = volume(tmp_path / "other.nii.gz")
    link = tmp_path / "link.nii.gz"
    link.symlink_to(scan)
    before = scan.read_bytes()
    names = {"scan": str(scan), "link": str(link), "other": str(other), "folder": str(scan.parent)}
    code, _, err = run_in_process(capsys, *[a.format(**names) for a in argv])
    assert_one_line_error(code, err, argv[0], "choose another output (nothing was written)")
    assert scan.read_bytes() == before and sorted(p.name for p in scan.parent.iterdir()) == ["scan.nii.gz"]


def test_debug_after_the_sub_command_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(FreqsegError, match="no such file"):
        main(["info", str(tmp_path / "missing.nii.gz"), "--debug"])


def test_models_import_refuses_a_name_that_is_a_path(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FREQSEG_MODELS", str(tmp_path / "models"))
    (tmp_path / "weights.pth").write_bytes(b"anything")
    code, _, err = run_in_process(
        capsys, "models", "import", str(tmp_path / "weights.pth"), "--name", "../../escape", "--classes", "bg,la"
    )
    assert_one_line_error(code, err, "models", "is not a model name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pth"]


def test_cohort_stats_prints_percentiles_in_text_mode(capsys: pytest.CaptureFixture) -> None:
    manifest = SRC / "napari_freqseg" / "sample_data" / "cohort.csv"
    code, out, _ = run_in_process(capsys, "cohort", str(manifest), "--stats")
    assert code == 0
    la = next(line for line in out.splitlines() if line.startswith("la-challenge"))
    assert "0.625×0.625×0.625 mm" in la and all(f"p{q} " in la for q in (1, 5, 25, 50, 75, 95, 99))


def test_the_executable_flushes_runs_exit_handlers_and_keeps_the_exit_code(tmp_path: Path):
    """`entry` leaves with os._exit (no torch teardown): output, exit handlers and codes stay whole."""
    path = volume(tmp_path / "scan.nrrd")
    code = (
        "import atexit, sys\n"
        "from napari_freqseg.cli import entry\n"
        "atexit.register(lambda: print('handler ran', flush=True))\n"
        "sys.argv = ['freqseg', *sys.argv[1:]]\n"
        "entry()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    ok = subprocess.run([sys.executable, "-c", code, "info", str(path), "--json"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout.split("handler ran")[0])["size"] == [14, 12, 10]
    assert ok.stdout.rstrip().endswith("handler ran")
    bad = subprocess.run(
        [sys.executable, "-c", code, "info", str(tmp_path / "missing.nii.gz")], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 1 and "no such file" in bad.stderr and "handler ran" in bad.stdout
