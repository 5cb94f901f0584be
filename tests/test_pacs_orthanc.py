"""PACS over DICOMweb against a real Orthanc server (Debian's orthanc + orthanc-dicomweb), started
here on a free loopback port with its own storage folder and config file: search, pull, push, the
clinical round trip with a DICOM SEG, and the ways a server and its data go wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc_server import PASSWORD, USER, Orthanc, free_port, small_series, use_credentials
from synthetic import REPO

from napari_freqseg.cli import main
from napari_freqseg.errors import CancelledError, VolumeReadError
from napari_freqseg.io.volume import read_volume
from napari_freqseg.metrics import dice
from napari_freqseg.pacs import Pacs, PacsError

SAMPLE = REPO / "sample_data"


@pytest.fixture(autouse=True)
def credentials(monkeypatch, tmp_path) -> None:
    use_credentials(monkeypatch, tmp_path)


def test_clinical_round_trip_pull_segment_push_pull(orthanc: Orthanc, tmp_path: Path, capsys) -> None:
    """A la case as an MR series in the PACS: search, pull, segment to SEG, push, find and pull the
    SEG, read it back: the labels of the NIfTI path exactly, the same Dice, the right reference."""
    image_nii, label_nii = SAMPLE / "la_CCGAKN4EDT72KC8TTJ76_image.nii.gz", SAMPLE / "la_CCGAKN4EDT72KC8TTJ76_label.nii.gz"
    assert main(["convert", str(image_nii), str(tmp_path / "export"), "--dicom-series", "--patient-id", "LA-RT-1",
                 "--description", "LGE MRI"]) == 0  # fmt: skip
    assert main(["pacs", "push", orthanc.url, str(tmp_path / "export"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["pacs", "search", orthanc.url, "--patient", "LA-RT-1", "--json"]) == 0
    (study,) = json.loads(capsys.readouterr().out)["studies"]
    (series,) = study["series"]
    assert series["modality"] == "MR" and series["description"] == "LGE MRI" and series["instances"] == 88
    assert main(["pacs", "pull", orthanc.url, "--study", study["study_uid"], "-o", str(tmp_path / "pulled"), "--quiet"]) == 0
    scan = tmp_path / "pulled" / series["series_uid"]
    assert len(list(scan.glob("*.dcm"))) == 88
    assert main(["segment", str(scan), "-o", str(tmp_path / "seg.dcm"), "--quiet"]) == 0
    assert main(["segment", str(image_nii), "-o", str(tmp_path / "ref.nii.gz"), "--quiet"]) == 0
    assert main(["pacs", "push", orthanc.url, str(tmp_path / "seg.dcm"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["pacs", "search", orthanc.url, "--patient", "LA-RT-1", "--modality", "SEG", "--json"]) == 0
    (seg_study,) = json.loads(capsys.readouterr().out)["studies"]
    (seg_series,) = seg_study["series"]
    assert seg_study["study_uid"] == study["study_uid"] and seg_series["modality"] == "SEG"
    assert main(["pacs", "pull", orthanc.url, "--study", study["study_uid"], "--series", seg_series["series_uid"],
                 "-o", str(tmp_path / "pulled"), "--quiet"]) == 0  # fmt: skip
    (seg_file,) = (tmp_path / "pulled" / seg_series["series_uid"]).glob("*.dcm")
    assert pydicom.dcmread(seg_file).ReferencedSeriesSequence[0].SeriesInstanceUID == series["series_uid"]
    back = read_volume(seg_file)  # the referenced series is found beside the pulled SEG
    ref, truth = read_volume(tmp_path / "ref.nii.gz"), read_volume(label_nii)
    assert back.notes == [] and back.geometry.same_grid(ref.geometry)
    assert np.array_equal(back.array, ref.array) and ref.array.sum() > 1000
    assert dice(back.array == 1, truth.array == 1) == pytest.approx(dice(ref.array == 1, truth.array == 1))


def test_two_series_one_study_and_pulling_one_of_them(orthanc: Orthanc, tmp_path: Path) -> None:
    first = small_series(tmp_path / "a", "TWO-SERIES", series_number=1, description="T1")
    second = small_series(tmp_path / "b", "TWO-SERIES", study_uid=first.study_uid, series_number=2, description="T2", n=4)
    pacs = Pacs(orthanc.url)
    assert pacs.push(sorted((tmp_path / "a").iterdir()) + sorted((tmp_path / "b").iterdir())) == 10
    (study,) = pacs.search(patient="TWO-SERIES")
    assert [(s.description, s.instances) for s in study.series] == [("T1", 6), ("T2", 4)]
    folders = pacs.pull(study.study_uid, tmp_path / "out", series_uid=second.series_uid)
    assert folders == [tmp_path / "out" / second.series_uid] and len(list(folders[0].iterdir())) == 4
    assert read_volume(folders[0]).array.shape == (4, 12, 16)


def test_series_with_a_missing_instance_is_pulled_but_not_read_as_a_volume(orthanc: Orthanc, tmp_path: Path) -> None:
    small_series(tmp_path / "s", "GAP", n=7)
    files = sorted((tmp_path / "s").iterdir())
    pacs = Pacs(orthanc.url)
    pacs.push(files[:3] + files[4:])
    (study,) = pacs.search(patient="GAP")
    (folder,) = pacs.pull(study.study_uid, tmp_path / "out")
    assert len(list(folder.iterdir())) == 6
    with pytest.raises(VolumeReadError, match="not evenly spaced"):
        read_volume(folder)


def test_interrupted_pull_keeps_what_arrived_and_the_same_pull_continues(tmp_path: Path) -> None:
    server = Orthanc(tmp_path / "server")
    try:
        small_series(tmp_path / "s", "RESUME", n=8)
        pacs = Pacs(server.url, attempts=1, timeout=5)
        pacs.push(sorted((tmp_path / "s").iterdir()))
        (study,) = pacs.search(patient="RESUME")

        def stop_after_three(done: int, total: int, message: str) -> None:
            if done == 3:
                server.stop()

        with pytest.raises(PacsError, match=r"3 of 8 instances are in .*the same pull continues"):
            pacs.pull(study.study_uid, tmp_path / "out", progress=stop_after_three)
        (folder,) = (tmp_path / "out").iterdir()
        kept = {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}
        assert len(kept) == 3 and not [f for f in folder.iterdir() if f.name.startswith(".")]
        server.start()
        fetched = []
        pacs.pull(study.study_uid, tmp_path / "out", progress=lambda d, t, m: fetched.append(d))
        assert len(list(folder.iterdir())) == 8 and fetched[-1] == 8
        assert all(folder.joinpath(n).stat().st_mtime_ns == t for n, t in kept.items())  # not fetched again
        assert read_volume(folder).array.shape == (8, 12, 16)
        with pytest.raises(CancelledError, match="8 of 8|0 of 8"):
            pacs.pull(study.study_uid, tmp_path / "again", cancelled=lambda: True)
    finally:
        server.stop()


def test_wrong_password_unknown_uid_unreachable_server_and_non_dicom_files(
    orthanc: Orthanc, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("FREQSEG_PACS_PASSWORD", "wrong")
    assert main(["pacs", "search", orthanc.url]) == 1
    err = capsys.readouterr().err
    assert "not authorised (401)" in err and "Traceback" not in err and err.count("\n") == 1
    monkeypatch.setenv("FREQSEG_PACS_PASSWORD", PASSWORD)
    with pytest.raises(PacsError, match="unknown UID"):
        Pacs(orthanc.url).pull("1.2.3.4.5.6.7.8.9", tmp_path / "out")
    with pytest.raises(PacsError, match="cannot connect"):
        Pacs(f"http://127.0.0.1:{free_port()}/dicom-web", attempts=1).search()
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(PacsError, match="notes.txt: not a DICOM file.*nothing was sent"):
        Pacs(orthanc.url).push([tmp_path / "notes.txt"])
    assert main(["pacs", "pull", "ftp://host/x", "--study", "1.2", "-o", str(tmp_path / "o")]) == 1
    assert "not a DICOMweb URL" in capsys.readouterr().err


def test_a_pulled_seg_alone_is_not_taken_for_a_scan(orthanc: Orthanc, tmp_path: Path, capsys) -> None:
    """A folder holding only a non-image object (a SEG) is refused as a scan with one line."""
    from napari_freqseg.io.dicom_seg import write_dicom_seg

    info = small_series(tmp_path / "s", "NON-IMAGE")
    scan = read_volume(tmp_path / "s")
    (tmp_path / "only").mkdir()
    write_dicom_seg(
        (scan.array > 250).astype(np.uint8), scan.geometry, tmp_path / "s", tmp_path / "only" / "seg.dcm", classes=["bg", "fg"]
    )
    pacs = Pacs(orthanc.url)
    pacs.push([tmp_path / "only" / "seg.dcm"])
    (study,) = pacs.search(patient="NON-IMAGE")
    assert study.study_uid == info.study_uid and [s.modality for s in study.series] == ["SEG"]
    (folder,) = pacs.pull(study.study_uid, tmp_path / "out")
    assert main(["segment", str(folder), "-o", str(tmp_path / "x.nii.gz"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "holds a DICOM SEG" in err and "not a scan" in err and "Traceback" not in err and not (tmp_path / "x.nii.gz").exists()


def test_a_server_that_never_answers_times_out_with_one_line() -> None:
    """A port that accepts connections but never answers (a hung server): one line after the timeout."""
    import socket
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web"
        start = time.monotonic()
        with pytest.raises(PacsError, match=r"no answer within 1 s"):
            Pacs(url, timeout=1.0, attempts=1).search()
        assert time.monotonic() - start < 10


def test_credentials_come_from_the_environment_or_a_private_config_file(orthanc: Orthanc, tmp_path: Path, monkeypatch) -> None:
    """Longest URL prefix wins; a token wins over a user; a file others can read is refused."""
    from napari_freqseg.pacs import credentials

    for name in ("FREQSEG_PACS_USER", "FREQSEG_PACS_PASSWORD", "FREQSEG_PACS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "pacs.toml"
    config.write_text(
        f'[[server]]\nurl = "http://127.0.0.1:{orthanc.port}"\nuser = "nobody"\npassword = "x"\n\n'
        f'[[server]]\nurl = "{orthanc.url}"\nuser = "{USER}"\npassword = "{PASSWORD}"\n'
    )
    config.chmod(0o600)
    monkeypatch.setenv("FREQSEG_PACS_CONFIG", str(config))
    assert credentials(orthanc.url) == {"user": USER, "password": PASSWORD}
    assert credentials(f"http://127.0.0.1:{orthanc.port}/other") == {"user": "nobody", "password": "x"}
    assert credentials("http://elsewhere/dicom-web") == {}
    assert credentials(f"http://127.0.0.1.evil.example:{orthanc.port}/dicom-web") == {}  # a look-alike host
    assert credentials(f"http://127.0.0.1:{orthanc.port + 1}/dicom-web") == {}  # another port
    assert credentials(f"http://127.0.0.1:{orthanc.port}/dicom-web-other") == {"user": "nobody", "password": "x"}
    assert isinstance(Pacs(orthanc.url).search(patient="NO-SUCH-PATIENT"), list)  # the file's login works
    monkeypatch.setenv("FREQSEG_PACS_TOKEN", "abc")
    assert credentials(orthanc.url) == {"token": "abc"}
    monkeypatch.delenv("FREQSEG_PACS_TOKEN")
    config.chmod(0o644)
    with pytest.raises(PacsError, match="others can read it"):
        credentials(orthanc.url)
