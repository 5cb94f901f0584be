"""Multi-centre cohorts: a CSV manifest (image, label, site, split) or a folder per site."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CancelledError, CohortError, FreqsegError
from .atomic import write_atomically
from .volume import Volume, read_volume, volume_stem, volume_suffix

#: A file whose name (without ending) matches this is a label map, not an image.
LABEL_NAME = re.compile(r"(^|[_\-.])(label|labels|seg|segmentation|mask|brain_mask|tissue|gt|truth)$", re.I)

ProgressFn = Callable[[int, int, str], None]
CancelledFn = Callable[[], bool]


@dataclass(frozen=True)
class Case:
    """One volume of a cohort, with its optional label map."""

    case_id: str
    image: Path
    site: str
    label: Path | None = None
    split: str = ""

    @property
    def labeled(self) -> bool:
        return self.label is not None

    @property
    def display_name(self) -> str:
        return f"{self.site}/{self.case_id}" if self.site else self.case_id


@dataclass
class Cohort:
    """An ordered list of cases plus where it came from."""

    cases: list[Case]
    source: Path

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    @property
    def sites(self) -> list[str]:
        return list(dict.fromkeys(c.site for c in self.cases))

    def select(self, site: str | None = None, split: str | None = None, labeled: bool | None = None) -> list[Case]:
        return [
            c
            for c in self.cases
            if (site is None or c.site == site)
            and (split is None or c.split == split)
            and (labeled is None or c.labeled == labeled)
        ]

    def write_csv(self, path: str | os.PathLike) -> None:
        """Write as a manifest with paths relative to the manifest's folder (atomically)."""
        base = Path(path).resolve().parent
        buffer = io.StringIO()
        w = csv.writer(buffer)
        w.writerow(["case", "image", "label", "site", "split"])
        for c in self.cases:
            w.writerow(
                [
                    c.case_id,
                    os.path.relpath(c.image.resolve(), base),
                    os.path.relpath(c.label.resolve(), base) if c.label else "",
                    c.site,
                    c.split,
                ]
            )
        target = Path(path)

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as fh:
                fh.write(buffer.getvalue())

        try:
            write_atomically(target, ".csv", write)
        except OSError as exc:
            raise CohortError(f"{target}: could not be written ({exc.strerror or exc})") from None


def load_cohort(path: str | os.PathLike) -> Cohort:
    """Load a cohort from a CSV manifest or a folder (one sub-folder per site).

    In a folder, each site folder holds either volume files (label maps paired by name: `x.nii.gz`
    with `x_label.nii.gz`, or a single image with a single label map) or one sub-folder per case
    (`image.*` and optional `label.*`).
    """
    p = Path(path)
    if not p.exists():
        raise CohortError(f"{p}: no such file or folder")
    if p.is_dir():
        return Cohort(cases=_cases_from_folder(p), source=p)
    if p.suffix.lower() != ".csv":
        raise CohortError(f"{p.name}: a cohort is a .csv manifest or a folder")
    return Cohort(cases=_cases_from_csv(p), source=p)


def _cases_from_csv(p: Path) -> list[Case]:
    try:
        with open(p, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CohortError(f"{p.name}: not a readable CSV ({exc})") from None
    if not rows:
        raise CohortError(f"{p.name}: manifest has no rows")
    cols = {k.strip().lower() for k in rows[0] if k}
    if "image" not in cols:
        raise CohortError(f"{p.name}: manifest needs an 'image' column (has: {', '.join(sorted(cols))})")
    cases = []
    for i, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        if not row["image"]:
            raise CohortError(f"{p.name}, line {i}: empty image path")
        image = (p.parent / row["image"]).resolve() if not os.path.isabs(row["image"]) else Path(row["image"])
        label = None
        if row.get("label"):
            label = Path(row["label"]) if os.path.isabs(row["label"]) else (p.parent / row["label"]).resolve()
        for what, f in (("image", image), ("label", label)):
            if f is not None and not f.exists():
                raise CohortError(f"{p.name}, line {i}: {what} {f} does not exist")
        cases.append(
            Case(
                case_id=row.get("case") or volume_stem(image),
                image=image,
                label=label,
                site=row.get("site") or "default",
                split=row.get("split", ""),
            )
        )
    return cases


def _cases_from_folder(root: Path) -> list[Case]:
    cases: list[Case] = []
    sites = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not sites:
        raise CohortError(f"{root}: no site sub-folders (expected one folder per site)")
    for site_dir in sites:
        cases.extend(_cases_in_site(site_dir))
    if not cases:
        raise CohortError(f"{root}: no volumes found in its site folders")
    return cases


def _volume_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and volume_suffix(f) and not f.name.startswith("."))


def _is_label(f: Path) -> bool:
    return bool(LABEL_NAME.search(_bare(f)))


