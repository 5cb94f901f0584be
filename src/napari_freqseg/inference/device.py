"""Device choice, mixed precision and the GPU out-of-memory fallback.

CUDA paths are written here once and unit-tested on CPU as far as possible: the choice of device
and autocast dtype are pure functions; the fallback takes the work as a callable, so a simulated
out-of-memory error exercises it without a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import torch

from ..errors import ResourceError

T = TypeVar("T")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' / 'cuda:N' must exist (clear message if not)."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not cuda_available():
            build = "this PyTorch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU was found"
            raise ResourceError(f"CUDA was asked for but is not available ({build}); use device auto or cpu")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ResourceError(f"{spec}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    raise ResourceError(f"unknown device {spec!r} (choose from {', '.join(DEVICES)}, or cuda:N)")


def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """Autocast dtype for `device`: by default float16 on CUDA, and on the CPU bfloat16 where the CPU
    computes it natively (measured on the bundled model over the 8 LA val cases: labels agree with
    float32 at Dice >= 0.9994 on every case, in 0.45x the time; benchmarks/RESULTS.md), else none
    (float32). 'bf16' is accepted on both, 'fp16' only on CUDA."""
    if precision not in PRECISIONS:
        raise ResourceError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.float16
    if precision == "fp16":
        raise ResourceError("fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return torch.bfloat16 if cpu_has_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast context for `device`, or a no-op when `dtype` is None (full float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def empty_cache() -> None:
    """Give cached GPU memory back (no-op without CUDA)."""
    if cuda_available():
        torch.cuda.empty_cache()


def with_stitch_fallback(run: Callable[[torch.device], T], device: torch.device, notes: list[str]) -> T:
    """`run(stitch_device)` with stitching on `device`; on a CUDA out-of-memory error free the cache
    and run again stitching on the CPU (as nnU-Net does). A second out-of-memory is a clear error."""
    if device.type != "cuda":
        return run(torch.device("cpu"))
    try:
        return run(device)
    except torch.OutOfMemoryError:
        empty_cache()
        notes.append("GPU memory ran out while stitching: stitched on the CPU instead")
    try:
        return run(torch.device("cpu"))
    except torch.OutOfMemoryError:
        empty_cache()
        raise ResourceError("GPU out of memory even with stitching on the CPU: lower the batch size or use device cpu") from None
