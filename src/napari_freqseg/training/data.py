"""Training data: cohort selection, volumes prepared on the model grid (cached), patch batches.

Preparation reads each case once, resamples it to the model grid (`io.resample.model_grid`:
canonical orientation, target spacing) and stores float32 raw intensities with the per-volume
normalisation parameters and the class labels in `cache_dir/<prep key>/<site>__<case>.npz`.
The key depends only on how volumes are prepared (spacing, orientation, normalisation, label
map), so a cache folder copied to another machine is reused there, even without the source files.
Sampling is a pure function of (seed, iteration, rank): a resumed or distributed run draws
exactly the patches an uninterrupted single run would.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CancelledError, CohortError
from ..io.atomic import write_atomically
from ..io.cohort import load_cohort
from ..io.geometry import Geometry
from ..io.resample import model_grid, resample
from ..io.volume import read_volume
from .config import ConfigError, DataConfig, Selection

CACHE_VERSION = 2  # 2: normalisation statistics from the source grid, as inference
ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class CaseRef:
    """A case of the cohort as the selection sees it (no pixels)."""

    case_id: str
    site: str
    split: str
    image: str
    label: str | None

    @property
    def key(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.site}__{self.case_id}")


@dataclass
class PreparedCase:
    """A case on the model grid: raw float32 intensities (clipped when the normalisation clips),
    normalisation `shift`/`scale`, class labels (uint8) when labeled, and its source grid."""

    ref: CaseRef
    raw: np.ndarray
    shift: float
    scale: float
    geometry: Geometry
    source_geometry: Geometry
    label: np.ndarray | None = None
    source_label: np.ndarray | None = None  # labels on the source grid (for validation)

    @property
    def x(self) -> np.ndarray:
        """Network input: the normalised volume."""
        return ((self.raw - self.shift) / self.scale).astype(np.float32)


@dataclass
class Roles:
    labeled: list[CaseRef]
    unlabeled: list[CaseRef]
    val: list[CaseRef]

    @property
    def sites(self) -> list[str]:
        """Sites of the training cases (labeled first), in cohort order: index = site id."""
        return list(dict.fromkeys(c.site for c in self.labeled + self.unlabeled))


# --- cohort and selection -----------------------------------------------------------------------


def cohort_cases(cfg: DataConfig) -> list[CaseRef]:
    """Cases of the configured cohort; from the cache's record when the cohort file is absent."""
    record = _cache_folder(cfg) / f"{cfg.cohort.stem}.cases.json"
    if not cfg.cohort.exists() and record.is_file():
        return [CaseRef(**d) for d in json.loads(record.read_text())]
    try:
        cohort = load_cohort(cfg.cohort)
    except CohortError as exc:
        raise ConfigError(f"[data] cohort: {exc}") from None
    cases = [CaseRef(c.case_id, c.site, c.split, str(c.image), str(c.label) if c.label else None) for c in cohort]
    _atomic_write_text(record, json.dumps([c.__dict__ for c in cases], indent=1))
    return cases


def select(cases: list[CaseRef], sel: Selection) -> list[CaseRef]:
    """Cases matching a selection, in cohort order (see `Selection`)."""
    out = [c for c in cases if sel.cases is None or c.case_id in sel.cases]
    out = [c for c in out if sel.site is None or c.site in sel.site]
    out = [c for c in out if sel.split is None or c.split in sel.split]
    groups = [[c for c in out if c.site == s] for s in dict.fromkeys(c.site for c in out)] if sel.per_site else [out]
    end = None if sel.first is None else sel.skip + sel.first
    picked = {id(c) for g in groups for c in g[sel.skip : end]}
    return [c for c in out if id(c) in picked]


