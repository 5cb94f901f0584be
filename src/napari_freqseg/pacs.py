"""A PACS over DICOMweb (dicomweb-client): search studies (QIDO-RS), pull series (WADO-RS), push
objects (STOW-RS). No Qt, no napari: the CLI and the Cohort widget call these functions.

Credentials never come from the command line: HTTP basic auth from FREQSEG_PACS_USER and
FREQSEG_PACS_PASSWORD, or a bearer token from FREQSEG_PACS_TOKEN, or a TOML file
($FREQSEG_PACS_CONFIG, default ~/.config/freqseg/pacs.toml) with `[[server]]` tables
(`url`, and `user` + `password` or `token`) for the same scheme, host and port, the longest path
under which the URL lies winning.
A pull writes one folder per series, one file per instance, each atomically, and skips instances
already there: an interrupted pull keeps what arrived and the same pull continues it.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CancelledError, FreqsegError
from .io.dicom import save_dataset

#: Seconds to wait for a server's answer, and attempts on a transient failure (408/429/503/504).
TIMEOUT_S = 20.0
ATTEMPTS = 3
Progress = Callable[[int, int, str], None]
#: A DICOM UID (PS3.5 9.1): digits and dots, at most 64 characters. Anything else from a server
#: never becomes part of a path.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class PacsError(FreqsegError):
    """A PACS could not be reached or refused the request (one-line message)."""


@dataclass
class SeriesRecord:
    """One series of a study, as QIDO-RS describes it."""

    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    number: str = ""
    instances: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StudyRecord:
    """One study with its series."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    date: str = ""
    description: str = ""
    modalities: str = ""
    series: list[SeriesRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "series"}, "series": [s.to_dict() for s in self.series]}


def config_path() -> Path:
    """Where the credentials file is looked for."""
    env = os.environ.get("FREQSEG_PACS_CONFIG")
    return Path(env) if env else Path.home() / ".config" / "freqseg" / "pacs.toml"


def credentials(url: str) -> dict[str, str]:
    """{'user', 'password'} or {'token'} for `url`: environment first, then the config file."""
    env = os.environ
    if env.get("FREQSEG_PACS_TOKEN"):
        return {"token": env["FREQSEG_PACS_TOKEN"]}
    if env.get("FREQSEG_PACS_USER"):
        return {"user": env["FREQSEG_PACS_USER"], "password": env.get("FREQSEG_PACS_PASSWORD", "")}
    path = config_path()
    if not path.is_file():
        return {}
    try:
        servers = tomllib.loads(path.read_text()).get("server", [])
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise PacsError(f"{path}: not a readable TOML file ({exc})") from None
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise PacsError(f"{path}: holds passwords but others can read it (chmod 600 {path})")
    best: dict[str, Any] = {}
    for server in servers if isinstance(servers, list) else []:
        prefix = str(server.get("url", "")).rstrip("/")
        if prefix and _same_server(url, prefix) and len(prefix) > len(str(best.get("url", "")).rstrip("/")):
            best = server
    if "token" in best:
        return {"token": str(best["token"])}
    if "user" in best:
        return {"user": str(best["user"]), "password": str(best.get("password", ""))}
    return {}


