"""A real Orthanc server for the PACS tests: Debian's orthanc + orthanc-dicomweb, started on a free
loopback port with its own storage folder, config file and basic-auth user (no system service)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

import numpy as np
import pytest

from napari_freqseg.io.dicom_export import SeriesInfo, write_dicom_series
from napari_freqseg.io.geometry import Geometry

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins", "/usr/local/share/orthanc/plugins")
USER, PASSWORD = "clinician", "s3cret-pw"


def _plugin() -> Path | None:
    for d in PLUGIN_DIRS:
        p = Path(d) / "libOrthancDicomWeb.so"
        if p.is_file():
            return p
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process with DICOMweb, basic auth, storage in `folder`; stop() and start() again."""

    def __init__(self, folder: Path) -> None:
        exe, plugin = shutil.which("Orthanc") or "/usr/sbin/Orthanc", _plugin()
        if not Path(exe).is_file() or plugin is None:
            if os.environ.get("FREQSEG_REQUIRE_ORTHANC"):
                pytest.fail("Orthanc with its DICOMweb plugin is not installed (scripts/system-deps.sh installs it)")
            pytest.skip("Orthanc with its DICOMweb plugin is not installed (scripts/system-deps.sh installs it)")
        self.exe, self.folder, self.port = exe, folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": "freqseg-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "HttpPort": self.port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [str(plugin)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }))  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}/dicom-web"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - the process owns it
        self.process = subprocess.Popen([self.exe, str(self.config)], stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + 30
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/system",
                                         headers={"Authorization": "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode()})  # fmt: skip
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not start: {(self.folder / 'orthanc.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def use_credentials(monkeypatch, tmp_path: Path) -> None:
    """The test user's credentials from the environment, no config file."""
    monkeypatch.setenv("FREQSEG_PACS_USER", USER)
    monkeypatch.setenv("FREQSEG_PACS_PASSWORD", PASSWORD)
    monkeypatch.delenv("FREQSEG_PACS_TOKEN", raising=False)
    monkeypatch.setenv("FREQSEG_PACS_CONFIG", str(tmp_path / "no-config.toml"))


def small_series(folder: Path, patient: str, study_uid: str = "", n: int = 6, **kw) -> SeriesInfo:
    """A small MR series (a ramp, 16x12xN) of `patient`."""
    geometry = Geometry(size=(16, 12, n), spacing=(0.8, 0.8, 2.0), origin=(1.0, 2.0, 3.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    image = (np.arange(np.prod(geometry.shape_zyx)) % 500).reshape(geometry.shape_zyx).astype(np.int16)
    return write_dicom_series(image, geometry, folder, SeriesInfo(patient_id=patient, study_uid=study_uid, **kw))
