"""Networks, the model-file format and the registry of bundled and user models. No Qt, no napari.

Names are imported from their modules on first use (PEP 562), so that the command line's start
and the registry's listing do not load torch before they need it.
"""

from .._lazy import lazy_attributes

_HOME = {
    "ARCHITECTURES": "modelfile",
    "ModelMeta": "modelfile",
    "build_network": "modelfile",
    "load_model": "modelfile",
    "read_meta": "modelfile",
    "save_model": "modelfile",
    "Normalization": "preprocess",
    "UNet3D": "unet",
    "VNet": "vnet",
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _HOME)

__all__ = [
    "ARCHITECTURES",
    "ModelMeta",
    "Normalization",
    "UNet3D",
    "VNet",
    "build_network",
    "load_model",
    "read_meta",
    "save_model",
]
