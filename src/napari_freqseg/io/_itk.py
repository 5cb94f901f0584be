"""SimpleITK helpers shared by the readers: quiet warnings, one-line reasons from ITK exceptions."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import SimpleITK as sitk


class _QuietITK:
    """Keep ITK warnings off the terminal while any thread reads or writes (the CLI prints one line
    per error and notes say the rest); the global switch is restored when the last one is done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._shown = True

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._shown = sitk.ProcessObject.GetGlobalWarningDisplay()
                sitk.ProcessObject.SetGlobalWarningDisplay(False)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    sitk.ProcessObject.SetGlobalWarningDisplay(self._shown)


quiet_itk = _QuietITK()


def itk_reason(exc: BaseException) -> str:
    """The useful part of an ITK exception, on one line, without the path it repeats."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    desc = [ln for ln in lines if "description" in ln.lower()]  # ITK puts the reason last
    line = (desc or lines or ["unknown error"])[-1].split("Description:")[-1]
    line = re.sub(r"^((sitk|itk)::ERROR:|\[\w+\] \w+:)\s*", "", line.strip())
    line = re.sub(r'\s*(for|from|:)?\s*"?/[^"\s]*"?', "", line).strip(" :")
    return (line or "unknown error")[:160]


# DICOM tags kept in a volume's header: what scanner and site made it, nothing about the patient.


def printable(value: str) -> bool:
    return len(value) < 512 and value.isprintable()
