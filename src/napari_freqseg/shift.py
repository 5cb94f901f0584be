"""Centre-shift simulator: seeded, severity-controlled changes of a raw volume that mimic what
differs between scanners and sites, on the same voxel grid.

Kinds (severity in [0, 1], 0 = identity):
- style: low-frequency amplitude shift: the amplitude inside the low-frequency box is mixed with a
         reference volume's (ratio = severity, FDA) or, without a reference, scaled by a factor up
         to 2 (or 1/2) keeping the mean intensity;
- bias:  smooth multiplicative field exp(p(x)), p a random degree-3 Legendre polynomial in mm
         coordinates, scaled so the field spans at most [1/2, 2] at severity 1 (as MONAI's
         RandBiasField, with a bounded range);
- gamma: contrast change by a gamma of 2.5^(±severity) on the [min, max] range: an increasing map,
         so the order of intensities is kept (a linear gain is left out: z-scoring undoes it);
- thick: thick slices along the coarsest axis (z if isotropic): up to 5 voxels thick (Gaussian slice
         profile, sampled every thickness, linearly interpolated back);
- noise: Rician noise (magnitude images, all intensities ≥ 0) or Gaussian noise (e.g. CT), sigma up
         to 10 % of the p0.5–p99.5 intensity range;
- all:   every kind above in that order, with seeds derived from `seed`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.polynomial import legendre

#: Shift kinds in the order `all` applies them: site contrast first, acquisition noise last.
KINDS: tuple[str, ...] = ("style", "bias", "gamma", "thick", "noise")
ALL_KINDS: tuple[str, ...] = (*KINDS, "all")

_BIAS_MAX_RATIO = 2.0
_GAMMA_MAX = 2.5
_THICK_MAX = 5.0
_NOISE_MAX = 0.10
_STYLE_MAX_SCALE = 2.0
#: Half-width of the low-frequency box as a fraction of each axis length (FDA's beta).
STYLE_BETA = 0.05


def apply_shift(
    array: np.ndarray,
    kind: str,
    severity: float,
    seed: int = 0,
    spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Shifted float32 copy of a (z, y, x) volume; same shape, so the geometry is kept.

    The same (array, kind, severity, seed, reference) always gives the same output.
    """
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown shift {kind!r} (choose from {', '.join(ALL_KINDS)})")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity {severity} is outside [0, 1]")
    x = np.asarray(array, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"a 3D volume is needed, got shape {x.shape}")
    if kind == "all":
        for i, k in enumerate(KINDS):
            x = apply_shift(x, k, severity, seed + 1000 * (i + 1), spacing_zyx, reference)
        return x
    if severity == 0.0:
        return x.copy()
    rng = np.random.default_rng(seed)
    if kind == "bias":
        return (x * bias_field(x.shape, severity, rng, spacing_zyx)).astype(np.float32)
    if kind == "gamma":
        return gamma_shift(x, severity, rng)
    if kind == "thick":
        return thick_slices(x, severity, int(np.argmax(spacing_zyx)))
    if kind == "noise":
        return add_noise(x, severity, rng)
    return style_shift(x, severity, rng, reference)


