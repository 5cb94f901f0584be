"""Import V-Net weights saved by the SSL4MIS-family code (UA-MT, SASSNet, DTC, MC-Net, BCP, ...).

Those repositories save `torch.save(model.state_dict(), path)` of a V-Net whose blocks are named
`block_one`, `block_one_dw`, ..., `out_conv`, each holding an `nn.Sequential` called `conv` of
(conv, [norm], ReLU) stages. The file is read with `torch.load(weights_only=True)`, which refuses
anything but tensors and plain containers, so no code from it runs. Their networks were trained on
arrays in (x, y, z) order (UA-MT's LA h5 files); ours see (z, y, x), so kernels are transposed.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ModelError
from .modelfile import ModelMeta, build_network

# SSL4MIS block name -> our VNet module name.
_BLOCKS = {
    "block_one": "block1", "block_one_dw": "down1", "block_two": "block2", "block_two_dw": "down2",
    "block_three": "block3", "block_three_dw": "down3", "block_four": "block4", "block_four_dw": "down4",
    "block_five": "block5", "block_five_up": "up5", "block_six": "block6", "block_six_up": "up6",
    "block_seven": "block7", "block_seven_up": "up7", "block_eight": "block8", "block_eight_up": "up8",
    "block_nine": "block9",
}  # fmt: skip
_KEY = re.compile(r"^(?P<block>block_[a-z]+(?:_dw|_up)?)\.conv\.(?P<index>\d+)\.(?P<param>\w+)$")
_CONTAINERS = ("state_dict", "model_state_dict", "model", "net", "network", "student", "state")
_NORMS = {"batchnorm": "batch", "instancenorm": "instance", "groupnorm": "group", "none": "none"}
SSL4MIS_GROUPS = 16  # SSL4MIS builds GroupNorm(num_groups=16, ...)


@dataclass
class Converted:
    """An imported network with its metadata, and what the import had to ignore or fill in."""

    network: torch.nn.Module
    meta: ModelMeta
    notes: list[str] = field(default_factory=list)


#: File signatures of things people pass by mistake, to name them in the message.
_OTHER_FORMATS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "gzip-compressed, e.g. a .nii.gz volume"),
    (b"\x93NUMPY", "a NumPy array"),
)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a `torch.save`d state dict, unwrapped from common checkpoint containers and
    `DataParallel`'s `module.` prefix. Only tensors and plain containers are accepted."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such file")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save: a zip, or a legacy pickle
        kind = next((name for magic, name in _OTHER_FORMATS if head.startswith(magic)), "")
        raise ModelError(f"{p.name}: not a PyTorch weights file{f' (it is {kind})' if kind else ''}")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(
            f"{p.name}: holds Python objects besides tensors (classes, functions), refused for safety; "
            "save its state_dict() with torch.save and import that"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the unpickler raises many kinds on foreign bytes
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ModelError(f"{p.name}: not a readable PyTorch file ({reason})") from None
    for _ in range(3):  # {'net': {'state_dict': ...}} and the like
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _CONTAINERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{p.name}: no state dict of tensors found")
    return {re.sub(r"^(module\.)+", "", k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _strip_parts(state: dict[str, torch.Tensor], decoder: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Drop `encoder.` / `<decoder>.` prefixes (BCP, MC-Net split the V-Net); other keys are set aside."""
    kept, ignored = {}, []
    for key, value in state.items():
        name = key
        if name.startswith("encoder."):
            name = name[len("encoder.") :]
        elif name.startswith(f"{decoder}."):
            name = name[len(decoder) + 1 :]
        if _KEY.match(name) or name.startswith("out_conv."):
            kept[name] = value
        else:
            ignored.append(key)
    return kept, ignored


def detect_normalization(state: dict[str, torch.Tensor]) -> str:
    """SSL4MIS normalisation name ('batchnorm', 'groupnorm', 'instancenorm', 'none') from the keys."""
    conv_indices = sorted(
        int(m["index"]) for k, v in state.items() if (m := _KEY.match(k)) and m["block"] == "block_two" and v.ndim == 5
    )
    if conv_indices[:2] == [0, 2]:
        return "none"
    if "block_one.conv.1.running_mean" in state:
        return "batchnorm"
    if "block_one.conv.1.weight" in state:
        return "groupnorm"
    return "instancenorm"


