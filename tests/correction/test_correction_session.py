"""Autosave and restore of a correction session, including a process killed while saving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import napari_freqseg
from napari_freqseg.correction import (
    CorrectionRecord,
    discard_session,
    find_session,
    load_session,
    save_session,
    session_dir,
)
from napari_freqseg.correction import session as session_module
from napari_freqseg.errors import SessionError
from napari_freqseg.io.geometry import Geometry


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    p = tmp_path / "case01.nii.gz"
    p.write_bytes(b"not read by the session code")
    return p


def test_save_then_load_round_trip(scan: Path, oblique_geometry: Geometry):
    labels = np.zeros(oblique_geometry.shape_zyx, np.uint8)
    labels[5:9, 10:20, 3:30] = 2
    record = CorrectionRecord(shape=labels.shape)
    record.mark("z", 7)
    assert find_session(scan) is None
    folder = save_session(scan, labels, record, oblique_geometry, labels_name="LA seg")
    assert folder == scan.parent / "case01.nii.gz.freqseg" and find_session(scan) == folder
    state = load_session(scan)
    np.testing.assert_array_equal(state.labels, labels)
    assert state.labels.dtype == np.uint8
    assert state.record == record and state.labels_name == "LA seg"
    assert state.geometry.same_grid(oblique_geometry)
    assert abs(state.saved_at - time.time()) < 60


def test_record_only_save_keeps_the_labels_and_old_files_are_removed(scan: Path):
    labels = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    record = CorrectionRecord(shape=labels.shape)
    save_session(scan, labels, record)
    save_session(scan, labels + 1, record)
    record.mark("y", 2)
    folder = save_session(scan, None, record)
    state = load_session(scan)
    np.testing.assert_array_equal(state.labels, labels + 1)
    assert state.record.indices("y") == [2]
    assert sorted(os.listdir(folder)) == ["labels-000002.npy", "session.json"]
    with pytest.raises(SessionError):
        save_session(scan, np.zeros((3, 3, 3), np.uint8), record)  # shape differs from the record
    with pytest.raises(SessionError):
        save_session(scan.with_name("other.nii.gz"), None, record)  # nothing to take labels from


def test_leftovers_of_an_interrupted_save_are_ignored_then_cleaned(scan: Path):
    labels = np.full((4, 5, 6), 3, np.uint8)
    record = CorrectionRecord(shape=labels.shape)
    folder = save_session(scan, labels, record)
    # A save killed after writing its labels but before replacing session.json leaves these:
    (folder / ".freqseg-abc123").write_bytes(b"\x93NUMPY half written")
    np.save(folder / "labels-000009.npy", np.zeros((4, 5, 6), np.uint8))
    state = load_session(scan)
    np.testing.assert_array_equal(state.labels, labels)
    save_session(scan, labels, record)
    assert sorted(os.listdir(folder)) == ["labels-000010.npy", "session.json"]


def test_unwritable_scan_folder_falls_back_to_the_user_cache(scan: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(session_module.os, "access", lambda path, mode: False)
    labels = np.ones((3, 4, 5), np.uint8)
    folder = save_session(scan, labels, CorrectionRecord(shape=labels.shape))
    assert folder.parent == tmp_path / "cache" / "napari-freqseg" / "sessions"
    assert folder.name.endswith("-case01.nii.gz.freqseg")
    assert not (scan.parent / "case01.nii.gz.freqseg").exists()
    assert session_dir(scan) == folder and find_session(scan) == folder
    np.testing.assert_array_equal(load_session(scan).labels, labels)


def test_discard_and_errors(scan: Path):
    with pytest.raises(SessionError, match="no saved correction session"):
        load_session(scan)
    labels = np.ones((3, 4, 5), np.uint8)
    folder = save_session(scan, labels, CorrectionRecord(shape=labels.shape))
    (folder / "session.json").write_text("{ broken")
    with pytest.raises(SessionError, match="unreadable"):
        load_session(scan)
    discard_session(scan)
    assert not folder.exists() and find_session(scan) is None
    discard_session(scan)  # nothing to discard: no error


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from napari_freqseg.correction import CorrectionRecord, save_session

    scan = sys.argv[1]
    shape = (32, 256, 256)  # 2 MiB of labels per save: a kill often lands inside a write
    labels = np.empty(shape, np.uint8)
    for i in range(1, 100000):
        labels.fill(i % 250 + 1)
        record = CorrectionRecord(shape=shape)
        record.mark("z", i % shape[0], when=float(i))
        save_session(scan, labels, record)
        print(i, flush=True)
    """
)


def _run_and_kill(script: Path, scan: Path, delay: float) -> list[int]:
    """Start the writer, let it complete a few saves, SIGKILL it; the save numbers it completed."""
    env = {**os.environ, "PYTHONPATH": str(Path(napari_freqseg.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, str(script), str(scan)], stdout=subprocess.PIPE, text=True, env=env)
    completed = []
    deadline = time.monotonic() + 60
    while len(completed) < 3 and time.monotonic() < deadline:
        completed.append(int(proc.stdout.readline()))
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    completed += [int(x) for x in proc.stdout.read().split()]
    proc.wait()
    return completed


def test_killed_while_saving_restores_the_last_complete_state(scan: Path, tmp_path: Path):
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    interrupted = 0
    for delay in (0.3, 0.55, 0.8):
        completed = _run_and_kill(script, scan, delay)
        folder = find_session(scan)
        interrupted += len(os.listdir(folder)) > 2  # a temp or unnamed labels file: killed mid-save
        state = load_session(scan)
        (when,) = state.record.marked.values()
        i = int(when)
        # Labels and record come from the same save, and no completed save was lost (the save
        # after the last printed one may have finished just before the kill).
        assert np.all(state.labels == i % 250 + 1)
        assert state.record.indices("z") == [i % 32]
        assert i in (completed[-1], completed[-1] + 1)
        discard_session(scan)
    assert interrupted >= 1, "no kill landed inside a save: the test did not exercise a crash"


def test_sample_data_sessions_go_to_the_cache(tmp_path: Path, monkeypatch):
    from napari_freqseg._sample_data import sample_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = session_dir(sample_path("la"))
    assert folder.parent == tmp_path / "cache" / "napari-freqseg" / "sessions"


@pytest.mark.parametrize("damage", ["[1, 2, 3]", '{"format": "napari-freqseg-session"}', "{not json", "labels gone"])
def test_a_damaged_session_is_moved_aside_once_and_saving_goes_on(scan: Path, damage: str):
    labels = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    record = CorrectionRecord(shape=labels.shape)
    folder = save_session(scan, labels, record)
    if damage == "labels gone":
        for f in folder.glob("labels-*.npy"):
            f.unlink()
    else:
        (folder / "session.json").write_text(damage)
    said: list[str] = []
    record.mark("z", 1)
    # A record-only save (labels=None) falls back to the labels it is given as the current ones.
    assert save_session(scan, None, record, current_labels=labels + 1, on_damaged=said.append) == folder
    assert len(said) == 1 and "was damaged" in said[0] and "case01.nii.gz.freqseg.damaged-1" in said[0]
    assert (scan.parent / "case01.nii.gz.freqseg.damaged-1").is_dir()
    state = load_session(scan)
    np.testing.assert_array_equal(state.labels, labels + 1)
    assert state.record == record
    save_session(scan, None, record, on_damaged=said.append)  # the next saves are normal again
    assert len(said) == 1
