"""Spectra, band masks, amplitude mixing (FDA, TP-RAM), L-AAE, F-ASE, reliance maps. Torch only.

Batched tensors are (N, C, *spatial) with 2 or 3 spatial axes, on any device.
"""

from .bands import band_pass, box_half_widths, box_slices, filter_bands, low_freq_box, radial_frequency, shell_index
from .fase import FASE, amplitude_gradient, band_reliance
from .grad import confident_pseudo_labels, eval_mode, input_gradient, masked_cross_entropy, tiled_logits
from .laae import LAAEResult, LowFreqStyle, StyleBank, batch_spread, bidirectional, laae_attack, lowfreq_style, restyle
from .mixing import fda, mix_amplitude, tp_ram, tp_ram_ratios
from .reliance import RelianceCurve, reliance_curve
from .spectrum import (
    RadialProfile,
    VolumeSpectrum,
    amplitude_on_grid,
    amplitude_phase,
    axis_profiles,
    centred_log_amplitude,
    radial_profile,
    recompose,
    resample_centred,
    volume_spectrum,
)

__all__ = [
    "FASE",
    "LAAEResult",
    "LowFreqStyle",
    "RadialProfile",
    "RelianceCurve",
    "StyleBank",
    "VolumeSpectrum",
    "amplitude_gradient",
    "amplitude_on_grid",
    "amplitude_phase",
    "axis_profiles",
    "band_pass",
    "band_reliance",
    "batch_spread",
    "bidirectional",
    "box_half_widths",
    "box_slices",
    "centred_log_amplitude",
    "confident_pseudo_labels",
    "eval_mode",
    "fda",
    "filter_bands",
    "input_gradient",
    "laae_attack",
    "low_freq_box",
    "lowfreq_style",
    "masked_cross_entropy",
    "mix_amplitude",
    "radial_frequency",
    "radial_profile",
    "recompose",
    "reliance_curve",
    "resample_centred",
    "restyle",
    "shell_index",
    "tiled_logits",
    "tp_ram",
    "tp_ram_ratios",
    "volume_spectrum",
]
