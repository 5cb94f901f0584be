"""`freqseg train CONFIG.toml`: train a model as a config says (resumable; see docs/methods.md)."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from ._common import TerminalProgress, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a segmentation model from a TOML config (semi-supervised methods)")
    p.add_argument("config", help="training config (.toml), e.g. configs/la_mt.toml")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out from its checkpoint")
    p.add_argument("--device", help="override [train] device: auto, cpu, cuda, cuda:N")
    p.add_argument("--iterations", type=int, metavar="N", help="override [train] iterations")
    p.add_argument("--seed", type=int, metavar="N", help="override the config's seed")
    p.add_argument("--init", metavar="MODEL", help="override [model] init: start from this model file's weights")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.config import load_config
    from ..training.trainer import train

    cfg = load_config(args.config).with_overrides(device=args.device, iterations=args.iterations)
    cfg = cfg.with_start(seed=args.seed, init=args.init)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    given = [("--iterations", args.iterations), ("--seed", args.seed), ("--init", args.init)]
    command = shlex.join(["freqseg", "train", args.config] + [s for flag, v in given if v is not None for s in (flag, str(v))])
    first_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    progress = TerminalProgress("train", quiet=args.quiet or not first_rank)
    result = train(cfg, out, resume=args.resume, command=command, progress=progress)
    if not first_rank:
        return 0
    info = {
        "out": str(result.out_dir),
        "best_model": str(result.best_model) if result.best_model else None,
        "best_val_dice": result.best_dice,
        "best_iteration": result.best_iteration,
        "last_model": str(result.last_model),
        "iterations": result.iterations,
    }
    if args.json:
        print_json(info)
    else:
        best = (
            f"best val Dice {result.best_dice:.4f} at iteration {result.best_iteration}"
            if result.best_dice is not None
            else "no validation"
        )
        print(f"trained {result.iterations} iterations into {result.out_dir}: {best}")
    return 0
