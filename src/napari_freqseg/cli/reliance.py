"""`freqseg reliance IN --model M`: how much a model relies on each radial frequency band."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FreqsegError
from ..io.volume import volume_stem
from ..models.resolve import RANDOM, resolve_model
from ._common import TerminalProgress, print_json, read_input

if TYPE_CHECKING:  # annotations only: the module loads without torch
    from ..frequency.reliance import RelianceCurve

OUT_FORMATS = (".csv", ".png", ".svg", ".pdf")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reliance", help="per-band reliance of a model: cost of removing each frequency band")
    p.add_argument("input", metavar="IN", help="volume file or DICOM folder")
    p.add_argument(
        "--model", metavar="M", required=True, help=f"model name (see `freqseg models`), .safetensors file or '{RANDOM}'"
    )
    p.add_argument("--labels", metavar="LAB", help="label map on IN's grid: report the Dice drop (else the loss rise)")
    p.add_argument("--bands", type=int, default=8, help="number of radial bands (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random model")
    p.add_argument("--out", metavar="FILE", help="write the curve: .csv (table) or .png/.svg/.pdf (plot)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..frequency.volumes import volume_reliance

    if args.bands < 1:
        raise FreqsegError("--bands must be at least 1")
    if args.out and Path(args.out).suffix.lower() not in OUT_FORMATS:
        raise FreqsegError(f"{args.out}: --out must end with {', '.join(OUT_FORMATS)}")
    vol = read_input(args.input)
    labels = None
    if args.labels:
        lab = read_input(args.labels)
        vol.geometry.check_same_grid(lab.geometry, "labels")
        labels = lab.array
    model = resolve_model(args.model, args.seed)
    curve = volume_reliance(
        vol.array,
        vol.geometry,
        model,
        labels,
        n_bands=args.bands,
        progress=TerminalProgress("reliance", quiet=args.quiet or args.json),
    )
    if args.out:
        _write(Path(args.out), volume_stem(args.input), curve)
    if args.json:
        print_json({"input": vol.source, "model": model.name, **curve.to_dict()})
        return 0
    print(f"{volume_stem(args.input)} with {model.name}: baseline {curve.metric.split('_')[0]} {curve.baseline:.4g}")
    print(f"  {'band (' + curve.unit + ')':>24}  {curve.metric:>10}")
    for lo, hi, v in zip(curve.edges[:-1], curve.edges[1:], curve.values):
        print(f"  {lo:>11.4f} - {hi:<10.4f}  {v:>10.4g}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _write(path: Path, name: str, curve: RelianceCurve) -> None:
    if not path.parent.is_dir():
        raise FreqsegError(f"{path.parent}: output folder does not exist")
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["band_low", "band_high", "unit", curve.metric])
            for lo, hi, v in zip(curve.edges[:-1], curve.edges[1:], curve.values):
                w.writerow([f"{lo:.6g}", f"{hi:.6g}", curve.unit, f"{v:.6g}"])
        return
    from ..frequency.plots import draw_reliance, save_plot

    save_plot(path, lambda ax: draw_reliance(ax, [(name, curve)]))