def assign_roles(cases: list[CaseRef], cfg: DataConfig) -> Roles:
    """Labeled / unlabeled / val cases. Unlabeled never includes a labeled case; labeled and val
    cases must have label maps."""
    labeled = select(cases, cfg.labeled)
    ids = {(c.site, c.case_id) for c in labeled}
    unlabeled = [
        replace(c, label=None)  # never read an unlabeled case's label map, even where the cohort has one
        for c in (select(cases, cfg.unlabeled) if cfg.unlabeled else [])
        if (c.site, c.case_id) not in ids
    ]
    val = select(cases, cfg.val) if cfg.val else []
    sites = sorted({c.site for c in cases})
    splits = sorted({c.split for c in cases})
    for role, chosen, sel in (("labeled", labeled, cfg.labeled), ("unlabeled", unlabeled, cfg.unlabeled), ("val", val, cfg.val)):
        if sel is not None and not chosen:
            raise ConfigError(
                f"[data.{role}] selects no case of {cfg.cohort.name} (sites: {', '.join(sites)}; splits: {', '.join(splits) or 'none'})"
            )
        if role != "unlabeled":
            missing = [c.case_id for c in chosen if c.label is None]
            if missing:
                raise ConfigError(f"[data.{role}] case {missing[0]} has no label map ({len(missing)} such cases)")
    return Roles(labeled=labeled, unlabeled=unlabeled, val=val)


# --- preparation and cache ----------------------------------------------------------------------


def prep_key(cfg: DataConfig) -> str:
    """Short hash of everything that changes a prepared volume."""
    spec = {
        "version": CACHE_VERSION,
        "spacing": list(cfg.spacing) if cfg.spacing else None,
        "orientation": cfg.orientation,
        "normalization": cfg.normalization.to_dict(),
        "label_map": sorted(cfg.label_map.items()) if cfg.label_map else None,
    }
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _cache_folder(cfg: DataConfig) -> Path:
    return cfg.cache_dir / prep_key(cfg)


def prepare_cases(
    refs: list[CaseRef],
    cfg: DataConfig,
    n_classes: int,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[PreparedCase]:
    """Prepared cases, read from the cache or made (and cached) now."""
    folder = _cache_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, ref in enumerate(refs):
        if cancelled is not None and cancelled():
            raise CancelledError("data preparation cancelled")
        path = folder / f"{ref.key}.npz"
        case = _load_cached(path, ref) if path.is_file() else None
        if case is None:
            case = prepare_case(ref, cfg, n_classes)
            _save_cached(path, case)
        out.append(case)
        if progress is not None:
            progress(i + 1, len(refs), f"preparing {ref.case_id}")
    return out


def prepare_case(ref: CaseRef, cfg: DataConfig, n_classes: int) -> PreparedCase:
    """Read one case and put it on the model grid (float32 raw, normalisation parameters, labels).

    As inference does (`inference.predict.model_input`), the normalisation statistics come from
    the scan on its source grid and the (clipped) intensities are then resampled linearly, in
    float32; the network input (raw - shift) / scale is what inference feeds the network. Labels
    are resampled as one-hot channels (linear) and argmax-ed, which averages correctly when the
    grid gets coarser."""
    if not Path(ref.image).exists():
        raise ConfigError(f"{ref.case_id}: image {ref.image} is missing and not in the cache {cfg.cache_dir}")
    vol = read_volume(ref.image)
    grid = model_grid(vol.geometry, cfg.spacing, cfg.orientation)
    source = vol.array.astype(np.float32)
    bounds, shift, scale = cfg.normalization.parameters(source)
    if bounds is not None:
        source = np.clip(source, *bounds)
    raw = resample(source, vol.geometry, grid, "linear")
    case = PreparedCase(ref, raw.astype(np.float32), shift, scale, grid, vol.geometry)
    if ref.label is not None:
        lab_vol = read_volume(ref.label)
        vol.geometry.check_same_grid(lab_vol.geometry, f"label of {ref.case_id}")
        source_label = map_labels(lab_vol.array, cfg.label_map, n_classes, ref.case_id)
        onehot = np.stack([(source_label == k).astype(np.float32) for k in range(n_classes)])
        case.label = resample(onehot, vol.geometry, grid, "linear").argmax(0).astype(np.uint8)
        case.source_label = source_label
    return case


def map_labels(array: np.ndarray, label_map: dict[int, int] | None, n_classes: int, what: str) -> np.ndarray:
    """Label values -> class indices (uint8); values absent from `label_map` become background."""
    arr = np.asarray(array)
    if label_map is not None:
        out = np.zeros(arr.shape, np.uint8)
        for value, cls in label_map.items():
            out[arr == value] = cls
        return out
    values = np.unique(arr)
    if values.min() < 0 or values.max() >= n_classes:
        raise ConfigError(f"{what}: label values {values.tolist()[:8]} do not fit {n_classes} classes (set [data] label_map)")
    return arr.astype(np.uint8)


def _save_cached(path: Path, case: PreparedCase) -> None:
    arrays: dict[str, Any] = {
        "raw": _compact(case.raw),
        "norm": np.array([case.shift, case.scale], np.float64),
        "geometry": np.array(json.dumps(case.geometry.to_dict())),
        "source_geometry": np.array(json.dumps(case.source_geometry.to_dict())),
    }
    if case.label is not None:
        arrays["label"] = case.label
        arrays["source_label"] = case.source_label
    write_atomically(path, ".npz", lambda tmp: np.savez_compressed(tmp, **arrays))


def _compact(raw: np.ndarray) -> np.ndarray:
    """The smallest integer dtype that holds `raw` exactly (most scans are 8/16-bit integers on
    their native grid), else float32: a 4× smaller cache for 8-bit MRI."""
    if raw.size and np.array_equal(raw, np.round(raw)):
        lo, hi = float(raw.min()), float(raw.max())
        for dtype in (np.uint8, np.int16):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return raw.astype(dtype)
    return raw.astype(np.float32)


def _load_cached(path: Path, ref: CaseRef) -> PreparedCase | None:
    try:
        with np.load(path) as z:
            has_label = ref.label is not None and "label" in z.files
            if ref.label is not None and not has_label:
                return None  # prepared before its label was known: prepare again
            return PreparedCase(
                ref=ref,
                raw=z["raw"].astype(np.float32),
                shift=float(z["norm"][0]),
                scale=float(z["norm"][1]),
                geometry=Geometry.from_dict(json.loads(str(z["geometry"]))),
                source_geometry=Geometry.from_dict(json.loads(str(z["source_geometry"]))),
                label=z["label"] if has_label else None,
                source_label=z["source_label"] if has_label else None,
            )
    except (OSError, ValueError, KeyError):
        return None  # unreadable (e.g. a partial copy): prepare again


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, "", lambda tmp: Path(tmp).write_text(text))


