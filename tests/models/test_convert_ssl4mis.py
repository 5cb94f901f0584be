"""Import of SSL4MIS-family V-Net state dicts: same predictions, safe loading, clear errors."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from napari_freqseg.cli import main
from napari_freqseg.errors import ModelError
from napari_freqseg.models import load_model
from napari_freqseg.models.convert import convert_ssl4mis_vnet, detect_normalization, read_state_dict

pytestmark = pytest.mark.usefixtures("single_thread")

_NAMES = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_STAGES = [1, 2, 3, 3, 3, 3, 3, 2, 1]


def _norm(kind: str, channels: int) -> list[nn.Module]:
    if kind == "batchnorm":
        bn = nn.BatchNorm3d(channels)
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 1.5)
        return [bn]
    if kind == "groupnorm":
        return [nn.GroupNorm(16, channels)]
    if kind == "instancenorm":
        return [nn.InstanceNorm3d(channels)]
    return []


def _holder(layers: list[nn.Module]) -> nn.Module:
    block = nn.Module()
    block.conv = nn.Sequential(*layers)
    return block


def ssl4mis_vnet(f: int, norm: str, n_classes: int = 2) -> nn.Module:
    """A V-Net with the SSL4MIS module names and (conv, [norm], ReLU) layout, written for the test."""
    net = nn.Module()
    widths = [f, 2 * f, 4 * f, 8 * f, 16 * f, 8 * f, 4 * f, 2 * f, f]
    previous = 1
    for i, (name, n, w) in enumerate(zip(_NAMES, _STAGES, widths)):
        layers: list[nn.Module] = []
        for s in range(n):
            layers += [nn.Conv3d(previous if s == 0 else w, w, 3, padding=1), *_norm(norm, w), nn.ReLU()]
        setattr(net, f"block_{name}", _holder(layers))
        previous = w
        if i < 4:
            setattr(net, f"block_{name}_dw", _holder([nn.Conv3d(w, 2 * w, 2, stride=2), *_norm(norm, 2 * w), nn.ReLU()]))
            previous = 2 * w
        elif i < 8:
            setattr(
                net, f"block_{name}_up", _holder([nn.ConvTranspose3d(w, w // 2, 2, stride=2), *_norm(norm, w // 2), nn.ReLU()])
            )
            previous = w // 2
    net.out_conv = nn.Conv3d(f, n_classes, 1)
    return net.eval()


def ssl4mis_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    skips = []
    for name in _NAMES[:4]:
        x = getattr(net, f"block_{name}").conv(x)
        skips.append(x)
        x = getattr(net, f"block_{name}_dw").conv(x)
    x = net.block_five.conv(x)
    for name in _NAMES[4:8]:
        x = getattr(net, f"block_{name}_up").conv(x if name == "five" else getattr(net, f"block_{name}").conv(x))
        x = x + skips.pop()
    return net.out_conv(net.block_nine.conv(x))


@pytest.mark.parametrize(("norm", "f"), [("batchnorm", 2), ("none", 2), ("instancenorm", 2), ("groupnorm", 16)])
def test_converted_network_predicts_the_same(norm: str, f: int) -> None:
    torch.manual_seed(0)
    theirs = ssl4mis_vnet(f, norm)
    state = theirs.state_dict()
    assert detect_normalization(state) == norm
    converted = convert_ssl4mis_vnet(state, name="ua-mt", classes=["background", "left atrium"], axes="xyz")
    assert (
        converted.meta.arch_args["normalization"]
        == {"batchnorm": "batch", "instancenorm": "instance", "groupnorm": "group", "none": "none"}[norm]
    )
    x_xyz = torch.randn(1, 1, 48, 32, 32)  # their arrays are (x, y, z)
    with torch.no_grad():
        expected = ssl4mis_forward(theirs, x_xyz)
        ours = converted.network(x_xyz.permute(0, 1, 4, 3, 2))  # ours see (z, y, x)
    torch.testing.assert_close(ours, expected.permute(0, 1, 4, 3, 2), rtol=1e-4, atol=1e-4)


def test_wrapped_and_prefixed_checkpoints(tmp_path) -> None:
    torch.manual_seed(1)
    theirs = ssl4mis_vnet(2, "batchnorm")
    state = theirs.state_dict()
    encoder = tuple(f"block_{n}" for n in _NAMES[:5])  # BCP / MC-Net split the V-Net in two modules
    split = {("encoder." if k.startswith(encoder) and "_up" not in k else "decoder1.") + k: v for k, v in state.items()}
    split["decoder2.out_conv.weight"] = torch.zeros(2, 2, 1, 1, 1)  # MC-Net's second decoder
    torch.save({"net": {f"module.{k}": v for k, v in split.items()}, "epoch": 3}, tmp_path / "mcnet.pth")
    loaded = read_state_dict(tmp_path / "mcnet.pth")
    converted = convert_ssl4mis_vnet(loaded, name="mc", classes=["bg", "fg"], axes="zyx")
    assert any("ignored 1 tensors" in n for n in converted.notes)
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(converted.network(x), ssl4mis_forward(theirs, x), rtol=1e-4, atol=1e-4)


def test_unsafe_or_wrong_files_are_refused(tmp_path) -> None:
    torch.save({"args": argparse.Namespace(lr=0.01), "w": torch.zeros(1)}, tmp_path / "pickled.pth")
    with pytest.raises(ModelError, match="refused for safety"):
        read_state_dict(tmp_path / "pickled.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(ModelError, match=r"text.pth: not a PyTorch weights file$"):
        read_state_dict(tmp_path / "text.pth")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelError, match=r"picture.png: not a PyTorch weights file \(it is a PNG image\)$"):
        read_state_dict(tmp_path / "picture.png")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(ModelError, match="no state dict of tensors"):
        read_state_dict(tmp_path / "empty.pth")
    with pytest.raises(ModelError, match="not an SSL4MIS V-Net"):
        convert_ssl4mis_vnet({"fc.weight": torch.zeros(2, 2)}, name="x", classes=["a", "b"])
    with pytest.raises(ModelError, match="predicts 2 classes but 3 class names"):
        convert_ssl4mis_vnet(ssl4mis_vnet(2, "none").state_dict(), name="x", classes=["a", "b", "c"])


def test_cli_import_writes_a_loadable_model(tmp_path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(2)
    theirs = ssl4mis_vnet(2, "batchnorm")
    torch.save(theirs.state_dict(), tmp_path / "best_model.pth")
    out = tmp_path / "ua-mt.safetensors"
    code = main(["models", "import", str(tmp_path / "best_model.pth"), "-o", str(out), "--name", "ua-mt-la",
                 "--classes", "background,left atrium", "--method", "UA-MT", "--labeled-fraction", "0.1"])  # fmt: skip
    assert code == 0 and "n_filters=2 batch norm" in capsys.readouterr().out
    network, meta = load_model(out)
    assert meta.name == "ua-mt-la" and meta.classes == ["background", "left atrium"] and meta.patch_size == [80, 112, 112]
    assert meta.training["method"] == "UA-MT" and meta.training["labeled_fraction"] == 0.1
    assert meta.normalization["method"] == "zscore" and meta.orientation == "LPS"
    x = torch.randn(1, 1, 32, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(
            network(x.permute(0, 1, 4, 3, 2)), ssl4mis_forward(theirs, x).permute(0, 1, 4, 3, 2), rtol=1e-4, atol=1e-4
        )
    again = ["models", "import", str(tmp_path / "best_model.pth"), "--name", "ua-mt-la"]
    assert main([*again, "-o", str(out)]) == 1  # an existing model is never replaced
    err = capsys.readouterr().err
    assert "a model is already there" in err and err.count("\n") == 1
    assert load_model(out)[1].name == "ua-mt-la"
    assert (
        main(
            ["models", "import", str(tmp_path / "best_model.pth"), "--name", "la-vnet-sup", "-o", str(tmp_path / "x.safetensors")]
        )
        == 1
    )
    assert "bundled model's name" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()
