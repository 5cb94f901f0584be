"""BFA and MiDSS through the real training loop on the tiny cohort: logs, checkpoints, exact resume."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from tiny_cohort import make_config

from napari_freqseg.errors import CancelledError
from napari_freqseg.training.trainer import CHECKPOINT, train

METHODS = {
    "bfa": {"warmup": 0.0, "rampup": 0.5},
    "midss": {"warmup": 0.0, "rampup": 0.5, "threshold": 0.6, "reliable_threshold": 0.5, "reliability_warmup": 0.0},
}


def method_table(tiny_table: dict, name: str) -> dict:
    t = copy.deepcopy(tiny_table)
    t["data"]["unlabeled"] = {"site": ["b", "c"], "split": "train"}  # other centres: mixed-domain
    t["components"][name] = dict(METHODS[name])
    t["train"].update(iterations=6, val_every=3, checkpoint_every=4)
    return t


@pytest.mark.parametrize("name", list(METHODS))
def test_method_trains_and_resumes_exactly(name: str, tiny_table: dict, tmp_path: Path) -> None:
    cfg = make_config(method_table(tiny_table, name), tmp_path)
    straight = train(cfg, tmp_path / "straight")
    records = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 6 and all(r[name] == r[name] for r in steps)  # logged and never NaN
    assert any(k.startswith(f"{name}_") for k in steps[-1])

    stop = {"now": False}

    def progress(done: int, total: int, message: str) -> None:
        stop["now"] = done >= 3

    with pytest.raises(CancelledError):
        train(cfg, tmp_path / "resumed", progress=progress, cancelled=lambda: stop["now"])
    resumed = train(cfg, tmp_path / "resumed", resume=True)

    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)
    for part in ("student", "teacher"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert name in a["components"]  # the component's state (head / queue, generator) is checkpointed
    assert torch.equal(a["components"][name]["generator"], b["components"][name]["generator"])
    assert resumed.best_dice == straight.best_dice
