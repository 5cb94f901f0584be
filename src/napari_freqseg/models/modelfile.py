"""The model file: one `.safetensors` file holding the weights and, in its header, JSON metadata.

Loading reads tensors and a JSON string only: no pickle, no code from the file is ever executed.
The metadata says how to build the network (architecture and arguments), what it segments (class
names), how to prepare a volume (intensity normalisation, spacing, orientation, patch size), and
where it came from (training method and data, labeled fraction, metrics, parent model).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import ModelError
from ..io.atomic import write_atomically
from .preprocess import Normalization
from .unet import UNet3D
from .vnet import VNet

if TYPE_CHECKING:
    from ..io.dicom_seg import Algorithm

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
    style: dict[str, Any] | None = None  # the training data's style (harmonize.TrainingStyle), None = unknown
    description: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def norm(self) -> Normalization:
        return Normalization.from_dict(self.normalization)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}, sort_keys=True)

    def validate(self, source: str = "") -> ModelMeta:
        """Check every field that preparing a scan relies on; ModelError with one line otherwise.
        Run when a model file is read and before one is written (so `models import` refuses what
        would fail at first use)."""
        where = source or self.name or "model"

        def bad(what: str) -> ModelError:
            return ModelError(f"{where}: metadata {what}")

        if not isinstance(self.name, str) or not isinstance(self.architecture, str):
            raise bad("name and architecture must be text")
        if not isinstance(self.arch_args, dict):
            raise bad(f"arch_args must be a table, not {self.arch_args!r:.40}")
        if not (isinstance(self.classes, list) and len(self.classes) >= 2 and all(isinstance(c, str) for c in self.classes)):
            raise bad("classes must name at least two classes (background first)")
        if not (
            isinstance(self.patch_size, list)
            and len(self.patch_size) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in self.patch_size)
        ):
            raise bad(f"patch_size must be three positive whole numbers (z, y, x), not {self.patch_size!r:.40}")
        if self.spacing is not None and not (
            isinstance(self.spacing, list)
            and len(self.spacing) == 3
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in self.spacing)
        ):
            raise bad(f"spacing must be three positive sizes in mm (x, y, z) or none, not {self.spacing!r:.40}")
        if self.orientation is not None and not _valid_orientation(self.orientation):
            raise bad(f"orientation {self.orientation!r:.20} is not a three-letter code such as LPS or RAS")
        if not isinstance(self.normalization, dict):
            raise bad("normalization must be a table")
        try:
            Normalization.from_dict(self.normalization)
        except (TypeError, ValueError) as exc:
            raise bad(f"normalization: {exc}") from None
        for key in ("training", "metrics"):
            if not isinstance(getattr(self, key), dict):
                raise bad(f"{key} must be a table")
        if self.style is not None:
            from ..harmonize import TrainingStyle

            TrainingStyle.from_dict(self.style, where)
        return self

    @classmethod
    def from_json(cls, text: str, source: str = "") -> ModelMeta:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: metadata is not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise ModelError(f"{source}: metadata is nested too deeply") from None
        if not isinstance(d, dict):
            raise ModelError(f"{source}: metadata is not a table ({type(d).__name__})")
        if d.pop("format", None) != FORMAT:
            raise ModelError(f"{source}: not a napari-freqseg model file")
        known = set(cls.__dataclass_fields__)
        missing = {"name", "architecture", "arch_args", "classes"} - set(d)
        if missing:
            raise ModelError(f"{source}: metadata lacks {', '.join(sorted(missing))}")
        try:
            version = int(d.pop("format_version", 0))
        except (TypeError, ValueError, OverflowError):
            raise ModelError(f"{source}: metadata has no valid format version") from None
        if version > FORMAT_VERSION:
            raise ModelError(f"{source}: made by a newer napari-freqseg (format {FORMAT_VERSION} is supported)")
        return cls(**{k: v for k, v in d.items() if k in known}).validate(source)


def _valid_orientation(code: object) -> bool:
    """A three-letter ITK orientation code: one of R/L, one of A/P, one of S/I, in any order."""
    if not isinstance(code, str) or len(code) != 3:
        return False
    axes = [{"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}.get(c) for c in code.upper()]
    return None not in axes and sorted(axes) == [0, 1, 2]


def build_network(meta: ModelMeta) -> nn.Module:
    """An untrained network as the metadata describes it."""
    arch = ARCHITECTURES.get(meta.architecture)
    if arch is None:
        raise ModelError(f"unknown architecture {meta.architecture!r} (known: {', '.join(ARCHITECTURES)})")
    try:
        return arch(in_channels=meta.in_channels, n_classes=meta.n_classes, **meta.arch_args)
    except (TypeError, ValueError, RuntimeError, ArithmeticError) as exc:  # e.g. a negative or zero width
        raise ModelError(f"architecture {meta.architecture!r} does not take these arguments: {str(exc)[:160]}") from None


def _check_shapes(p: Path, meta: ModelMeta) -> None:
    """The network the metadata describes, built without memory (meta device), against the shapes
    of the file's tensors (read from its header): a small file cannot make us allocate gigabytes."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_network(meta).state_dict().items()}
    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            stored = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{p.name}: weights are corrupt ({str(exc).splitlines()[0][:120]})") from None
    wrong = sorted(k for k in expected.keys() & stored.keys() if expected[k] != stored[k])
    if wrong:
        k = wrong[0]
        raise ModelError(
            f"{p.name}: weights do not fit a {meta.architecture} with {meta.arch_args} "
            f"({k}: {list(stored[k])} in the file, {list(expected[k])} expected)"[:300]
        )
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"{p.name}: weights do not fit a {meta.architecture} with {meta.arch_args} "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {', '.join((missing or unexpected)[:3])})"[:300]
        )


def save_model(path: str | os.PathLike, network: nn.Module, meta: ModelMeta) -> Path:
    """Write weights + metadata atomically (temp file in the same folder, then rename)."""
    p = Path(path)
    meta.validate(p.name)
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
    _check_shapes(p, meta)  # before anything is allocated: the file's tensors bound what is built
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


def model_algorithm(meta: ModelMeta) -> Algorithm:
    """How a DICOM SEG names the model that made it: its name, version and training method."""
    from ..io.dicom_seg import Algorithm

    method = str(meta.training.get("method", "")) if isinstance(meta.training, dict) else ""
    return Algorithm(name=meta.name, version=f"{meta.version} {method}".strip())
