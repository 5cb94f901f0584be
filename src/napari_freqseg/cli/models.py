"""`freqseg models`: list bundled and user models; `freqseg models import`: bring in SSL4MIS weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import print_json

#: Metrics the text table shows (on the split the model file names).
TABLE_METRICS = ("val_dice", "val_hd95_mm")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models (bundled and user folder); import SSL4MIS V-Net weights")
    p.add_argument("--json", action="store_true", help="print JSON")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    imp = actions.add_parser(
        "import",
        help="convert a V-Net state dict saved by SSL4MIS-family code (UA-MT, DTC, MC-Net, BCP...) to a model file",
    )
    imp.add_argument("state_dict", metavar="STATE_DICT", help="file written by torch.save(model.state_dict())")
    imp.add_argument("-o", "--output", help="model file to write (default: <user folder>/<name>.safetensors)")
    imp.add_argument("--name", required=True, help="model name")
    imp.add_argument("--classes", default="background,foreground", help="comma-separated class names, background first")
    imp.add_argument(
        "--network-norm",
        default="auto",
        help="normalisation layers of the network: auto (detected), batchnorm, instancenorm, groupnorm, none",
    )
    imp.add_argument(
        "--axes", default="xyz", choices=("xyz", "zyx"), help="array order the network was trained on (xyz for UA-MT's LA h5)"
    )
    imp.add_argument("--decoder", default="decoder", help="decoder to keep when the network has several (e.g. decoder1)")
    imp.add_argument(
        "--patch",
        type=int,
        nargs=3,
        default=[80, 112, 112],
        metavar=("Z", "Y", "X"),
        help="patch size in (z, y, x) voxels (default 80 112 112, SSL4MIS on LA)",
    )
    imp.add_argument(
        "--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="training spacing in mm (default: the scan's own)"
    )
    imp.add_argument(
        "--orientation", default="LPS", help="orientation code of the training arrays, or 'none' to keep the scan's (default LPS)"
    )
    imp.add_argument(
        "--intensity",
        default="zscore",
        choices=("zscore", "minmax", "none"),
        help="intensity normalisation used in training (default zscore)",
    )
    imp.add_argument(
        "--intensity-region", default="all", choices=("all", "nonzero"), help="voxels the intensity statistics come from"
    )
    imp.add_argument("--method", default="", help="training method, e.g. UA-MT")
    imp.add_argument("--task", default="", help="what it segments, e.g. 'left atrium, LGE-MRI'")
    imp.add_argument("--data", default="", help="training data, e.g. 'LA 2018, 8 labeled + 72 unlabeled'")
    imp.add_argument("--labeled-fraction", type=float, help="fraction of labeled training cases")
    imp.add_argument(
        "--style-from",
        metavar="SCANS",
        help="folder of training scans (or a CSV manifest) whose style the model keeps, for --harmonize",
    )
    imp.set_defaults(func=run)
    sty = actions.add_parser("style", help="store the style of a model's training scans in the model file (for --harmonize)")
    sty.add_argument("model", metavar="NAME|PATH", help="model name or .safetensors file")
    sty.add_argument("--from", dest="scans", metavar="SCANS", required=True, help="folder of training scans, or a CSV manifest")
    sty.add_argument("-o", "--output", help="model file to write (default: the model's own file; required for a bundled model)")
    sty.add_argument("--quiet", action="store_true", help="no progress bar")
    sty.set_defaults(func=run_style)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models.registry import list_models, user_models_dir

    if getattr(args, "action", None) == "import":
        return run_import(args)
    entries = [e.summary() for e in list_models()]
    if args.json:
        print_json({"user_folder": str(user_models_dir()), "models": entries})
        return 0
    if not entries:
        print(f"no models (bundled: none; user folder {user_models_dir()} is empty)")
        return 0
    header = ("name", "source", "task", "classes", "spacing", "patch", "method", "style", "metrics")
    rows = []
    for e in entries:
        if e["error"]:
            rows.append((e["name"], e["source"], f"unreadable: {e['error']}", "", "", "", "", "", ""))
            continue
        spacing = "×".join(f"{s:g}" for s in e["spacing"]) + " mm" if e["spacing"] else "native"
        patch = "×".join(str(p) for p in e["patch_size"])
        shown = {k: v for k, v in e["metrics"].items() if k in TABLE_METRICS}  # all of them with --json
        metrics = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        style = f"{e['style_scans']} scans" if e["style_scans"] else "-"
        rows.append((e["name"], e["source"], e["task"], ",".join(e["classes"]), spacing, patch, e["method"], style, metrics))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def run_import(args: argparse.Namespace) -> int:
    from ..errors import ModelError
    from ..models.convert import convert_ssl4mis_vnet, read_state_dict
    from ..models.modelfile import save_model
    from ..models.preprocess import Normalization
    from ..models.registry import BUNDLED_DIR, MODEL_SUFFIX, check_model_name, user_models_dir

    check_model_name(args.name)
    if (BUNDLED_DIR / f"{args.name}{MODEL_SUFFIX}").is_file():
        raise ModelError(f"{args.name} is a bundled model's name, which would hide the import; choose another --name")
    output = Path(args.output) if args.output else user_models_dir() / f"{args.name}{MODEL_SUFFIX}"
    if output.exists():
        raise ModelError(f"{output}: a model is already there; remove it or choose another --name / -o (nothing was written)")
    if args.spacing is not None and not all(s > 0 for s in args.spacing) or not all(p > 0 for p in args.patch):
        raise ModelError("--spacing and --patch must be positive")
    state = read_state_dict(args.state_dict)
    training = {"method": args.method, "data": args.data, "imported_from": str(args.state_dict)}
    if args.labeled_fraction is not None:
        training["labeled_fraction"] = args.labeled_fraction
    converted = convert_ssl4mis_vnet(
        state,
        name=args.name,
        classes=[c.strip() for c in args.classes.split(",") if c.strip()],
        network_norm=args.network_norm,
        axes=args.axes,
        decoder=args.decoder,
        patch_size=list(args.patch),
        spacing=list(args.spacing) if args.spacing else None,
        orientation=None if args.orientation.lower() == "none" else args.orientation.upper(),
        normalization=Normalization(method=args.intensity, region=args.intensity_region).to_dict(),
        task=args.task,
        training=training,
    )
    if args.style_from:
        converted.meta.style = _style(converted.meta, args.style_from, quiet=False).to_dict()
    path = save_model(output, converted.network, converted.meta)
    for note in converted.notes:
        print(f"note: {note}")
    arch = converted.meta.arch_args
    print(f"{path}: vnet n_filters={arch['n_filters']} {arch['normalization']} norm, classes {', '.join(converted.meta.classes)}")
    return 0


def _style(meta: object, scans: str, quiet: bool):  # noqa: ANN202 - harmonize.TrainingStyle, imported lazily
    from ..harmonize import scan_files, style_from_scans
    from ._common import TerminalProgress

    files = scan_files(scans)
    return style_from_scans(meta, files, progress=TerminalProgress("style", quiet=quiet))


def run_style(args: argparse.Namespace) -> int:
    """Add (or replace) the training style of a model file; the weights are copied unchanged."""
    from ..errors import ModelError
    from ..models.modelfile import load_model, save_model
    from ..models.registry import BUNDLED_DIR, find_model

    path = find_model(args.model)
    if args.output is None and BUNDLED_DIR in path.resolve().parents:
        raise ModelError(f"{path.name} is a bundled model: write the styled copy elsewhere with -o")
    network, meta = load_model(path)
    style = _style(meta, args.scans, args.quiet)
    meta.style = style.to_dict()
    out = save_model(args.output or path, network, meta)
    print(
        f"{out}: style of {style.scans} scans stored (landmarks p1={style.landmarks[0]:.2f} p50={style.landmarks[len(style.landmarks) // 2]:.2f} p99={style.landmarks[-1]:.2f})"
    )
    return 0
