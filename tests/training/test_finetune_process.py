"""Fine-tuning in a child process: same result file, progress lines, Cancel, one-line errors."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import OBLIQUE_DIRECTION, make_blob_volume, tiny_vnet_meta

from napari_freqseg.correction import CorrectionRecord
from napari_freqseg.errors import CancelledError, FreqsegError
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import Volume
from napari_freqseg.models.modelfile import build_network, load_model, read_meta, save_model
from napari_freqseg.training.finetune import parse_step
from napari_freqseg.training.finetune_process import finetune_in_process

SHAPE = (32, 32, 32)


@pytest.fixture
def job(tmp_path: Path) -> dict:
    torch.manual_seed(0)
    meta = tiny_vnet_meta(arch_args={"n_filters": 2, "normalization": "instance"}, patch_size=[32, 32, 32])
    image, label = make_blob_volume(SHAPE)
    geometry = Geometry(size=SHAPE, spacing=(0.7, 0.9, 2.5), origin=(-12.5, 30.25, 101.0), direction=OBLIQUE_DIRECTION)
    return {
        "model": save_model(tmp_path / "tiny.safetensors", build_network(meta), meta),
        "volume": Volume(array=image, geometry=geometry, source="scan.nii.gz"),
        "labels": label,
        "record": CorrectionRecord.from_spec(SHAPE, "z:10,20"),
    }


def test_the_child_writes_the_model_and_reports_every_iteration(job: dict, tmp_path: Path) -> None:
    out = tmp_path / "models" / "tuned.safetensors"
    steps: list[str] = []
    result = finetune_in_process(job["model"], out, job["volume"], job["labels"], job["record"], name="tuned",
                                 iterations=2, niceness=0, progress=lambda d, t, m: steps.append(m))  # fmt: skip
    meta = read_meta(out)
    assert result.path == out and meta.name == "tuned" and meta.parent == "tiny-vnet"
    assert meta.training["slices"] == {"z": [10, 20]} and meta.training["volume"] == "scan.nii.gz"
    assert [parse_step(m)["iteration"] for m in steps if parse_step(m)] == [1, 2] and len(result.history) == 2
    original, _ = load_model(job["model"])
    assert any(not torch.equal(v, original.state_dict()[k]) for k, v in result.network.state_dict().items())


def test_cancel_interrupts_the_child_and_leaves_no_file(job: dict, tmp_path: Path) -> None:
    out = tmp_path / "models" / "tuned.safetensors"
    steps: list[str] = []
    with pytest.raises(CancelledError):
        finetune_in_process(job["model"], out, job["volume"], job["labels"], job["record"], name="tuned",
                            iterations=100_000, progress=lambda d, t, m: steps.append(m),
                            cancelled=lambda: any(parse_step(m) for m in steps))  # fmt: skip
    assert not out.exists() and not any(p.name.startswith(".") for p in out.parent.glob("*"))


def test_the_childs_error_comes_back_as_one_line(job: dict, tmp_path: Path) -> None:
    labels = np.where(job["labels"] > 0, 5, 0).astype(np.uint8)  # a class the model does not have
    with pytest.raises(FreqsegError, match=r"^labels hold class 5, the model has 2 classes$"):
        finetune_in_process(
            job["model"], tmp_path / "x.safetensors", job["volume"], labels, job["record"], name="x", iterations=1
        )


def test_the_scans_site_travels_to_the_child(job: dict, tmp_path: Path) -> None:
    volume = job["volume"]
    dicom = Volume(array=volume.array, geometry=volume.geometry, header={"0008|0080": "St Olav"}, source="series7")
    finetune_in_process(job["model"], tmp_path / "t.safetensors", dicom, job["labels"], job["record"], name="t", iterations=1)
    assert read_meta(tmp_path / "t.safetensors").training["site"] == "St-Olav"  # the institution, not the folder's name


def test_labels_beyond_255_are_refused_not_wrapped(job: dict, tmp_path: Path) -> None:
    labels = np.where(job["labels"] > 0, 257, 0).astype(np.int32)  # as uint8 this would read as class 1
    with pytest.raises(FreqsegError, match=r"labels hold class 257"):
        finetune_in_process(
            job["model"], tmp_path / "x.safetensors", job["volume"], labels, job["record"], name="x", iterations=1
        )


def test_a_failing_progress_callback_stops_the_child_and_leaves_no_file(job: dict, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "models" / "tuned.safetensors"
    started: list[float] = []
    children: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def recording_popen(*args, **kwargs) -> subprocess.Popen:
        children.append(popen(*args, **kwargs))
        return children[-1]

    monkeypatch.setattr(subprocess, "Popen", recording_popen)

    def progress(done: int, total: int, message: str) -> None:
        if parse_step(message):
            started.append(time.monotonic())
            raise RuntimeError("the display went away")

    with pytest.raises(RuntimeError, match="display went away"):
        finetune_in_process(job["model"], out, job["volume"], job["labels"], job["record"], name="tuned",
                            iterations=100_000, progress=progress)  # fmt: skip
    assert started and len(children) == 1 and children[0].poll() is not None  # stopped, not left training
    assert not out.exists()
