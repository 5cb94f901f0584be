"""`freqseg evaluate` on written files: JSON and table output, matching, clear one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation
from synthetic import make_blob_volume

from napari_freqseg.cli import main
from napari_freqseg.io import Geometry, read_volume, write_volume
from napari_freqseg.metrics import label_metrics


def write_pairs(root: Path, geometry: Geometry) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Truth folder (case/label.nii.gz) and prediction folder (case_pred.nii.gz), two cases."""
    preds = {}
    for i, case in enumerate(("p1", "p2")):
        _, label = make_blob_volume(geometry.shape_zyx, seed=i)
        pred = binary_dilation(label, iterations=i + 1).astype(np.uint8)
        (root / "truth" / case).mkdir(parents=True)
        write_volume(label, geometry, root / "truth" / case / "label.nii.gz")
        (root / "pred").mkdir(exist_ok=True)
        write_volume(pred, geometry, root / "pred" / f"{case}_pred.nii.gz")
        preds[case] = (pred, label)
    return root / "pred", root / "truth", preds


def test_evaluate_folders_json(tmp_path: Path, oblique_geometry: Geometry, capsys: pytest.CaptureFixture) -> None:
    pred_dir, truth_dir, arrays = write_pairs(tmp_path, oblique_geometry)
    assert main(["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["case"] for c in report["cases"]] == ["p1", "p2"]
    for case in report["cases"]:
        pred, label = arrays[case["case"]]
        expected = label_metrics(pred, label, oblique_geometry.scale_zyx)[1].to_dict()
        assert case["classes"]["1"] == pytest.approx(expected, rel=1e-5)
    dice = [c["classes"]["1"]["dice"] for c in report["cases"]]
    assert dice[1] < dice[0] < 1.0  # two dilations overlap worse than one
    overall = report["summary"]["overall"]["1"]
    assert overall["dice"]["mean"] == pytest.approx(np.mean(dice))
    assert overall["hd95"]["mean"] > 0 and overall["hd95"]["n"] == 2
    assert report["unmatched"] == {"pred": [], "truth": []}


def test_evaluate_single_files_table(tmp_path: Path, oblique_geometry: Geometry, capsys: pytest.CaptureFixture) -> None:
    pred_dir, truth_dir, _ = write_pairs(tmp_path, oblique_geometry)
    rc = main(["evaluate", "--pred", str(pred_dir / "p1_pred.nii.gz"), "--truth", str(truth_dir / "p1" / "label.nii.gz")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "p1" in out and "site default (n=1)" in out and "overall (n=1) class 1: dice" in out


def test_mismatched_grids_exit_1_with_one_line(tmp_path: Path, oblique_geometry: Geometry, capsys: pytest.CaptureFixture) -> None:
    pred_dir, truth_dir, arrays = write_pairs(tmp_path, oblique_geometry)
    moved = Geometry(oblique_geometry.size, oblique_geometry.spacing, (0.0, 0.0, 0.0), oblique_geometry.direction)
    write_volume(arrays["p2"][0], moved, pred_dir / "p2_pred.nii.gz")
    args = ["evaluate", "--pred", str(pred_dir / "p2_pred.nii.gz"), "--truth", str(truth_dir / "p2" / "label.nii.gz")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("freqseg evaluate: error: p2: prediction and truth grids differ: origin (0, 0, 0) vs")
    # In a folder the bad case stops the run with the same line after the progress of the good one.
    assert main(["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == err.strip()


def test_unmatched_and_missing_arguments(tmp_path: Path, oblique_geometry: Geometry, capsys: pytest.CaptureFixture) -> None:
    pred_dir, truth_dir, arrays = write_pairs(tmp_path, oblique_geometry)
    write_volume(arrays["p1"][0], oblique_geometry, pred_dir / "zz_pred.nii.gz")
    assert main(["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["unmatched"] == {"pred": ["zz"], "truth": []}
    assert "1 predictions without a partner: zz" in captured.err
    assert main(["evaluate", "--pred", str(pred_dir)]) == 1
    assert "give either --pred and --truth, or --model and --cohort" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(pred_dir), "--truth", str(tmp_path / "nowhere")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_evaluate_model_on_a_cohort(
    tmp_path: Path, threshold_model: Path, single_thread: None, capsys: pytest.CaptureFixture
) -> None:
    geometry = Geometry((40, 32, 24), (0.8, 0.9, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    rows = ["case,image,label,site"]
    for i, site in enumerate(("north", "south", "south")):
        image, label = make_blob_volume((24, 32, 40), seed=i)
        write_volume(image, geometry, tmp_path / f"c{i}.nii.gz")
        write_volume(label, geometry, tmp_path / f"c{i}_label.nii.gz")
        rows.append(f"c{i},c{i}.nii.gz,c{i}_label.nii.gz,{site}")
    (tmp_path / "cohort.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "preds"
    args = ["evaluate", "--model", str(threshold_model), "--cohort", str(tmp_path / "cohort.csv"), "--out", str(out), "--json"]
    assert main(args + ["--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class_names"] == ["background", "blob"]
    assert sorted(report["summary"]["sites"]) == ["north", "south"]
    assert report["summary"]["sites"]["south"]["1"]["dice"]["n"] == 2
    for case in report["cases"]:
        # The written prediction, measured again, gives the reported numbers; the threshold net finds the blob.
        pred = read_volume(out / case["site"] / f"{case['case']}.nii.gz")
        truth = read_volume(tmp_path / f"{case['case']}_label.nii.gz")
        assert pred.geometry.same_grid(geometry)
        expected = label_metrics(pred.array, truth.array, geometry.scale_zyx)[1].to_dict()
        assert case["classes"]["1"] == pytest.approx(expected, rel=1e-5)
        assert case["classes"]["1"]["dice"] > 0.9
    assert main(["evaluate", "--model", str(threshold_model), "--pred", str(out)]) == 1
    assert "give either --pred and --truth, or --model and --cohort" in capsys.readouterr().err


def test_negative_labels_are_refused_not_scored_as_a_class(
    tmp_path: Path, oblique_geometry: Geometry, capsys: pytest.CaptureFixture
) -> None:
    pred_dir, truth_dir, arrays = write_pairs(tmp_path, oblique_geometry)
    write_volume(arrays["p1"][0].astype(np.int16) - 1, oblique_geometry, pred_dir / "p1_pred.nii.gz")
    assert main(["evaluate", "--pred", str(pred_dir / "p1_pred.nii.gz"), "--truth", str(truth_dir / "p1" / "label.nii.gz")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the prediction holds negative labels (down to -1)" in err


def test_table_columns_fit_long_case_names(tmp_path: Path, oblique_geometry: Geometry, capsys: pytest.CaptureFixture) -> None:
    pred_dir, truth_dir, arrays = write_pairs(tmp_path, oblique_geometry)
    long = "a_case_name_much_longer_than_twenty_eight_characters"
    (truth_dir / long).mkdir()
    write_volume(arrays["p1"][1], oblique_geometry, truth_dir / long / "label.nii.gz")
    write_volume(arrays["p1"][0], oblique_geometry, pred_dir / f"{long}_pred.nii.gz")
    assert (
        main(["evaluate", "--pred", str(pred_dir / f"{long}_pred.nii.gz"), "--truth", str(truth_dir / long / "label.nii.gz")])
        == 0
    )
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert row.split()[:2] == [long, "default"] and header.index("site") == row.index("default")
