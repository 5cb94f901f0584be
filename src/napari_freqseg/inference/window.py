"""Sliding-window prediction over a whole volume: a pure function of a predictor and an array.

Windows (several per forward pass) run on `device`; their weighted outputs are summed into one
(K, D, H, W) float32 buffer on `stitch_device`, plus a (D, H, W) weight sum when a normalised
mean is wanted (an argmax needs only the sum). Window positions and the Gaussian importance map are
MONAI's (`dense_patch_slices`, `compute_importance_map`: sigma = patch/8, floor 1e-3; the map is
built here, equal to MONAI's by test, because importing `monai.data` costs seconds of start-up for
every `freqseg segment`), so labels agree with `monai.inferers.sliding_window_inference`. Knows nothing of files, metadata or
resampling, so training's validation can call it on arrays already normalised at the model spacing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import CancelledError

Predictor = Callable[[torch.Tensor], torch.Tensor]
ProgressFn = Callable[[int, int, str], None]


def importance_map(
    patch: Sequence[int], gaussian: bool = True, sigma_scale: float = 0.125, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Window weights: a separable Gaussian (sigma = sigma_scale × patch size, peak 1) clamped below at
    its smallest value or 1e-3, whichever is larger; ones when not `gaussian` (MONAI's rule)."""
    if not gaussian:
        return torch.ones(tuple(patch), dtype=torch.float32, device=device)
    weight: torch.Tensor | None = None
    for i, n in enumerate(patch):
        x = torch.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=torch.float32, device=device)
        x = torch.exp(x**2 / (-2 * (n * sigma_scale) ** 2))
        weight = x if weight is None else weight.unsqueeze(-1) * x[(None,) * i]
    assert weight is not None
    return weight.clamp_(min=max(float(weight.min()), 1e-3))


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of windows along one axis: stride patch·(1 - overlap), last window flush with
    the end (the same positions as MONAI's `dense_patch_slices`)."""
    if size <= patch:
        return [0]
    stride = max(1, int(patch * (1.0 - overlap)))
    n = math.ceil((size - patch) / stride) + 1
    return sorted({min(i * stride, size - patch) for i in range(n)})


def count_windows(shape: Sequence[int], patch: Sequence[int], overlap: float) -> int:
    """How many windows cover a volume of spatial `shape` (after padding to the patch)."""
    return math.prod(len(window_starts(max(s, p), p, overlap)) for s, p in zip(shape, patch))


def sliding_window(
    predictor: Predictor,
    array: torch.Tensor,
    patch: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 2,
    gaussian: bool = True,
    sigma_scale: float = 0.125,
    device: str | torch.device = "cpu",
    stitch_device: str | torch.device | None = None,
    normalize: bool = True,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Predict a (C, D, H, W) array window by window and stitch the outputs.

    predictor: (B, C, d, h, w) -> (B, K, d, h, w) on `device` (e.g. softmax probabilities).
    Volumes smaller than `patch` are padded with zeros (centred) and cropped back.
    Returns (K, D, H, W) float32 on `stitch_device` (default: `device`): the weighted mean of the
    window outputs, or only the weighted sum when `normalize` is False (enough for an argmax).
    Raises CancelledError between window batches when `cancelled()` turns true.
    """
    if array.ndim != 4:
        raise ValueError(f"array must be (C, D, H, W), got shape {tuple(array.shape)}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    device = torch.device(device)
    stitch_device = torch.device(stitch_device) if stitch_device is not None else device
    patch = [int(p) for p in patch]
    shape = list(array.shape[1:])
    pad = [max(p - s, 0) for s, p in zip(shape, patch)]
    if any(pad):
        # F.pad takes (x_low, x_high, y_low, y_high, z_low, z_high)
        spec = [v for p in reversed(pad) for v in (p // 2, p - p // 2)]
        array = F.pad(array, spec)
    padded = list(array.shape[1:])
    x = array.to(stitch_device, torch.float32)
    starts = [window_starts(s, p, overlap) for s, p in zip(padded, patch)]
    corners = [(z, y, w) for z in starts[0] for y in starts[1] for w in starts[2]]
    weight = importance_map(patch, gaussian, sigma_scale, device)
    weight_sum = torch.zeros(padded, dtype=torch.float32, device=stitch_device) if normalize else None
    stitch_weight = weight.to(stitch_device)
    total = math.ceil(len(corners) / batch_size)
    acc: torch.Tensor | None = None
    for b in range(total):
        if cancelled is not None and cancelled():
            raise CancelledError("cancelled")
        batch_corners = corners[b * batch_size : (b + 1) * batch_size]
        windows = torch.stack([x[:, z : z + patch[0], y : y + patch[1], w : w + patch[2]] for z, y, w in batch_corners])
        out = predictor(windows.to(device, non_blocking=True))
        out = out.float().mul_(weight).to(stitch_device)
        if acc is None:
            acc = torch.zeros((out.shape[1], *padded), dtype=torch.float32, device=stitch_device)
        for o, (z, y, w) in zip(out, batch_corners):
            acc[:, z : z + patch[0], y : y + patch[1], w : w + patch[2]] += o
            if weight_sum is not None:
                weight_sum[z : z + patch[0], y : y + patch[1], w : w + patch[2]] += stitch_weight
        if progress is not None:
            progress(b + 1, total, f"window batch {b + 1}/{total}")
    assert acc is not None
    if weight_sum is not None:
        acc.div_(weight_sum)
        del weight_sum
    if any(pad):
        lo = [p // 2 for p in pad]
        acc = acc[:, lo[0] : lo[0] + shape[0], lo[1] : lo[1] + shape[1], lo[2] : lo[2] + shape[2]].contiguous()
    return acc
