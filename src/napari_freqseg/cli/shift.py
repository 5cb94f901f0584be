"""`freqseg shift IN -o OUT`: simulate a centre shift (bias, gamma, thick slices, noise, style) on a
volume; OUT keeps IN's exact geometry."""

from __future__ import annotations

import argparse

from ..errors import FreqsegError
from ..io.volume import write_volume
from ..shift import ALL_KINDS, apply_shift
from ._common import read_input


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shift", help="simulate a scanner/site change on a volume (same grid)")
    p.add_argument("path", metavar="IN", help="volume file or DICOM folder")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="output volume (.nii.gz, .nii, .nrrd, .mha)")
    p.add_argument("--kind", choices=ALL_KINDS, default="all", help="which shift (default: all, in turn)")
    p.add_argument("--severity", type=_severity, default=0.5, help="strength in [0, 1]; 0 leaves the volume as is")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same output")
    p.add_argument("--reference", metavar="REF", help="style: volume whose low-frequency amplitude is mixed in")
    p.set_defaults(func=run)


def _severity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]")
    return value


def run(args: argparse.Namespace) -> int:
    if args.reference and args.kind not in ("style", "all"):
        raise FreqsegError("--reference is used by --kind style (or all) only")
    vol = read_input(args.path)
    reference = read_input(args.reference).array if args.reference else None
    shifted = apply_shift(vol.array, args.kind, args.severity, args.seed, vol.geometry.scale_zyx, reference)
    out = write_volume(shifted, vol.geometry, args.output, header=vol.header)
    print(f"{out}: {args.kind} shift, severity {args.severity:g}, seed {args.seed}")
    return 0
