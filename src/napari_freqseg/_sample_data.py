"""npe2 sample data: small real volumes shipped in the package, with their geometry."""

from __future__ import annotations

from pathlib import Path

from .io.volume import read_volume
from .layers import image_layer_data, labels_layer_data

SAMPLE_DIR = Path(__file__).parent / "sample_data"

SAMPLES: dict[str, tuple[str, str | None, str]] = {
    # key: (image file, label file, site name shown in layer names)
    "la": ("la_CCGAKN4EDT72KC8TTJ76_image.nii.gz", "la_CCGAKN4EDT72KC8TTJ76_label.nii.gz", "la"),
    "icbm152": ("icbm152_2009a_t1.nii.gz", "icbm152_2009a_tissue.nii.gz", "icbm152"),
    "colin27": ("colin27_t1.nii.gz", "colin27_brain_mask.nii.gz", "colin27"),
}


def sample_path(key: str, label: bool = False) -> Path:
    """Path of a shipped sample volume (image or its label map)."""
    image, lab, _ = SAMPLES[key]
    name = lab if label else image
    if name is None:
        raise KeyError(f"sample {key!r} has no label map")
    return SAMPLE_DIR / name


def _load(key: str) -> list[tuple]:
    _, lab, site = SAMPLES[key]
    image = read_volume(sample_path(key))
    layers = [image_layer_data(image, name=f"{site} image")]
    if lab is not None:
        labels = read_volume(sample_path(key, label=True))
        layers.append(labels_layer_data(labels.array, image.geometry, f"{site} truth", labels.metadata(), opacity=0.4))
    return layers


def sample_la() -> list[tuple]:
    return _load("la")


def sample_icbm152() -> list[tuple]:
    return _load("icbm152")


def sample_colin27() -> list[tuple]:
    return _load("colin27")
