"""Training configuration: a TOML file read into validated dataclasses.

Paths in a config are relative to the config file's folder. Every section and key is checked:
unknown keys, wrong types and out-of-range values give a one-line `ConfigError` naming the file,
the section and the key (with a suggestion for a misspelt key).
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import FreqsegError
from ..models.preprocess import Normalization


class ConfigError(FreqsegError):
    """A training configuration is missing, unreadable or invalid."""


@dataclass(frozen=True)
class Selection:
    """Which cases of the cohort a role (labeled / unlabeled / val) uses.

    Filters apply in this order: `cases` (explicit ids), `site`, `split`, then `skip` / `first`
    per site when `per_site` is true (few labels from each of several centres) or over the whole
    filtered list otherwise. Cohort order is kept throughout.
    """

    site: tuple[str, ...] | None = None
    split: tuple[str, ...] | None = None
    cases: tuple[str, ...] | None = None
    first: int | None = None
    skip: int = 0
    per_site: bool = False


@dataclass(frozen=True)
class DataConfig:
    cohort: Path
    cache_dir: Path
    classes: tuple[str, ...] = ("background", "foreground")
    spacing: tuple[float, float, float] | None = None  # (x, y, z) mm; None = native
    orientation: str | None = "LPS"
    patch_size: tuple[int, int, int] = (32, 64, 64)  # (z, y, x) voxels
    foreground_fraction: float = 0.5  # share of labeled patches centred on a foreground voxel
    normalization: Normalization = field(default_factory=Normalization)
    label_map: dict[int, int] | None = None  # label value in the files -> class index
    flips: bool = True
    rotations: bool = True  # random 90-degree rotations in the axial (y, x) plane
    num_workers: int = 0
    labeled: Selection = field(default_factory=Selection)
    unlabeled: Selection | None = None
    val: Selection | None = None


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "vnet"
    n_filters: int = 8
    normalization: str = "instance"
    dropout: float = 0.5
    init: Path | None = None  # start from this model file's weights (a warm start, as BCP's pre-training)

    @property
    def arch_args(self) -> dict[str, Any]:
        return {"n_filters": self.n_filters, "normalization": self.normalization, "dropout": self.dropout}


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 1000
    batch_labeled: int = 2
    batch_unlabeled: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"  # onecycle | poly | constant
    warmup: float = 0.1  # one-cycle: fraction of iterations spent rising to `lr`
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    ema_decay: float = 0.99  # teacher = EMA of the student (when a component needs a teacher)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on CUDA when supported, else fp16; none on CPU) | none | bf16 | fp16
    val_every: int = 250
    val_model: str = "student"  # student | teacher
    val_overlap: float = 0.5
    keep_largest_component: bool = True
    checkpoint_every: int = 250
    log_every: int = 10


@dataclass(frozen=True)
class Config:
    name: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    components: dict[str, dict[str, Any]]
    seed: int = 0
    description: str = ""
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)  # the TOML as read

    def with_start(self, seed: int | None = None, init: str | Path | None = None) -> Config:
        """A copy with another seed and/or warm-start model file (command-line overrides, kept in
        `raw` so that the run's fingerprint and the model's metadata name them)."""
        out, raw = self, dict(self.raw)
        if seed is not None:
            if seed < 0:
                raise ConfigError(f"{self._where()}: seed must be >= 0 (got {seed})")
            out, raw["seed"] = replace(out, seed=seed), seed
        if init is not None:
            path = Path(init).resolve()
            if not path.is_file():
                raise ConfigError(f"{self._where()}: warm-start model {init} does not exist")
            out = replace(out, model=replace(out.model, init=path))
            raw["model"] = dict(raw.get("model", {})) | {"init": str(init)}
        return replace(out, raw=raw) if out is not self else self

    def with_overrides(self, **train: Any) -> Config:
        """A copy with [train] keys replaced (command-line overrides); None values are ignored."""
        given = {k: v for k, v in train.items() if v is not None}
        if not given:
            return self
        table = {f.name: getattr(self.train, f.name) for f in fields(TrainConfig)} | given
        raw = dict(self.raw)
        raw["train"] = dict(raw.get("train", {})) | given
        return replace(self, train=_train(table, self._where()), raw=raw)

    def _where(self) -> str:
        return self.source.name if self.source else "config"


_CHOICES = {
    "schedule": ("onecycle", "poly", "constant"),
    "amp": ("auto", "none", "bf16", "fp16"),
    "val_model": ("student", "teacher"),
}


def load_config(path: str | Path) -> Config:
    """Read and validate a training config (TOML)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    try:
        raw = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p.name}: not valid TOML ({exc})") from None
    return parse_config(raw, base=p.resolve().parent, where=p.name, source=p.resolve())


