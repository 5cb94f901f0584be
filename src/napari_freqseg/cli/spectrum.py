"""`freqseg spectrum IN...`: radial amplitude profiles in cycles/mm, one per volume (e.g. per centre)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import FreqsegError
from ..io.volume import volume_stem
from ._common import print_json, read_input

if TYPE_CHECKING:  # annotations only: the module loads without torch
    from ..frequency.spectrum import VolumeSpectrum

OUT_FORMATS = (".csv", ".png", ".svg", ".pdf")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spectrum", help="radial amplitude spectrum (cycles/mm) of one or more volumes")
    p.add_argument("inputs", nargs="+", metavar="IN", help="volume file(s) or DICOM folder(s), e.g. one per centre")
    p.add_argument("--out", metavar="FILE", help="write the profiles: .csv (table) or .png/.svg/.pdf (plot)")
    p.add_argument("--bins", type=int, default=None, help="number of radial shells (default: one per frequency step)")
    p.add_argument("--beta", type=float, default=0.01, help="low-frequency box fraction marked on the plot (default 0.01)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..frequency.spectrum import volume_spectrum

    if args.out and Path(args.out).suffix.lower() not in OUT_FORMATS:
        raise FreqsegError(f"{args.out}: --out must end with {', '.join(OUT_FORMATS)}")
    if args.bins is not None and args.bins < 1:
        raise FreqsegError("--bins must be at least 1")
    items: list[tuple[str, VolumeSpectrum, tuple[int, ...]]] = []
    for path in args.inputs:
        vol = read_input(path)
        spec = volume_spectrum(vol.array, vol.geometry.spacing[::-1], args.bins)
        items.append((volume_stem(path), spec, vol.array.shape))
    if args.out:
        _write(Path(args.out), items, args.beta)
    if args.json:
        print_json([_as_dict(name, spec, shape) for name, spec, shape in items])
        return 0
    for name, spec, shape in items:
        prof = spec.profile
        print(f"{name}: {'×'.join(map(str, shape[::-1]))} voxels, spacing {', '.join(f'{s:.4g}' for s in spec.spacing[::-1])} mm")
        print(f"  {'cycles/mm':>10}  {'log10 amplitude':>15}")
        for i in np.unique(np.linspace(0, len(prof.frequency) - 1, min(12, len(prof.frequency))).astype(int)):
            print(f"  {prof.frequency[i]:>10.4f}  {np.log10(prof.values[i]):>15.3f}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _as_dict(name: str, spec: VolumeSpectrum, shape: tuple[int, ...]) -> dict:
    prof = spec.profile
    return {
        "name": name,
        "size": list(shape[::-1]),
        "spacing": list(spec.spacing[::-1]),
        "unit": prof.unit,
        "frequency": prof.frequency,
        "amplitude": prof.values,
        "count": prof.counts,
        "axes": {axis: {"frequency": f, "amplitude": v} for axis, (f, v) in zip("zyx", spec.axes)},
    }


def _write(path: Path, items: list[tuple[str, VolumeSpectrum, tuple[int, ...]]], beta: float) -> None:
    from ..frequency.bands import box_edge_frequency

    if not path.parent.is_dir():
        raise FreqsegError(f"{path.parent}: output folder does not exist")
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["volume", "frequency_cycles_per_mm", "amplitude", "log10_amplitude", "voxels"])
            for name, spec, _ in items:
                p = spec.profile
                for f, a, c in zip(p.frequency, p.values, p.counts):
                    w.writerow([name, f"{f:.6g}", f"{a:.6g}", f"{np.log10(a):.6g}", int(c)])
        return
    from ..frequency.plots import draw_profiles, save_plot

    edges = [box_edge_frequency(shape, spec.spacing, beta) for _, spec, shape in items]
    save_plot(path, lambda ax: draw_profiles(ax, [(name, spec.profile) for name, spec, _ in items], edges))
