"""`freqseg finetune`: a new model file naming its parent and slices; bad inputs are one line, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_blob_volume, tiny_vnet_meta

from napari_freqseg.cli import main
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import read_volume, write_volume
from napari_freqseg.models import registry
from napari_freqseg.models.modelfile import build_network, read_meta, save_model

pytestmark = pytest.mark.usefixtures("single_thread")
SHAPE = (32, 32, 32)


@pytest.fixture
def files(tmp_path: Path, oblique_geometry: Geometry, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(registry.USER_DIR_ENV, str(tmp_path / "user"))
    g = Geometry(
        size=SHAPE, spacing=oblique_geometry.spacing, origin=oblique_geometry.origin, direction=oblique_geometry.direction
    )
    image, label = make_blob_volume(SHAPE)
    torch.manual_seed(0)
    meta = tiny_vnet_meta(arch_args={"n_filters": 2, "normalization": "instance"}, patch_size=[32, 32, 32])
    other = Geometry(size=SHAPE, spacing=g.spacing, origin=(0.0, 0.0, 0.0), direction=g.direction)
    return {
        "model": save_model(tmp_path / "user" / "tiny.safetensors", build_network(meta), meta),
        "image": write_volume(image, g, tmp_path / "scan.nii.gz"),
        "labels": write_volume(label, g, tmp_path / "labels.nii.gz"),
        "elsewhere": write_volume(label, other, tmp_path / "labels_elsewhere.nii.gz"),
        "float": write_volume(label.astype(np.float32) + 0.5, g, tmp_path / "labels_float.nii.gz"),
        "negative": write_volume(label.astype(np.int16) - 1, g, tmp_path / "labels_negative.nii.gz"),
    }


def _args(files: dict[str, Path], out: Path, slices: str = "z:8,16,24", labels: str = "labels") -> list[str]:
    return ["finetune", "--model", "tiny", "--image", str(files["image"]), "--labels", str(files[labels]),
            "--slices", slices, "-o", str(out)]  # fmt: skip


def test_finetune_writes_a_model_naming_parent_scan_and_slices(files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "new" / "tuned.safetensors"
    assert main(_args(files, out) + ["--iters", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    meta = read_meta(out)
    assert printed["model"] == str(out) and meta.name == "tuned" and meta.parent == "tiny-vnet"
    assert meta.training["slices"] == {"z": [8, 16, 24]} and meta.training["iterations"] == 2
    assert meta.training["volume"] == str(files["image"])
    assert main(["finetune", "--model", str(out), "--image", str(files["image"]), "--labels", str(files["labels"]),
                 "--slices", "x:16", "-o", str(tmp_path / "round2.safetensors"), "--iters", "1", "--quiet"]) == 0  # fmt: skip
    assert read_meta(tmp_path / "round2.safetensors").parent == "tuned"
    assert "fine-tuned on 1 slices (x:16)" in capsys.readouterr().out


def test_finetune_takes_slices_on_every_axis_in_one_round(files, tmp_path: Path) -> None:
    out = tmp_path / "mixed.safetensors"
    assert main(["finetune", "--model", "tiny", "--image", str(files["image"]), "--labels", str(files["labels"]),
                 "--slices", "z:16", "y:12,20", "x:9", "-o", str(out), "--iters", "1", "--quiet"]) == 0  # fmt: skip
    training = read_meta(out).training
    assert training["slices"] == {"z": [16], "y": [12, 20], "x": [9]}
    assert training["options"]["patch_size"] == [32, 32, 32]


def test_weak_labels_between_corrected_slices_from_the_command_line(files, tmp_path: Path) -> None:
    plain, weak = tmp_path / "plain.safetensors", tmp_path / "weak.safetensors"
    assert main(_args(files, plain) + ["--iters", "1", "--quiet", "--weak-weight", "0"]) == 0
    assert main(_args(files, weak) + ["--iters", "1", "--quiet", "--weak-weight", "0.3"]) == 0
    p, w = read_meta(plain).training, read_meta(weak).training
    assert w["options"]["weak_weight"] == 0.3 and w["supervised_voxels"] > 2 * p["supervised_voxels"]


def test_wise_ft_mix_from_the_command_line(files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mix.safetensors"
    assert main(_args(files, out) + ["--iters", "1", "--quiet", "--mix", "0.5"]) == 0
    assert read_meta(out).training["options"]["mix"] == 0.5
    assert main(_args(files, tmp_path / "bad.safetensors") + ["--iters", "1", "--quiet", "--mix", "1.5"]) == 1
    assert "mix must be in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slices": "z:8,40"}, "slice z=40 is outside 0..31"),
        ({"slices": "k:8"}, "bad slice list"),
        ({"labels": "elsewhere"}, "grid differs from its image: origin"),
        ({"labels": "float"}, "labels must be integers"),
        ({"labels": "negative"}, "labels hold negative values (down to -1)"),
    ],
)
def test_bad_inputs_are_one_line_and_exit_1(files, tmp_path: Path, capsys, change: dict, message: str) -> None:
    out = tmp_path / "tuned.safetensors"
    assert main(_args(files, out, **change) + ["--iters", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("freqseg finetune: error:") and message in err, err
    assert not out.exists()


def test_output_must_be_a_new_model_file(files, tmp_path: Path, capsys) -> None:
    assert main(_args(files, files["model"]) + ["--iters", "1"]) == 1
    assert "refusing to overwrite the model being fine-tuned" in capsys.readouterr().err
    earlier = save_model(tmp_path / "round1.safetensors", build_network(read_meta(files["model"])), read_meta(files["model"]))
    before = earlier.read_bytes()
    assert main(_args(files, earlier) + ["--iters", "1"]) == 1  # an earlier round is not replaced by mistake
    err = capsys.readouterr().err
    assert "a model file is there already; choose another -o, or --overwrite" in err and err.count("\n") == 1
    assert earlier.read_bytes() == before
    assert main(_args(files, earlier) + ["--iters", "1", "--overwrite"]) == 0 and earlier.read_bytes() != before
    capsys.readouterr()
    assert main(_args(files, tmp_path / "tuned.pt") + ["--iters", "1"]) == 1
    assert "must end in .safetensors" in capsys.readouterr().err
    assert main(["finetune", "--model", "nonexistent", "--image", str(files["image"]), "--labels", str(files["labels"]),
                 "--slices", "z:1", "-o", str(tmp_path / "x.safetensors")]) == 1  # fmt: skip
    assert "no model named 'nonexistent'" in capsys.readouterr().err
    assert main(_args(files, tmp_path / "la vnet (copy).safetensors") + ["--iters", "1"]) == 1  # names the model too
    err = capsys.readouterr().err
    assert "is not a model name" in err and err.count("\n") == 1 and not (tmp_path / "la vnet (copy).safetensors").exists()


@pytest.mark.parametrize("seconds", ["inf", "nan", "0", "-5", "1e9"])
def test_time_budget_must_be_a_finite_number_of_seconds(files, tmp_path: Path, capsys, seconds: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(_args(files, tmp_path / "tuned.safetensors") + ["--seconds", seconds])
    assert exit_info.value.code == 2
    assert "--seconds: " in capsys.readouterr().err and not (tmp_path / "tuned.safetensors").exists()


def test_labels_that_hold_only_background_are_refused_but_erasing_on_some_slices_is_learnt(files, tmp_path: Path, capsys) -> None:
    """Corrected slices that are all background (false positives erased) are a real correction;
    labels that are background everywhere are a wrong layer or file."""
    out = tmp_path / "bg.safetensors"
    assert main(_args(files, out, slices="z:0,1") + ["--iters", "1", "--quiet"]) == 0  # the blob does not reach these slices
    empty = write_volume(np.zeros(SHAPE, np.uint8), read_volume(files["labels"]).geometry, tmp_path / "empty.nii.gz")
    args = [
        "finetune",
        "--model",
        "tiny",
        "--image",
        str(files["image"]),
        "--labels",
        str(empty),
        "--slices",
        "z:8",
        "-o",
        str(tmp_path / "e.safetensors"),
    ]
    capsys.readouterr()
    assert main([*args, "--iters", "1"]) == 1
    err = capsys.readouterr().err
    assert "hold only background, on every slice" in err and err.count("\n") == 1 and not (tmp_path / "e.safetensors").exists()
    assert main(_args(files, tmp_path / "twice.safetensors", slices="z:8,8") + ["--iters", "1"]) == 1
    assert "named twice" in capsys.readouterr().err
