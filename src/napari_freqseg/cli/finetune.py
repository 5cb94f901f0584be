"""`freqseg finetune`: fine-tune a model on the corrected slices of one scan (human in the loop).

Only the listed slices of the labels count as labeled; the rest of the scan adds mean-teacher
consistency. The result is a new model file whose metadata names its parent model, the scan and
the slices; the input model is never changed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CorrectionError, ModelError
from ._common import TerminalProgress, print_json, read_input

if TYPE_CHECKING:  # annotations only: the module loads without torch
    from ..io.volume import Volume


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.finetune_options import PRECISIONS, FinetuneOptions

    p = sub.add_parser("finetune", help="fine-tune a model on the corrected slices of one scan")
    p.add_argument("--model", required=True, metavar="NAME|PATH", help="model name (see `freqseg models`) or .safetensors file")
    p.add_argument("--image", required=True, metavar="IMG", help="the scan (volume file or DICOM folder)")
    p.add_argument("--labels", required=True, metavar="LAB", help="corrected labels on the scan's grid")
    p.add_argument("--slices", required=True, nargs="+", metavar="SPEC",
                   help="corrected slices on any axis, e.g. z:12,40,77 or z:40 y:70 x:90 (or 'z:12;x:30')")  # fmt: skip
    p.add_argument("-o", "--output", required=True, metavar="NEW.safetensors", help="the new model file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file at -o (never the one being tuned)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--iters", type=int, metavar="N", help="number of iterations (default 30)")
    budget.add_argument("--seconds", type=_seconds, metavar="S", help="time budget in seconds, preparation included")
    p.add_argument("--lr", type=float, default=FinetuneOptions.lr, help=f"learning rate (default {FinetuneOptions.lr})")
    p.add_argument("--consistency", type=float, default=FinetuneOptions.consistency_weight, metavar="W",
                   help=f"weight of the mean-teacher consistency (default {FinetuneOptions.consistency_weight})")  # fmt: skip
    p.add_argument("--weak-weight", type=float, default=FinetuneOptions.weak_weight, metavar="W",
                   help="also train, at weight W, on shapes interpolated between corrected slices of one axis "
                        f"(gaps up to 20 slices; default {FinetuneOptions.weak_weight}: off, it lowered the gain on LA)")  # fmt: skip
    p.add_argument("--mix", type=float, default=FinetuneOptions.mix, metavar="M",
                   help="keep this share of the round's change to the weights, the rest stays the parent's (WiSE-FT; "
                        f"less forgetting on other scans, less gain; default {FinetuneOptions.mix})")  # fmt: skip
    p.add_argument("--replay", nargs=2, action="append", default=[], metavar=("IMG", "LAB"),
                   help="a fully labeled volume to replay against forgetting (repeatable)")  # fmt: skip
    p.add_argument(
        "--replay-every", type=int, default=4, metavar="N", help="with --replay: every N-th iteration replays (default 4)"
    )
    p.add_argument("--name", help="name of the new model (default: the output file name)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto or cuda")
    p.add_argument("--precision", default=FinetuneOptions.precision, choices=PRECISIONS,
                   help=f"fp32, bf16 (autocast) or auto (bf16 where the device has it); default {FinetuneOptions.precision}")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the new model's training record as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _scan_and_labels(image_path: str, labels_path: str) -> tuple[Volume, Volume]:
    image, labels = read_input(image_path), read_input(labels_path)
    image.geometry.check_same_grid(labels.geometry, f"labels {Path(labels_path).name}")
    if labels.array.dtype.kind not in "iub":
        raise CorrectionError(f"{Path(labels_path).name}: labels must be integers, not {labels.array.dtype}")
    if labels.array.dtype.kind == "i" and labels.array.size and labels.array.min() < 0:
        raise CorrectionError(
            f"{Path(labels_path).name}: labels hold negative values (down to {int(labels.array.min())}); use 0 for background"
        )
    return image, labels


def _seconds(text: str) -> float:
    """A time budget: a finite number of seconds above 0 (at most a day)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (0 < value <= 86400):
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 86400 seconds")
    return value


def run(args: argparse.Namespace) -> int:
    from ..correction.record import CorrectionRecord
    from ..models.registry import MODEL_SUFFIX, check_model_name, find_model
    from ..training.finetune import finetune_file
    from ..training.finetune_options import FinetuneOptions

    output = Path(args.output)
    if not output.name.endswith(MODEL_SUFFIX):
        raise ModelError(f"{output.name}: the new model file must end in {MODEL_SUFFIX}")
    name = check_model_name(args.name or output.name[: -len(MODEL_SUFFIX)])  # the file's name unless --name
    model_path = find_model(args.model)
    if output.exists() and output.resolve() == model_path.resolve():
        raise ModelError(f"{output.name}: refusing to overwrite the model being fine-tuned; choose another -o")
    if output.exists() and not args.overwrite:  # an earlier round, perhaps the parent of others
        raise ModelError(f"{output.name}: a model file is there already; choose another -o, or --overwrite")
    image, labels = _scan_and_labels(args.image, args.labels)
    try:
        record = CorrectionRecord.from_spec(image.geometry.shape_zyx, ";".join(args.slices))
    except ValueError as exc:
        raise CorrectionError(f"--slices: {exc}") from None
    replay = [_scan_and_labels(i, lab) for i, lab in args.replay]
    options = FinetuneOptions(
        iterations=args.iters, seconds=args.seconds, lr=args.lr, consistency_weight=args.consistency,
        replay_every=args.replay_every if replay else 0, seed=args.seed, device=args.device, weak_weight=args.weak_weight,
        precision=args.precision, mix=args.mix,
    )  # fmt: skip
    result = finetune_file(
        model_path, output, image, labels.array, record, options,
        name=name, volume_name=str(args.image),
        replay=[(im, lab.array) for im, lab in replay],
        progress=TerminalProgress("finetune", quiet=args.quiet or args.json),
    )  # fmt: skip
    training = result.meta.training
    if args.json:
        print_json({"model": str(result.path), "name": result.meta.name, "parent": result.meta.parent, "training": training,
                    "final_loss": result.history[-1]["loss"]})  # fmt: skip
    else:
        print(f"{result.meta.parent} fine-tuned on {len(record)} slices ({record.spec()}): {training['iterations']} iterations "
              f"in {training['seconds']:.1f} s, final loss {result.history[-1]['loss']:.4f} -> {result.path}")  # fmt: skip
    return 0
