"""Write a file atomically: a temporary file beside the target, renamed onto it when complete."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_NEW_FILE_MODE = 0o666 & ~_umask()


#: Prefix of our temporary files; one older than STALE_SECONDS was left by a killed write.
TMP_PREFIX = ".freqseg-"
STALE_SECONDS = 6 * 3600


def remove_stale_temporaries(folder: Path, prefix: str = TMP_PREFIX, max_age: float = STALE_SECONDS) -> list[Path]:
    """Delete our own temporary files in `folder` that a killed write left behind (older than
    `max_age` seconds: no write takes that long); the paths removed."""
    removed = []
    now = time.time()
    try:
        candidates = [f for f in folder.iterdir() if f.name.startswith(prefix)]
    except OSError:
        return removed
    for f in candidates:
        try:
            if f.is_file() and now - f.stat().st_mtime > max_age:
                f.unlink()
                removed.append(f)
        except OSError:
            continue
    return removed


def write_atomically(path: Path, suffix: str, write: Callable[[str], None], fsync: bool = False) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it onto `path`.

    On any failure the temporary file is removed and an existing `path` is left untouched; the
    OSError (or the writer's own exception) propagates. Stale temporaries of earlier, killed writes
    in the same folder are removed first. The new file gets the permissions of the
    file it replaces, or the usual ones for a new file (not mkstemp's owner-only 0600). With
    `fsync` the data reach the disk before the rename (a crash then leaves the old or the new file).
    This is the one atomic write of the project: volumes, models, checkpoints, caches, sessions.
    """
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else _NEW_FILE_MODE
    remove_stale_temporaries(path.parent)
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=path.parent)
        os.close(fd)
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