def _bare(f: Path) -> str:
    suffix = volume_suffix(f) or ""
    return f.name[: len(f.name) - len(suffix)]


def _cases_in_site(site_dir: Path) -> list[Case]:
    site = site_dir.name
    files = _volume_files(site_dir)
    cases = []
    if files:
        images = [f for f in files if not _is_label(f)]
        labels = [f for f in files if _is_label(f)]
        for img in images:
            cases.append(Case(volume_stem(img), img, site, _pair_label(img, labels, len(images))))
        return cases
    for case_dir in sorted(d for d in site_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
        files = _volume_files(case_dir)
        images = [f for f in files if not _is_label(f)]
        labels = [f for f in files if _is_label(f)]
        if len(images) == 1:
            cases.append(Case(case_dir.name, images[0], site, labels[0] if len(labels) == 1 else None))
    return cases


def _pair_label(img: Path, labels: list[Path], n_images: int) -> Path | None:
    stem = _bare(img)
    for lab in labels:
        if LABEL_NAME.sub("", _bare(lab)) == stem:
            return lab
    return labels[0] if n_images == 1 and len(labels) == 1 else None


@dataclass(frozen=True)
class CaseInfo:
    """What the cohort table shows for a case (read from the file header and pixels)."""

    case: Case
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    percentiles: dict[str, float]
    histogram: tuple[np.ndarray, np.ndarray]  # (counts normalised to sum 1, bin edges)


PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def intensity_stats(array: np.ndarray, bins: int = 64) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray]]:
    """Percentiles (p1..p99) and a normalised histogram between p0.5 and p99.5."""
    flat = np.asarray(array, dtype=np.float32).ravel()
    if flat.size > 2_000_000:  # a fixed stride keeps it fast and deterministic
        flat = flat[:: flat.size // 2_000_000 + 1]
    pct = np.percentile(flat, PERCENTILES)
    lo, hi = np.percentile(flat, (0.5, 99.5))
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(flat, bins=bins, range=(float(lo), float(hi)))
    counts = counts.astype(np.float64) / max(counts.sum(), 1)
    return {f"p{q}": float(v) for q, v in zip(PERCENTILES, pct)}, (counts, edges)


def case_info(case: Case, volume: Volume | None = None) -> CaseInfo:
    vol = volume if volume is not None else read_volume(case.image)
    pct, hist = intensity_stats(vol.array)
    return CaseInfo(case=case, size=vol.geometry.size, spacing=vol.geometry.spacing, percentiles=pct, histogram=hist)


def site_stats(infos: list[CaseInfo]) -> dict[str, dict[str, float]]:
    """Per-site median of each case percentile: a side-by-side view of centre intensity ranges."""
    by_site: dict[str, list[CaseInfo]] = {}
    for info in infos:
        by_site.setdefault(info.case.site, []).append(info)
    return {
        site: {k: float(np.median([i.percentiles[k] for i in items])) for k in items[0].percentiles}
        for site, items in by_site.items()
    }


def read_case(case: Case) -> tuple[Volume, Volume | None]:
    """Read a case's image and label map; the label must lie on exactly the image's grid."""
    image = read_volume(case.image)
    if case.label is None:
        return image, None
    label = read_volume(case.label)
    image.geometry.check_same_grid(label.geometry, what=f"{case.display_name}: label")
    return image, label


def scan_cohort(
    path: str | os.PathLike, progress: ProgressFn | None = None, cancelled: CancelledFn | None = None
) -> tuple[Cohort, list[CaseInfo]]:
    """Load a cohort and read every image for the table and the per-site statistics.

    Raises CancelledError between cases when `cancelled()` turns true.
    """
    cohort = load_cohort(path)
    infos = []
    for i, case in enumerate(cohort):
        if cancelled is not None and cancelled():
            raise CancelledError("cohort scan cancelled")
        if progress is not None:
            progress(i, len(cohort), case.display_name)
        infos.append(case_info(case))
    if progress is not None:
        progress(len(cohort), len(cohort), "done")
    return cohort, infos


def read_cases(
    cases: list[Case], progress: ProgressFn | None = None, cancelled: CancelledFn | None = None
) -> tuple[list[tuple[Case, Volume, Volume | None]], list[str]]:
    """Read several cases; a case that fails is skipped and its one-line message returned."""
    opened: list[tuple[Case, Volume, Volume | None]] = []
    errors: list[str] = []
    for i, case in enumerate(cases):
        if cancelled is not None and cancelled():
            raise CancelledError("opening cases cancelled")
        if progress is not None:
            progress(i, len(cases), case.display_name)
        try:
            opened.append((case, *read_case(case)))
        except FreqsegError as exc:
            errors.append(str(exc))
    if progress is not None:
        progress(len(cases), len(cases), "done")
    return opened, errors