# --- patch sampling -----------------------------------------------------------------------------


@dataclass
class _Pool:
    """Cases of one role, padded to at least the patch size, with their foreground voxels."""

    raw: list[np.ndarray]
    label: list[np.ndarray | None]
    shift: np.ndarray
    scale: np.ndarray
    site: np.ndarray
    foreground: list[np.ndarray | None]


def _pool(cases: list[PreparedCase], patch: tuple[int, int, int], sites: list[str]) -> _Pool:
    raws, labels, fgs = [], [], []
    for c in cases:
        pad = [(0, max(0, p - s)) for p, s in zip(patch, c.raw.shape)]
        raws.append(np.pad(c.raw, pad, constant_values=float(c.raw.min())) if any(b for _, b in pad) else c.raw)
        lab = None if c.label is None else (np.pad(c.label, pad) if any(b for _, b in pad) else c.label)
        labels.append(lab)
        fgs.append(None if lab is None else np.argwhere(lab > 0).astype(np.int32))
    return _Pool(
        raw=raws,
        label=labels,
        shift=np.array([c.shift for c in cases], np.float32),
        scale=np.array([c.scale for c in cases], np.float32),
        site=np.array([sites.index(c.ref.site) for c in cases], np.int64),
        foreground=fgs,
    )


class PatchSampler:
    """Labeled + unlabeled patch batches for iteration i, a pure function of (seed, i, rank).

    Case order is a fresh permutation per pass over each role's cases, shared by all ranks; rank r
    of W takes the r-th slice of each global batch (as torch's DistributedSampler does). Patch
    positions, foreground oversampling and augmentation use a generator seeded with
    (seed, role, iteration, rank).
    """

    def __init__(
        self,
        labeled: list[PreparedCase],
        unlabeled: list[PreparedCase],
        cfg: DataConfig,
        batch_labeled: int,
        batch_unlabeled: int,
        seed: int,
        sites: list[str],
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.cfg = cfg
        self.patch = tuple(cfg.patch_size)
        self.seed, self.rank, self.world = seed, rank, world
        self.bl = batch_labeled
        self.bu = batch_unlabeled if unlabeled else 0
        self.labeled = _pool(labeled, self.patch, sites)
        self.unlabeled = _pool(unlabeled, self.patch, sites) if unlabeled else None

    def batch(self, iteration: int) -> dict[str, torch.Tensor]:
        """Tensors x_l, raw_l, stats_l, y_l, site_l (and the same for 'u' with unlabeled data)."""
        out = self._role(self.labeled, 0, self.bl, iteration, "l")
        if self.unlabeled is not None and self.bu:
            out |= self._role(self.unlabeled, 1, self.bu, iteration, "u")
        return out

    def _case_indices(self, n: int, role: int, batch: int, iteration: int) -> list[int]:
        first = (iteration * self.world + self.rank) * batch
        idx = []
        for p in range(first, first + batch):
            perm = np.random.default_rng([self.seed, role, p // n]).permutation(n)
            idx.append(int(perm[p % n]))
        return idx

    def _role(self, pool: _Pool, role: int, batch: int, iteration: int, key: str) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, role, iteration, self.rank, 7])
        idx = self._case_indices(len(pool.raw), role, batch, iteration)
        raws, labels = [], []
        for i in idx:
            raw, lab = self._patch(pool, i, rng, labeled=role == 0)
            raws.append(raw)
            labels.append(lab)
        raw = torch.from_numpy(np.stack(raws)[:, None])
        stats = torch.from_numpy(np.stack([pool.shift[idx], pool.scale[idx]], axis=1))
        out = {
            f"raw_{key}": raw,
            f"x_{key}": (raw - stats[:, 0, None, None, None, None]) / stats[:, 1, None, None, None, None],
            f"stats_{key}": stats,
            f"site_{key}": torch.from_numpy(pool.site[idx]),
        }
        if role == 0:
            out["y_l"] = torch.from_numpy(np.stack(labels)).long()
        return out

    def _patch(self, pool: _Pool, i: int, rng: np.random.Generator, labeled: bool) -> tuple[np.ndarray, np.ndarray | None]:
        raw, lab, fg = pool.raw[i], pool.label[i], pool.foreground[i]
        shape = np.array(raw.shape)
        patch = np.array(self.patch)
        if labeled and fg is not None and len(fg) and rng.random() < self.cfg.foreground_fraction:
            centre = fg[rng.integers(len(fg))]
            start = np.clip(centre - patch // 2, 0, shape - patch)
        else:
            start = np.array([rng.integers(0, s - p + 1) for s, p in zip(shape, patch)])
        sl = tuple(slice(a, a + p) for a, p in zip(start, patch))
        r = raw[sl]
        y = lab[sl] if lab is not None else None
        if self.cfg.flips:
            for axis in range(3):
                if rng.random() < 0.5:
                    r = np.flip(r, axis)
                    y = np.flip(y, axis) if y is not None else None
        if self.cfg.rotations:
            k = int(rng.integers(4)) if patch[1] == patch[2] else 2 * int(rng.integers(2))
            r = np.rot90(r, k, axes=(1, 2))
            y = np.rot90(y, k, axes=(1, 2)) if y is not None else None
        return np.ascontiguousarray(r, dtype=np.float32), None if y is None else np.ascontiguousarray(y)


class IterationBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item i is the batch of iteration i (for a DataLoader with workers)."""

    def __init__(self, sampler: PatchSampler) -> None:
        self.sampler = sampler

    def __getitem__(self, iteration: int) -> dict[str, torch.Tensor]:
        return self.sampler.batch(iteration)


def batch_loader(sampler: PatchSampler, start: int, stop: int, num_workers: int) -> torch.utils.data.DataLoader:
    """Batches of iterations start..stop-1, in order, prepared by `num_workers` processes."""
    return torch.utils.data.DataLoader(
        IterationBatches(sampler),
        batch_size=None,
        sampler=range(start, stop),
        num_workers=num_workers,
        prefetch_factor=2 if num_workers else None,
    )
