"""Cohorts from CSV manifests and site folders, built from the shipped sample volumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_freqseg.errors import CancelledError, CohortError, GeometryMismatchError
from napari_freqseg.io.cohort import Case, load_cohort, read_case, read_cases, scan_cohort, site_stats
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import write_volume

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
LA_IMAGE = "la_CCGAKN4EDT72KC8TTJ76_image.nii.gz"
LA_LABEL = "la_CCGAKN4EDT72KC8TTJ76_label.nii.gz"


def copy(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(SAMPLES / name, dest))


def small_case(folder: Path, name: str, geometry: Geometry, label_geometry: Geometry | None = None) -> None:
    """A tiny image (and label map, optionally on another grid) named like a site-folder case."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(name))
    write_volume(rng.normal(100, 20, geometry.shape_zyx).astype(np.float32), geometry, folder / f"{name}.nii.gz")
    if label_geometry is not None:
        write_volume(np.ones(label_geometry.shape_zyx, np.uint8), label_geometry, folder / f"{name}_label.nii.gz")


GRID = Geometry(size=(8, 9, 10), spacing=(1.0, 1.0, 2.0), origin=(0, 0, 0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_site_folders_of_files_and_of_case_folders(tmp_path: Path):
    root = tmp_path / "cohort"
    copy(LA_IMAGE, root / "la" / LA_IMAGE)
    copy(LA_LABEL, root / "la" / LA_LABEL)
    copy("colin27_t1.nii.gz", root / "mni" / "colin27" / "image.nii.gz")
    copy("colin27_brain_mask.nii.gz", root / "mni" / "colin27" / "label.nii.gz")
    copy("icbm152_2009a_t1.nii.gz", root / "mni" / "icbm152" / "image.nii.gz")
    (root / ".hidden").mkdir()
    cohort = load_cohort(root)
    assert cohort.sites == ["la", "mni"]
    by_id = {c.case_id: c for c in cohort}
    assert set(by_id) == {"la_CCGAKN4EDT72KC8TTJ76_image", "colin27", "icbm152"}
    assert by_id["la_CCGAKN4EDT72KC8TTJ76_image"].label == root / "la" / LA_LABEL
    assert by_id["colin27"].label == root / "mni" / "colin27" / "label.nii.gz"
    assert not by_id["icbm152"].labeled
    assert by_id["colin27"].display_name == "mni/colin27"


def test_site_folder_pairs_labels_by_name(tmp_path: Path):
    site = tmp_path / "root" / "centre_a"
    small_case(site, "p01", GRID, GRID)
    small_case(site, "p02", GRID)
    small_case(site, "p03", GRID, GRID)
    cases = load_cohort(tmp_path / "root").cases
    assert [(c.case_id, c.label.name if c.label else None) for c in cases] == [
        ("p01", "p01_label.nii.gz"), ("p02", None), ("p03", "p03_label.nii.gz"),
    ]  # fmt: skip


def test_csv_manifest_relative_and_absolute_paths(tmp_path: Path):
    copy(LA_IMAGE, tmp_path / "data" / "la.nii.gz")
    copy(LA_LABEL, tmp_path / "data" / "la_seg.nii.gz")
    colin = copy("colin27_t1.nii.gz", tmp_path / "elsewhere" / "colin.nii.gz")
    manifest = tmp_path / "lists" / "cohort.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"image,label,site,split\n../data/la.nii.gz,../data/la_seg.nii.gz,utah,train\n{colin},,mni,test\n")
    cohort = load_cohort(manifest)
    assert [(c.case_id, c.site, c.split, c.labeled) for c in cohort] == [
        ("la", "utah", "train", True), ("colin", "mni", "test", False),
    ]  # fmt: skip
    assert cohort.cases[0].label == (tmp_path / "data" / "la_seg.nii.gz").resolve()
    assert cohort.select(site="mni")[0].image == colin
    assert cohort.select(labeled=True, split="train")[0].case_id == "la"


def test_manifest_written_and_read_back(tmp_path: Path):
    site = tmp_path / "root" / "s1"
    small_case(site, "a", GRID, GRID)
    small_case(site, "b", GRID)
    cohort = load_cohort(tmp_path / "root")
    (tmp_path / "out").mkdir()
    cohort.write_csv(tmp_path / "out" / "m.csv")
    again = load_cohort(tmp_path / "out" / "m.csv")
    assert [(c.case_id, c.image, c.label, c.site) for c in again] == [
        (c.case_id, c.image.resolve(), c.label.resolve() if c.label else None, c.site) for c in cohort
    ]
    assert "../root/s1/a.nii.gz" in (tmp_path / "out" / "m.csv").read_text()


def test_shipped_sample_cohort_scan_with_progress():
    calls: list[tuple[int, int, str]] = []
    cohort, infos = scan_cohort(SAMPLES / "cohort.csv", progress=lambda d, t, m: calls.append((d, t, m)))
    assert len(cohort) == 3 and all(c.labeled for c in cohort)
    assert [i.size for i in infos] == [(186, 139, 88), (197, 233, 189), (181, 217, 181)]
    assert infos[0].spacing == pytest.approx((0.625, 0.625, 0.625))
    assert calls[0] == (0, 3, "la-challenge/CCGAKN4EDT72KC8TTJ76") and calls[-1] == (3, 3, "done")
    for info in infos:
        pct = list(info.percentiles.values())
        assert pct == sorted(pct) and pct[-1] > pct[0]
        counts, edges = info.histogram
        assert counts.sum() == pytest.approx(1.0) and len(edges) == len(counts) + 1
    stats = site_stats(infos)
    assert list(stats) == ["la-challenge", "mni-icbm152", "mni-colin27"]
    assert stats["mni-icbm152"]["p99"] != stats["mni-colin27"]["p99"]  # two centres, two contrasts


def test_scan_stops_when_cancelled(tmp_path: Path):
    for name in ("a", "b", "c"):
        small_case(tmp_path / "root" / "s", name, GRID)
    seen: list[int] = []
    with pytest.raises(CancelledError):
        scan_cohort(tmp_path / "root", progress=lambda d, t, m: seen.append(d), cancelled=lambda: len(seen) >= 2)
    assert seen == [0, 1]


def test_label_on_another_grid_is_refused_and_named(tmp_path: Path):
    site = tmp_path / "root" / "s"
    shifted = Geometry(GRID.size, GRID.spacing, (0.0, 0.0, 5.0), GRID.direction)
    small_case(site, "good", GRID, GRID)
    small_case(site, "bad", GRID, shifted)
    cohort = load_cohort(tmp_path / "root")
    bad = cohort.select(labeled=True)[0]
    assert bad.case_id == "bad"
    with pytest.raises(GeometryMismatchError, match=r"s/bad: label grid differs from its image: origin"):
        read_case(bad)
    opened, errors = read_cases(cohort.cases)
    assert [case.case_id for case, _, _ in opened] == ["good"]
    assert len(errors) == 1 and "s/bad" in errors[0]
    image, label = read_case(cohort.select(labeled=True)[1])
    assert label is not None and label.geometry.same_grid(image.geometry)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "has no rows"),
        ("path,site\nx.nii.gz,a\n", "needs an 'image' column"),
        ("image,site\nmissing.nii.gz,a\n", "image .*missing.nii.gz does not exist"),
        ("image,site\n,a\n", "line 2: empty image path"),
    ],
)
def test_bad_manifests_give_one_line(tmp_path: Path, content: str, message: str):
    manifest = tmp_path / "m.csv"
    manifest.write_text(content)
    with pytest.raises(CohortError, match=message) as err:
        load_cohort(manifest)
    assert "\n" not in str(err.value)


def test_bad_cohort_paths(tmp_path: Path):
    with pytest.raises(CohortError, match="no such file or folder"):
        load_cohort(tmp_path / "nope.csv")
    (tmp_path / "list.txt").write_text("x")
    with pytest.raises(CohortError, match="a .csv manifest or a folder"):
        load_cohort(tmp_path / "list.txt")
    (tmp_path / "flat").mkdir()
    with pytest.raises(CohortError, match="no site sub-folders"):
        load_cohort(tmp_path / "flat")
    (tmp_path / "flat" / "empty_site").mkdir()
    with pytest.raises(CohortError, match="no volumes found"):
        load_cohort(tmp_path / "flat")


def test_case_display_name():
    assert Case("c1", Path("x.nii.gz"), "site-a").display_name == "site-a/c1"
