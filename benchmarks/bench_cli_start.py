"""Start-up time of the command line: `freqseg --help` and `freqseg info SAMPLE` against
`python -c "import numpy"`, each run as a fresh process, medians of N runs measured in turn.

    python benchmarks/bench_cli_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src" / "napari_freqseg" / "sample_data" / "la_CCGAKN4EDT72KC8TTJ76_image.nii.gz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    commands = {
        "import_numpy": [py, "-c", "import numpy"],
        "freqseg_help": [py, "-m", "napari_freqseg.cli", "--help"],
        "freqseg_info": [py, "-m", "napari_freqseg.cli", "info", str(SAMPLE)],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t0)
    median = {k: statistics.median(v) for k, v in times.items()}
    base = median["import_numpy"]
    json.dump(
        {
            "benchmark": "cli_start",
            "runs": args.runs,
            "seconds": {k: round(v, 3) for k, v in median.items()},
            "ratio_to_import_numpy": {k: round(v / base, 2) for k, v in median.items()},
        },
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
