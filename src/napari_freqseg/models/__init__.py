"""Networks, the model-file format and the registry of bundled and user models. No Qt, no napari."""

from .modelfile import ARCHITECTURES, ModelMeta, build_network, load_model, read_meta, save_model
from .preprocess import Normalization
from .unet import UNet3D
from .vnet import VNet

__all__ = ["ARCHITECTURES", "ModelMeta", "Normalization", "UNet3D", "VNet", "build_network", "load_model", "read_meta", "save_model"]
