"""Harmonise a scan to the style of a model's training data, label-free, at inference time.

A model file carries its training data's style (`ModelMeta.style`, made by `StyleAccumulator` from
the network inputs the model was trained on, i.e. after its own normalisation and resampling):

- intensity landmarks: the mean over training scans of each scan's percentiles (Nyúl et al. 2000's
  standard scale); a scan is mapped onto them piecewise-linearly (`match_landmarks`);
- the mean low-frequency amplitude spectrum of training patches of the model's patch size (the
  view F-ASE and FDA have during training); each sliding window's low-frequency amplitude is moved
  onto it, phase and higher frequencies kept (FDA, Yang & Soatto 2020, with the training mean as
  the reference: `SpectrumHarmonized`).

No Qt, no napari. The choice between them and the default come from measurement (RESULTS.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .errors import ModelError
from .frequency.bands import low_freq_box
from .frequency.mixing import mix_amplitude
from .frequency.spectrum import amplitude_phase

if TYPE_CHECKING:
    from .frequency.spectrum import RadialProfile

STYLE_VERSION = 1
#: Largest window side a stored style may describe (checked before its box is built).
MAX_STYLE_PATCH = 512
#: Landmark percentiles (Nyúl's deciles plus the tails).
PERCENTILES: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99)
#: Largest low-frequency box stored (FDA's beta, per axis); harmonising may use any beta up to it.
STORED_BETA = 0.1
#: Harmonisation modes: none, intensity landmarks, window spectra, both.
MODES = ("off", "intensity", "spectrum", "both")
#: What a bare `--harmonize` (and the widget's "harmonise" box) uses: chosen on tuning cases (RESULTS.md).
DEFAULT_MODE = "spectrum"  # the one setting that lost nothing on the tuning cases with la-vnet-freq-bfa
#: Band harmonised by default (FDA's beta per axis; chosen on tuning cases, see RESULTS.md).
HARMONIZE_BETA = 0.02
#: Training patches sampled per scan for the mean spectrum.
PATCHES_PER_SCAN = 4


@dataclass
class TrainingStyle:
    """What the training inputs looked like: landmarks and the mean low-frequency window amplitude."""

    patch: list[int]
    beta: float
    amplitude: list[float]  # the box of `low_freq_box(patch, beta)` on the half grid, in mask order
    percentiles: list[float]
    landmarks: list[float]
    scans: int
    version: int = STYLE_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object, where: str = "model") -> TrainingStyle:
        """Checked: ModelError with one line when anything does not fit."""
        try:
            if not isinstance(d, dict):
                raise TypeError("not a table")
            style = cls(
                patch=[int(v) for v in d["patch"]], beta=float(d["beta"]), amplitude=[float(v) for v in d["amplitude"]],
                percentiles=[float(v) for v in d["percentiles"]], landmarks=[float(v) for v in d["landmarks"]],
                scans=int(d["scans"]), version=int(d.get("version", STYLE_VERSION)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ModelError(f"{where}: metadata style is malformed ({exc})") from None
        fits = len(style.patch) == 3 and all(1 <= v <= MAX_STYLE_PATCH for v in style.patch) and 0 < style.beta <= 0.5
        n_box = int(low_freq_box(style.patch, style.beta).sum()) if fits else -1
        if (
            style.version > STYLE_VERSION or n_box != len(style.amplitude) or len(style.percentiles) != len(style.landmarks)
            or len(style.landmarks) < 2 or not all(math.isfinite(v) for v in style.amplitude + style.landmarks)
            or any(b <= a for a, b in zip(style.percentiles, style.percentiles[1:]))
            or any(b < a for a, b in zip(style.landmarks, style.landmarks[1:])) or not style.landmarks[-1] > style.landmarks[0]
        ):  # fmt: skip
            raise ModelError(f"{where}: metadata style is malformed (sizes or values do not fit)")
        return style

    def reference_amplitude(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The stored box as a half-grid amplitude of the patch shape (zeros outside the box)."""
        box = low_freq_box(self.patch, self.beta)
        ref = torch.zeros(box.shape, dtype=torch.float32)
        ref[box] = torch.tensor(self.amplitude, dtype=torch.float32)
        return ref.to(device)


def scan_landmarks(x: np.ndarray, percentiles: Sequence[float] = PERCENTILES) -> np.ndarray:
    """A scan's landmarks: its percentiles (over every voxel)."""
    return np.percentile(np.asarray(x, dtype=np.float32), list(percentiles)).astype(np.float64)