def _same_server(url: str, prefix: str) -> bool:
    """`url` is on the server `prefix` names: same scheme, host and port, and under its path by whole
    segments (https://pacs.example.org never matches https://pacs.example.org.evil.net)."""
    from urllib.parse import urlsplit

    a, b = urlsplit(url), urlsplit(prefix)
    try:
        same = (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
    except ValueError:  # a malformed port
        return False
    path, base = a.path.rstrip("/"), b.path.rstrip("/")
    return same and (path == base or path.startswith(base + "/"))


def redacted(url: str) -> str:
    """`url` without a user:password@ part, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))


def checked_uid(uid: str, what: str) -> str:
    """A UID from a server, refused unless it is one (it names folders and files)."""
    if len(uid) > 64 or not _UID.match(uid):
        raise PacsError(f"the server gave {what} {uid[:80]!r}, which is not a DICOM UID (nothing written for it)")
    return uid


class Pacs:
    """One DICOMweb server (its base URL, e.g. http://host:8042/dicom-web)."""

    def __init__(self, url: str, timeout: float = TIMEOUT_S, attempts: int = ATTEMPTS) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        if not url.startswith(("http://", "https://")):
            raise PacsError(f"{redacted(url)}: not a DICOMweb URL (http://... or https://...)")
        self.url = redacted(url.rstrip("/"))
        session = requests.Session()
        creds = credentials(self.url)
        if "token" in creds:
            session.headers["Authorization"] = f"Bearer {creds['token']}"
        elif "user" in creds:
            session.auth = (creds["user"], creds["password"])
        self._client = DICOMwebClient(url.rstrip("/"), session=session, timeout=timeout)
        self._client.set_http_retry_params(retry=attempts > 1, max_attempts=max(1, attempts), wait_exponential_multiplier=200)
        self.timeout = timeout

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one request, turning transport and HTTP failures into one-line PacsErrors."""
        import requests
        from retrying import RetryError

        try:
            return fn(*args, **kwargs)
        except RetryError as exc:  # every attempt got a transient answer (408/429/503/504)
            last = exc.last_attempt.value
            code = getattr(last, "status_code", None) or getattr(getattr(last, "response", None), "status_code", "?")
            raise PacsError(f"{self.url}: {what}: the server answered {code} to every one of its attempts") from None
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code == 401:
                raise PacsError(
                    f"{self.url}: {what}: not authorised (401): set FREQSEG_PACS_USER/FREQSEG_PACS_PASSWORD, FREQSEG_PACS_TOKEN or {config_path()}"
                ) from None
            if code == 403:
                raise PacsError(f"{self.url}: {what}: forbidden (403): these credentials may not do this") from None
            if code == 404:
                raise PacsError(f"{self.url}: {what}: not found (404)") from None
            raise PacsError(f"{self.url}: {what}: the server answered {code}") from None
        except requests.exceptions.Timeout:
            raise PacsError(f"{self.url}: {what}: no answer within {self.timeout:g} s") from None
        except requests.exceptions.ConnectionError:
            raise PacsError(f"{self.url}: {what}: cannot connect (is the server running, is the URL right?)") from None
        except requests.exceptions.RequestException as exc:
            raise PacsError(f"{self.url}: {what}: {type(exc).__name__}") from None

    # -- QIDO-RS -----------------------------------------------------------------------------
    def search(self, patient: str | None = None, modality: str | None = None, study: str | None = None) -> list[StudyRecord]:
        """Studies (with their series) matching the patient ID, modality and/or study UID."""
        filters: dict[str, Any] = {}
        if patient:
            filters["PatientID"] = patient
        if study:
            filters["StudyInstanceUID"] = study
        fields = ["PatientName", "StudyDate", "StudyDescription", "ModalitiesInStudy"]
        found = self._call(
            "study search", self._client.search_for_studies, search_filters=filters, fields=fields, get_remaining=True
        )
        studies = []
        for item in found:
            record = StudyRecord(
                study_uid=_value(item, "0020000D"), patient_id=_value(item, "00100020"),
                patient_name=_value(item, "00100010"), date=_value(item, "00080020"),
                description=_value(item, "00081030"), modalities=_value(item, "00080061"),
            )  # fmt: skip
            record.series = [s for s in self.series(record.study_uid) if not modality or s.modality.upper() == modality.upper()]
            if modality and not record.series:
                continue
            studies.append(record)
        return studies

    def series(self, study_uid: str) -> list[SeriesRecord]:
        """The series of one study."""
        fields = ["SeriesDescription", "SeriesNumber", "Modality", "NumberOfSeriesRelatedInstances"]
        found = self._call(f"series search in study {study_uid}", self._client.search_for_series,
                           study_instance_uid=study_uid, fields=fields, get_remaining=True)  # fmt: skip
        out = []
        for item in found:
            count = _value(item, "00201209")
            out.append(SeriesRecord(
                study_uid=study_uid, series_uid=_value(item, "0020000E"), modality=_value(item, "00080060"),
                description=_value(item, "0008103E"), number=_value(item, "00200011"),
                instances=int(count) if count.isdigit() else None,
            ))  # fmt: skip
        return sorted(out, key=lambda s: (int(s.number) if s.number.isdigit() else 0, s.series_uid))

    def instances(self, study_uid: str, series_uid: str) -> list[str]:
        """SOP Instance UIDs of one series."""
        found = self._call(f"instance search in series {series_uid}", self._client.search_for_instances,
                           study_instance_uid=study_uid, series_instance_uid=series_uid, get_remaining=True)  # fmt: skip
        return sorted(_value(item, "00080018") for item in found)

    # -- WADO-RS -----------------------------------------------------------------------------
    def pull(
        self,
        study_uid: str,
        out: str | os.PathLike,
        series_uid: str | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[Path]:
        """Bring a study's series (or one series) into OUT/<series UID>/, one file per instance.

        Instances already present are skipped (a pull resumes); on a failure or a cancel what
        arrived is kept and the error says so. Returns the series folders.
        """
        root = Path(out)
        wanted = [s for s in self.series(study_uid) if series_uid is None or s.series_uid == series_uid]
        if not wanted:
            raise PacsError(
                f"{self.url}: no series {series_uid} in study {study_uid}"
                if series_uid
                else f"{self.url}: study {study_uid} has no series (unknown UID?)"
            )
        plan = [(s, [checked_uid(u, "an instance UID") for u in self.instances(study_uid, checked_uid(s.series_uid, "a series UID"))])
                for s in wanted]  # fmt: skip
        total = sum(len(uids) for _, uids in plan)
        done = 0
        folders = []
        for s, uids in plan:
            folder = root / s.series_uid
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise PacsError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
            for uid in uids:
                if cancelled is not None and cancelled():
                    raise CancelledError(f"pull cancelled: {done} of {total} instances are in {root}; the same pull continues")
                target = folder / f"{uid}.dcm"
                if not target.is_file():
                    try:
                        ds = self._call(f"retrieve {uid}", self._client.retrieve_instance, study_uid, s.series_uid, uid)
                    except PacsError as exc:
                        raise PacsError(f"{exc} ({done} of {total} instances are in {root}; the same pull continues)") from None
                    try:
                        save_dataset(ds, target)
                    except FreqsegError as exc:
                        raise PacsError(f"{exc} ({done} of {total} instances are in {root})") from None
                done += 1
                if progress is not None:
                    progress(done, total, f"{s.description or s.series_uid}: {done}/{total}")
            folders.append(folder)
        return folders

    # -- STOW-RS -----------------------------------------------------------------------------
    def push(self, files: Sequence[str | os.PathLike], progress: Progress | None = None) -> int:
        """Store DICOM files (e.g. a SEG) on the server; the number stored."""
        import pydicom
        from pydicom.errors import InvalidDicomError

        datasets = []
        for f in files:
            try:
                datasets.append(pydicom.dcmread(f))
            except (InvalidDicomError, OSError, ValueError) as exc:
                raise PacsError(f"{f}: not a DICOM file ({exc.__class__.__name__}); nothing was sent") from None
        for i, ds in enumerate(datasets, start=1):
            answer = self._call(f"store {Path(files[i - 1]).name}", self._client.store_instances, datasets=[ds])
            failed = answer.get("FailedSOPSequence") if answer is not None else None
            if failed:
                reason = failed[0].get("FailureReason", "?")
                raise PacsError(
                    f"{self.url}: refused {Path(files[i - 1]).name} (failure reason {reason}); {i - 1} of {len(datasets)} stored"
                )
            if progress is not None:
                progress(i, len(datasets), f"sent {i}/{len(datasets)}")
        return len(datasets)


def _value(item: dict[str, Any], tag: str) -> str:
    """A DICOM JSON attribute's first value as text ('' when absent); person names by their alphabetic form."""
    values = item.get(tag, {}).get("Value") or [""]
    v = values[0]
    if isinstance(v, dict):
        return str(v.get("Alphabetic", ""))
    return str(v)


def dicom_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files to push: each file as is, each folder's files (hidden ones skipped)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(
                f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.is_file():
            out.append(p)
        else:
            raise PacsError(f"{p}: no such file or folder")
    return out
