"""The 3D U-Net behind the V-Net's interface, model-file round trips and clear load errors."""

from __future__ import annotations

import pytest
import torch
from synthetic import tiny_vnet_meta

from napari_freqseg.errors import ModelError
from napari_freqseg.models import ARCHITECTURES, UNet3D, VNet, build_network, load_model, save_model

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
@pytest.mark.parametrize("arch", [UNet3D, VNet])
def test_same_interface(arch: type, norm: str) -> None:
    net = arch(in_channels=1, n_classes=3, n_filters=4, normalization=norm).eval()
    assert net.in_channels == 1 and net.n_classes == 3 and net.feature_channels == 4 and net.size_divisor == 16
    x = torch.randn(2, 1, 16, 32, 48)
    with torch.no_grad():
        logits, features = net(x, return_features=True)
        assert torch.equal(net(x), logits)
    assert logits.shape == (2, 3, 16, 32, 48) and features.shape == (2, 4, 16, 32, 48)


def test_unet_dropout_makes_passes_differ_in_train_mode_only() -> None:
    torch.manual_seed(0)
    net = UNet3D(n_filters=2, dropout=0.5, normalization="instance")
    x = torch.randn(1, 1, 32, 32, 32)  # instance norm needs > 1 voxel at the bottleneck
    with torch.no_grad():
        net.eval()
        assert torch.equal(net(x), net(x))
        net.train()
        assert not torch.equal(net(x), net(x))


def test_group_norm_groups_are_an_argument() -> None:
    net = VNet(n_filters=16, normalization="group", norm_groups=16)
    assert net.block1[1].num_groups == 16 and VNet(n_filters=16, normalization="group").block1[1].num_groups == 8


@pytest.mark.parametrize("architecture", ["unet", "vnet"])
def test_model_file_round_trip(tmp_path, architecture: str) -> None:
    assert architecture in ARCHITECTURES
    meta = tiny_vnet_meta(architecture=architecture, arch_args={"n_filters": 2, "normalization": "instance"})
    net = build_network(meta).eval()
    path = save_model(tmp_path / "m.safetensors", net, meta)
    loaded, meta2 = load_model(path)
    assert meta2 == meta and not loaded.training
    x = torch.randn(1, 1, 32, 32, 32)  # instance norm needs > 1 voxel at the bottleneck
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_corrupt_and_mismatched_files_give_clear_messages(tmp_path) -> None:
    meta = tiny_vnet_meta()
    path = save_model(tmp_path / "m.safetensors", build_network(meta), meta)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.safetensors"):
        load_model(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a readable model file"):
        load_model(tmp_path / "junk.safetensors")
    three = tiny_vnet_meta(classes=["a", "b", "c"])
    save_model(tmp_path / "three.safetensors", build_network(meta), three)  # 2-class weights, 3 names
    with pytest.raises(ModelError, match=r"weights do not fit .*\(classifier\.bias: \[2\] in the file, \[3\] expected\)"):
        load_model(tmp_path / "three.safetensors")
    wider = tiny_vnet_meta(arch_args={"n_filters": 4, "normalization": "batch"})
    save_model(tmp_path / "wider.safetensors", build_network(meta), wider)
    with pytest.raises(ModelError, match="weights do not fit"):
        load_model(tmp_path / "wider.safetensors")
    bad_args = tiny_vnet_meta(arch_args={"n_filters": 2, "normalization": "layer"})
    save_model(tmp_path / "bad.safetensors", build_network(meta), bad_args)
    with pytest.raises(ModelError, match="does not take these arguments"):
        load_model(tmp_path / "bad.safetensors")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arch_args": {"n_filters": 100000, "normalization": "batch"}}, "weights do not fit"),  # would be 10s of GiB
        ({"arch_args": {"n_filters": -3, "normalization": "batch"}}, "does not take these arguments"),
        ({"arch_args": {"n_filters": 2, "normalization": "group", "norm_groups": 0}}, "does not take these arguments"),
        ({"format_version": float("inf")}, "no valid format version"),
        ({"normalization": {"method": "zscore", "clip": [float("nan"), 300]}}, "clip must be two percentiles"),
        ({"style": {"patch": [100000] * 3, "beta": 0.1, "amplitude": [1.0], "percentiles": [1, 99], "landmarks": [0, 1],
                    "scans": 1}}, "style is malformed"),
    ],
)  # fmt: skip
def test_hostile_metadata_is_one_model_error_before_any_large_allocation(tmp_path, change: dict, message: str) -> None:
    """A small file whose metadata asks for a huge or impossible network: one line, nothing built."""
    import json

    from safetensors.torch import load_file, save_file

    meta = tiny_vnet_meta()
    good = save_model(tmp_path / "good.safetensors", build_network(meta), meta)
    d = json.loads(meta.to_json()) | change
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(good), bad, metadata={"freqseg": json.dumps(d)})
    with pytest.raises(ModelError, match=message):
        load_model(bad)
