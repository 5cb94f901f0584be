"""Centre-shift simulator: identity at severity 0, determinism, and what each kind must keep."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from synthetic import make_blob_volume

from napari_freqseg.frequency import low_freq_box
from napari_freqseg.shift import (
    ALL_KINDS,
    STYLE_BETA,
    apply_shift,
    bias_field,
    low_frequency_amplitude_mix,
    thick_slices,
)

SPACING = (2.0, 0.8, 0.8)


@pytest.fixture
def image() -> np.ndarray:
    return make_blob_volume((24, 32, 40), seed=1)[0]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_severity_zero_is_identity(image: np.ndarray, kind: str) -> None:
    out = apply_shift(image, kind, 0.0, seed=3, spacing_zyx=SPACING)
    np.testing.assert_array_equal(out, image)
    assert out.dtype == np.float32 and out is not image


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_same_seed_same_output_and_grid_kept(image: np.ndarray, kind: str) -> None:
    a = apply_shift(image, kind, 0.7, seed=11, spacing_zyx=SPACING)
    b = apply_shift(image, kind, 0.7, seed=11, spacing_zyx=SPACING)
    np.testing.assert_array_equal(a, b)
    assert a.shape == image.shape and a.dtype == np.float32
    assert np.all(np.isfinite(a))
    assert np.abs(a - image).mean() > 0.5  # it changed the volume noticeably (intensities ~100-180)


@pytest.mark.parametrize("kind", ["bias", "noise", "all"])
def test_other_seed_other_output(image: np.ndarray, kind: str) -> None:
    a = apply_shift(image, kind, 0.7, seed=1, spacing_zyx=SPACING)
    b = apply_shift(image, kind, 0.7, seed=2, spacing_zyx=SPACING)
    assert not np.allclose(a, b)


def test_bias_field_is_smooth_positive_and_bounded() -> None:
    shape = (24, 32, 40)
    field = bias_field(shape, 1.0, np.random.default_rng(0), SPACING)
    assert field.shape == shape and np.all(field > 0)
    assert field.min() >= 0.5 - 1e-5 and field.max() <= 2.0 + 1e-5
    assert max(field.max(), 1 / field.min()) == pytest.approx(2.0, rel=1e-4)  # severity 1 reaches the bound
    log = np.log(field.astype(np.float64))
    # Smooth: local averaging (sigma 1.5 voxels) barely changes it inside the volume, while it
    # would flatten anything rough; neighbouring voxels differ by far less than the full range.
    inner = (slice(4, -4),) * 3
    assert np.abs(gaussian_filter(log, 1.5)[inner] - log[inner]).max() < 0.05 * np.ptp(log)
    assert max(np.abs(np.diff(log, axis=a)).max() for a in range(3)) < 0.25 * np.ptp(log)
    mild = bias_field(shape, 0.25, np.random.default_rng(0), SPACING)
    np.testing.assert_allclose(np.log(mild), 0.25 * log, atol=1e-5)


def test_bias_multiplies_the_volume_by_its_field(image: np.ndarray) -> None:
    out = apply_shift(image, "bias", 0.6, seed=4, spacing_zyx=SPACING)
    field = bias_field(image.shape, 0.6, np.random.default_rng(4), SPACING)
    np.testing.assert_allclose(out, image * field, rtol=1e-5)


def test_gamma_keeps_the_order_of_intensities(image: np.ndarray) -> None:
    for seed in (0, 1, 2, 3):
        out = apply_shift(image, "gamma", 1.0, seed=seed)
        order = np.argsort(image, axis=None, kind="stable")
        assert np.all(np.diff(out.ravel()[order]) >= 0)
        assert out.min() == pytest.approx(image.min()) and out.max() == pytest.approx(image.max())
        assert abs(float(np.median(out)) - float(np.median(image))) > 5  # the contrast really changed


def test_thick_slices_blur_only_along_the_coarsest_axis() -> None:
    rng = np.random.default_rng(0)
    z_noise = np.repeat(rng.standard_normal((24, 1, 1)), 16, axis=1).repeat(16, axis=2).astype(np.float32)
    x_noise = np.repeat(rng.standard_normal((1, 1, 16)), 24, axis=0).repeat(16, axis=1).astype(np.float32)
    # Spacing is coarsest along z (axis 0): a pattern varying along x only is untouched.
    np.testing.assert_allclose(apply_shift(x_noise, "thick", 1.0, spacing_zyx=SPACING), x_noise, atol=1e-5)
    thick = apply_shift(z_noise, "thick", 1.0, spacing_zyx=SPACING)
    assert np.abs(np.diff(thick, axis=0)).mean() < 0.3 * np.abs(np.diff(z_noise, axis=0)).mean()
    # Along another axis when asked.
    np.testing.assert_allclose(thick_slices(z_noise, 1.0, axis=2), z_noise, atol=1e-5)


def test_thick_slices_keep_a_linear_ramp() -> None:
    ramp = np.broadcast_to(np.arange(30, dtype=np.float32)[:, None, None], (30, 8, 8)).copy()
    out = thick_slices(ramp, 0.5, axis=0)
    # Linear interpolation between blurred samples reproduces a ramp away from the ends.
    np.testing.assert_allclose(out[4:-6], ramp[4:-6], atol=1e-3)


def test_noise_is_rician_for_magnitude_and_gaussian_otherwise(image: np.ndarray) -> None:
    out = apply_shift(image, "noise", 1.0, seed=0)
    assert out.min() >= 0  # magnitude stays non-negative
    centred = image - 140.0  # negative values: Gaussian noise, zero mean
    g = apply_shift(centred, "noise", 1.0, seed=0)
    diff = g - centred
    lo, hi = np.percentile(centred[::2], (0.5, 99.5))
    assert abs(diff.mean()) < 0.05 * diff.std()
    assert diff.std() == pytest.approx(0.10 * (hi - lo), rel=0.1)


def test_style_scales_only_the_low_frequency_amplitude(image: np.ndarray) -> None:
    out = low_frequency_amplitude_mix(image, 1.0, scale=2.0)
    spec_in, spec_out = np.fft.rfftn(image), np.fft.rfftn(out)
    box = low_freq_box(image.shape, STYLE_BETA).numpy()
    box_nodc = box.copy()
    box_nodc[0, 0, 0] = False
    np.testing.assert_allclose(np.abs(spec_out[~box]), np.abs(spec_in[~box]), rtol=1e-3, atol=1e-5 * np.abs(spec_in).max())
    np.testing.assert_allclose(np.abs(spec_out[box_nodc]), 2 * np.abs(spec_in[box_nodc]), rtol=1e-3)
    assert out.mean() == pytest.approx(image.mean(), rel=1e-4)
    np.testing.assert_allclose(np.angle(spec_out[box_nodc]), np.angle(spec_in[box_nodc]), atol=1e-3)


def test_style_takes_a_reference_amplitude(image: np.ndarray) -> None:
    reference = make_blob_volume((24, 32, 40), seed=7)[0] * 0.5 + 30
    out = low_frequency_amplitude_mix(image, 1.0, reference=reference)
    box = low_freq_box(image.shape, STYLE_BETA).numpy()
    np.testing.assert_allclose(np.abs(np.fft.rfftn(out))[box], np.abs(np.fft.rfftn(reference))[box], rtol=1e-3)
    assert out.mean() == pytest.approx(reference.mean(), rel=1e-3)
    # Through apply_shift a reference of another size is resized to the volume's grid.
    shifted = apply_shift(image, "style", 0.5, reference=make_blob_volume((20, 30, 30), seed=7)[0])
    assert shifted.shape == image.shape and not np.allclose(shifted, image)


def test_bad_arguments_are_refused(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown shift"):
        apply_shift(image, "blur", 0.5)
    with pytest.raises(ValueError, match="outside"):
        apply_shift(image, "noise", 1.5)
    with pytest.raises(ValueError, match="3D"):
        apply_shift(image[0], "noise", 0.5)