def parse_config(raw: dict[str, Any], base: Path, where: str = "config", source: Path | None = None) -> Config:
    """Validate a parsed TOML document; relative paths resolve against `base`."""
    top = dict(raw)
    _check_keys(top, ("name", "description", "seed", "data", "model", "train", "components"), where, "")
    name = _str(top.get("name", source.stem if source else "model"), where, "name")
    seed = _int(top.get("seed", 0), where, "seed", low=0)
    description = _str(top.get("description", ""), where, "description")
    if "data" not in top:
        raise ConfigError(f"{where}: missing [data] section (cohort, classes, ...)")
    data = _data(_table(top["data"], where, "data"), base, where)
    model = _model(_table(top.get("model", {}), where, "model"), where, base)
    train = _train(_table(top.get("train", {}), where, "train"), where)
    comps = _table(top.get("components", {}), where, "components")
    components = {k: dict(_table(v, where, f"components.{k}")) for k, v in comps.items()}
    if data.unlabeled is None and any(k != "supervised" and v.get("enabled", True) for k, v in components.items()):
        raise ConfigError(f"{where}: [components] other than supervised need unlabeled data: add [data.unlabeled]")
    if train.val_every and data.val is None:
        raise ConfigError(f"{where}: [train] val_every needs [data.val] (or set val_every = 0)")
    return Config(
        name=name,
        data=data,
        model=model,
        train=train,
        components=components,
        seed=seed,
        description=description,
        source=source,
        raw=raw,
    )


def _data(t: dict[str, Any], base: Path, where: str) -> DataConfig:
    s = "data"
    allowed = [f.name for f in fields(DataConfig)]
    _check_keys(t, allowed, where, s)
    for key in ("cohort", "classes"):
        if key not in t:
            raise ConfigError(f"{where}: [data] needs '{key}'")
    classes = _strs(t["classes"], where, f"{s}.classes")
    if len(classes) < 2:
        raise ConfigError(f"{where}: [data] classes needs at least two names (background first)")
    try:
        norm = Normalization.from_dict(_table(t.get("normalization", {}), where, f"{s}.normalization"))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: [data.normalization] {exc}") from None
    spacing = t.get("spacing")
    patch = _ints(t.get("patch_size", [32, 64, 64]), where, f"{s}.patch_size", n=3, low=1)
    label_map = None
    if "label_map" in t:
        lm = _table(t["label_map"], where, f"{s}.label_map")
        try:
            label_map = {int(k): int(v) for k, v in lm.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: [data] label_map maps integer label values to class indices") from None
        bad = [v for v in label_map.values() if not 0 <= v < len(classes)]
        if bad:
            raise ConfigError(f"{where}: [data] label_map maps to class {bad[0]}, but there are {len(classes)} classes")
    return DataConfig(
        cohort=_path(t["cohort"], base, where, f"{s}.cohort"),
        cache_dir=_path(t.get("cache_dir", "cache"), base, where, f"{s}.cache_dir"),
        classes=tuple(classes),
        spacing=None if spacing is None else _floats(spacing, where, f"{s}.spacing", n=3, low=1e-6),
        orientation=_str(t["orientation"], where, f"{s}.orientation") or None if "orientation" in t else "LPS",
        patch_size=patch,
        foreground_fraction=_float(t.get("foreground_fraction", 0.5), where, f"{s}.foreground_fraction", 0.0, 1.0),
        normalization=norm,
        label_map=label_map,
        flips=_bool(t.get("flips", True), where, f"{s}.flips"),
        rotations=_bool(t.get("rotations", True), where, f"{s}.rotations"),
        num_workers=_int(t.get("num_workers", 0), where, f"{s}.num_workers", low=0),
        labeled=_selection(t.get("labeled", {}), where, f"{s}.labeled"),
        unlabeled=_selection(t["unlabeled"], where, f"{s}.unlabeled") if "unlabeled" in t else None,
        val=_selection(t["val"], where, f"{s}.val") if "val" in t else None,
    )


def _selection(value: Any, where: str, section: str) -> Selection:
    t = _table(value, where, section)
    _check_keys(t, [f.name for f in fields(Selection)], where, section)

    def names(key: str) -> tuple[str, ...] | None:
        if key not in t:
            return None
        v = t[key]
        return (_str(v, where, f"{section}.{key}"),) if isinstance(v, str) else tuple(_strs(v, where, f"{section}.{key}"))

    return Selection(
        site=names("site"),
        split=names("split"),
        cases=names("cases"),
        first=_int(t["first"], where, f"{section}.first", low=1) if "first" in t else None,
        skip=_int(t.get("skip", 0), where, f"{section}.skip", low=0),
        per_site=_bool(t.get("per_site", False), where, f"{section}.per_site"),
    )


def _model(t: dict[str, Any], where: str, base: Path) -> ModelConfig:
    _check_keys(t, [f.name for f in fields(ModelConfig)], where, "model")
    from ..models.vnet import NORMS

    m = ModelConfig(
        architecture=_str(t.get("architecture", "vnet"), where, "model.architecture"),
        n_filters=_int(t.get("n_filters", 8), where, "model.n_filters", low=1),
        normalization=_str(t.get("normalization", "instance"), where, "model.normalization"),
        dropout=_float(t.get("dropout", 0.5), where, "model.dropout", 0.0, 0.99),
        init=_path(t["init"], base, where, "model.init") if t.get("init") else None,
    )
    if m.init is not None and not m.init.is_file():
        raise ConfigError(f"{where}: [model] init {m.init} does not exist")
    from ..models.modelfile import ARCHITECTURES

    if m.architecture not in ARCHITECTURES:
        raise ConfigError(f"{where}: [model] architecture {m.architecture!r} is unknown (known: {', '.join(ARCHITECTURES)})")
    if m.normalization not in NORMS:
        raise ConfigError(f"{where}: [model] normalization {m.normalization!r} is unknown (choose from {', '.join(NORMS)})")
    return m


def _train(t: dict[str, Any], where: str) -> TrainConfig:
    _check_keys(t, [f.name for f in fields(TrainConfig)], where, "train")
    d = TrainConfig()
    s = "train"
    values: dict[str, Any] = {}
    for f in fields(TrainConfig):
        v = t.get(f.name, getattr(d, f.name))
        key = f"{s}.{f.name}"
        default = getattr(d, f.name)
        if isinstance(default, bool):
            values[f.name] = _bool(v, where, key)
        elif isinstance(default, int):
            low = 1 if f.name in ("iterations", "batch_labeled", "log_every") else 0
            values[f.name] = _int(v, where, key, low=low)
        elif isinstance(default, float):
            high = 1.0 if f.name in ("warmup", "ema_decay", "val_overlap") else None
            values[f.name] = _float(v, where, key, 0.0, high)
        else:
            values[f.name] = _str(v, where, key)
            if f.name in _CHOICES and values[f.name] not in _CHOICES[f.name]:
                raise ConfigError(f"{where}: [train] {f.name} = {v!r} (choose from {', '.join(_CHOICES[f.name])})")
    if values["val_overlap"] >= 1.0:
        raise ConfigError(f"{where}: [train] val_overlap must be below 1")
    dev = values["device"]
    if dev not in ("auto", "cpu", "cuda") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
        raise ConfigError(f"{where}: [train] device = {dev!r} (use auto, cpu, cuda or cuda:N)")
    return TrainConfig(**values)


# --- small typed readers: each raises a one-line ConfigError naming the key ---------------------


def _check_keys(t: dict[str, Any], allowed: Any, where: str, section: str) -> None:
    allowed = list(allowed)
    for key in t:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(allowed)})"
            place = f"[{section}] " if section else ""
            raise ConfigError(f"{where}: {place}unknown key '{key}'{hint}")


