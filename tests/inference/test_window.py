"""Sliding window: positions, exact weighting, agreement with MONAI, batching, progress, cancel."""

from __future__ import annotations

import pytest
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.inferers.utils import _get_scan_interval

from napari_freqseg.errors import CancelledError
from napari_freqseg.inference.window import count_windows, importance_map, sliding_window, window_starts

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize(
    ("size", "patch", "overlap"), [(40, 16, 0.5), (37, 16, 0.25), (16, 16, 0.5), (100, 32, 0.0), (33, 32, 0.75)]
)
def test_window_starts_match_monai(size: int, patch: int, overlap: float) -> None:
    interval = _get_scan_interval((size,), (patch,), 1, (overlap,))
    monai_starts = sorted({s[0].start for s in dense_patch_slices((size,), (patch,), interval)})
    assert window_starts(size, patch, overlap) == monai_starts
    assert window_starts(size, patch, overlap)[-1] == max(0, size - patch)


@pytest.mark.parametrize("patch", [(16, 16, 16), (80, 112, 112), (7, 32, 5), (1, 4, 9)])
@pytest.mark.parametrize("gaussian", [True, False])
def test_importance_map_equals_monai(patch: tuple[int, int, int], gaussian: bool) -> None:
    ours = importance_map(patch, gaussian)
    theirs = compute_importance_map(patch, mode="gaussian" if gaussian else "constant", sigma_scale=0.125)
    assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)


def test_segment_path_does_not_import_monai() -> None:
    """Importing monai.data costs seconds per `freqseg segment`: the inference package avoids it."""
    import subprocess
    import sys

    code = "import sys, napari_freqseg.inference, napari_freqseg.cli.segment; print('monai' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def _per_voxel(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.sigmoid(x), 1 - torch.sigmoid(x), x * 3], dim=1)


@pytest.mark.parametrize("gaussian", [True, False])
@pytest.mark.parametrize("shape", [(23, 40, 37), (10, 9, 20)])
def test_per_voxel_predictor_is_reproduced_exactly(gaussian: bool, shape: tuple[int, int, int]) -> None:
    """Identical window outputs must average to themselves: checks the separable weight sums
    and the padding of volumes smaller than the patch."""
    x = torch.randn(1, *shape)
    out = sliding_window(_per_voxel, x, (16, 16, 16), overlap=0.5, batch_size=3, gaussian=gaussian)
    assert out.shape == (3, *shape)
    torch.testing.assert_close(out, _per_voxel(x[None])[0], rtol=1e-5, atol=1e-5)


def test_constant_mode_equals_monai() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 3, 5, padding=2)  # a receptive field: windows differ at their edges
    x = torch.randn(1, 1, 30, 41, 25)
    with torch.inference_mode():
        ours = sliding_window(conv, x[0], (16, 24, 16), overlap=0.4, batch_size=4, gaussian=False)
        theirs = sliding_window_inference(x, (16, 24, 16), 4, conv, overlap=0.4, mode="constant")[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(30, 41, 25), (12, 20, 9)])
def test_gaussian_mode_equals_monai(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(1)
    conv = torch.nn.Sequential(torch.nn.Conv3d(1, 3, 5, padding=2), torch.nn.Softmax(dim=1))
    x = torch.randn(1, 1, *shape)
    with torch.inference_mode():
        ours = sliding_window(conv, x[0], (16, 24, 16), overlap=0.5, gaussian=True)
        theirs = sliding_window_inference(x, (16, 24, 16), 2, conv, overlap=0.5, mode="gaussian")[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_unnormalised_sum_has_the_same_argmax_and_batching_does_not_matter() -> None:
    torch.manual_seed(2)
    conv = torch.nn.Conv3d(1, 4, 3, padding=1)
    x = torch.randn(1, 20, 33, 26)
    with torch.inference_mode():
        mean1 = sliding_window(conv, x, (16, 16, 16), batch_size=1)
        mean5 = sliding_window(conv, x, (16, 16, 16), batch_size=5)
        total = sliding_window(conv, x, (16, 16, 16), batch_size=2, normalize=False)
    torch.testing.assert_close(mean1, mean5, rtol=1e-5, atol=1e-5)
    assert torch.equal(mean1.argmax(0), total.argmax(0))


def test_progress_and_cancel_between_batches() -> None:
    x = torch.randn(1, 32, 32, 32)
    calls: list[tuple[int, int]] = []
    n = count_windows((32, 32, 32), (16, 16, 16), 0.5)
    assert n == 27
    sliding_window(_per_voxel, x, (16, 16, 16), batch_size=4, progress=lambda d, t, m: calls.append((d, t)))
    assert calls == [(i, 7) for i in range(1, 8)]
    seen = []

    def predictor(w: torch.Tensor) -> torch.Tensor:
        seen.append(w.shape[0])
        return _per_voxel(w)

    with pytest.raises(CancelledError):
        sliding_window(predictor, x, (16, 16, 16), batch_size=4, cancelled=lambda: len(seen) >= 2)
    assert seen == [4, 4]  # stopped right after the second batch


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(_per_voxel, torch.zeros(1, 8, 8, 8), (8, 8, 8), overlap=1.0)
    with pytest.raises(ValueError, match="C, D, H, W"):
        sliding_window(_per_voxel, torch.zeros(8, 8, 8), (8, 8, 8))
