"""The model file: one `.safetensors` file holding the weights and, in its header, JSON metadata.

Loading reads tensors and a JSON string only: no pickle, no code from the file is ever executed.
The metadata says how to build the network (architecture and arguments), what it segments (class
names), how to prepare a volume (intensity normalisation, spacing, orientation, patch size), and
where it came from (training method and data, labeled fraction, metrics, parent model).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import ModelError
from ..io.atomic import write_atomically
from .preprocess import Normalization
from .unet import UNet3D
from .vnet import VNet

FORMAT = "napari-freqseg-model"
FORMAT_VERSION = 1
_META_KEY = "freqseg"

#: Architectures by name; each takes in_channels, n_classes and its own keyword arguments.
ARCHITECTURES: dict[str, type[nn.Module]] = {"vnet": VNet, "unet": UNet3D}


@dataclass
class ModelMeta:
    """Everything needed to run a network on a scan, and its provenance."""

    name: str
    architecture: str
    arch_args: dict[str, Any]
    classes: list[str]
    in_channels: int = 1
    normalization: dict[str, Any] = field(default_factory=lambda: Normalization().to_dict())
    spacing: list[float] | None = None  # (x, y, z) mm the network was trained at; None = native
    orientation: str | None = "LPS"  # canonical orientation of the network's input axes
    patch_size: list[int] = field(default_factory=lambda: [96, 96, 96])  # (z, y, x) voxels
    task: str = ""
    version: str = "1"
    training: dict[str, Any] = field(default_factory=dict)  # method, data, labeled cases/fraction, command
    metrics: dict[str, Any] = field(default_factory=dict)  # validation metrics
    parent: str | None = None  # name of the model this one was fine-tuned from
    description: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def norm(self) -> Normalization:
        return Normalization.from_dict(self.normalization)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "") -> ModelMeta:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: metadata is not valid JSON ({exc.msg})") from None
        if d.pop("format", None) != FORMAT:
            raise ModelError(f"{source}: not a napari-freqseg model file")
        if int(d.pop("format_version", 0)) > FORMAT_VERSION:
            raise ModelError(f"{source}: made by a newer napari-freqseg (format {FORMAT_VERSION} is supported)")
        known = set(cls.__dataclass_fields__)
        missing = {"name", "architecture", "arch_args", "classes"} - set(d)
        if missing:
            raise ModelError(f"{source}: metadata lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in d.items() if k in known})


def build_network(meta: ModelMeta) -> nn.Module:
    """An untrained network as the metadata describes it."""
    arch = ARCHITECTURES.get(meta.architecture)
    if arch is None:
        raise ModelError(f"unknown architecture {meta.architecture!r} (known: {', '.join(ARCHITECTURES)})")
    try:
        return arch(in_channels=meta.in_channels, n_classes=meta.n_classes, **meta.arch_args)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"architecture {meta.architecture!r} does not take these arguments: {exc}") from None


def save_model(path: str | os.PathLike, network: nn.Module, meta: ModelMeta) -> Path:
    """Write weights + metadata atomically (temp file in the same folder, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    write_atomically(p, ".safetensors", lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: meta.to_json()}))
    return p


def read_meta(path: str | os.PathLike) -> ModelMeta:
    """Only the metadata (cheap: the header, no tensors)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such model file")
    try:
        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{p.name}: not a readable model file ({str(exc).splitlines()[0][:120]})") from None
    if _META_KEY not in header:
        raise ModelError(f"{p.name}: safetensors file without napari-freqseg metadata")
    return ModelMeta.from_json(header[_META_KEY], p.name)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelMeta]:
    """Network (eval mode) with its weights, and its metadata. Never executes code from the file."""
    p = Path(path)
    meta = read_meta(p)
    network = build_network(meta)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{p.name}: weights are corrupt ({str(exc).splitlines()[0][:120]})") from None
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shapes that do not fit (e.g. another number of classes)
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise ModelError(f"{p.name}: weights do not fit a {meta.architecture} with {meta.arch_args} ({detail[:200]})") from None
    if result.missing_keys or result.unexpected_keys:
        what = result.missing_keys[:3] or result.unexpected_keys[:3]
        raise ModelError(
            f"{p.name}: weights do not fit a {meta.architecture} with {meta.arch_args} "
            f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected, e.g. {', '.join(what)})"
        )
    return network.to(device).eval(), meta
