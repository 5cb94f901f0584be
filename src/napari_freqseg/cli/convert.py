"""`freqseg convert SOURCE OUTPUT`: rewrite a volume (or a DICOM series, or a DICOM SEG) in another
format, same grid; a label map becomes a DICOM SEG (OUTPUT ending in .dcm) on the series given by --like."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VolumeWriteError
from ..io.geometry import fmt_size
from ..io.volume import WRITE_SUFFIXES, Volume, read_volume, write_volume


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="write a volume, DICOM series or DICOM SEG as NIfTI/NRRD/MHA (or labels as DICOM SEG) with its exact geometry",
    )
    p.add_argument("source", help="volume file, DICOM folder or DICOM SEG file")
    p.add_argument("output", help=f"output file ({', '.join(WRITE_SUFFIXES)}, or .dcm for a DICOM SEG of a label map)")
    p.add_argument("--like", metavar="IMAGE",
                   help="refuse unless SOURCE lies on IMAGE's grid (a label map of it); a SEG is read onto this "
                        "DICOM series; a .dcm OUTPUT references this DICOM series")  # fmt: skip
    p.add_argument("--no-overwrite", action="store_true", help="refuse to replace an existing OUTPUT")
    p.add_argument("--dicom-series", action="store_true", help="write OUTPUT as a folder holding a DICOM MR series (for a PACS)")
    p.add_argument("--patient-id", default="ANON", help="patient ID of a --dicom-series (default ANON)")
    p.add_argument("--description", default="", help="series description of a --dicom-series")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    volume = read_volume(args.source, like=args.like)
    if args.like:
        read_volume(args.like).geometry.check_same_grid(volume.geometry, what=f"{volume.name}")
    if args.dicom_series:
        return _write_series(volume, args)
    if Path(args.output).suffix.lower() == ".dcm":
        out = _write_seg(volume, args)
    else:
        out = write_volume(volume.array, volume.geometry, args.output, header=volume.header, overwrite=not args.no_overwrite)
    print(f"wrote {out} ({fmt_size(volume.geometry.size)}, {volume.array.dtype})")
    for note in volume.notes:
        print(f"note: {note}")
    return 0


def _write_seg(volume: Volume, args: argparse.Namespace) -> Path:
    """A label map as a DICOM SEG on the DICOM series of --like."""
    from ..io.dicom_seg import write_dicom_seg

    if not args.like or not Path(args.like).is_dir():
        raise VolumeWriteError(f"{args.output}: a DICOM SEG needs its DICOM series: --like DICOM_FOLDER")
    if args.no_overwrite and Path(args.output).exists():
        raise VolumeWriteError(f"{args.output}: exists (not overwritten)")
    return write_dicom_seg(volume.array, volume.geometry, args.like, args.output)


def _write_series(volume: Volume, args: argparse.Namespace) -> int:
    """A volume as a DICOM MR series in the folder OUTPUT (which must be new or empty)."""
    from ..io.dicom_export import SeriesInfo, write_dicom_series

    out = Path(args.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VolumeWriteError(f"{out}: a DICOM series needs a new or empty folder")
    info = write_dicom_series(volume.array, volume.geometry, out,
                              SeriesInfo(patient_id=args.patient_id, description=args.description or volume.name))  # fmt: skip
    print(f"wrote {out} ({volume.geometry.size[2]} slices, series {info.series_uid}, study {info.study_uid})")
    for note in volume.notes + info.notes:
        print(f"note: {note}")
    return 0
