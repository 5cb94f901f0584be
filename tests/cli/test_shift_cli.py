"""`freqseg shift`: output on the input's exact grid, reproducible, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic import make_blob_volume

from napari_freqseg.cli import main
from napari_freqseg.io import Geometry, read_volume, write_volume
from napari_freqseg.shift import apply_shift


@pytest.fixture
def scan(tmp_path: Path, oblique_geometry: Geometry) -> Path:
    image, _ = make_blob_volume(oblique_geometry.shape_zyx)
    return write_volume(image, oblique_geometry, tmp_path / "scan.nrrd")


@pytest.mark.parametrize("kind", ["bias", "thick", "all"])
def test_shift_keeps_geometry_and_is_reproducible(scan: Path, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture) -> None:
    out_a, out_b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    for out in (out_a, out_b):
        assert main(["shift", str(scan), "-o", str(out), "--kind", kind, "--severity", "0.8", "--seed", "5"]) == 0
    src, a, b = read_volume(scan), read_volume(out_a), read_volume(out_b)
    assert a.geometry.same_grid(src.geometry) and a.geometry.direction == pytest.approx(src.geometry.direction, abs=1e-6)
    np.testing.assert_array_equal(a.array, b.array)
    expected = apply_shift(src.array, kind, 0.8, 5, src.geometry.scale_zyx)
    np.testing.assert_allclose(a.array, expected, rtol=1e-5, atol=1e-4)
    assert "severity 0.8, seed 5" in capsys.readouterr().out


def test_style_with_a_reference(scan: Path, tmp_path: Path) -> None:
    grid = Geometry((28, 24, 20), (1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    ref = write_volume(make_blob_volume((20, 24, 28), seed=3)[0] * 0.3, grid, tmp_path / "ref.nii.gz")
    out = tmp_path / "styled.nii.gz"
    assert main(["shift", str(scan), "-o", str(out), "--kind", "style", "--severity", "1", "--reference", str(ref)]) == 0
    styled, src = read_volume(out).array, read_volume(scan).array
    assert styled.mean() < 0.5 * src.mean()  # the mean intensity follows the darker reference


def test_bad_severity_and_misplaced_reference(scan: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["shift", str(scan), "-o", str(tmp_path / "x.nii.gz"), "--severity", "1.5"])
    assert exc.value.code == 2 and "outside [0, 1]" in capsys.readouterr().err
    assert main(["shift", str(scan), "-o", str(tmp_path / "x.nii.gz"), "--kind", "noise", "--reference", str(scan)]) == 1
    assert capsys.readouterr().err.strip() == "freqseg shift: error: --reference is used by --kind style (or all) only"
    assert not (tmp_path / "x.nii.gz").exists()
