"""The correction core imports neither Qt nor napari (the CLI and headless runs use it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import napari_freqseg


def test_correction_imports_no_gui_modules():
    code = (
        "import sys, napari_freqseg.correction\n"
        "gui = sorted(m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui', 'superqt', 'vispy'))\n"
        "print(','.join(gui))\n"
    )
    env_path = str(Path(napari_freqseg.__file__).parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": env_path}, check=True)
    assert out.stdout.strip() == ""
