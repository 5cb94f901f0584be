"""`freqseg augment IN -o OUT --method ...`: one frequency augmentation of a volume; OUT keeps IN's grid."""

from __future__ import annotations

import argparse

from ..errors import FreqsegError
from ..frequency.defaults import DEFAULT_BETA, METHODS, STRENGTH
from ..io.volume import write_volume
from ..models.resolve import RANDOM, resolve_model
from ._common import TerminalProgress, print_json, read_input


def register(sub: argparse._SubParsersAction) -> None:
    strength_help = "; ".join(f"{m}: {text} (default {d:g})" for m, (text, d) in STRENGTH.items())
    beta_help = ", ".join(f"{m} {b:g}" for m, b in DEFAULT_BETA.items())
    p = sub.add_parser("augment", help="FDA, TP-RAM, L-AAE or F-ASE applied to a volume (output on the same grid)")
    p.add_argument("input", metavar="IN", help="volume file or DICOM folder")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="output volume (.nii.gz, .nii, .nrrd, .mha)")
    p.add_argument("--method", required=True, choices=METHODS, help="augmentation")
    p.add_argument("--reference", metavar="REF", help="volume from another centre (fda, tp-ram; for laae: spread unit)")
    p.add_argument(
        "--model", metavar="M", help=f"model name (see `freqseg models`), .safetensors file or '{RANDOM}' (laae, fase)"
    )
    p.add_argument("--labels", metavar="LAB", help="label map on IN's grid (laae, fase; default: the model's own prediction)")
    p.add_argument("--beta", type=float, help=f"low-frequency box half-width fraction per axis (defaults: {beta_help})")
    p.add_argument("--strength", type=float, help=strength_help)
    p.add_argument("--seed", type=int, default=0, help="random seed (TP-RAM ratio, random model, F-ASE drops)")
    p.add_argument("--steps", type=int, default=1, help="L-AAE attack steps (default 1)")
    p.add_argument("--direction", choices=("up", "down"), default="up", help="L-AAE: raise (up) or lower (down) the loss")
    p.add_argument("--bands", type=int, default=8, help="F-ASE radial bands (default 8)")
    p.add_argument("--stochastic", action="store_true", help="F-ASE: drop over-relied components at random")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..frequency.volumes import augment_volume

    method = args.method
    if method in ("fda", "tp-ram") and not args.reference:
        raise FreqsegError(f"--method {method} needs --reference (a volume from another centre)")
    if method in ("laae", "fase") and not args.model:
        raise FreqsegError(f"--method {method} needs --model (a .safetensors model file or '{RANDOM}')")
    vol = read_input(args.input)
    reference = read_input(args.reference) if args.reference else None
    labels = None
    if args.labels:
        lab = read_input(args.labels)
        vol.geometry.check_same_grid(lab.geometry, "labels")
        labels = lab.array
    model = resolve_model(args.model, args.seed) if args.model and method in ("laae", "fase") else None
    result = augment_volume(
        vol.array,
        vol.geometry,
        method,
        reference=None if reference is None else reference.array,
        reference_geometry=None if reference is None else reference.geometry,
        model=model,
        labels=labels,
        beta=args.beta,
        strength=args.strength,
        seed=args.seed,
        direction=1 if args.direction == "up" else -1,
        steps=args.steps,
        n_bands=args.bands,
        stochastic=args.stochastic,
        progress=TerminalProgress(method, quiet=args.quiet or args.json),
    )
    out = write_volume(result.array, vol.geometry, args.output, header=vol.header)
    info = {"input": vol.source, "output": str(out), **result.info}
    if model is not None:
        info["model"] = model.name
    if args.json:
        print_json(info)
    else:
        details = ", ".join(f"{k}={v}" for k, v in result.info.items() if not isinstance(v, list))
        print(f"wrote {out} ({details})")
    return 0
