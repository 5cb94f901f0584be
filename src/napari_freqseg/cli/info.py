"""`freqseg info PATH`: geometry, orientation, dtype and intensity percentiles of a volume."""

from __future__ import annotations

import argparse

from ..io.cohort import intensity_stats
from ..io.geometry import fmt_size, fmt_vec
from ..io.volume import read_volume
from ._common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="size, spacing, origin, direction, orientation, intensities of a volume")
    p.add_argument("path", help="volume file (.nii[.gz], .nrrd, .nhdr, .mha, .mhd) or DICOM folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    vol = read_volume(args.path)
    g = vol.geometry
    pct, _ = intensity_stats(vol.array)
    info = {
        "path": vol.source,
        "size": list(g.size),
        "spacing": list(g.spacing),
        "origin": list(g.origin),
        "direction": list(g.direction),
        "orientation": g.orientation,
        "oblique": g.is_oblique,
        "dtype": str(vol.array.dtype),
        "percentiles": pct,
        "notes": vol.notes,
    }
    if args.json:
        print_json(info)
        return 0
    rows = [
        ("size (x, y, z)", fmt_size(g.size)),
        ("spacing (mm)", fmt_vec(g.spacing)),
        ("origin (mm)", fmt_vec(g.origin)),
        ("direction", fmt_vec(g.direction)),
        ("orientation", g.orientation + (" (oblique)" if g.is_oblique else "")),
        ("dtype", info["dtype"]),
        ("intensity", "  ".join(f"{k}={v:.4g}" for k, v in pct.items())),
    ]
    rows += [("note", n) for n in vol.notes]
    for key, value in rows:
        print(f"{key:<16}{value}")
    return 0
