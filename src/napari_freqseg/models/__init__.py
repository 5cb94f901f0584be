"""Networks, the model-file format and the registry of bundled and user models. No Qt, no napari.

Names are imported from their modules on first use (PEP 562), so that the command line's start
and the registry's listing do not load torch before they need it.
"""

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


__all__ = ["ARCHITECTURES", "ModelMeta", "Normalization", "UNet3D", "VNet", "build_network", "load_model", "read_meta", "save_model"]
