"""Options of a fine-tuning round (no torch: the command line reads their defaults for its help)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError

DEFAULT_ITERATIONS = 30
#: Largest fine-tuning patch side (model voxels): a 64³ step of the bundled V-Net takes ~1.5-3 s on CPU.
MAX_PATCH = 64
#: Fine-tuning precisions: float32, or bfloat16 autocast (weights and optimiser stay float32; no
#: float16, which would need loss scaling).
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class FinetuneOptions:
    """How long and how to fine-tune. Without `iterations` and `seconds`, DEFAULT_ITERATIONS run;
    with both, whichever ends first. `seconds` counts the whole call, preparation included."""

    iterations: int | None = None
    seconds: float | None = None
    lr: float = 1e-4  # measured on 3 shifted LA cases: 3e-4 gained as much but forgot 2-6 points (docs/methods.md)
    patch_size: tuple[int, int, int] | None = None  # (z, y, x) model voxels; default: finetune.default_patch
    consistency_weight: float = 0.5
    threshold: float = 0.8  # teacher confidence for the consistency term
    noise: float = 0.1  # teacher input noise (std of the normalised intensities)
    ema_decay: float = 0.99
    foreground_fraction: float = 0.5  # share of patches centred on a corrected foreground voxel
    replay_every: int = 0  # with replay volumes: every n-th iteration is a replay patch (0 = off)
    weak_weight: float = 0.0  # weight of labels interpolated between corrected slices (0 = off, as measured)
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"  # bfloat16 autocast where the device computes it natively (measured: 3x the steps); "bf16"; "fp32"
    mix: float = 1.0  # weights = parent + mix·(tuned − parent) (WiSE-FT); 1 = the tuned weights as they are

    def __post_init__(self) -> None:
        if self.iterations is not None and self.iterations < 1:
            raise ModelError(f"iterations must be at least 1, got {self.iterations}")
        if self.seconds is not None and not self.seconds > 0:
            raise ModelError(f"seconds must be positive, got {self.seconds}")
        if not self.lr > 0 or self.consistency_weight < 0 or not 0 <= self.threshold <= 1 or self.replay_every < 0:
            raise ModelError("lr must be positive, consistency_weight ≥ 0, threshold in [0, 1], replay_every ≥ 0")
        if self.precision not in PRECISIONS:
            raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0 < self.mix <= 1:
            raise ModelError(f"mix must be in (0, 1], got {self.mix}")
        if not 0 <= self.weak_weight <= 1:
            raise ModelError(f"weak_weight must be in [0, 1], got {self.weak_weight}")

    @property
    def budget(self) -> tuple[int | None, float | None]:
        """(iterations, seconds) with the default applied."""
        if self.iterations is None and self.seconds is None:
            return DEFAULT_ITERATIONS, None
        return self.iterations, self.seconds