def _map_key(key: str, stage_len: int) -> str:
    if key.startswith("out_conv."):
        return "classifier." + key[len("out_conv.") :]
    m = _KEY.match(key)
    index = int(m["index"])
    ours = (index // stage_len) * 3 + index % stage_len  # ours: (conv, norm, ReLU) in every stage
    return f"{_BLOCKS[m['block']]}.{ours}.{m['param']}"


def convert_ssl4mis_vnet(
    state: dict[str, torch.Tensor],
    *,
    name: str,
    classes: list[str],
    network_norm: str = "auto",
    axes: str = "xyz",
    decoder: str = "decoder",
    **meta_fields: object,
) -> Converted:
    """Build our VNet from an SSL4MIS V-Net state dict.

    network_norm: 'auto' (detected from the keys) or an SSL4MIS name ('batchnorm', ...). axes: the array order the
    network was trained on ('xyz' for UA-MT's LA h5 files; 'zyx' if it already saw numpy order).
    decoder: prefix of the decoder to take when the network has several (MC-Net: 'decoder1').
    meta_fields: further ModelMeta fields (spacing, patch_size, intensity `normalization`, ...).
    """
    if axes not in ("xyz", "zyx"):
        raise ModelError(f"axes must be 'xyz' or 'zyx', not {axes!r}")
    if not any(k.startswith(f"{decoder}.") for k in state) and decoder == "decoder":
        decoder = "decoder1"  # MC-Net / BCP name their first decoder so
    state, ignored = _strip_parts(state, decoder)
    if "block_one.conv.0.weight" not in state or "out_conv.weight" not in state:
        raise ModelError("not an SSL4MIS V-Net state dict (no block_one.conv.0.weight / out_conv.weight)")
    ssl_norm = detect_normalization(state) if network_norm == "auto" else network_norm
    if ssl_norm not in _NORMS:
        raise ModelError(f"unknown normalisation {ssl_norm!r} (choose from auto, {', '.join(_NORMS)})")
    first, out = state["block_one.conv.0.weight"], state["out_conv.weight"]
    in_channels, n_filters, n_classes = int(first.shape[1]), int(first.shape[0]), int(out.shape[0])
    if len(classes) != n_classes:
        raise ModelError(f"the network predicts {n_classes} classes but {len(classes)} class names were given")
    arch_args = {"n_filters": n_filters, "normalization": _NORMS[ssl_norm], "dropout": 0.5}
    if ssl_norm == "groupnorm":
        arch_args["norm_groups"] = SSL4MIS_GROUPS
    meta = ModelMeta(
        name=name, architecture="vnet", arch_args=arch_args, classes=list(classes), in_channels=in_channels, **meta_fields
    )
    network = build_network(meta)
    stage_len = 2 if ssl_norm == "none" else 3
    mapped = {}
    for key, value in state.items():
        if value.ndim == 5 and axes == "xyz":
            value = value.transpose(2, 4)  # kernel (x, y, z) -> (z, y, x)
        mapped[_map_key(key, stage_len)] = value.contiguous()
    notes = [f"ignored {len(ignored)} tensors outside the V-Net (e.g. {', '.join(ignored[:3])})"] if ignored else []
    ours = network.state_dict()
    missing = [k for k in ours if k not in mapped]
    filled = [k for k in missing if ssl_norm == "instancenorm" and k.endswith((".weight", ".bias")) and ours[k].ndim == 1]
    for k in filled:  # SSL4MIS instance norm has no affine parameters: identity affine is exact
        mapped[k] = torch.ones_like(ours[k]) if k.endswith(".weight") else torch.zeros_like(ours[k])
    if filled:
        notes.append("instance norm without affine parameters: identity affine filled in")
    still_missing = [k for k in missing if k not in filled]
    unexpected = [k for k in mapped if k not in ours]
    if still_missing or unexpected:
        what = (still_missing or unexpected)[:3]
        raise ModelError(
            f"state dict does not fit a V-Net with n_filters={n_filters}, {ssl_norm}: "
            f"{len(still_missing)} missing, {len(unexpected)} unexpected (e.g. {', '.join(what)})"
        )
    try:
        network.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise ModelError(f"state dict does not fit a V-Net with n_filters={n_filters}: {detail[:200]}") from None
    return Converted(network.eval(), meta, notes)