class StyleAccumulator:
    """Collects a TrainingStyle from network inputs (normalised, on the model grid), one scan at a time."""

    def __init__(self, patch: Sequence[int], beta: float = STORED_BETA, seed: int = 0) -> None:
        self.patch = [int(p) for p in patch]
        self.beta = beta
        self._box = low_freq_box(self.patch, beta)
        self._amp_sum = torch.zeros(int(self._box.sum()), dtype=torch.float64)
        self._n_patches = 0
        self._landmark_sum = np.zeros(len(PERCENTILES))
        self._scans = 0
        self._rng = np.random.default_rng(seed)

    def add(self, x: np.ndarray) -> None:
        """One scan's network input (z, y, x): landmarks, and the amplitude of a few random windows."""
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim != 3 or not np.isfinite(arr).all():
            raise ModelError("a training scan for the style is not a finite 3D volume")
        self._landmark_sum += scan_landmarks(arr)
        self._scans += 1
        padded = np.pad(
            arr, [(0, max(0, p - s)) for p, s in zip(self.patch, arr.shape)], mode="constant", constant_values=float(arr.min())
        )
        windows = []
        for _ in range(PATCHES_PER_SCAN):
            start = [int(self._rng.integers(0, s - p + 1)) for s, p in zip(padded.shape, self.patch)]
            windows.append(padded[tuple(slice(a, a + p) for a, p in zip(start, self.patch))])
        amp, _ = amplitude_phase(torch.from_numpy(np.stack(windows))[:, None])
        self._amp_sum += amp[:, 0][:, self._box].double().sum(0)
        self._n_patches += len(windows)

    def result(self) -> TrainingStyle:
        if not self._scans:
            raise ModelError("no training scan to take the style from")
        return TrainingStyle(
            patch=self.patch, beta=self.beta, amplitude=[round(float(v), 6) for v in self._amp_sum / self._n_patches],
            percentiles=list(PERCENTILES), landmarks=[round(float(v), 6) for v in self._landmark_sum / self._scans],
            scans=self._scans,
        )  # fmt: skip


def match_landmarks(x: np.ndarray, style: TrainingStyle) -> np.ndarray:
    """Piecewise-linear map of the scan's landmarks onto the stored ones (Nyúl); beyond the outer
    landmarks the end segments continue, so no intensity is clipped."""
    src = scan_landmarks(x, style.percentiles)
    dst = np.asarray(style.landmarks)
    keep = np.concatenate([[True], np.diff(src) > 1e-6 * max(1.0, float(np.ptp(src)))])  # flat stretches: one point
    src, dst = src[keep], dst[keep]
    if len(src) < 2:
        return np.asarray(x, dtype=np.float32)
    out = np.interp(x, src, dst).astype(np.float32)
    lo_slope = (dst[1] - dst[0]) / (src[1] - src[0])
    hi_slope = (dst[-1] - dst[-2]) / (src[-1] - src[-2])
    below, above = x < src[0], x > src[-1]
    out[below] = (dst[0] + lo_slope * (x[below] - src[0])).astype(np.float32)
    out[above] = (dst[-1] + hi_slope * (x[above] - src[-1])).astype(np.float32)
    return out


