"""Data-parallel training with two CPU processes (gloo), as torchrun would start them."""

from __future__ import annotations

import copy
import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from tiny_cohort import make_config

from napari_freqseg.training.distributed import DistInfo, average_gradients
from napari_freqseg.training.trainer import Trainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, table: dict, base: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    probe = torch.nn.Linear(2, 1)
    for p in probe.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    average_gradients(probe, DistInfo(rank=rank, world=world))
    torch.save([p.grad for p in probe.parameters()], Path(out) / f"grad{rank}.pt")
    trainer = Trainer(make_config(table, Path(base)), Path(out))
    trainer.run()  # uses the process group, trains, leaves the group
    torch.save(trainer.student.state_dict(), Path(out) / f"rank{rank}.pt")
    torch.save(trainer.teacher.state_dict(), Path(out) / f"teacher{rank}.pt")


def test_two_cpu_processes_stay_in_sync(tiny_table: dict, tmp_path: Path) -> None:
    t = copy.deepcopy(tiny_table)
    t["data"]["unlabeled"] = {"site": "a", "split": "train"}
    t["components"]["mean_teacher"] = {"warmup": 0.0, "threshold": 0.5}
    t["train"].update(iterations=4, batch_labeled=1, batch_unlabeled=1, val_every=2, checkpoint_every=2)
    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), t, str(tmp_path), str(out)), nprocs=2, join=True)
    for rank in range(2):  # the gradient all-reduce gives each rank the mean gradient
        assert all(torch.allclose(g, torch.full_like(g, 1.5)) for g in torch.load(out / f"grad{rank}.pt"))
    for name in ("rank", "teacher"):
        a, b = torch.load(out / f"{name}0.pt"), torch.load(out / f"{name}1.pt")
        assert all(torch.equal(a[k], b[k]) for k in a), name
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    initial = Trainer(make_config(t, tmp_path), tmp_path / "unused")
    initial.prepare()
    assert ckpt["iteration"] == 4
    assert not all(torch.equal(initial.student.state_dict()[k], ckpt["student"][k]) for k in ckpt["student"])
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[0]["start"]["world"] == 2
    assert [r["iter"] for r in records if "val" in r] == [2, 4]  # validated once (rank 0), not per rank
