"""`freqseg convert SOURCE OUTPUT`: rewrite a volume (or a DICOM series) in another format, same grid."""

from __future__ import annotations

import argparse

from ..io.geometry import fmt_size
from ..io.volume import WRITE_SUFFIXES, read_volume, write_volume


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="write a volume or DICOM series as NIfTI/NRRD/MHA with its exact geometry")
    p.add_argument("source", help="volume file or DICOM folder")
    p.add_argument("output", help=f"output file ({', '.join(WRITE_SUFFIXES)})")
    p.add_argument("--like", metavar="IMAGE", help="refuse unless SOURCE lies on IMAGE's grid (a label map of it)")
    p.add_argument("--no-overwrite", action="store_true", help="refuse to replace an existing OUTPUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    volume = read_volume(args.source)
    if args.like:
        read_volume(args.like).geometry.check_same_grid(volume.geometry, what=f"{volume.name}")
    out = write_volume(
        volume.array, volume.geometry, args.output, header=volume.header, overwrite=not args.no_overwrite
    )
    print(f"wrote {out} ({fmt_size(volume.geometry.size)}, {volume.array.dtype})")
    for note in volume.notes:
        print(f"note: {note}")
    return 0