class SpectrumHarmonized(nn.Module):
    """The network with each input window's low-frequency amplitude moved onto the training mean.

    Each window keeps its own mean (the zero-frequency term): the stored amplitude there is the
    mean |window mean| over training windows of either sign, which says nothing about this window's
    brightness, and replacing it shifted whole windows up or down (`keep_mean` False: the plain FDA
    box, for comparison in benchmarks/bench_harmonize.py).
    """

    keep_mean: bool = True

    def __init__(self, network: nn.Module, style: TrainingStyle, beta: float, ratio: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < beta <= style.beta:
            raise ModelError(f"harmonisation band {beta} outside (0, {style.beta}] (the band the model stores)")
        self.network = network
        self.patch = tuple(style.patch)
        self.beta, self.ratio = beta, ratio
        self.register_buffer("reference", style.reference_amplitude(), persistent=False)
        for name in ("in_channels", "n_classes", "size_divisor"):
            if hasattr(network, name):
                setattr(self, name, getattr(network, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-3:]) != self.patch:  # a window of another size (a small scan, padded): as is
            return self.network(x)
        with torch.autocast(x.device.type, enabled=False):  # FFTs in float32 whatever the precision
            xf = x.float()
            mixed = mix_amplitude(xf, self.reference, self.beta, self.ratio)
            if self.keep_mean:
                dims = (-3, -2, -1)
                mixed = mixed - mixed.mean(dims, keepdim=True) + xf.mean(dims, keepdim=True)
        return self.network(mixed.to(x.dtype))


def model_style(meta: object, where: str = "") -> TrainingStyle:
    """The stored style of a model (ModelError naming the model when it has none)."""
    d = getattr(meta, "style", None)
    name = getattr(meta, "name", "model")
    if not d:
        raise ModelError(
            f"model {name!r} carries no training style, so harmonisation is unavailable for it "
            f"(retrain it, or add one: freqseg models import MODEL --style-from SCANS_FOLDER)"
        )
    return TrainingStyle.from_dict(d, where or name)


def style_from_scans(meta: object, scans: Sequence[str], progress: Callable[[int, int, str], None] | None = None,
                     cancelled: Callable[[], bool] | None = None) -> TrainingStyle:  # fmt: skip
    """The style of `scans` as the model described by `meta` sees them (its normalisation and grid):
    for a model whose training data are known but which carries no style."""
    from .errors import CancelledError
    from .inference.predict import model_input
    from .io.volume import read_volume

    acc = StyleAccumulator(meta.patch_size)  # type: ignore[attr-defined]
    for i, path in enumerate(scans, start=1):
        if cancelled is not None and cancelled():
            raise CancelledError("cancelled")
        x = model_input(read_volume(path), meta)[0]  # type: ignore[arg-type]
        if not float(np.ptp(x)) > 0:  # every landmark one value: it drags the stored scale flat
            raise ModelError(f"{path}: one intensity everywhere, so it shows no style; leave it out of the scans")
        acc.add(x)
        if progress is not None:
            progress(i, len(scans), str(path))
    return acc.result()


def scan_files(source: str) -> list[str]:
    """The scans of a cohort manifest (CSV), or the volumes and DICOM series under a folder (label
    maps and hidden files skipped)."""
    from pathlib import Path

    from .io.cohort import LABEL_NAME, load_cohort
    from .io.volume import is_readable_path, volume_suffix

    p = Path(source)
    if p.is_file() and p.suffix.lower() == ".csv":
        return [str(c.image) for c in load_cohort(p).cases]
    if not p.is_dir():
        raise ModelError(f"{source}: not a folder of scans or a CSV manifest")
    found = []
    for f in sorted(p.rglob("*")):
        rel = f.relative_to(p).parts
        if any(part.startswith(".") for part in rel):
            continue
        suffix = volume_suffix(f)
        if f.is_file() and suffix and not LABEL_NAME.search(f.name[: -len(suffix)]):
            found.append(str(f))
        elif f.is_dir() and is_readable_path(f) and not any(q.is_dir() for q in f.iterdir()):
            found.append(str(f))  # a DICOM series folder
    if not found:
        raise ModelError(f"{source}: no scans found (label maps are skipped)")
    return found


def style_profile(style: TrainingStyle, spacing_zyx: Sequence[float] | None) -> RadialProfile:
    """The stored low-frequency window amplitude as a radial profile (mean per frequency step
    shell; cycles/mm on the model grid when its spacing is known): for plotting a scan's style
    against the model's."""
    from .frequency.bands import frequency_axes
    from .frequency.spectrum import RadialProfile

    box = low_freq_box(style.patch, style.beta)
    axes = frequency_axes(style.patch, spacing_zyx)
    radius = torch.sqrt(sum(a.double() ** 2 for a in axes)).expand(box.shape)[box].numpy()
    step = float(min(1.0 / (n * s) for n, s in zip(style.patch, spacing_zyx or [1.0] * 3)))
    shell = np.rint(radius / step).astype(int)
    amp = np.asarray(style.amplitude)
    n = int(shell.max()) + 1
    counts = np.bincount(shell, minlength=n)
    sums = np.bincount(shell, weights=amp, minlength=n)
    values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    edges = (np.arange(n + 1) - 0.5) * step
    return RadialProfile(frequency=np.arange(n) * step, edges=edges, values=values[None, None], counts=counts,
                         unit="cycles/mm" if spacing_zyx is not None else "cycles/voxel")  # fmt: skip


def scan_style(volume: object, meta: object) -> TrainingStyle:
    """One scan's style as the model sees it (the same measurement as the stored training style)."""
    from .inference.predict import model_input

    acc = StyleAccumulator(meta.patch_size)  # type: ignore[attr-defined]
    acc.add(model_input(volume, meta)[0])  # type: ignore[arg-type]
    return acc.result()