def _fail(where: str, key: str, want: str, value: Any) -> ConfigError:
    section, _, name = key.rpartition(".")
    place = f"[{section}] {name}" if section else name
    return ConfigError(f"{where}: {place} must be {want}, not {value!r}")


def _table(v: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: [{key}] must be a table, not {v!r}")
    return v


def _str(v: Any, where: str, key: str) -> str:
    if not isinstance(v, str):
        raise _fail(where, key, "a string", v)
    return v


def _strs(v: Any, where: str, key: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _fail(where, key, "a list of strings", v)
    return list(v)


def _bool(v: Any, where: str, key: str) -> bool:
    if not isinstance(v, bool):
        raise _fail(where, key, "true or false", v)
    return v


def _int(v: Any, where: str, key: str, low: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(where, key, "an integer", v)
    if low is not None and v < low:
        raise _fail(where, key, f"at least {low}", v)
    return v


def _float(v: Any, where: str, key: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(where, key, "a number", v)
    if (low is not None and v < low) or (high is not None and v > high):
        rng = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _fail(where, key, rng, v)
    return float(v)


def _ints(v: Any, where: str, key: str, n: int, low: int) -> tuple[int, ...]:
    if not isinstance(v, list) or len(v) != n:
        raise _fail(where, key, f"a list of {n} integers", v)
    return tuple(_int(x, where, key, low=low) for x in v)


def _floats(v: Any, where: str, key: str, n: int, low: float) -> tuple[float, ...]:
    if not isinstance(v, list) or len(v) != n:
        raise _fail(where, key, f"a list of {n} numbers", v)
    return tuple(_float(x, where, key, low=low) for x in v)


def _path(v: Any, base: Path, where: str, key: str) -> Path:
    p = Path(_str(v, where, key)).expanduser()
    return p if p.is_absolute() else (base / p).resolve()
