"""Write a file atomically: a temporary file beside the target, renamed onto it when complete."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_NEW_FILE_MODE = 0o666 & ~_umask()


def write_atomically(path: Path, suffix: str, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it onto `path`.

    On any failure the temporary file is removed and an existing `path` is left untouched; the
    OSError (or the writer's own exception) propagates. The new file gets the permissions of the
    file it replaces, or the usual ones for a new file (not mkstemp's owner-only 0600).
    """
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else _NEW_FILE_MODE
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".freqseg-", suffix=suffix, dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
