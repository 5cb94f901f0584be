"""The training loop: data, student (and EMA teacher), the sum of the enabled components,
AdamW with a one-cycle or poly schedule, validation with best-model saving, checkpoints, JSONL log.

`train(cfg, out_dir, ...)` runs on CPU, one GPU (optionally with bf16/fp16 autocast) or several
processes started by torchrun (see distributed.py). Everything random is reseeded each iteration
from (seed, iteration, rank), so a run resumed from a checkpoint continues exactly as if it had
never stopped.
"""

from __future__ import annotations

import copy
import json
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CancelledError, FreqsegError, ResourceError
from ..harmonize import StyleAccumulator
from ..inference.device import amp_dtype as inference_amp_dtype
from ..inference.device import resolve_device
from ..io.atomic import write_atomically
from ..models.modelfile import ModelMeta, build_network, load_model, read_meta, save_model
from .checkpoint import fingerprint, load_checkpoint, save_checkpoint
from .components import Component, StepContext
from .config import Config, ConfigError
from .data import PatchSampler, Roles, assign_roles, batch_loader, cohort_cases, prepare_cases
from .distributed import DistInfo, average_gradients, barrier, broadcast_module, init_distributed, shutdown
from .registry import TrainSetup, build_components
from .validate import validate

ProgressFn = Callable[[int, int, str], None]
CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
BEST = "best.safetensors"
LAST = "last.safetensors"


@dataclass
class TrainResult:
    out_dir: Path
    best_model: Path | None
    last_model: Path
    best_dice: float | None
    best_iteration: int | None
    iterations: int


