"""Fine-tuning in a child process (`freqseg finetune --progress-json`), for callers with a GUI.

In a thread of the viewer's process, training shares the interpreter with the GUI: every
garbage-collector run triggered by the training's allocations stops the GUI thread too (a full
collection of napari's heap took 0.3 s on the project's machines) and the GUI waits for the GIL
whenever the trainer runs Python. A child process shares neither; it runs at a lower CPU
priority, so the GUI wins the CPU when it needs it. The scan and labels travel as uncompressed
MetaImage files (exact geometry) in a temporary folder; progress comes back as JSON lines;
Cancel interrupts the child (SIGINT: its atomic model write never leaves a partial file).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..correction.record import CorrectionRecord
from ..errors import CancelledError, FreqsegError
from ..io.volume import Volume, write_volume
from ..models.modelfile import load_model
from .finetune import FinetuneResult

ProgressFn = Callable[[int, int, str], None]
_POLL_S = 0.1


def finetune_command(
    model: Path, image: Path, labels: Path, record: CorrectionRecord, output: Path, name: str, volume_name: str,
    iterations: int | None, seconds: float | None,
) -> list[str]:  # fmt: skip
    """The `freqseg finetune` command line the child runs."""
    cmd = [sys.executable, "-m", "napari_freqseg.cli", "finetune", "--model", str(model), "--image", str(image),
           "--labels", str(labels), "--slices", record.spec(), "-o", str(output), "--name", name,
           "--volume-name", volume_name, "--progress-json"]  # fmt: skip
    if iterations is not None:
        cmd += ["--iters", str(iterations)]
    elif seconds is not None:
        cmd += ["--seconds", str(seconds)]
    return cmd


def _child_env() -> dict[str, str]:
    """The environment with this package's own source folder first on the path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _lines(stream: object, into: queue.Queue) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)
    into.put(None)


def _lower_priority(pid: int, niceness: int) -> None:
    if sys.platform.startswith("linux") and niceness:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, niceness)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (the child cleans up and exits), then kill if it does not within 10 s."""
    with contextlib.suppress(OSError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def finetune_in_process(
    model: str | Path,
    output: str | Path,
    volume: Volume,
    labels: np.ndarray,
    record: CorrectionRecord,
    *,
    name: str,
    volume_name: str = "",
    iterations: int | None = None,
    seconds: float | None = None,
    niceness: int = 10,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> FinetuneResult:
    """`training.finetune.finetune_file` with the default options, run by a child process.

    Returns what finetune_file returns (the network read back from `output`). Raises the child's
    one-line error as FreqsegError, and CancelledError when `cancelled()` turns true (checked
    every 0.1 s): the child is interrupted and `output`, if it did not exist before, is removed.
    """
    output = Path(output)
    existed = output.exists()
    report = progress or (lambda done, total, message: None)
    is_cancelled = cancelled or (lambda: False)
    with tempfile.TemporaryDirectory(prefix="freqseg-finetune-") as tmp:
        image_file = write_volume(volume.array, volume.geometry, Path(tmp) / "image.mha")
        labels_file = write_volume(np.asarray(labels).astype(np.uint8), volume.geometry, Path(tmp) / "labels.mha")
        cmd = finetune_command(Path(model), image_file, labels_file, record, output, name, volume_name or volume.source,
                               iterations, seconds)  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env())
        _lower_priority(proc.pid, niceness)
        lines: queue.Queue = queue.Queue()
        errors: list[str] = []
        threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
        threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
        result: dict | None = None
        while True:
            if is_cancelled():
                _stop(proc)
                if not existed:
                    output.unlink(missing_ok=True)
                raise CancelledError("fine-tuning cancelled; the model is unchanged")
            try:
                line = lines.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if line is None:
                break
            message = json.loads(line)
            if "progress" in message:
                report(*message["progress"])
            else:
                result = message.get("result")
        code = proc.wait()
    if code != 0 or result is None:
        text = next((e.strip() for e in reversed(errors) if e.strip()), f"the fine-tuning process stopped (exit code {code})")
        raise FreqsegError(text.removeprefix("freqseg finetune: error: "))
    network, meta = load_model(result["model"])
    return FinetuneResult(network=network, meta=meta, history=result["history"], path=Path(result["model"]))

