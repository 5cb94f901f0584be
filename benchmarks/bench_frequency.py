"""Frequency benchmark: ratios measured in one process, printed as JSON.

1. Spectrum view of a 256³ volume (centred log-amplitude + radial profile in cycles/mm) with the
   package's torch code against a plain numpy.fft implementation of the same outputs.
2. One training step with L-AAE (1 attack step) + F-ASE against a plain step of the same model
   and batch: V-Net (8 filters, instance norm), batch 2 × 64×64×32, AdamW, cross-entropy.
   The L-AAE step trains on the clean and the adversarial batch together (twice the data of the
   plain step); its attack step reuses dL/dx from the clean pass (`clean_grad`) and F-ASE's gain
   is applied in the same inverse transform. Also reported: the frequency operations alone, and
   the same step with a separate attack pass.

Both run with one torch thread by default (`--threads`): numpy's FFT is single-threaded, and on a
shared 2-core machine one thread per process gives steady ratios.

Usage: python benchmarks/bench_frequency.py [--size 256] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from napari_freqseg.frequency import FASE, amplitude_gradient, laae_attack
from napari_freqseg.frequency.spectrum import physical_scale, radial_bins, spectrum_and_profile
from napari_freqseg.models import VNet


def numpy_spectrum(volume: np.ndarray, spacing: tuple[float, ...], n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The plain way: full complex FFT, fftshift, log10, |f| on the full grid, bincount per shell."""
    amp = np.abs(np.fft.fftn(volume, norm="ortho")) * physical_scale(volume.shape, spacing)
    log_amp = np.fft.fftshift(np.log10(np.maximum(amp, amp.max() * 1e-8)))
    freqs = np.meshgrid(*[np.fft.fftfreq(n, d=s) for n, s in zip(volume.shape, spacing)], indexing="ij", sparse=True)
    r = np.sqrt(sum(f**2 for f in freqs))
    f_max = 0.5 / min(spacing)
    idx = np.minimum((r * (n_bins / f_max)).astype(np.int64), n_bins).ravel()
    sums = np.bincount(idx, weights=amp.ravel(), minlength=n_bins + 1)
    counts = np.bincount(idx, minlength=n_bins + 1)
    return log_amp, sums[:n_bins] / counts[:n_bins]


def torch_spectrum(volume: torch.Tensor, spacing: tuple[float, ...], n_bins: int) -> tuple[torch.Tensor, np.ndarray]:
    """The package's way (`spectrum_and_profile`: one rfftn on the half grid), with a cold shell
    cache, as the numpy version has none."""
    radial_bins.cache_clear()
    log_amp, profile, _ = spectrum_and_profile(volume[None, None], spacing, n_bins)
    return log_amp[0, 0], profile.values[0, 0]


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each function, run in turns so that machine load hits them
    alike. CPU time (this process's) is the steadier figure on a shared machine."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[k].append((time.perf_counter() - w0, time.process_time() - c0))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}


def _ratios(times: dict[str, tuple[float, float]], num: str, den: str) -> dict[str, float]:
    return {"wall": round(times[num][0] / times[den][0], 3), "cpu": round(times[num][1] / times[den][1], 3)}


def _seconds(times: dict[str, tuple[float, float]], key: str) -> dict[str, float]:
    return {"wall": round(times[key][0], 4), "cpu": round(times[key][1], 4)}


def bench_spectrum(size: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    volume = rng.normal(100.0, 20.0, (size, size, size)).astype(np.float32)
    spacing = (1.0, 0.8, 0.8)
    n_bins = size // 2
    tensor = torch.from_numpy(volume)
    t_log, t_prof = torch_spectrum(tensor, spacing, n_bins)
    n_log, n_prof = numpy_spectrum(volume, spacing, n_bins)
    times = interleaved(
        {"torch": lambda: torch_spectrum(tensor, spacing, n_bins), "numpy": lambda: numpy_spectrum(volume, spacing, n_bins)},
        repeats,
    )
    return {
        "volume": [size] * 3,
        "torch_s": _seconds(times, "torch"),
        "numpy_s": _seconds(times, "numpy"),
        "speedup": _ratios(times, "numpy", "torch"),
        "max_abs_diff_log10_amplitude": float(np.abs(t_log.numpy() - n_log).max()),
        "max_rel_diff_profile": float(np.abs(t_prof / n_prof - 1).max()),
    }


def bench_training_step(repeats: int) -> dict:
    torch.manual_seed(0)
    model = VNet(in_channels=1, n_classes=2, n_filters=8, normalization="instance").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(2, 1, 64, 64, 32)
    y = (torch.rand(2, 64, 64, 32) > 0.7).long()
    fase = FASE(n_bands=8)
    shape = tuple(x.shape[-3:])

    def plain() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def adversarial(x_clean: torch.Tensor, grad: torch.Tensor, shared: bool) -> torch.Tensor:
        """L-AAE (1 step) + F-ASE from dL/dx of the clean pass."""
        ag = amplitude_gradient(x_clean, grad)
        fase.update(ag)
        gain = fase.gain(shape)
        if shared:
            return laae_attack(model, x_clean, y, beta=0.05, steps=1, clean_grad=ag, gain=gain).x
        return laae_attack(model, x_clean, y, beta=0.05, steps=1, gain=gain).x  # its own attack pass

    def frequency(shared: bool) -> None:
        opt.zero_grad(set_to_none=True)
        xc = x.clone().requires_grad_(True)
        F.cross_entropy(model(xc), y).backward()  # weight gradients and dL/dx in one pass
        x_adv = adversarial(x, xc.grad, shared)
        F.cross_entropy(model(x_adv), y).backward()  # original and adversarial trained together
        opt.step()

    grad = torch.randn_like(x)
    times = interleaved(
        {
            "plain": plain,
            "shared": lambda: frequency(True),
            "own": lambda: frequency(False),
            "overhead": lambda: adversarial(x, grad, True),
        },
        repeats,
    )
    return {
        "model": "VNet n_filters=8 instance norm",
        "batch": [2, 1, 64, 64, 32],
        "plain_step_s": _seconds(times, "plain"),
        "laae_fase_step_s": _seconds(times, "shared"),
        "ratio": _ratios(times, "shared", "plain"),
        "laae_fase_ops_only_s": _seconds(times, "overhead"),
        "ops_only_fraction_of_plain_step": _ratios(times, "overhead", "plain"),
        "ratio_with_own_attack_pass": _ratios(times, "own", "plain"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (numpy's FFT uses one)")
    parser.add_argument("--only", choices=("spectrum", "training_step"), help="run one of the two benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {"torch_threads": torch.get_num_threads()}
    if args.only in (None, "spectrum"):
        result["spectrum"] = bench_spectrum(args.size, args.repeats)
    if args.only in (None, "training_step"):
        result["training_step"] = bench_training_step(args.repeats)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
