"""Cohort evaluation with a predict callable, file pairing, and per-site summaries."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_erosion
from synthetic import make_blob_volume

from napari_freqseg.errors import CancelledError, CohortError, GeometryMismatchError, VolumeReadError
from napari_freqseg.evaluation import CaseResult, case_key, evaluate_arrays, evaluate_cohort, pair_files, summarize
from napari_freqseg.io import Geometry, Volume, load_cohort, read_volume, write_volume
from napari_freqseg.metrics import ClassMetrics, label_metrics

GEOM = Geometry(size=(40, 32, 24), spacing=(0.8, 0.9, 2.0), origin=(1.0, -2.0, 3.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def write_cohort(root: Path) -> Path:
    """Two sites with two labeled cases each and one unlabeled case, as a CSV manifest."""
    rows = ["case,image,label,site"]
    for site in ("A", "B"):
        for i in range(2):
            image, label = make_blob_volume((24, 32, 40), seed=i + (10 if site == "B" else 0))
            write_volume(image, GEOM, root / f"{site}{i}.nii.gz")
            write_volume(label, GEOM, root / f"{site}{i}_label.nii.gz")
            rows.append(f"{site}{i},{site}{i}.nii.gz,{site}{i}_label.nii.gz,{site}")
    write_volume(image, GEOM, root / "u.nii.gz")
    rows.append("u,u.nii.gz,,B")
    (root / "cohort.csv").write_text("\n".join(rows) + "\n")
    return root / "cohort.csv"


def threshold_predictor(volume: Volume) -> np.ndarray:
    """Bright voxels are foreground; eroded once on site B so the two sites score differently."""
    mask = volume.array > 140
    if "B" in Path(volume.source).name:
        mask = binary_erosion(mask)
    return mask.astype(np.uint8)


def test_evaluate_cohort_with_a_predict_callable(tmp_path: Path) -> None:
    cohort = load_cohort(write_cohort(tmp_path))
    calls: list[tuple[int, int, str]] = []
    results = evaluate_cohort(cohort.cases, threshold_predictor, out_dir=tmp_path / "out", progress=lambda *a: calls.append(a))
    assert [r.case_id for r in results] == ["A0", "A1", "B0", "B1"]  # the unlabeled case is skipped
    assert calls[-1][:2] == (4, 4)
    for r in results:
        truth = read_volume(tmp_path / f"{r.case_id}_label.nii.gz").array
        pred = read_volume(tmp_path / "out" / r.site / f"{r.case_id}.nii.gz")
        assert pred.geometry.same_grid(GEOM) and pred.array.dtype == np.uint8
        expected = label_metrics(pred.array, truth, GEOM.scale_zyx)[1]
        assert list(r.metrics) == [1]
        assert r.metrics[1].to_dict() == pytest.approx(expected.to_dict(), rel=1e-6)
    summary = summarize(results)
    dice_a = [r.metrics[1].dice for r in results if r.site == "A"]
    assert summary["sites"]["A"]["1"]["dice"]["mean"] == pytest.approx(np.mean(dice_a))
    assert summary["sites"]["A"]["1"]["dice"]["std"] == pytest.approx(np.std(dice_a))
    assert summary["sites"]["B"]["1"]["dice"]["mean"] < summary["sites"]["A"]["1"]["dice"]["mean"]
    assert summary["overall"]["1"]["hd95"]["n"] == 4
    assert summary["overall"]["1"]["dice"]["mean"] == pytest.approx(np.mean([r.metrics[1].dice for r in results]))


def test_evaluate_cohort_checks_shape_cancel_and_labels(tmp_path: Path) -> None:
    cohort = load_cohort(write_cohort(tmp_path))
    with pytest.raises(GeometryMismatchError, match="prediction shape"):
        evaluate_cohort(cohort.cases, lambda v: v.array[:-1])
    with pytest.raises(CancelledError):
        evaluate_cohort(cohort.cases, threshold_predictor, cancelled=lambda: True)
    with pytest.raises(CohortError, match="no labeled"):
        evaluate_cohort(cohort.select(labeled=False), threshold_predictor)


def test_summary_leaves_infinite_distances_out_and_counts_them() -> None:
    results = [
        CaseResult("a", "S", {1: ClassMetrics(0.8, 0.67, 2.0, 1.0)}),
        CaseResult("b", "S", {1: ClassMetrics(0.6, 0.43, 4.0, 2.0)}),
        CaseResult("c", "S", {1: ClassMetrics(0.0, 0.0, math.inf, math.inf)}),
    ]
    hd = summarize(results)["overall"]["1"]["hd95"]
    assert hd == {"mean": 3.0, "std": 1.0, "n": 3, "n_inf": 1}
    assert summarize(results)["overall"]["1"]["dice"]["mean"] == pytest.approx(0.7 * 2 / 3)
    only_inf = summarize(results[2:])["overall"]["1"]["asd"]
    assert only_inf["mean"] is None and only_inf["n_inf"] == 1


def test_case_key_strips_label_and_prediction_suffixes() -> None:
    assert case_key("x/ab12_label.nii.gz") == "ab12"
    assert case_key("ab12_pred.nrrd") == "ab12"
    assert case_key("la/val/ab12/label.nii.gz") == "ab12"
    assert case_key("la/val/ab12/image.nii.gz") == "ab12"
    assert case_key("ab12.mha") == "ab12"


def test_pair_files_matches_flat_and_case_folder_layouts(tmp_path: Path) -> None:
    image, label = make_blob_volume((24, 32, 40))
    truth_root, pred_root = tmp_path / "truth", tmp_path / "pred"
    for case in ("c1", "c2", "c3"):
        (truth_root / case).mkdir(parents=True)
        write_volume(image, GEOM, truth_root / case / "image.nii.gz")
        write_volume(label, GEOM, truth_root / case / "label.nii.gz")
    pred_root.mkdir()
    for case in ("c1", "c2", "extra"):
        write_volume(label, GEOM, pred_root / f"{case}_pred.nii.gz")
    pairs, only_pred, only_truth = pair_files(pred_root, truth_root)
    assert [(p.case_id, p.pred.name, p.truth.name) for p in pairs] == [
        ("c1", "c1_pred.nii.gz", "label.nii.gz"),
        ("c2", "c2_pred.nii.gz", "label.nii.gz"),
    ]
    assert pairs[0].truth.parent.name == "c1"
    assert (only_pred, only_truth) == (["extra"], ["c3"])
    with pytest.raises(VolumeReadError, match="no case names match"):
        pair_files(pred_root, tmp_path / "truth" / "c3")


def test_a_case_found_twice_names_both_places(tmp_path: Path) -> None:
    """Two files of one case in different subfolders are told apart (not 'a.nii.gz, a.nii.gz')."""
    _, label = make_blob_volume((24, 32, 40))
    for site in ("site1", "site2"):
        (tmp_path / "pred" / site).mkdir(parents=True)
        write_volume(label, GEOM, tmp_path / "pred" / site / "a.nii.gz")
    write_volume(label, GEOM, tmp_path / "a_label.nii.gz")
    with pytest.raises(VolumeReadError, match=r"case a has several files \(site1/a.nii.gz, site2/a.nii.gz\)$"):
        pair_files(tmp_path / "pred", tmp_path / "a_label.nii.gz")


def test_an_image_given_as_truth_is_refused() -> None:
    image, label = make_blob_volume((24, 32, 40))
    with pytest.raises(VolumeReadError, match="truth has .* distinct values, not a label map"):
        evaluate_arrays(label, np.round(image).astype(np.uint8), GEOM, case="c1")
    assert list(evaluate_arrays(label, label * 40, GEOM)) == [1, 40]
