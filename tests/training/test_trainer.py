"""The training loop end to end on a tiny cohort: learning, resume, checkpoints, log, model file, CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_cohort import make_config

from napari_freqseg.cli import main
from napari_freqseg.errors import CancelledError
from napari_freqseg.models.modelfile import load_model
from napari_freqseg.training import checkpoint as checkpoint_module
from napari_freqseg.training.config import ConfigError
from napari_freqseg.training.trainer import CHECKPOINT, train


def mt_table(tiny_table: dict) -> dict:
    t = copy.deepcopy(tiny_table)
    t["data"]["unlabeled"] = {"site": "a", "split": "train"}
    t["components"]["mean_teacher"] = {"warmup": 0.0, "rampup": 0.5, "threshold": 0.5}
    t["train"]["val_model"] = "teacher"
    return t


def log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_supervised_training_learns_the_blobs(tiny_table: dict, tmp_path: Path) -> None:
    t = copy.deepcopy(tiny_table)
    t["model"]["n_filters"] = 4
    t["train"].update(iterations=60, val_every=30, checkpoint_every=30, log_every=10, lr=0.02)
    result = train(make_config(t, tmp_path), tmp_path / "run")
    records = log(tmp_path / "run")
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    assert result.best_dice is not None and result.best_dice > 0.8
    assert result.best_iteration in (30, 60)
    vals = [r for r in records if "val" in r]
    assert [r["iter"] for r in vals] == [30, 60] and max(r["val"]["dice"] for r in vals) == result.best_dice


def test_best_model_file_carries_its_provenance(tiny_table: dict, tmp_path: Path) -> None:
    t = copy.deepcopy(tiny_table)
    t["data"]["spacing"] = [2.0, 2.0, 2.0]
    t["data"]["normalization"] = {"method": "zscore", "region": "all", "clip": [0.5, 99.5]}
    result = train(make_config(t, tmp_path), tmp_path / "run", command="freqseg train tiny.toml")
    net, meta = load_model(result.best_model)
    assert meta.name == "tiny" and meta.architecture == "vnet" and meta.arch_args["n_filters"] == 2
    assert meta.classes == ["background", "blob"] and meta.spacing == [2.0, 2.0, 2.0] and meta.orientation == "LPS"
    assert meta.normalization == {"method": "zscore", "region": "all", "clip": [0.5, 99.5]}
    assert meta.patch_size == [16, 32, 32]
    assert meta.training["labeled_cases"] == ["a0", "a1"] and meta.training["method"] == ["supervised"]
    assert meta.training["command"] == "freqseg train tiny.toml" and meta.training["config"]["seed"] == 3
    assert meta.metrics["val_dice"] == result.best_dice and set(meta.metrics["val_cases"]) == {"a3"}
    best_state = load_file(result.best_model)
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    if result.best_iteration == 4:  # the best is the last: the same weights as the final checkpoint
        assert all(torch.equal(best_state[k], ckpt["student"][k]) for k in best_state)


def test_resume_continues_exactly(tiny_table: dict, tmp_path: Path) -> None:
    t = mt_table(tiny_table)
    t["components"]["frequency"] = {"warmup": 0.0, "threshold": 0.5, "stochastic": True}  # state: F-ASE, styles
    t["train"].update(iterations=6, val_every=2, checkpoint_every=4)
    cfg = make_config(t, tmp_path)
    straight = train(cfg, tmp_path / "straight")

    stop = {"now": False}

    def progress(done: int, total: int, message: str) -> None:
        stop["now"] = done >= 3

    with pytest.raises(CancelledError, match="cancelled at iteration 3"):
        train(cfg, tmp_path / "resumed", progress=progress, cancelled=lambda: stop["now"])
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)["iteration"] == 3
    with open(tmp_path / "resumed" / "log.jsonl", "a") as fh:
        fh.write('{"iter": 4, "lo')  # a line cut short by a crash
    resumed = train(cfg, tmp_path / "resumed", resume=True)

    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)
    assert a["iteration"] == b["iteration"] == 6
    for part in ("student", "teacher"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert torch.equal(a["components"]["frequency"]["reliance"], b["components"]["frequency"]["reliance"])
    assert resumed.best_dice == straight.best_dice and resumed.best_iteration == straight.best_iteration
    # The log has each iteration once, and the same values as the uninterrupted run.
    la, lb = log(tmp_path / "straight"), log(tmp_path / "resumed")
    key = lambda r: (r["iter"], "val" in r, "loss" in r, "end" in r)  # noqa: E731
    assert sorted(map(key, la)) == sorted(map(key, lb))
    assert [r["loss"] for r in la if "loss" in r] == [r["loss"] for r in lb if "loss" in r]


def test_runs_refuse_to_clobber_or_mix(tiny_table: dict, tmp_path: Path) -> None:
    cfg = make_config(tiny_table, tmp_path)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(cfg, tmp_path / "run", resume=True)
    train(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, tmp_path / "run")
    changed = copy.deepcopy(tiny_table)
    changed["train"]["lr"] = 0.5
    with pytest.raises(ConfigError, match="config differs from the interrupted run"):
        train(make_config(changed, tmp_path), tmp_path / "run", resume=True)
    cohort = Path(tiny_table["data"]["cohort"])
    other = cohort.with_name("moved.csv")  # the cohort file may move, its cases may not change
    other.write_text(cohort.read_text().replace("\na0,", "\na9,"))
    changed = copy.deepcopy(tiny_table)
    changed["data"]["cohort"] = str(other)
    with pytest.raises(ConfigError, match="the labeled cases differ from the interrupted run's"):
        train(make_config(changed, tmp_path), tmp_path / "run", resume=True)
    changed = copy.deepcopy(tiny_table)
    changed["train"]["val_every"] = 1  # allowed to change on resume
    assert train(make_config(changed, tmp_path), tmp_path / "run", resume=True).iterations == 4


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint_module.save_checkpoint(path, {"iteration": 1, "w": torch.ones(3)})

    def broken_save(obj: object, f: str) -> None:
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint_module.save_checkpoint(path, {"iteration": 2, "w": torch.zeros(3)})
    assert checkpoint_module.load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        checkpoint_module.load_checkpoint(path)


@pytest.mark.parametrize("setting", ["ssl", "uda", "semi_dg", "mixed"])
def test_each_setting_trains(setting: str, tiny_table: dict, tmp_path: Path) -> None:
    t = mt_table(tiny_table)
    t["train"].update(iterations=2, val_every=2)
    d = t["data"]
    if setting == "uda":
        d.update(labeled={"site": "a"}, unlabeled={"site": "b", "split": "train"}, val={"site": "b", "split": "val"})
    elif setting == "semi_dg":
        d.update(labeled={"site": ["a", "b"], "first": 1, "per_site": True}, unlabeled={"site": ["a", "b"]}, val={"site": "c"})
    elif setting == "mixed":
        d.update(labeled={"site": "a", "first": 1}, unlabeled={"split": "train"})
    result = train(make_config(t, tmp_path), tmp_path / setting)
    start = log(tmp_path / setting)[0]["start"]
    assert result.best_dice is not None and 0.0 <= result.best_dice <= 1.0
    expected = {"ssl": (2, 1, 1), "uda": (4, 3, 1), "semi_dg": (2, 6, 4), "mixed": (1, 8, 1)}[setting]
    assert (start["labeled"], start["unlabeled"], start["val"]) == expected
    _, meta = load_model(result.last_model)
    assert meta.training["validated_model"] == "teacher"


def write_toml(path: Path, cohort: Path, cache: Path, extra: str = "") -> Path:
    path.write_text(
        f'name = "cli"\n[data]\ncohort = "{cohort}"\ncache_dir = "{cache}"\nclasses = ["background", "blob"]\n'
        'patch_size = [16, 32, 32]\nlabeled = {site = "a", first = 2}\nval = {site = "a", split = "val"}\n'
        "[model]\nn_filters = 2\n[train]\niterations = 50\nval_every = 2\nlog_every = 1\n"
        f"[components.supervised]\n{extra}"
    )
    return path


def test_cli_train(cohort_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_toml(tmp_path / "cli.toml", cohort_csv, tmp_path / "cache")
    out = tmp_path / "out"
    assert main(["train", str(cfg), "--out", str(out), "--iterations", "2", "--device", "cpu", "--json", "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["iterations"] == 2 and Path(info["best_model"]).is_file()
    _, meta = load_model(info["best_model"])
    assert meta.training["command"] == f"freqseg train {cfg} --iterations 2"
    assert main(["train", str(cfg), "--out", str(out), "--iterations", "2", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("freqseg train: error:") and "already holds a run" in err and "\n" not in err
    bad = write_toml(tmp_path / "bad.toml", cohort_csv, tmp_path / "cache", "wieght = 2\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "o2"), "--quiet"]) == 1
    assert "[components.supervised]: unknown key 'wieght' (did you mean 'weight'?)" in capsys.readouterr().err
    assert main(["train", str(cfg), "--out", str(tmp_path / "o3"), "--device", "cuda:x", "--quiet"]) == 1


def test_worker_processes_give_the_same_batches(tiny_table: dict, tmp_path: Path) -> None:
    t = copy.deepcopy(tiny_table)
    t["train"].update(iterations=2, val_every=0)
    del t["data"]["val"]
    runs = {}
    for workers in (0, 1):
        t["data"]["num_workers"] = workers
        train(make_config(t, tmp_path), tmp_path / f"w{workers}")
        runs[workers] = torch.load(tmp_path / f"w{workers}" / CHECKPOINT, weights_only=True)["student"]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_device_and_autocast_choice() -> None:
    from napari_freqseg.training.trainer import amp_dtype, choose_device

    cuda = torch.device("cuda", 0)
    assert amp_dtype("bf16", cuda) == torch.bfloat16 and amp_dtype("fp16", cuda) == torch.float16
    assert amp_dtype("none", cuda) is None and amp_dtype("bf16", torch.device("cpu")) is None
    assert choose_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert choose_device("auto", local_rank=0).type == "cuda"
    else:
        assert choose_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match=r"\[train\] device = 'cuda:1': CUDA was asked for but is not available"):
            choose_device("cuda:1")


def test_input_gradient_comes_from_the_first_backward_pass(tiny_table: dict, tmp_path: Path) -> None:
    """A component that uses input gradients sees dL/dx of the other components' loss, at the
    student's weights before the step; the step adds both passes' parameter gradients."""
    from napari_freqseg.training.components import StepContext
    from napari_freqseg.training.trainer import Trainer

    t = mt_table(tiny_table)
    t["components"]["mean_teacher"] = {"warmup": 0.0, "rampup": 0.0, "threshold": 0.0}
    seen: dict[str, torch.Tensor] = {}

    class Probe:
        name = "probe"
        uses_input_gradient = True

        def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
            seen.update({k: v.clone() for k, v in ctx.input_grad.items()})
            seen["grads"] = torch.cat([p.grad.flatten() for p in ctx.student.parameters() if p.grad is not None]).clone()
            return ctx.x_l.new_zeros(()), {}

    trainer = Trainer(make_config(t, tmp_path), tmp_path / "run")
    trainer.prepare()
    trainer.components.append(Probe())
    batch = trainer.sampler.batch(0)
    before = copy.deepcopy(trainer.student)
    teacher = copy.deepcopy(trainer.teacher)
    trainer.step(5, batch)
    # The same loss computed by hand, with the same seeds, at the weights before the step.
    from napari_freqseg.training.trainer import iteration_seed

    torch.manual_seed(iteration_seed(3, 5, 0))
    x_l, x_u = batch["x_l"].clone().requires_grad_(True), batch["x_u"].clone().requires_grad_(True)
    ctx = StepContext(
        iteration=5, total_iterations=4, student=before, teacher=teacher, n_classes=2, x_l=x_l, y_l=batch["y_l"], x_u=x_u
    )
    total = sum(c.loss(ctx)[0] for c in trainer.components[:-1])
    total.backward()
    assert torch.allclose(seen["l"], x_l.grad, atol=1e-6) and torch.allclose(seen["u"], x_u.grad, atol=1e-6)
    assert seen["l"].abs().sum() > 0 and seen["u"].abs().sum() > 0
    assert seen["grads"].abs().sum() > 0  # the first pass's parameter gradients were already there


def test_train_cli_seed_and_init_overrides(tiny_table: dict, tmp_path: Path) -> None:
    first = train(make_config(tiny_table, tmp_path), tmp_path / "first")
    cfg = make_config(tiny_table, tmp_path).with_start(seed=7, init=first.last_model)
    assert cfg.seed == 7 and cfg.model.init == first.last_model.resolve() and cfg.raw["seed"] == 7
    second = train(cfg, tmp_path / "second")
    _, meta = load_model(second.last_model)
    assert meta.training["seed"] == 7 and meta.parent == "tiny"
    with pytest.raises(ConfigError, match="does not exist"):
        make_config(tiny_table, tmp_path).with_start(init=tmp_path / "missing.safetensors")


def test_validation_predicts_like_segment(tmp_path: Path) -> None:
    """Training validation and `freqseg segment` share one sliding window: same probabilities."""
    import numpy as np

    from napari_freqseg.inference.predict import make_predictor
    from napari_freqseg.inference.window import sliding_window
    from napari_freqseg.models.vnet import VNet
    from napari_freqseg.training.validate import predict_array

    torch.manual_seed(0)
    net = VNet(n_filters=2, normalization="instance").train()
    x = np.random.default_rng(0).normal(size=(20, 40, 36)).astype(np.float32)
    ours = predict_array(net, x, (16, 32, 32), torch.device("cpu"))
    assert net.training  # given back in its own mode
    with torch.no_grad():
        net.eval()
        segment = sliding_window(make_predictor(net, torch.device("cpu"), None, False), torch.from_numpy(x)[None], (16, 32, 32))
    np.testing.assert_allclose(ours, segment.numpy(), atol=1e-6)


def test_ctrl_c_during_a_step_checkpoints_after_it_and_resumes_exactly(tiny_table: dict, tmp_path: Path, monkeypatch) -> None:
    """SIGINT in the middle of step 2: the step finishes, the checkpoint holds iteration 3, and the
    resumed run ends where an uninterrupted one does."""
    import os
    import signal

    from napari_freqseg.training import trainer as trainer_module

    t = mt_table(tiny_table)
    t["train"].update(iterations=6, val_every=3, checkpoint_every=6)
    cfg = make_config(t, tmp_path)
    train(cfg, tmp_path / "straight")
    real_step = trainer_module.Trainer.step

    def step(self, iteration: int, batch: dict) -> dict:
        if iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the step runs
        return real_step(self, iteration, batch)

    monkeypatch.setattr(trainer_module.Trainer, "step", step)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, tmp_path / "resumed")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back
    finally:
        signal.signal(signal.SIGINT, outer)
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)["iteration"] == 3
    monkeypatch.setattr(trainer_module.Trainer, "step", real_step)
    train(cfg, tmp_path / "resumed", resume=True)
    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)
    assert all(torch.equal(a["student"][k], b["student"][k]) for k in a["student"])
