"""Device choice, autocast guards and the GPU out-of-memory fallback, exercised without a GPU."""

from __future__ import annotations

import contextlib

import pytest
import torch

from napari_freqseg.errors import ResourceError
from napari_freqseg.inference import device as dev


def test_auto_picks_cuda_only_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "cuda_available", lambda: False)
    assert dev.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(dev, "cuda_available", lambda: True)
    assert dev.resolve_device("auto") == torch.device("cuda")
    assert dev.resolve_device("CPU") == torch.device("cpu")


def test_cuda_asked_for_but_absent_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "cuda_available", lambda: False)
    with pytest.raises(ResourceError, match="CUDA was asked for but is not available"):
        dev.resolve_device("cuda")
    with pytest.raises(ResourceError, match="CUDA was asked for"):
        dev.resolve_device("cuda:1")
    monkeypatch.setattr(dev, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ResourceError, match="only 1 CUDA device"):
        dev.resolve_device("cuda:3")
    with pytest.raises(ResourceError, match="unknown device"):
        dev.resolve_device("tpu")


def test_mixed_precision_choice() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert dev.amp_dtype(cuda, "auto") is torch.float16
    assert dev.amp_dtype(cuda, "bf16") is torch.bfloat16
    assert dev.amp_dtype(cuda, "fp32") is None
    assert dev.amp_dtype(cpu, "auto") is (torch.bfloat16 if dev.cpu_has_bf16() else None)  # native bf16 only
    assert dev.amp_dtype(cpu, "fp32") is None
    assert dev.amp_dtype(cpu, "bf16") is torch.bfloat16
    with pytest.raises(ResourceError, match="fp16 needs a CUDA device"):
        dev.amp_dtype(cpu, "fp16")
    with pytest.raises(ResourceError, match="unknown precision"):
        dev.amp_dtype(cpu, "int8")


def test_autocast_guard() -> None:
    cpu = torch.device("cpu")
    assert isinstance(dev.autocast(cpu, None), contextlib.nullcontext)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with dev.autocast(cpu, None):
        assert (a @ b).dtype is torch.float32
    with dev.autocast(cpu, torch.bfloat16):
        assert (a @ b).dtype is torch.bfloat16
    ctx = dev.autocast(torch.device("cuda"), torch.float16)
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype is torch.float16


def test_stitching_falls_back_to_cpu_on_simulated_oom(monkeypatch: pytest.MonkeyPatch) -> None:
    emptied = []
    monkeypatch.setattr(dev, "empty_cache", lambda: emptied.append(True))
    calls: list[str] = []

    def run(stitch_device: torch.device) -> str:
        calls.append(stitch_device.type)
        if stitch_device.type == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB")
        return "stitched on cpu"

    notes: list[str] = []
    assert dev.with_stitch_fallback(run, torch.device("cuda"), notes) == "stitched on cpu"
    assert calls == ["cuda", "cpu"] and emptied == [True]
    assert "stitched on the CPU" in notes[0]


def test_second_oom_is_a_clear_error_and_cpu_runs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "empty_cache", lambda: None)

    def always_oom(stitch_device: torch.device) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(ResourceError, match="lower the batch size"):
        dev.with_stitch_fallback(always_oom, torch.device("cuda"), [])
    calls = []
    dev.with_stitch_fallback(lambda d: calls.append(d.type), torch.device("cpu"), [])
    assert calls == ["cpu"]


def test_other_errors_are_not_swallowed() -> None:
    def broken(stitch_device: torch.device) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        dev.with_stitch_fallback(broken, torch.device("cuda"), [])


def test_cpu_without_native_bf16_stays_float32(monkeypatch) -> None:
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: False)
    assert dev.amp_dtype(torch.device("cpu"), "auto") is None
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: True)
    assert dev.amp_dtype(torch.device("cpu"), "auto") is torch.bfloat16
