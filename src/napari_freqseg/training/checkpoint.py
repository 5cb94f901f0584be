"""Training checkpoints: one file written atomically, loaded without executing code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..io.atomic import write_atomically
from .config import Config, ConfigError

#: [train] keys that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("device", "amp", "val_every", "checkpoint_every", "log_every")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, then rename: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, ".pt", lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's tensors and plain values (weights_only: no code is run)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise ConfigError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None


def fingerprint(cfg: Config) -> str:
    """What must not change when a run is resumed (data, model, objective, schedule, seed)."""
    raw = json.loads(json.dumps(cfg.raw, default=str))
    train = {k: v for k, v in raw.get("train", {}).items() if k not in RESUMABLE_CHANGES}
    data = {k: v for k, v in raw.get("data", {}).items() if k not in ("num_workers", "cache_dir", "cohort")}
    keep = {
        "seed": raw.get("seed", 0),
        "data": data,
        "model": raw.get("model", {}),
        "train": train,
        "components": raw.get("components", {}),
    }
    return json.dumps(keep, sort_keys=True)