def choose_device(name: str, local_rank: int = 0) -> torch.device:
    """The product's device choice (`inference.device.resolve_device`); a bare 'cuda' becomes this
    rank's GPU when several processes train."""
    try:
        device = resolve_device(name)
    except ResourceError as exc:
        raise ConfigError(f"[train] device = {name!r}: {exc}") from None
    return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for [train] amp: training autocasts on CUDA only; 'auto' prefers bf16 (no loss
    scaling needed) where the GPU has it; explicit 'bf16'/'fp16' as `inference.device.amp_dtype`."""
    if device.type != "cuda" or mode == "none":
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return inference_amp_dtype(device, mode)


def iteration_seed(seed: int, iteration: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, iteration, rank]).generate_state(1)[0])


def make_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    t = cfg.train
    if t.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=t.lr, total_steps=t.iterations, pct_start=max(t.warmup, 1e-6), anneal_strategy="cos"
        )
    if t.schedule == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=t.iterations, power=0.9)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def ema_update(teacher: nn.Module, student: nn.Module, decay: float, iteration: int) -> None:
    """teacher ← α·teacher + (1-α)·student with α = min(1 - 1/(iteration+1), decay) (UA-MT)."""
    alpha = min(1.0 - 1.0 / (iteration + 1), decay)
    with torch.no_grad():
        for t, s in zip(teacher.parameters(), student.parameters()):
            t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)
        for t, s in zip(teacher.buffers(), student.buffers()):
            t.copy_(s)


class Trainer:
    """One training run (see module docstring). Use `train()` for the one-call form."""

    def __init__(
        self,
        cfg: Config,
        out_dir: Path,
        command: str = "",
        progress: ProgressFn | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.command = command
        self.progress = progress
        self.cancelled = cancelled
        self.dist = DistInfo()

    # --- setup ---------------------------------------------------------------------------------

    def prepare(self, resume: bool = False) -> None:
        cfg = self.cfg
        use_cuda = cfg.train.device.startswith("cuda") or (cfg.train.device == "auto" and torch.cuda.is_available())
        self.dist = init_distributed(use_cuda)
        self.device = choose_device(cfg.train.device, self.dist.local_rank)
        self.amp = amp_dtype(cfg.train.amp, self.device)
        div = 16
        if any(p % div for p in cfg.data.patch_size):
            raise ConfigError(f"[data] patch_size {list(cfg.data.patch_size)} must be multiples of {div} for a V-Net")
        ckpt = self.out / CHECKPOINT
        if self.dist.main:
            if resume and not ckpt.is_file():
                raise ConfigError(f"{self.out}: nothing to resume (no {CHECKPOINT})")
            if not resume and ckpt.is_file():
                raise ConfigError(f"{self.out} already holds a run: resume it with --resume or choose another --out")
            self.out.mkdir(parents=True, exist_ok=True)
        self.roles = self._data()
        self._build()

    def _data(self) -> Roles:
        cfg = self.cfg
        n = len(cfg.data.classes)
        roles = assign_roles(cohort_cases(cfg.data), cfg.data)
        every = roles.labeled + roles.unlabeled + roles.val
        if self.dist.main:  # rank 0 fills the cache; the others then read it
            prepare_cases(every, cfg.data, n, self._prep_progress, self.cancelled)
        barrier(self.dist)
        prepared = prepare_cases(every, cfg.data, n)
        nl, nu = len(roles.labeled), len(roles.unlabeled)
        self.labeled, self.unlabeled, self.val_cases = prepared[:nl], prepared[nl : nl + nu], prepared[nl + nu :]
        self.sampler = PatchSampler(
            self.labeled,
            self.unlabeled,
            cfg.data,
            cfg.train.batch_labeled,
            cfg.train.batch_unlabeled,
            cfg.seed,
            roles.sites,
            self.dist.rank,
            self.dist.world,
        )
        return roles

    def _prep_progress(self, done: int, total: int, message: str) -> None:
        if self.progress is not None:
            self.progress(0, self.cfg.train.iterations, f"{message} ({done}/{total})")

    def _meta(self) -> ModelMeta:
        cfg = self.cfg
        return ModelMeta(
            name=cfg.name,
            architecture=cfg.model.architecture,
            arch_args=cfg.model.arch_args,
            classes=list(cfg.data.classes),
            normalization=cfg.data.normalization.to_dict(),
            spacing=list(cfg.data.spacing) if cfg.data.spacing else None,
            orientation=cfg.data.orientation,
            patch_size=list(cfg.data.patch_size),
            description=cfg.description,
            parent=getattr(self, "parent", None),
        )

    def _warm_start(self, path: Path) -> None:
        """Load the student's weights from a model file of the same architecture (the teacher, made
        from the student, starts from them too)."""
        network, meta = load_model(path)
        if meta.architecture != self.cfg.model.architecture or meta.arch_args != self.cfg.model.arch_args:
            raise ConfigError(
                f"[model] init {path.name} is a {meta.architecture} {meta.arch_args}, not the configured "
                f"{self.cfg.model.architecture} {self.cfg.model.arch_args}"
            )
        if meta.classes != list(self.cfg.data.classes):
            raise ConfigError(f"[model] init {path.name} segments {meta.classes}, not {list(self.cfg.data.classes)}")
        self.student.load_state_dict(network.state_dict())
        self.parent = meta.name

    def _build(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.student = build_network(self._meta()).to(self.device).train()
        if cfg.model.init is not None:
            self._warm_start(cfg.model.init)
        broadcast_module(self.student, self.dist)

        def make_teacher() -> nn.Module:
            teacher = copy.deepcopy(self.student).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
            return teacher

        self.setup = TrainSetup(
            n_classes=len(cfg.data.classes),
            student=self.student,
            feature_channels=int(getattr(self.student, "feature_channels", 0)),
            total_iterations=cfg.train.iterations,
            patch_size=tuple(cfg.data.patch_size),
            device=self.device,
            sites=self.roles.sites,
            spacing=tuple(cfg.data.spacing[::-1]) if cfg.data.spacing else None,
            seed=cfg.seed,
            make_teacher=make_teacher,
        )
        self.components: list[Component] = build_components(cfg.components, self.setup)
        self.teacher = self.setup.teacher
        if cfg.train.val_model == "teacher" and self.teacher is None:
            raise ConfigError("[train] val_model = 'teacher', but no enabled component uses a teacher")
        # Components may train modules of their own (e.g. BFA's boundary head): optimise, clip and
        # all-reduce them with the student.
        self.trained = nn.ModuleList(
            [self.student] + [m for c in self.components for m in getattr(c, "modules_to_train", list)()]
        )
        self.optimizer = torch.optim.AdamW(self.trained.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.scheduler = make_scheduler(cfg, self.optimizer)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        self.start = 0
        self.best: dict[str, Any] = {"dice": None, "iteration": None}
        self.last_val: dict[str, Any] | None = None

    # --- checkpoints ---------------------------------------------------------------------------

    def _state(self, iteration: int) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "fingerprint": fingerprint(self.cfg),
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "components": {c.name: c.state_dict() for c in self.components if hasattr(c, "state_dict")},
            "best": dict(self.best),
            "cases": self._cases(),
        }

    def _cases(self) -> dict[str, list[str]]:
        """The case IDs of each role: a resumed run must train on the same data (the cohort file may move)."""
        return {role: [c.case_id for c in getattr(self.roles, role)] for role in ("labeled", "unlabeled", "val")}

    def _save_checkpoint(self, iteration: int) -> None:
        if self.dist.main:
            save_checkpoint(self.out / CHECKPOINT, self._state(iteration))

    def _restore(self) -> None:
        state = load_checkpoint(self.out / CHECKPOINT)
        if state.get("fingerprint") != fingerprint(self.cfg):
            raise ConfigError(
                f"{self.out}: the config differs from the interrupted run's (only {', '.join(('device', 'amp', 'val_every', 'checkpoint_every', 'log_every', 'num_workers'))} may change)"
            )
        if "cases" in state and state["cases"] != self._cases():
            role = next(r for r in ("labeled", "unlabeled", "val") if state["cases"].get(r) != self._cases()[r])
            raise ConfigError(
                f"{self.out}: the {role} cases differ from the interrupted run's (its cohort changed); start a new run"
            )
        self.student.load_state_dict(state["student"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for c in self.components:
            if hasattr(c, "load_state_dict") and c.name in state["components"]:
                c.load_state_dict(state["components"][c.name])
        self.best = dict(state["best"])
        self._best_from_file()
        self.start = int(state["iteration"])

    def _best_from_file(self) -> None:
        """best.safetensors may be newer than the checkpoint (validated after it, then interrupted):
        its score is the one a later validation must beat."""
        try:
            meta = read_meta(self.out / BEST)
            dice, iteration = float(meta.metrics["val_dice"]), int(meta.training["iteration"])
        except (FreqsegError, KeyError, TypeError, ValueError):
            return
        if self.best["dice"] is None or dice > self.best["dice"]:
            self.best = {"dice": dice, "iteration": iteration}

    # --- log -----------------------------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        if self.dist.main:
            with open(self.out / LOG, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _trim_log(self) -> None:
        """On resume, drop records written after the checkpoint (they will be written again)."""
        path = self.out / LOG
        if not self.dist.main or not path.is_file():
            return
        kept = [ln for ln in path.read_text().splitlines() if _iteration_of(ln) <= self.start]
        write_atomically(path, ".jsonl", lambda tmp: Path(tmp).write_text("".join(ln + "\n" for ln in kept)))

    # --- the loop ------------------------------------------------------------------------------

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else nullcontext()

    def step(self, iteration: int, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimizer step on one batch; returns the logged values."""
        torch.manual_seed(iteration_seed(self.cfg.seed, iteration, self.dist.rank))
        b = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        ctx = StepContext(
            iteration=iteration,
            total_iterations=self.cfg.train.iterations,
            student=self.student,
            teacher=self.teacher,
            n_classes=len(self.cfg.data.classes),
            x_l=b["x_l"],
            y_l=b["y_l"],
            x_u=b.get("x_u"),
            raw_l=b["raw_l"],
            raw_u=b.get("raw_u"),
            stats_l=b["stats_l"],
            stats_u=b.get("stats_u"),
            site_l=b["site_l"],
            site_u=b.get("site_u"),
        )
        self.optimizer.zero_grad(set_to_none=True)
        logged: dict[str, float] = {}
        late = [c for c in self.components if getattr(c, "uses_input_gradient", False)]
        if late:  # their inputs' gradient comes from the first backward pass, at no extra network cost
            ctx.x_l = ctx.x_l.detach().requires_grad_(True)
            if ctx.x_u is not None:
                ctx.x_u = ctx.x_u.detach().requires_grad_(True)
        total = self._backward([c for c in self.components if c not in late], ctx, logged)
        if late:
            ctx.input_grad = {"l": ctx.x_l.grad, "u": ctx.x_u.grad if ctx.x_u is not None else None}
            ctx.x_l = ctx.x_l.detach()
            ctx.x_u = ctx.x_u.detach() if ctx.x_u is not None else None
            ctx.cache = {k: v for k, v in ctx.cache.items() if not (torch.is_tensor(v) and v.requires_grad)}
            total = total + self._backward(late, ctx, logged)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        average_gradients(self.trained, self.dist)
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.trained.parameters(), self.cfg.train.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.teacher is not None:
            ema_update(self.teacher, self.student, self.cfg.train.ema_decay, iteration)
        for comp in self.components:
            if hasattr(comp, "after_step"):
                comp.after_step(ctx)
        logged["loss"] = total.item()
        return logged

    def _backward(self, components: list[Component], ctx: StepContext, logged: dict[str, float]) -> torch.Tensor:
        """Sum the components' losses and backpropagate them (gradients accumulate); the detached sum."""
        with self._autocast():
            total = ctx.x_l.new_zeros(())
            for comp in components:
                value, extra = comp.loss(ctx)
                total = total + value
                logged[comp.name] = value.item()
                logged.update(extra)
        if total.requires_grad:
            (self.scaler.scale(total) if self.scaler is not None else total).backward()
        return total.detach()

    def _validate(self, iteration: int) -> None:
        if self.dist.main:
            t0 = time.monotonic()
            net = self.teacher if self.cfg.train.val_model == "teacher" else self.student
            result = validate(
                net,
                self.val_cases,
                len(self.cfg.data.classes),
                tuple(self.cfg.data.patch_size),
                self.device,
                self.cfg.train.val_overlap,
                self.cfg.train.keep_largest_component,
                self.amp,
            )
            self.last_val = result
            improved = self.best["dice"] is None or result["dice"] > self.best["dice"]
            if improved:
                self.best = {"dice": result["dice"], "iteration": iteration}
                save_model(self.out / BEST, net, self._meta_trained(iteration, result))
            self._log({"iter": iteration, "val": result, "best": improved, "val_seconds": round(time.monotonic() - t0, 2)})
        barrier(self.dist)

    def _meta_trained(self, iteration: int, val: dict[str, Any] | None) -> ModelMeta:
        cfg = self.cfg
        meta = self._meta()
        n_l, n_u = len(self.roles.labeled), len(self.roles.unlabeled)
        meta.training = {
            "method": [name for name, t in cfg.components.items() if t.get("enabled", True)],
            "config": json.loads(json.dumps(cfg.raw, default=str)),
            "cohort": cfg.data.cohort.name,
            "labeled_cases": [c.case_id for c in self.roles.labeled],
            "unlabeled_cases": len(self.roles.unlabeled),
            "labeled_fraction": round(n_l / max(1, n_l + n_u), 4),
            "sites": self.roles.sites,
            "iteration": iteration,
            "iterations": cfg.train.iterations,
            "validated_model": cfg.train.val_model if self.teacher is not None else "student",
            "seed": cfg.seed,
            "command": self.command,
        }
        if val is not None:
            meta.metrics = {
                "val_dice": val["dice"],
                "val_cases": val["cases"],
                "val_cohort": [c.ref.case_id for c in self.val_cases],
            }
        meta.style = self._training_style()
        return meta

    def _training_style(self) -> dict[str, Any]:
        """The style of the training inputs (labeled and unlabeled), for harmonising scans later."""
        if getattr(self, "_style", None) is None:
            acc = StyleAccumulator(self.cfg.data.patch_size, seed=self.cfg.seed)
            for case in [*self.labeled, *self.unlabeled]:
                acc.add(case.x)
            self._style = acc.result().to_dict()
        return self._style

    def run(self, resume: bool = False) -> TrainResult:
        try:
            self.prepare(resume)
            if resume:
                self._restore()
                self._trim_log()
            else:
                self._log(
                    {
                        "iter": 0,
                        "start": {
                            "name": self.cfg.name,
                            "labeled": len(self.labeled),
                            "unlabeled": len(self.unlabeled),
                            "val": len(self.val_cases),
                            "world": self.dist.world,
                            "device": str(self.device),
                            "amp": str(self.amp).replace("torch.", "") if self.amp else "none",
                        },
                    }
                )
            return self._loop()
        finally:
            shutdown(self.dist)

    def _loop(self) -> TrainResult:
        t = self.cfg.train
        total = t.iterations
        sums: dict[str, float] = {}
        count, t0 = 0, time.monotonic()
        it = self.start
        with _DeferredInterrupt() as interrupt:
            for batch in batch_loader(self.sampler, self.start, total, self.cfg.data.num_workers):
                if self.cancelled is not None and self.cancelled():
                    self._save_checkpoint(it)
                    raise CancelledError(f"training cancelled at iteration {it} (resume with --resume)")
                logged = self.step(it, batch)  # a Ctrl-C meanwhile is answered after the step, below
                it += 1
                for k, v in logged.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                if it % t.log_every == 0 or it == total:
                    sec = (time.monotonic() - t0) / count
                    self._log(
                        {
                            "iter": it,
                            "lr": self.scheduler.get_last_lr()[0],
                            "sec_per_iter": round(sec, 4),
                            **{k: round(v / count, 6) for k, v in sums.items()},
                        }
                    )
                    sums, count, t0 = {}, 0, time.monotonic()
                if self.val_cases and t.val_every and (it % t.val_every == 0 or it == total):
                    self._validate(it)
                if (t.checkpoint_every and it % t.checkpoint_every == 0) or it == total:
                    self._save_checkpoint(it)
                if self.progress is not None:
                    best = self.best["dice"]
                    self.progress(
                        it, total, f"loss {logged['loss']:.3f}" + (f" best val dice {best:.3f}" if best is not None else "")
                    )
                if interrupt.requested:  # the step is whole: its checkpoint resumes exactly
                    self._save_checkpoint(it)
                    raise KeyboardInterrupt
        last = self.out / LAST
        if self.dist.main:
            net = self.teacher if (t.val_model == "teacher" and self.teacher is not None) else self.student
            save_model(last, net, self._meta_trained(total, self.last_val))
            self._log({"iter": total, "end": {"best_dice": self.best["dice"], "best_iteration": self.best["iteration"]}})
        best = self.out / BEST
        return TrainResult(self.out, best if best.is_file() else None, last, self.best["dice"], self.best["iteration"], total)


def train(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = False,
    command: str = "",
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train as `cfg` says into `out_dir` (checkpoint.pt, log.jsonl, best/last .safetensors)."""
    return Trainer(cfg, Path(out_dir), command, progress, cancelled).run(resume)


def _iteration_of(line: str) -> float:
    """A log line's iteration; a line cut short by a crash (not JSON) counts as after every checkpoint."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return float("inf")
    return float(record.get("iter", 0)) if isinstance(record, dict) else float("inf")


class _DeferredInterrupt:
    """Ctrl-C (SIGINT) during training: noted, and answered between steps, so the checkpoint written
    then holds a whole step (a step cut in the middle may have updated a component's state or the
    optimiser). A second Ctrl-C stops at once, keeping the last periodic checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _DeferredInterrupt:
        # only where Ctrl-C would stop us anyway: a process that ignores SIGINT (a background job) keeps ignoring it
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
