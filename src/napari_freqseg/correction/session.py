"""Crash-safe autosave of a correction session: the labels being corrected and the record of
corrected slices, in a folder next to the scan (`<scan name>.freqseg/`).

Every save writes the labels to a new numbered file, then replaces `session.json` (which names
that file) in one atomic rename: `session.json` always describes a complete state, so a process
killed at any moment leaves the last complete save restorable. Stray temporary files and labels
files that `session.json` does not name are leftovers of an interrupted save and are removed on
the next save. Where the scan's folder is not writable, or is the package's own sample data,
sessions live in the user cache instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import SessionError
from ..io.atomic import TMP_PREFIX, write_atomically
from ..io.geometry import Geometry
from .record import CorrectionRecord

SUFFIX = ".freqseg"
STATE_FILE = "session.json"
FORMAT = "napari-freqseg-session"
_LABELS_FILE = re.compile(r"^labels-(\d{6,})\.npy$")
_save_lock = threading.Lock()
_PACKAGE = Path(__file__).resolve().parents[1]


@dataclass
class SessionState:
    """One restorable state of a correction session."""

    labels: np.ndarray
    record: CorrectionRecord
    geometry: Geometry | None
    labels_name: str
    saved_at: float
    folder: Path


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-freqseg" / "sessions"


def _candidates(scan: str | os.PathLike) -> tuple[Path, Path]:
    """Next to the scan, and the cache fallback named by a hash of the scan's absolute path."""
    p = Path(scan).resolve()
    name = p.name.rstrip("/") + SUFFIX
    digest = hashlib.sha1(str(p).encode()).hexdigest()[:12]
    return p.parent / name, _cache_root() / f"{digest}-{name}"


def _inside_package(path: Path) -> bool:
    """True for files shipped with the package (sample data): never write sessions there."""
    roots = (_PACKAGE.resolve(), (_PACKAGE / "sample_data").resolve())
    return any(path.is_relative_to(root) for root in roots)


def session_dir(scan: str | os.PathLike) -> Path:
    """Where the session of `scan` is (or would be) kept: an existing session wins, then the scan's
    folder if writable and not part of the package, else the user cache."""
    beside, cached = _candidates(scan)
    for folder in (beside, cached):
        if (folder / STATE_FILE).is_file():
            return folder
    writable = os.access(beside.parent, os.W_OK) and not _inside_package(beside.parent)
    return beside if writable else cached


def find_session(scan: str | os.PathLike) -> Path | None:
    """The folder of a restorable session of `scan`, or None."""
    folder = session_dir(scan)
    return folder if (folder / STATE_FILE).is_file() else None


