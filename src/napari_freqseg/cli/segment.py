"""`freqseg segment IN -o OUT`: segment a scan (or a folder of scans) with a model file.

Outputs are uint8 label volumes with exactly the input's geometry; with `--uncertainty` a float32
map of normalised predictive entropy is written beside them. A folder IN is searched recursively
for volumes (label maps skipped) and mirrored under OUT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import FreqsegError, VolumeReadError, VolumeWriteError
from ..io.volume import WRITE_SUFFIXES, is_readable_path, volume_suffix, write_volume
from ._common import TerminalProgress, print_json, read_input

if TYPE_CHECKING:  # annotations only: the module loads without torch
    from ..inference import Prediction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment a scan or a folder of scans with a model")
    p.add_argument("input", metavar="IN", help="volume file, DICOM folder, or folder of volumes (batch)")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        required=True,
        help="label file (.dcm: a DICOM SEG over a DICOM series input), or folder for a batch",
    )
    p.add_argument("--model", metavar="NAME|PATH", help="model name (see `freqseg models`) or .safetensors file")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--overlap", type=float, default=0.5, help="window overlap in [0, 1) (default 0.5)")
    p.add_argument("--tta", action="store_true", help="average over flips along each axis (4× slower)")
    p.add_argument("--mc-dropout", type=int, default=0, metavar="N", help="N stochastic passes with dropout on")
    p.add_argument("--uncertainty", metavar="OUT_U", help="also write the uncertainty map (file, or folder for a batch)")
    p.add_argument("--batch-size", type=int, default=2, help="windows per forward pass (default 2)")
    p.add_argument(
        "--precision", default="auto", help="auto (fp16 on CUDA; bf16 on a CPU with native bf16, else fp32), fp32, fp16, bf16"
    )
    p.add_argument("--no-largest-component", action="store_true", help="keep every connected component")
    p.add_argument("--no-site-model", action="store_true",
                   help="use the named model itself even where a round of it was fine-tuned for the scan's site")  # fmt: skip
    p.add_argument("--harmonize", nargs="?", const="default", default="off", metavar="MODE",
                   help="map the scan to the model's training style first: intensity (landmarks), spectrum (window FDA), "
                        "both, or off (default off: it did not raise Dice on held-out LA scans, see RESULTS.md; bare --harmonize: spectrum)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _is_label_file(path: Path) -> bool:
    from ..io.cohort import LABEL_NAME

    suffix = volume_suffix(path) or ""
    return bool(LABEL_NAME.search(path.name[: len(path.name) - len(suffix)]))


def _out_name(path: Path) -> str:
    """Same file name, in a writable format (.nhdr / .mhd inputs become .nii.gz)."""
    suffix = volume_suffix(path) or ""
    return path.name if suffix in WRITE_SUFFIXES else path.name[: len(path.name) - len(suffix)] + ".nii.gz"


def _target(out: Path, src: Path) -> Path:
    """OUT itself when it names a volume file (or a DICOM SEG), else OUT/<input name> (a folder)."""
    if out.suffix.lower() == ".dcm" and not out.is_dir():
        if not (src.is_dir() and is_readable_path(src)):
            raise VolumeWriteError(f"{out}: a DICOM SEG output needs a DICOM series input ({src} is not one)")
        return out
    return out / _out_name(src) if out.is_dir() or volume_suffix(out) is None else out


def plan_jobs(src: Path, out: Path, out_u: Path | None) -> list[tuple[Path, Path, Path | None]]:
    """(input, output, uncertainty output) for a single scan or a folder (mirrored under OUT)."""
    if not src.exists():
        raise VolumeReadError(f"{src}: no such file or folder")
    if src.is_file() or is_readable_path(src):  # a file or a DICOM folder
        jobs = [(src, _target(out, src), _target(out_u, src) if out_u else None)]
        _refuse_clashes(jobs)
        return jobs
    outputs = [o.resolve() for o in (out, out_u) if o is not None]
    inputs = sorted(
        f
        for f in src.rglob("*")
        if f.is_file()
        and volume_suffix(f)
        and not _is_label_file(f)
        and not any(part.startswith(".") for part in f.relative_to(src).parts)  # hidden: temporaries, sessions
        and not any(f.resolve().is_relative_to(o) for o in outputs)  # an earlier run's results inside the input folder
    )
    if not inputs:
        raise VolumeReadError(f"{src}: no volumes found (label maps are skipped)")
    if out.exists() and not out.is_dir():
        raise VolumeReadError(f"{out}: a folder input needs a folder output")
    jobs = []
    for f in inputs:
        rel = f.relative_to(src).parent / _out_name(f)
        jobs.append((f, out / rel, out_u / rel if out_u else None))
    _refuse_clashes(jobs)
    return jobs


def _refuse_clashes(jobs: list[tuple[Path, Path, Path | None]]) -> None:
    """Before anything runs: no output may be an input of the run, and no two outputs the same file
    (`-o scans/` beside the scan, one folder for labels and uncertainty, a.nhdr and a.nii.gz)."""
    from ..io.guard import refuse_output_over_input

    refuse_output_over_input([t for _, target, target_u in jobs for t in (target, target_u) if t is not None],
                             [src for src, _, _ in jobs])  # fmt: skip
    seen: dict[Path, Path] = {}
    for src, *targets in jobs:
        for t in filter(None, targets):
            key = t.resolve()
            if key in seen:
                raise VolumeWriteError(
                    f"{t}: written twice (for {seen[key]} and {src}); choose other outputs (nothing was written)"
                )
            seen[key] = src


def run(args: argparse.Namespace) -> int:
    from ..harmonize import model_style
    from ..inference import predict_volume
    from ..io.dicom_seg import write_dicom_seg
    from ..models.modelfile import load_model, model_algorithm
    from ..models.registry import default_model, find_model, is_round, scan_site, tuned_for_site

    src, out = Path(args.input), Path(args.output)
    out_u = Path(args.uncertainty) if args.uncertainty else None
    jobs = plan_jobs(src, out, out_u)
    model_path = find_model(args.model) if args.model else default_model()
    network, meta = load_model(model_path)
    if harmonize_mode(args.harmonize) != "off":
        model_style(meta)  # one line before any scan is read when the model carries no style
    # a model named by its base name may have rounds tuned for a scan's site; a round named itself is used as named
    by_name = not (args.model and Path(args.model).expanduser().is_file()) and not is_round(meta.name)
    loaded = {model_path: (network, meta)}
    results, failed = [], 0
    for i, (image_path, target, target_u) in enumerate(jobs, start=1):
        label = f"[{i}/{len(jobs)}] {image_path.name}" if len(jobs) > 1 else image_path.name
        try:
            volume = read_input(image_path)
            used = model_path
            tuned = (
                tuned_for_site(meta.name, scan_site(volume.header, str(image_path)))
                if by_name and not args.no_site_model
                else None
            )
            if tuned is not None:
                used = tuned.path
                print(
                    f"{image_path.name}: using {tuned.name}, tuned for this site (--no-site-model: {meta.name} itself)",
                    file=sys.stderr,
                )
            if used not in loaded:
                loaded[used] = load_model(used)
            job_network, job_meta = loaded[used]
            pred = predict_volume(
                job_network,
                job_meta,
                volume,
                device=args.device,
                overlap=args.overlap,
                tta=args.tta,
                mc_dropout=args.mc_dropout,
                uncertainty="entropy" if target_u else None,
                uncertainty_dtype="float32",
                largest_component=not args.no_largest_component,
                batch_size=args.batch_size,
                precision=args.precision,
                harmonize=harmonize_mode(args.harmonize),
                progress=TerminalProgress(label, quiet=args.quiet or args.json),
            )
            for path in (target, target_u):
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
            if target.suffix.lower() == ".dcm":
                write_dicom_seg(pred.labels, volume.geometry, image_path, target, classes=pred.classes,
                                algorithm=model_algorithm(job_meta), series_uid=volume.header.get("0020|000e"))  # fmt: skip
            else:
                write_volume(pred.labels, volume.geometry, target)
            if target_u is not None and pred.uncertainty is not None:
                write_volume(pred.uncertainty.astype(np.float32), volume.geometry, target_u)
        except Exception as exc:  # noqa: BLE001 - in a batch, one scan's failure (of any kind) does not stop the rest
            if len(jobs) == 1 or args.debug:
                raise
            failed += 1
            print(f"freqseg segment: {image_path}: error: {exc}", file=sys.stderr)
            continue
        results.append({**_summary(image_path, target, target_u, pred, volume.geometry.spacing), "model": job_meta.name})
        if not args.json:
            sizes = ", ".join(f"{c['name']} {c['ml']:.1f} ml" for c in results[-1]["classes"])
            print(
                f"{image_path} -> {target} ({sizes}; {pred.info['seconds']:.1f} s on {pred.info['device']}, {pred.info['precision']})"
            )
    if args.json:
        print_json({"model": str(model_path), "results": results, "failed": failed})
    return 1 if failed else 0


def _summary(image: Path, target: Path, target_u: Path | None, pred: Prediction, spacing: tuple[float, ...]) -> dict:
    voxel_ml = float(np.prod(spacing)) / 1000.0
    counts = np.bincount(pred.labels.ravel(), minlength=len(pred.classes))
    classes = [
        {"label": c, "name": pred.classes[c], "voxels": int(counts[c]), "ml": round(float(counts[c]) * voxel_ml, 3)}
        for c in range(1, len(pred.classes))
    ]
    return {"input": str(image), "output": str(target), "uncertainty": str(target_u) if target_u else None,
            "classes": classes, **pred.info}  # fmt: skip


def harmonize_mode(value: str) -> str:
    """The --harmonize value as one of harmonize.MODES ('default' is the measured default)."""
    from ..harmonize import DEFAULT_MODE, MODES

    mode = DEFAULT_MODE if value == "default" else value.lower()
    if mode not in MODES:
        raise FreqsegError(f"--harmonize {value}: use one of {', '.join(MODES)}")
    return mode