def bias_field(
    shape: tuple[int, ...], severity: float, rng: np.random.Generator, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Smooth positive float32 field: exp of a random degree-3 Legendre polynomial over the volume's
    physical extent, spanning at most [1/r, r] with r = 2^severity."""
    extent = np.asarray(shape, float) * np.asarray(spacing_zyx, float)
    axes = [np.linspace(-1, 1, n) * e / extent.max() for n, e in zip(shape, extent)]
    degree = 3
    coeffs = rng.uniform(-1.0, 1.0, (degree + 1,) * 3)
    i, j, k = np.indices(coeffs.shape)
    coeffs[(i + j + k > degree) | ((i + j + k) == 0)] = 0.0  # total degree ≤ 3, no constant term
    log_field = legendre.leggrid3d(*axes, coeffs)
    peak = np.abs(log_field).max()
    if peak > 0:
        log_field *= severity * np.log(_BIAS_MAX_RATIO) / peak
    return np.exp(log_field).astype(np.float32)


def gamma_shift(x: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Gamma 2.5^(±severity) (sign drawn from `rng`) on the [min, max] range; min and max stay."""
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return x.copy()
    gamma = float(_GAMMA_MAX ** (severity * rng.choice([-1.0, 1.0])))
    return (lo + (hi - lo) * ((x - lo) / (hi - lo)) ** gamma).astype(np.float32)


def thick_slices(x: np.ndarray, severity: float, axis: int = 0) -> np.ndarray:
    """Simulate slices `1 + severity·4` voxels thick along `axis`: Gaussian slice profile of that
    FWHM (beyond the one the volume already has), sampled every thickness, interpolated back."""
    from scipy.ndimage import gaussian_filter1d

    thickness = 1.0 + severity * (_THICK_MAX - 1.0)
    sigma = np.sqrt(thickness**2 - 1.0) / 2.3548  # FWHM → sigma, on top of the native profile
    blurred = gaussian_filter1d(x, sigma, axis=axis, mode="nearest") if sigma > 0 else x
    n = x.shape[axis]
    samples = np.arange(0.0, n - 1 + 1e-6, thickness)  # positions of the thick slices
    low = _interp_axis(blurred, samples, axis)
    back = np.arange(n) / thickness  # original slice positions in thick-slice units
    back = np.minimum(back, len(samples) - 1)
    return _interp_axis(low, back, axis).astype(np.float32)


def _interp_axis(x: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of `x` at fractional indices `positions` along `axis`."""
    i0 = np.clip(np.floor(positions).astype(int), 0, x.shape[axis] - 1)
    i1 = np.minimum(i0 + 1, x.shape[axis] - 1)
    w = (positions - i0).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = -1
    w = w.reshape(shape)
    return np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w


def add_noise(x: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Rician noise for non-negative (magnitude) volumes, Gaussian otherwise; sigma relative to the
    p0.5–p99.5 intensity range."""
    lo, hi = np.percentile(x[:: max(1, x.shape[0] // 16)], (0.5, 99.5))
    sigma = severity * _NOISE_MAX * max(float(hi - lo), 1e-6)
    n1 = rng.standard_normal(x.shape, dtype=np.float32) * sigma
    if x.min() >= 0:
        n2 = rng.standard_normal(x.shape, dtype=np.float32) * sigma
        return np.sqrt((x + n1) ** 2 + n2**2).astype(np.float32)
    return (x + n1).astype(np.float32)


def style_shift(x: np.ndarray, severity: float, rng: np.random.Generator, reference: np.ndarray | None = None) -> np.ndarray:
    """Change the low-frequency amplitude (the 'style') and keep the phase (the content).

    With a reference volume (resized to x's shape) its low-frequency amplitude is mixed in with
    ratio `severity`; without one, the amplitude in the box (mean intensity excepted) is scaled by
    2^(±severity), the sign drawn from `rng`. Values are clipped below at the darkest input
    intensity (e.g. 0 for MR magnitude) since the amplitude change rings into dark regions.
    """
    from scipy.ndimage import zoom

    floor = float(x.min())
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float32)
        if ref.shape != x.shape:
            ref = zoom(ref, [a / b for a, b in zip(x.shape, ref.shape)], order=1, grid_mode=True, mode="nearest")
        floor = min(floor, float(ref.min()))
        out = low_frequency_amplitude_mix(x, severity, reference=ref)
    else:
        scale = float(_STYLE_MAX_SCALE ** (severity * rng.choice([-1.0, 1.0])))
        out = low_frequency_amplitude_mix(x, severity, scale=scale)
    return np.maximum(out, floor)


def low_frequency_amplitude_mix(
    x: np.ndarray, ratio: float, reference: np.ndarray | None = None, scale: float = 1.0, beta: float = STYLE_BETA
) -> np.ndarray:
    """Inside the low-frequency box (the frequency package's, half-width beta·n per axis) the
    amplitude becomes (1 - ratio)·A_x + ratio·A_ref with a same-shaped reference (FDA), else
    scale·A_x with the zero frequency (the mean intensity) kept. The phase is unchanged."""
    import torch  # only here: the other shifts and the command line start need no torch

    from .frequency import amplitude_phase, fda, mix_amplitude

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]
    if reference is not None:
        ref = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))[None, None]
        out = fda(t, ref, beta=beta, ratio=ratio)
    else:
        amp, _ = amplitude_phase(t)
        target = amp * scale
        target[..., 0, 0, 0] = amp[..., 0, 0, 0]
        out = mix_amplitude(t, target, beta, 1.0)
    return out[0, 0].numpy().astype(np.float32)