def _write_atomic(folder: Path, name: str, write: Callable[[BinaryIO], object]) -> None:
    """`write(fh)` into a temp file in `folder`, flush to disk, then rename it to `name`."""

    def to_file(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            write(fh)

    write_atomically(folder / name, "", to_file, fsync=True)


def _read_state(folder: Path) -> dict:
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SessionError(f"{folder}: session is unreadable ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SessionError(f"{folder}: not a napari-freqseg session")
    return state


def _usable_previous(folder: Path) -> dict | None:
    """The previous save's state when its labels can be reused; None when there is none.
    Raises SessionError when a state file exists but is damaged."""
    if not (folder / STATE_FILE).is_file():
        return None
    state = _read_state(folder)
    if not isinstance(state.get("labels_file"), str) or not isinstance(state.get("shape"), list):
        raise SessionError(f"{folder}: session state lacks its labels file or shape")
    if not (folder / state["labels_file"]).is_file():
        raise SessionError(f"{folder}: the session's labels file {state['labels_file']} is missing")
    return state


def _move_aside(folder: Path) -> Path:
    """Rename a damaged session folder to `<name>.damaged-N` (kept for inspection); its new name."""
    n = 1
    while (aside := folder.with_name(f"{folder.name}.damaged-{n}")).exists():
        n += 1
    os.replace(folder, aside)
    return aside


def save_session(
    scan: str | os.PathLike,
    labels: np.ndarray | None,
    record: CorrectionRecord,
    geometry: Geometry | None = None,
    labels_name: str = "labels",
    current_labels: np.ndarray | None = None,
    on_damaged: Callable[[str], None] | None = None,
) -> Path:
    """Save labels (z, y, x) and the corrected-slice record of `scan`; returns the session folder.

    `labels=None` keeps the labels of the previous save (only the record changed); if that save
    cannot be used, `current_labels` are saved instead. A damaged earlier session is moved aside
    (`<folder>.damaged-N`), `on_damaged(message)` says so, and the save goes on. Safe to call from a
    worker thread; saves are serialised.
    """
    with _save_lock:
        folder = session_dir(scan)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                previous = _usable_previous(folder)
            except SessionError as exc:
                aside = _move_aside(folder)
                folder.mkdir(parents=True, exist_ok=True)
                previous = None
                if on_damaged is not None:
                    reason = str(exc).split(": ", 1)[-1]
                    on_damaged(
                        f"the saved session of {Path(scan).name} was damaged ({reason}); moved it to {aside.name} and saving anew"
                    )
            if labels is None and previous is None:
                labels = current_labels
            if labels is None:
                if previous is None:
                    raise SessionError(f"{folder}: no earlier save to take the labels from")
                labels_file = previous["labels_file"]
                shape = tuple(previous["shape"])
            else:
                labels = np.asarray(labels)
                seq = _next_sequence(folder)
                labels_file = f"labels-{seq:06d}.npy"
                _write_atomic(folder, labels_file, lambda fh: np.save(fh, labels, allow_pickle=False))
                shape = labels.shape
            if tuple(shape) != record.shape:
                raise SessionError(f"labels shape {tuple(shape)} differs from the record's {record.shape}")
            state = {
                "format": FORMAT,
                "version": 1,
                "scan": str(Path(scan).resolve()),
                "saved_at": time.time(),
                "labels_file": labels_file,
                "labels_name": labels_name,
                "shape": list(shape),
                "geometry": geometry.to_dict() if geometry is not None else None,
                "record": record.to_dict(),
            }
            _write_atomic(folder, STATE_FILE, lambda fh: fh.write(json.dumps(state, indent=1).encode()))
            _remove_leftovers(folder, keep=labels_file)
        except OSError as exc:
            raise SessionError(f"{folder}: could not save the session ({exc.strerror or exc})") from None
    return folder


def _next_sequence(folder: Path) -> int:
    numbers = [int(m.group(1)) for f in os.listdir(folder) if (m := _LABELS_FILE.match(f))]
    return max(numbers, default=0) + 1


def _remove_leftovers(folder: Path, keep: str) -> None:
    for name in os.listdir(folder):
        if name.startswith(TMP_PREFIX) or (_LABELS_FILE.match(name) and name != keep):
            try:
                os.unlink(folder / name)
            except FileNotFoundError:
                pass


def load_session(scan: str | os.PathLike) -> SessionState:
    """The last complete save of `scan`'s session. Raises SessionError when there is none."""
    folder = find_session(scan)
    if folder is None:
        raise SessionError(f"{Path(scan).name}: no saved correction session")
    state = _read_state(folder)
    try:
        labels = np.load(folder / state["labels_file"], allow_pickle=False)
        record = CorrectionRecord.from_dict(state["record"])
    except (OSError, ValueError, KeyError) as exc:
        raise SessionError(f"{folder}: session labels are unreadable ({exc})") from None
    if labels.shape != record.shape:
        raise SessionError(f"{folder}: labels shape {labels.shape} differs from the record's {record.shape}")
    geometry = Geometry.from_dict(state["geometry"]) if state.get("geometry") else None
    return SessionState(
        labels=labels,
        record=record,
        geometry=geometry,
        labels_name=state.get("labels_name", "labels"),
        saved_at=float(state.get("saved_at", 0.0)),
        folder=folder,
    )


def discard_session(scan: str | os.PathLike) -> None:
    """Delete `scan`'s session folder (its files only; nothing else is touched)."""
    folder = find_session(scan)
    if folder is None:
        return
    with _save_lock:
        os.unlink(folder / STATE_FILE)  # first: a half-discarded session is no session
        for name in os.listdir(folder):
            if name.startswith(TMP_PREFIX) or _LABELS_FILE.match(name):
                os.unlink(folder / name)
        try:
            folder.rmdir()
        except OSError:
            pass  # someone put other files there: leave them
