"""Networks, the model-file format and the registry of bundled and user models. No Qt, no napari."""

from .vnet import VNet

__all__ = ["VNet"]
