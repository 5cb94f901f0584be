"""Which network a `--model` (or the widgets' model choice) names: the one place to resolve it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:  # annotations only: the module loads without torch
    from ..frequency.volumes import ModelInput

RANDOM = "random"


def resolve_model(spec: str, seed: int = 0) -> ModelInput:
    """'random': a small V-Net with seeded random weights (for trying the methods before any model
    is trained); otherwise a `.safetensors` model file, with its own normalisation and grid."""
    import torch

    from ..frequency.volumes import ModelInput
    from ..models.modelfile import load_model
    from ..models.preprocess import Normalization
    from ..models.vnet import VNet

    if spec == RANDOM:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            network = VNet(in_channels=1, n_classes=2, n_filters=4, normalization="instance", dropout=0.0)
        return ModelInput(network=network.eval(), normalize=Normalization(), name=f"random V-Net (seed {seed})")
    path = Path(spec)
    if not path.is_file():
        raise ModelError(f"{spec}: no such model (use '{RANDOM}' or a .safetensors model file)")
    network, meta = load_model(path)
    if meta.in_channels != 1:
        raise ModelError(f"{path.name}: takes {meta.in_channels} channels; frequency tools need single-channel models")
    return ModelInput(
        network=network,
        normalize=meta.norm,
        spacing=tuple(meta.spacing) if meta.spacing else None,
        orientation=meta.orientation,
        name=meta.name,
    )
