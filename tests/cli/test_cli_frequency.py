"""`freqseg spectrum`, `freqseg augment`, `freqseg reliance` end to end on small volume files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_freqseg.cli import main
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import read_volume, write_volume


def _write(path: Path, geometry: Geometry, level: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    shape = geometry.shape_zyx
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    blob = (zz**2 + yy**2 + xx**2 < 0.5).astype(np.float32)
    write_volume((level * (1 + blob) + 4 * rng.standard_normal(shape)).astype(np.float32), geometry, path)
    return path


@pytest.fixture
def volumes(tmp_path: Path, oblique_geometry: Geometry) -> dict[str, Path]:
    other = Geometry(size=(20, 18, 16), spacing=(1.2, 1.2, 1.5), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    image = _write(tmp_path / "site_a.nii.gz", oblique_geometry, 100.0, 0)
    labels = tmp_path / "site_a_label.nii.gz"
    write_volume((read_volume(image).array > 150).astype(np.uint8), oblique_geometry, labels)
    return {"a": image, "b": _write(tmp_path / "site_b.nrrd", other, 40.0, 1), "labels": labels}


def test_spectrum_json_and_files(volumes: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["spectrum", str(volumes["a"]), str(volumes["b"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["name"] for o in out] == ["site_a", "site_b"]
    a = out[0]
    assert a["unit"] == "cycles/mm" and a["size"] == [40, 32, 24] and a["spacing"] == pytest.approx([0.7, 0.9, 2.5])
    assert a["frequency"][-1] < 0.5 / 0.7 and len(a["frequency"]) == len(a["amplitude"])
    assert set(a["axes"]) == {"z", "y", "x"}
    assert main(["spectrum", str(volumes["a"]), "--out", str(tmp_path / "p.csv"), "--bins", "10"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 10 and rows[0]["volume"] == "site_a" and float(rows[0]["amplitude"]) > float(rows[-1]["amplitude"])
    assert main(["spectrum", str(volumes["a"]), str(volumes["b"]), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert "site_b" in capsys.readouterr().out


def test_augment_keeps_the_input_grid(volumes: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = read_volume(volumes["a"])
    for method, extra in (
        ("fda", ["--reference", str(volumes["b"])]),
        ("tp-ram", ["--reference", str(volumes["b"]), "--strength", "0.5", "--seed", "3"]),
        ("laae", ["--model", "random", "--labels", str(volumes["labels"]), "--direction", "down", "--steps", "2"]),
        ("fase", ["--model", "random", "--bands", "4", "--stochastic"]),
    ):
        out = tmp_path / f"{method}.nii.gz"
        assert main(["augment", str(volumes["a"]), "-o", str(out), "--method", method, "--json", *extra]) == 0, method
        info = json.loads(capsys.readouterr().out)
        assert info["method"] == method and info["output"] == str(out)
        result = read_volume(out)
        assert result.geometry.same_grid(src.geometry), method
        assert result.array.dtype == np.float32 and not np.allclose(result.array, src.array), method
    assert info["stochastic"] is True and len(info["weights"]) == 4


def test_reliance_json_and_plot(volumes: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["reliance", str(volumes["a"]), "--model", "random", "--bands", "3"]
    assert main([*args, "--labels", str(volumes["labels"]), "--json"]) == 0
    curve = json.loads(capsys.readouterr().out)
    assert curve["metric"] == "dice_drop" and len(curve["values"]) == 3 and curve["unit"] == "cycles/mm"
    assert main([*args, "--out", str(tmp_path / "r.png")]) == 0
    text = capsys.readouterr().out
    assert "loss_rise" in text and (tmp_path / "r.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "argv,message",
    [
        (["augment", "{a}", "-o", "{tmp}/o.nii.gz", "--method", "fda"], "needs --reference"),
        (["augment", "{a}", "-o", "{tmp}/o.nii.gz", "--method", "laae"], "needs --model"),
        (["augment", "{a}", "-o", "{tmp}/o.nii.gz", "--method", "fase", "--model", "{tmp}/none.safetensors"], "no such model"),
        (["augment", "{a}", "-o", "{tmp}/o.nii.gz", "--method", "laae", "--model", "random", "--labels", "{b}"], "grid differs"),
        (["spectrum", "{a}", "--out", "{tmp}/p.txt"], "--out must end"),
        (["reliance", "{tmp}/missing.nii.gz", "--model", "random"], "no such file"),
    ],
)
def test_errors_are_one_line(
    volumes: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    filled = [a.format(a=volumes["a"], b=volumes["b"], tmp=tmp_path) for a in argv]
    assert main(filled) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.nii.gz").exists()
