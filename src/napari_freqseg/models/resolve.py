"""Which network a `--model` (or a widget's model choice) names for the frequency tools: the one
place that turns a name, a file or 'random' into a network with its input preparation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:  # annotations only: the module loads without torch
    from ..frequency.volumes import ModelInput

RANDOM = "random"


def resolve_model(spec: str, seed: int = 0) -> ModelInput:
    """'random': a small V-Net with seeded random weights (for trying the methods before any model
    is trained); otherwise a model name (`freqseg models`) or a `.safetensors` file, with its own
    normalisation and grid."""
    import torch

    from ..frequency.volumes import ModelInput
    from ..models.modelfile import load_model
    from ..models.preprocess import Normalization
    from ..models.vnet import VNet
    from .registry import find_model

    if spec == RANDOM:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            network = VNet(in_channels=1, n_classes=2, n_filters=4, normalization="instance", dropout=0.0)
        return ModelInput(network=network.eval(), normalize=Normalization(), name=f"random V-Net (seed {seed})")
    path = find_model(spec)  # a bundled or user model's name, or a model file
    network, meta = load_model(path)
    if meta.in_channels != 1:
        raise ModelError(f"{path.name}: takes {meta.in_channels} channels; frequency tools need single-channel models")
    return ModelInput(
        network=network,
        normalize=meta.norm,
        spacing=tuple(meta.spacing) if meta.spacing else None,
        orientation=meta.orientation,
        name=meta.name,
        patch_size=tuple(meta.patch_size),
    )
