"""Fine-tuning in a child process, for callers with a GUI.

In a thread of the viewer's process, training shares the interpreter with the GUI: every
garbage-collector run triggered by the training's allocations stops the GUI thread too (a full
collection of napari's heap took 0.3 s on the project's machines) and the GUI waits for the GIL
whenever the trainer runs Python. A child process shares neither, and runs at a lower CPU
priority so that the GUI wins the CPU when it needs it.

The job travels as `.npy` arrays (written by numpy, which releases the GIL while writing) and a
JSON file; the child (`python -m napari_freqseg.training.finetune_process JOB.json`) runs
`finetune_file` and prints one JSON line per progress step, then one with the result or the
error. Cancel interrupts the child with SIGINT: its atomic model write never leaves a partial file.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..correction.record import CorrectionRecord
from ..errors import CancelledError, FreqsegError
from ..io.geometry import Geometry
from ..io.volume import Volume
from ..models.modelfile import load_model
from .finetune import FinetuneOptions, FinetuneResult, StepMessage, finetune_file, parse_step

ProgressFn = Callable[[int, int, str], None]
_POLL_S = 0.1


def write_job(
    folder: Path, model: Path, output: Path, volume: Volume, labels: np.ndarray, record: CorrectionRecord,
    name: str, volume_name: str, iterations: int | None, seconds: float | None,
) -> Path:  # fmt: skip
    """The job file (and its arrays) the child reads."""
    np.save(folder / "image.npy", np.ascontiguousarray(volume.array))
    np.save(folder / "labels.npy", np.ascontiguousarray(labels))  # as they are: the child checks their values
    job = {"model": str(model), "output": str(output), "image": str(folder / "image.npy"), "labels": str(folder / "labels.npy"),
           "geometry": volume.geometry.to_dict(), "header": dict(volume.header), "record": record.to_dict(), "name": name,
           "volume_name": volume_name, "iterations": iterations, "seconds": seconds}  # fmt: skip
    path = folder / "job.json"
    path.write_text(json.dumps(job))
    return path


def _child_env() -> dict[str, str]:
    """The environment with this package's own source folder first on the path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _lines(stream: Any, into: queue.Queue) -> None:
    for line in stream:
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
    """`finetune_file` with the default options and this budget, run by a child process.

    Returns what finetune_file returns (the network read back from `output`). Raises the child's
    one-line error as FreqsegError, and CancelledError when `cancelled()` turns true (checked
    every 0.1 s): the child is interrupted and `output`, if it did not exist before, is removed.
    """
    output = Path(output)
    existed = output.exists()
    report = progress or (lambda done, total, message: None)
    is_cancelled = cancelled or (lambda: False)
    with tempfile.TemporaryDirectory(prefix="freqseg-finetune-") as tmp:
        job = write_job(Path(tmp), Path(model), output, volume, labels, record, name, volume_name or volume.source,
                        iterations, seconds)  # fmt: skip
        cmd = [sys.executable, "-m", "napari_freqseg.training.finetune_process", str(job)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env())
        _lower_priority(proc.pid, niceness)
        lines: queue.Queue = queue.Queue()
        errors: list[str] = []
        threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
        threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()
        final: dict[str, Any] = {}
        try:
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
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:  # something else printed on the child's stdout: not ours
                    errors.append(line)
                    continue
                if "progress" in message:
                    done, total, text = message["progress"]
                    report(done, total, StepMessage(text, message["step"]) if message.get("step") else text)
                else:
                    final = message
        except BaseException:  # whatever else stops the loop (a failing progress callback): the child stops too
            if proc.poll() is None:
                _stop(proc)
                if not existed:
                    output.unlink(missing_ok=True)
            raise
        code = proc.wait()
    if "error" in final:
        raise FreqsegError(final["error"])
    if code != 0 or "result" not in final:
        last = next((e.strip() for e in reversed(errors) if e.strip()), "")
        raise FreqsegError(f"the fine-tuning process stopped (exit code {code}){': ' + last if last else ''}")
    network, meta = load_model(final["result"]["model"])
    return FinetuneResult(network=network, meta=meta, history=final["result"]["history"], path=Path(final["result"]["model"]))


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """The child: run the job file's fine-tuning, reporting on stdout as JSON lines."""
    args = list(sys.argv[1:] if argv is None else argv)
    job = json.loads(Path(args[0]).read_text())
    volume = Volume(array=np.load(job["image"]), geometry=Geometry.from_dict(job["geometry"]), header=job.get("header", {}),
                    source=job["volume_name"])  # fmt: skip
    try:
        result = finetune_file(
            job["model"], job["output"], volume, np.load(job["labels"]), CorrectionRecord.from_dict(job["record"]),
            FinetuneOptions(iterations=job["iterations"], seconds=job["seconds"]), name=job["name"],
            volume_name=job["volume_name"],
            progress=lambda done, total, message: _say({"progress": [done, total, message], "step": parse_step(message)}),
        )  # fmt: skip
    except KeyboardInterrupt:
        return 130
    except FreqsegError as exc:
        _say({"error": str(exc)})
        return 1
    _say({"result": {"model": str(result.path), "history": result.history}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
