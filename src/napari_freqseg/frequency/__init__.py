"""Spectra, band masks, amplitude mixing (FDA, TP-RAM), L-AAE, F-ASE, reliance maps. Torch only.

Batched tensors are (N, C, *spatial) with 2 or 3 spatial axes, on any device. Names are imported
from their modules on first use (PEP 562), so that light users (the command line's start,
`frequency.defaults`) do not load torch.
"""

import importlib
from typing import Any

_HOME = {
    "AmplitudeGrad": "amplitude_grad",
    "FASE": "fase",
    "LAAEResult": "laae",
    "LowFreqStyle": "laae",
    "RadialProfile": "spectrum",
    "RelianceCurve": "reliance",
    "StyleBank": "laae",
    "VolumeSpectrum": "spectrum",
    "amplitude_gradient": "amplitude_grad",
    "amplitude_on_grid": "spectrum",
    "amplitude_phase": "spectrum",
    "axis_profiles": "spectrum",
    "band_pass": "bands",
    "band_reliance": "fase",
    "batch_spread": "laae",
    "bidirectional": "laae",
    "box_half_widths": "bands",
    "box_slices": "bands",
    "centred_log_amplitude": "spectrum",
    "confident_pseudo_labels": "grad",
    "eval_mode": "grad",
    "fda": "mixing",
    "filter_bands": "bands",
    "input_gradient": "grad",
    "laae_attack": "laae",
    "low_freq_box": "bands",
    "lowfreq_style": "laae",
    "masked_cross_entropy": "grad",
    "mix_amplitude": "mixing",
    "radial_frequency": "bands",
    "radial_profile": "spectrum",
    "recompose": "spectrum",
    "reliance_curve": "reliance",
    "reliance_from": "fase",
    "resample_centred": "spectrum",
    "restyle": "laae",
    "shell_index": "bands",
    "tiled_logits": "grad",
    "tp_ram": "mixing",
    "tp_ram_ratios": "mixing",
    "volume_spectrum": "spectrum",
}



def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


__all__ = [
    "AmplitudeGrad",
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
    "reliance_from",
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
