"""Evaluate segmentations case by case and summarise them per site and overall.

Two sources of predictions: label files matched to truth files by case name, or a `predict`
callable run on each labeled case of a cohort (the CLI passes the project's model inference).
Summaries give mean ± std (numpy's population std) per class and metric; infinite distances
(a mask empty on one side) are left out of the mean and counted in `n_inf`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CancelledError, CohortError, GeometryMismatchError, VolumeReadError
from .io.cohort import LABEL_NAME, Case
from .io.geometry import Geometry
from .io.volume import Volume, read_volume, volume_stem, volume_suffix, write_volume
from .metrics import METRIC_NAMES, ClassMetrics, label_metrics

if TYPE_CHECKING:
    from .models.modelfile import ModelMeta

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]
#: Segments a volume: uint8 labels (z, y, x) on the volume's own grid.
PredictFn = Callable[[Volume], np.ndarray]

#: More distinct foreground values than this and a "label map" is taken for an image.
MAX_AUTO_CLASSES = 32
#: A prediction file whose name (without ending) matches this belongs to the case before it.
PRED_NAME = re.compile(r"[_\-.](pred|prediction|predicted|segmented)$", re.I)


@dataclass(frozen=True)
class CaseResult:
    """Per-class metrics of one case."""

    case_id: str
    site: str
    metrics: dict[int, ClassMetrics]

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "site": self.site,
            "classes": {str(c): m.to_dict() for c, m in self.metrics.items()},
        }


@dataclass(frozen=True)
class Pair:
    """A prediction file and the truth file of the same case."""

    case_id: str
    pred: Path
    truth: Path


def case_key(path: str | Path) -> str:
    """Case name of a label or prediction file: 'x_label.nii.gz', 'x_pred.nrrd', 'x/label.nii.gz' → 'x'."""
    stem = volume_stem(path)
    return PRED_NAME.sub("", LABEL_NAME.sub("", stem)) or stem


def pair_files(pred: str | Path, truth: str | Path) -> tuple[list[Pair], list[str], list[str]]:
    """Match predictions to truths by case name.

    Each of `pred`, `truth` is a volume file or a folder holding volume files directly or one
    level down (e.g. `<case>/label.nii.gz`); where an image and a label map share a case name the
    label map is taken. Returns the pairs and the case names found only in `pred` or only in
    `truth`. Raises VolumeReadError when nothing matches.
    """
    p, t = Path(pred), Path(truth)
    if p.is_file() and t.is_file():
        return [Pair(case_key(t), p, t)], [], []
    preds, truths = _files_by_case(p), _files_by_case(t)
    common = [k for k in truths if k in preds]
    if not common:
        raise VolumeReadError(f"no case names match between {p} ({_some(preds)}) and {t} ({_some(truths)})")
    pairs = [Pair(k, preds[k], truths[k]) for k in common]
    return pairs, sorted(set(preds) - set(truths)), sorted(set(truths) - set(preds))


def _some(files: dict[str, Path]) -> str:
    names = list(files)
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "") if names else "no volumes"


def _files_by_case(path: Path) -> dict[str, Path]:
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder")
    if path.is_file():
        return {case_key(path): path}
    candidates = _volume_files(path)
    for sub in sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")):
        candidates += _volume_files(sub)
    groups: dict[str, list[Path]] = {}
    for f in candidates:
        groups.setdefault(case_key(f), []).append(f)
    out: dict[str, Path] = {}
    for key, files in sorted(groups.items()):
        labels = [f for f in files if LABEL_NAME.search(_bare(f))] or files
        if len(labels) > 1:
            raise VolumeReadError(f"{path}: case {key} has several files ({', '.join(str(f.relative_to(path)) for f in labels)})")
        out[key] = labels[0]
    return out


def _volume_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and volume_suffix(f) and not f.name.startswith("."))


def _bare(f: Path) -> str:
    return f.name[: len(f.name) - len(volume_suffix(f) or "")]


def evaluate_arrays(
    pred: np.ndarray,
    truth: np.ndarray,
    geometry: Geometry,
    classes: Sequence[int] | None = None,
    case: str = "case",
) -> dict[int, ClassMetrics]:
    """Per-class metrics of a prediction and a truth on `geometry` (spacing in mm).

    Without `classes`, a map with more than MAX_AUTO_CLASSES values is refused: it is most likely
    an image given in place of a label map.
    """
    if classes is None:
        for what, a in (("prediction", pred), ("truth", truth)):
            n = len(np.unique(a))
            if n > MAX_AUTO_CLASSES + 1:
                raise VolumeReadError(
                    f"{case}: the {what} has {n} distinct values, not a label map (name the label values to force it)"
                )
    try:
        return label_metrics(pred, truth, geometry.scale_zyx, classes)
    except ValueError as exc:
        raise VolumeReadError(f"{case}: {exc}") from None


def evaluate_pairs(
    pairs: Sequence[Pair],
    classes: Sequence[int] | None = None,
    site: str = "default",
    progress: ProgressFn | None = None,
    cancelled: CancelFn | None = None,
) -> list[CaseResult]:
    """Read each pair, check that both share one grid exactly, and measure."""
    results = []
    for i, pair in enumerate(pairs):
        _check_cancel(cancelled)
        pred, truth = read_volume(pair.pred), read_volume(pair.truth)
        _check_grid(truth.geometry, pred.geometry, pair.case_id, "prediction", "truth")
        metrics = evaluate_arrays(pred.array, truth.array, truth.geometry, classes, pair.case_id)
        results.append(CaseResult(pair.case_id, site, metrics))
        if progress:
            progress(i + 1, len(pairs), pair.case_id)
    return results


def evaluate_cohort(
    cases: Sequence[Case],
    predict: PredictFn,
    classes: Sequence[int] | None = None,
    out_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    cancelled: CancelFn | None = None,
) -> list[CaseResult]:
    """Segment each labeled case with `predict` and measure it against its label map.

    Predictions are written to `out_dir/<site>/<case>.nii.gz` on the image's grid when given.
    Unlabeled cases are skipped; a cohort without labeled cases is an error.
    """
    labeled = [c for c in cases if c.labeled]
    if not labeled:
        raise CohortError("the cohort has no labeled cases to evaluate")
    results = []
    for i, case in enumerate(labeled):
        _check_cancel(cancelled)
        image, truth = read_volume(case.image), read_volume(case.label)
        _check_grid(image.geometry, truth.geometry, case.display_name, "label", "image")
        pred = np.asarray(predict(image))
        if pred.shape != image.array.shape:
            raise GeometryMismatchError(
                f"{case.display_name}: prediction shape {pred.shape} is not the image's {image.array.shape}"
            )
        if out_dir is not None:
            folder = Path(out_dir) / case.site
            folder.mkdir(parents=True, exist_ok=True)
            write_volume(pred.astype(np.uint8), image.geometry, folder / f"{case.case_id}.nii.gz")
        metrics = evaluate_arrays(pred, truth.array, image.geometry, classes, case.display_name)
        results.append(CaseResult(case.case_id, case.site, metrics))
        if progress:
            progress(i + 1, len(labeled), case.display_name)
    return results


def model_predictor(
    model_path: str | Path, device: str = "auto", cancelled: CancelFn | None = None
) -> tuple[PredictFn, ModelMeta]:
    """Load a model file once and return a `predict` that segments a volume with the project's
    sliding-window inference (labels on the volume's grid), and the model's metadata."""
    from .inference import predict_volume  # torch: imported only when a model is evaluated
    from .models.modelfile import load_model

    network, meta = load_model(model_path)

    def predict(volume: Volume) -> np.ndarray:
        return predict_volume(network, meta, volume, device=device, cancelled=cancelled).labels

    return predict, meta


def _check_cancel(cancelled: CancelFn | None) -> None:
    if cancelled is not None and cancelled():
        raise CancelledError("evaluation cancelled")


def _check_grid(reference: Geometry, other: Geometry, case: str, what: str, against: str) -> None:
    try:
        reference.check_same_grid(other, what=what)
    except GeometryMismatchError as exc:
        diff = str(exc).partition("its image: ")[2] or str(exc)
        raise GeometryMismatchError(f"{case}: {what} and {against} grids differ: {diff}") from None


def summarize(results: Sequence[CaseResult]) -> dict[str, Any]:
    """Mean ± std of every metric per class, per site and over all cases.

    Returns {"sites": {site: {class: {metric: stats}}}, "overall": {class: {metric: stats}}} where
    stats = {"mean", "std", "n", "n_inf"}; mean/std are None when no finite value exists.
    """
    by_site: dict[str, list[CaseResult]] = {}
    for r in results:
        by_site.setdefault(r.site, []).append(r)
    return {
        "sites": {site: _class_stats(items) for site, items in by_site.items()},
        "overall": _class_stats(list(results)),
    }


def _class_stats(results: Sequence[CaseResult]) -> dict[str, dict[str, dict[str, Any]]]:
    classes = sorted({c for r in results for c in r.metrics})
    out = {}
    for c in classes:
        per_metric = {}
        for name in METRIC_NAMES:
            values = np.array([getattr(r.metrics[c], name) for r in results if c in r.metrics], dtype=float)
            finite = values[np.isfinite(values)]
            per_metric[name] = {
                "mean": float(finite.mean()) if finite.size else None,
                "std": float(finite.std()) if finite.size else None,
                "n": int(values.size),
                "n_inf": int(values.size - finite.size),
            }
        out[str(c)] = per_metric
    return out


def format_stats(stats: dict[str, Any], digits: int = 3) -> str:
    """'0.912 ± 0.031' (with '(k inf)' when some cases had an empty mask)."""
    if stats["mean"] is None:
        return "inf"
    text = f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    return text + (f" ({stats['n_inf']} inf)" if stats["n_inf"] else "")


def format_value(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "inf"
