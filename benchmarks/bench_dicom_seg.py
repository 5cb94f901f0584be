"""DICOM SEG cost against NIfTI on the LA sample: write and read times as ratios, file sizes, and
whether the labels come back exactly. JSON.

The scan goes out as a DICOM MR series (io.dicom_export); its expert label is then written and read
back as a SEG over that series (io.dicom_seg) and as .nii.gz (io.volume), each timed in this one
process (median of --repeat runs).

    python benchmarks/bench_dicom_seg.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_freqseg.io.dicom_export import write_dicom_series
from napari_freqseg.io.dicom_seg import read_dicom_seg, write_dicom_seg
from napari_freqseg.io.volume import read_volume, write_volume

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"


def timed(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    image = read_volume(SAMPLE / "la_CCGAKN4EDT72KC8TTJ76_image.nii.gz")
    label = read_volume(SAMPLE / "la_CCGAKN4EDT72KC8TTJ76_label.nii.gz")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_dicom_series(image.array, image.geometry, folder / "series")
        grid = read_volume(folder / "series").geometry
        labels = label.array.astype(np.uint8)
        seg, nii = folder / "seg.dcm", folder / "label.nii.gz"
        t_write_seg = timed(
            lambda: write_dicom_seg(labels, grid, folder / "series", seg, classes=["background", "left atrium"]), args.repeat
        )
        t_write_nii = timed(lambda: write_volume(labels, grid, nii), args.repeat)
        t_read_seg = timed(lambda: read_dicom_seg(seg, like=folder / "series"), args.repeat)
        t_read_nii = timed(lambda: read_volume(nii), args.repeat)
        back, back_grid, _, _ = read_dicom_seg(seg, like=folder / "series")
        result = {
            "volume": list(image.geometry.size),
            "seg_write_vs_nifti": round(t_write_seg / t_write_nii, 2),
            "seg_read_vs_nifti": round(t_read_seg / t_read_nii, 2),
            "seg_bytes_vs_nifti": round(seg.stat().st_size / nii.stat().st_size, 2),
            "seg_kib": round(seg.stat().st_size / 1024),
            "exact": bool(np.array_equal(back, labels) and back_grid.same_grid(grid)),
            "seconds": {
                "seg_write": round(t_write_seg, 3),
                "nifti_write": round(t_write_nii, 3),
                "seg_read": round(t_read_seg, 3),
                "nifti_read": round(t_read_nii, 3),
            },  # fmt: skip
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
