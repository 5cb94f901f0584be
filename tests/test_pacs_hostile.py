"""The PACS client against a misbehaving DICOMweb server (a real HTTP server on loopback): UIDs
that are not UIDs never become paths, a server that keeps answering 503 gives one line, and
credentials in a URL never appear in messages."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from napari_freqseg.pacs import Pacs, PacsError, checked_uid, redacted

SERIES = {"0020000E": {"vr": "UI", "Value": ["../../escaped"]}, "00080060": {"vr": "CS", "Value": ["MR"]}}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.server.busy:  # type: ignore[attr-defined]
            self.send_response(503)
            self.end_headers()
            return
        first_page = "offset=" not in self.path or "offset=0" in self.path  # the client pages until an empty answer
        body = json.dumps([SERIES] if self.path.split("?")[0].endswith("/series") and first_page else []).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.busy = False  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_a_series_uid_that_is_a_path_is_refused_and_nothing_is_written(server, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    with pytest.raises(PacsError, match=r"not a DICOM UID \(nothing written for it\)"):
        Pacs(url, attempts=1).pull("1.2.3", tmp_path / "out" / "deep")
    assert not any(tmp_path.rglob("*.dcm")) and not (tmp_path / "escaped").exists()
    assert checked_uid("1.2.840.10008.5.1.4.1.1.4", "x") == "1.2.840.10008.5.1.4.1.1.4"
    for bad in ("", "../x", "/etc/passwd", "1.2.3.", "1" * 65, "1.2\\3"):
        with pytest.raises(PacsError):
            checked_uid(bad, "a UID")


def test_a_server_answering_503_every_time_gives_one_line(server) -> None:
    server.busy = True
    url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    with pytest.raises(PacsError, match=r"answered 503 to every one of its attempts"):
        Pacs(url, attempts=2, timeout=5).search()


def test_credentials_in_a_url_never_appear_in_messages(server) -> None:
    assert redacted("https://alice:s3cret@pacs.example.org:8443/dicom-web") == "https://pacs.example.org:8443/dicom-web"
    server.busy = True
    url = f"http://alice:s3cret@127.0.0.1:{server.server_address[1]}/dicom-web"
    with pytest.raises(PacsError) as info:
        Pacs(url, attempts=1, timeout=5).search()
    assert "s3cret" not in str(info.value) and "alice" not in str(info.value)
