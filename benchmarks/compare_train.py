"""Train the rows of the controlled LA comparison (configs/compare/), one job after another.

Each job is ROW:SEED, trained by `freqseg train configs/compare/ROW.toml --init WARMSTART --seed SEED`
into RUNS/ROW-sSEED. A job whose last.safetensors exists is skipped; one with a checkpoint is
resumed, so the same command continues after any interruption; a failed job is tried once more
after the others. The warm start itself is the job
`warmstart:0` (trained from scratch). Run several lanes in parallel, one thread each:

    OMP_NUM_THREADS=1 python benchmarks/compare_train.py sup:0 mt:0 sup:1 mt:1 --runs runs/compare
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "compare"
#: The warm start of the reported rows (with its training log beside it), so that later rows start
#: from exactly the same weights on any machine.
SHIPPED_START = REPO / "benchmarks" / "compare" / "warmstart.safetensors"


def job_command(row: str, seed: int, runs: Path, freqseg: str) -> tuple[list[str], Path]:
    """The `freqseg train` command of one job and its run folder."""
    config = CONFIGS / f"{row}.toml"
    if not config.is_file():
        raise SystemExit(f"no row {row!r}: {config.relative_to(REPO)} does not exist")
    if row == "warmstart":
        out = runs / "warmstart"
        return [freqseg, "train", str(config.relative_to(REPO)), "--out", str(out), "--quiet"], out
    out = runs / f"{row}-s{seed}"
    init = runs / "warmstart" / "last.safetensors"
    cmd = [
        freqseg,
        "train",
        str(config.relative_to(REPO)),
        "--init",
        str(init),
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--quiet",
    ]
    return cmd, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", nargs="+", help="ROW:SEED, e.g. mt:0 (rows: configs/compare/*.toml)")
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"), help="folder of the run folders")
    parser.add_argument("--freqseg", default=str(Path(sys.executable).with_name("freqseg")), help="the freqseg executable")
    args = parser.parse_args()
    failed = [job for job in args.jobs if run_job(job, args.runs, args.freqseg) != 0]
    failed = [job for job in failed if run_job(job, args.runs, args.freqseg) != 0]  # one more try each
    if failed:
        print(f"failed twice: {' '.join(failed)}", flush=True)
    return 1 if failed else 0


def run_job(job: str, runs: Path, freqseg: str) -> int:
    """Train (or resume, or skip when finished) one ROW:SEED job; its exit code."""
    row, _, seed = job.partition(":")
    cmd, out = job_command(row, int(seed or 0), runs, freqseg)
    if (out / "last.safetensors").is_file():
        print(f"{job}: done already ({out})", flush=True)
        return 0
    if (out / "checkpoint.pt").is_file():
        cmd.append("--resume")
    start_file = runs / "warmstart" / "last.safetensors"
    if row != "warmstart" and not start_file.is_file():
        if not SHIPPED_START.is_file():
            raise SystemExit(f"{job}: train the warm start first (job warmstart:0)")
        start_file.parent.mkdir(parents=True, exist_ok=True)  # every row starts from the committed warm start
        shutil.copyfile(SHIPPED_START, start_file)
    start = time.monotonic()
    print(f"{job}: {' '.join(cmd)}", flush=True)
    rc = subprocess.call(cmd, cwd=REPO)
    print(f"{job}: exit {rc} after {time.monotonic() - start:.0f} s", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
