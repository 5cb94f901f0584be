"""Fine-tune a model on the slices a person corrected in one scan (human in the loop).

Loss per iteration, on one patch around a corrected slice (see docs/methods.md, "Human in the
loop: fine-tuning"):
- sparse-slice supervision: CE + Dice on the model voxels of the corrected slices only
  (`training.sparse`);
- mean-teacher consistency on the rest of the patch: CE + Dice against the hard labels of an EMA
  teacher that starts as the original model, where it is confident (as the `mean_teacher`
  component, UA-MT); it keeps the model near its original predictions away from the corrections;
- optional replay: every `replay_every`-th iteration is a fully labeled patch of another volume
  (for example the model's own training data), against forgetting;
- optional weight-space ensembling (WiSE-FT, Wortsman et al. 2022): the result is the parent plus
  `mix` times the change the round made (`interpolate_weights`), against forgetting.
Batch norm keeps its running statistics (frozen: a batch of one patch would overwrite them) and
dropout is off, so the few steps follow the corrections instead of noise. Cancel raises
`CancelledError` between iterations; nothing is written unless the run completes.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..correction.edits import weak_labels
from ..correction.record import CorrectionRecord
from ..errors import CancelledError, CorrectionError, ModelError
from ..inference.device import amp_dtype, autocast, resolve_device
from ..inference.predict import check_model
from ..io.volume import Volume
from ..models.modelfile import ModelMeta, load_model, save_model
from ..models.registry import scan_site
from .finetune_options import MAX_PATCH, FinetuneOptions
from .losses import ce_dice
from .sparse import SparseTarget, sparse_slice_loss, sparse_target, volume_target

ProgressFn = Callable[[int, int, str], None]


@dataclass
class FinetuneResult:
    """The fine-tuned network (eval mode, CPU), its metadata and the loss of every iteration."""

    network: nn.Module
    meta: ModelMeta
    history: list[dict[str, float]] = field(default_factory=list)
    path: Path | None = None  # where finetune_file saved it

    @property
    def iterations(self) -> int:
        return len(self.history)


class StepMessage(str):
    """A progress message that also carries its iteration's numbers as `values`, so that listeners
    (the loss plot, the child process's JSON lines) read them instead of parsing text."""

    values: dict[str, float]

    def __new__(cls, text: str, values: Mapping[str, float]) -> StepMessage:
        message = super().__new__(cls, text)
        message.values = dict(values)
        return message


def format_step(iteration: int, loss: float, sliced: float, consistency: float) -> StepMessage:
    """The progress message of one iteration, with its numbers attached (`parse_step`)."""
    text = f"iteration {iteration}: loss {loss:.4f} (slices {sliced:.4f}, consistency {consistency:.4f})"
    return StepMessage(text, {"iteration": iteration, "loss": loss, "slices": sliced, "consistency": consistency})


def parse_step(message: str) -> dict[str, float] | None:
    """{'iteration', 'loss', 'slices', 'consistency'} of an iteration's progress message, or None
    for other messages (read from the message's values, not from its text)."""
    values = getattr(message, "values", None)
    return dict(values) if isinstance(values, dict) else None


def as_record(slices: CorrectionRecord | str | Mapping[str, Sequence[int]], shape: tuple[int, int, int]) -> CorrectionRecord:
    """A corrected-slice record of a volume of `shape` from a record, a spec 'z:12,40' or {'z': [12, 40]}."""
    if isinstance(slices, CorrectionRecord):
        if tuple(slices.shape) != tuple(shape):
            raise CorrectionError(f"the corrected slices are for a {slices.shape} volume, the scan is {tuple(shape)}")
        return slices
    try:
        if isinstance(slices, str):
            return CorrectionRecord.from_spec(shape, slices)
        record = CorrectionRecord(shape=shape)
        for axis, indices in slices.items():
            for index in indices:
                record.mark(axis, index)
        return record
    except ValueError as exc:
        raise CorrectionError(str(exc)) from None


def default_patch(meta: ModelMeta, network: nn.Module) -> tuple[int, int, int]:
    """The window the model segments with when it normalises per window (instance or group norm:
    a model tuned on other window statistics than it is used with gains less and forgets more);
    otherwise the model's patch capped at MAX_PATCH per axis, kept a multiple of the divisor."""
    if any(isinstance(m, nn.InstanceNorm3d | nn.GroupNorm) for m in network.modules()):
        return tuple(int(p) for p in meta.patch_size)  # type: ignore[return-value]
    div = int(getattr(network, "size_divisor", 1))
    cap = max(div, MAX_PATCH // div * div)
    return tuple(min(int(p), cap) for p in meta.patch_size)  # type: ignore[return-value]


def finetune_mode(network: nn.Module) -> nn.Module:
    """Training mode except for batch norm running statistics (frozen) and dropout (off)."""
    network.train()
    for m in network.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            m.eval()
        elif isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    return network


class _Patches:
    """Patches of one target, each holding a supervised voxel (a corrected foreground one with
    probability `foreground_fraction`) at a random position away from the patch border."""

    def __init__(self, target: SparseTarget, patch: tuple[int, int, int], foreground_fraction: float) -> None:
        pad = [(0, max(0, p - s)) for p, s in zip(patch, target.x.shape)]
        padded = any(b for _, b in pad)
        self.x = np.pad(target.x, pad, constant_values=float(target.x.min())) if padded else target.x
        self.weight = np.pad(target.weight, pad) if padded else target.weight
        self.target = np.pad(target.target, pad) if padded else target.target
        supervised = self.weight > 0
        self.anchors = np.flatnonzero(supervised)
        self.foreground = np.flatnonzero(supervised & (self.target > 0))
        self.patch = np.asarray(patch)
        self.fg_fraction = foreground_fraction

    def draw(self, rng: np.random.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x (1, 1, D, H, W), target (1, D, H, W) int64, weight (1, D, H, W)) on `device`."""
        pool = self.foreground if len(self.foreground) and rng.random() < self.fg_fraction else self.anchors
        anchor = np.array(np.unravel_index(pool[rng.integers(len(pool))], self.x.shape))
        p, shape = self.patch, np.array(self.x.shape)
        offset = rng.integers(p // 4, p - p // 4)
        start = np.clip(anchor - offset, 0, shape - p)
        sl = tuple(slice(int(a), int(a + q)) for a, q in zip(start, p))
        x = torch.from_numpy(np.ascontiguousarray(self.x[sl]))[None, None]
        y = torch.from_numpy(self.target[sl].astype(np.int64))[None]
        w = torch.from_numpy(np.ascontiguousarray(self.weight[sl]))[None]
        return x.to(device), y.to(device), w.to(device)


def _ema(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher ← decay·teacher + (1 - decay)·student, from the first step (the teacher starts as
    the original model and should stay near it; the trainer's warm-up formula would copy the student)."""
    with torch.no_grad():
        for t, s in zip(teacher.parameters(), student.parameters()):
            t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)


def consistency_loss(
    logits: torch.Tensor, x: torch.Tensor, teacher: nn.Module, outside: torch.Tensor, threshold: float, noise: float
) -> torch.Tensor:
    """CE + Dice of the student against the teacher's confident hard labels on the voxels `outside`
    the corrected slices (the `mean_teacher` component's 'pseudo' kind, restricted to them)."""
    with torch.no_grad():
        noisy = x + torch.clamp(torch.randn_like(x) * noise, -2 * noise, 2 * noise) if noise > 0 else x
        conf, pseudo = torch.softmax(teacher(noisy).float(), dim=1).max(dim=1)
        mask = ((conf >= threshold) & outside).float()
    ce, dice = ce_dice(logits, pseudo, mask, 0.5, 0.5)
    return ce + dice


class _Tuner:
    """The state of one fine-tuning run: student, EMA teacher, optimiser and patch sources."""

    def __init__(
        self, network: nn.Module, target: SparseTarget, replay: list[SparseTarget], patch: tuple[int, int, int],
        options: FinetuneOptions,
    ) -> None:  # fmt: skip
        self.options = options
        self.device = resolve_device(options.device)
        self.student = finetune_mode(copy.deepcopy(network).to(self.device))
        self.teacher = copy.deepcopy(network).to(self.device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.patches = _Patches(target, patch, options.foreground_fraction)
        self.replays = [_Patches(t, patch, 0.5) for t in replay]
        params = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=1e-4)
        self.rng = np.random.default_rng(options.seed)
        self.amp = finetune_amp(options.precision, self.device)
        torch.manual_seed(options.seed)

    def _finite(self, loss: torch.Tensor) -> bool:
        """Loss and every gradient finite (checked before the optimiser may spread a NaN)."""
        grads = [p.grad for p in self.student.parameters() if p.grad is not None]
        return bool(torch.isfinite(loss)) and all(bool(torch.isfinite(g).all()) for g in grads)

    def step(self, it: int) -> dict[str, float]:
        """One optimiser step on one patch (a replay patch every `replay_every`-th iteration)."""
        o = self.options
        use_replay = bool(self.replays) and it % o.replay_every == 0
        source = self.replays[int(self.rng.integers(len(self.replays)))] if use_replay else self.patches
        x, y, w = source.draw(self.rng, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            logits = self.student(x).float()
            sliced = sum(sparse_slice_loss(logits, y, w))
            if o.consistency_weight:
                cons = consistency_loss(logits, x, self.teacher, w == 0, o.threshold, o.noise)
            else:
                cons = sliced.new_zeros(())
        loss = sliced + o.consistency_weight * cons
        loss.backward()
        if self.amp is not None and not self._finite(loss):
            self.amp = None  # bfloat16 overflowed: this step again, and the rest of the round, in float32
            return self.step(it)
        self.optimizer.step()
        _ema(self.teacher, self.student, o.ema_decay)
        return {
            "iteration": it,
            "loss": loss.item(),
            "slices": sliced.item(),
            "consistency": cons.item(),
            "replay": float(use_replay),
        }


def finetune_amp(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype of a fine-tuning round: inference's choice (`amp_dtype`: bfloat16 where the CPU
    computes it natively), except that on CUDA 'auto' never means float16, which would need loss scaling."""
    if device.type == "cuda" and precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return amp_dtype(device, precision)


def _checked_record(
    network: nn.Module, meta: ModelMeta, volume: Volume, labels: np.ndarray,
    slices: CorrectionRecord | str | Mapping[str, Sequence[int]],
) -> CorrectionRecord:  # fmt: skip
    check_model(network, meta)
    shape = tuple(volume.array.shape)
    if tuple(np.shape(labels)) != shape:
        raise CorrectionError(f"labels {tuple(np.shape(labels))} and scan {shape} differ in shape")
    record = as_record(slices, shape)  # type: ignore[arg-type]
    if not len(record):
        raise CorrectionError("no corrected slices: mark at least one slice as corrected")
    if not np.asarray(labels).any():
        raise CorrectionError("the labels hold only background, on every slice: choose the labels layer that shows the structure")
    return record


def _patch_size(options: FinetuneOptions, meta: ModelMeta, network: nn.Module) -> tuple[int, int, int]:
    patch = tuple(int(p) for p in options.patch_size) if options.patch_size else default_patch(meta, network)
    div = int(getattr(network, "size_divisor", 1))
    if len(patch) != 3 or any(p <= 0 or p % div for p in patch):
        raise ModelError(f"fine-tuning patch {list(patch)} must be 3 positive multiples of {div}")
    return patch  # type: ignore[return-value]


def finetune(
    network: nn.Module,
    meta: ModelMeta,
    volume: Volume,
    labels: np.ndarray,
    slices: CorrectionRecord | str | Mapping[str, Sequence[int]],
    options: FinetuneOptions = FinetuneOptions(),
    *,
    name: str | None = None,
    volume_name: str = "",
    replay: Sequence[tuple[Volume, np.ndarray]] = (),
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of `network` on `labels` (source grid) of the corrected `slices` of `volume`.

    `network` itself is not changed. Returns the fine-tuned copy and its metadata (parent = the
    original's name; training = method, volume, slices, iterations, seconds, options). Raises
    CancelledError between iterations when `cancelled()` turns true.
    """
    start = time.monotonic()
    report = progress or (lambda done, total, message: None)
    is_cancelled = cancelled or (lambda: False)
    record = _checked_record(network, meta, volume, labels, slices)
    if not replay or not options.replay_every:  # what the model records is what ran
        options, replay = replace(options, replay_every=0), ()
    patch = _patch_size(options, meta, network)
    max_iter, max_seconds = options.budget
    total = max_iter if max_iter is not None else math.ceil(max_seconds or 1)
    report(0, total, "preparing the corrected slices")
    target = _target(volume, labels, record.labeled_mask(), meta)
    if options.weak_weight > 0:
        target = _with_weak_labels(target, volume, labels, record, meta, options.weak_weight)
    if not target.supervised:
        raise CorrectionError("the corrected slices cover no voxel of the model's grid (is its spacing much coarser?)")
    replay_targets = [_target(v, lab, np.ones(v.array.shape, bool), meta) for v, lab in replay]
    tuner = _Tuner(network, target, replay_targets, patch, options)
    history: list[dict[str, float]] = []
    last_step = 0.0
    while max_iter is None or len(history) < max_iter:
        if is_cancelled():
            raise CancelledError(f"fine-tuning cancelled after {len(history)} iterations; the model is unchanged")
        if max_seconds is not None and history and time.monotonic() - start + last_step > max_seconds:
            break  # the next step would overrun the budget
        t0 = time.monotonic()
        values = tuner.step(len(history) + 1)
        last_step = time.monotonic() - t0
        values["seconds"] = round(time.monotonic() - start, 3)
        history.append(values)
        done = values["iteration"] if max_iter is not None else min(total, int(values["seconds"]))
        report(done, total, format_step(values["iteration"], values["loss"], values["slices"], values["consistency"]))
    student = interpolate_weights(network, tuner.student.eval().to("cpu"), options.mix)
    seconds = round(time.monotonic() - start, 2)
    new_meta = _meta(meta, name, volume_name, record, options, patch, len(history), seconds, target.supervised)
    new_meta.training["site"] = scan_site(volume.header, volume.source or volume_name)  # the centre it is tied to
    new_meta.training["precision_used"] = "bf16" if tuner.amp is not None else "fp32"  # after any fallback
    return FinetuneResult(student, new_meta, history)


def interpolate_weights(parent: nn.Module, tuned: nn.Module, mix: float) -> nn.Module:
    """`tuned` with every floating-point parameter and buffer set to parent + mix·(tuned − parent)
    (WiSE-FT: part of the round's change, which keeps more of what the parent knew). `mix` 1 returns
    `tuned` unchanged; `parent` is not changed."""
    if mix == 1.0:
        return tuned
    with torch.no_grad():
        old = parent.state_dict()
        for key, value in tuned.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.lerp(old[key].to(value.device, value.dtype), value, mix))
    return tuned


def _target(volume: Volume, labels: np.ndarray, mask: np.ndarray, meta: ModelMeta) -> SparseTarget:
    try:
        return volume_target(volume, np.asarray(labels), mask, meta)
    except ValueError as exc:
        raise CorrectionError(str(exc)) from None


def _with_weak_labels(
    target: SparseTarget, volume: Volume, labels: np.ndarray, record: CorrectionRecord, meta: ModelMeta, weight: float
) -> SparseTarget:
    """`target` with shape-interpolated labels between corrected slices of one axis added at `weight`
    (voxels of corrected slices keep their own labels and weights)."""
    weak, covered = weak_labels(labels, record, volume.geometry.spacing[::-1])
    if not covered.any():
        return target
    extra = sparse_target(target.x, target.grid, volume.geometry, weak, covered, meta.n_classes)
    free = (target.weight == 0) & (extra.weight > 0)
    w, t = target.weight.copy(), target.target.copy()
    w[free] = weight * extra.weight[free]
    t[free] = extra.target[free]
    return SparseTarget(x=target.x, weight=w, target=t, grid=target.grid)


def _meta(
    parent: ModelMeta, name: str | None, volume_name: str, record: CorrectionRecord, options: FinetuneOptions,
    patch: tuple[int, ...], iterations: int, seconds: float, voxels: int,
) -> ModelMeta:  # fmt: skip
    slices = {axis: record.indices(axis) for axis in ("z", "y", "x") if record.indices(axis)}
    opts = {k: v for k, v in asdict(options).items() if v is not None and k not in ("iterations", "seconds", "device")}
    opts["patch_size"] = list(patch)
    return replace(
        parent,
        name=name or f"{parent.name}-ft-{time.strftime('%Y%m%d-%H%M%S')}",
        parent=parent.name,
        training={
            "method": "finetune",
            "volume": volume_name,
            "slices": slices,
            "iterations": iterations,
            "seconds": seconds,
            "supervised_voxels": voxels,
            "options": opts,
            "parent_training": parent.training.get("method", ""),
        },  # fmt: skip
        metrics={},
        description=f"{parent.name} fine-tuned on {len(record)} corrected slices ({record.spec()}) of {volume_name or 'one scan'}",
    )


def finetune_file(
    model_path: str | Path,
    output: str | Path,
    volume: Volume,
    labels: np.ndarray,
    slices: CorrectionRecord | str | Mapping[str, Sequence[int]],
    options: FinetuneOptions = FinetuneOptions(),
    **kwargs: Any,
) -> FinetuneResult:
    """`finetune` the model file `model_path` and save the result to `output` (atomic write, only
    when fine-tuning completed: a cancelled or failed run leaves `output` as it was)."""
    network, meta = load_model(model_path)
    result = finetune(network, meta, volume, labels, slices, options, **kwargs)
    result.path = save_model(output, result.network, result.meta)
    return result
