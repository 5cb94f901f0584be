"""Where models are found: bundled inside the package, and a user folder.

Bundled models live in `napari_freqseg/bundled_models/*.safetensors` (shipped, no download).
User models live in `$FREQSEG_MODELS`, else `~/.napari-freqseg/models`. A model is named by its
metadata name (or file stem); a path to a model file works everywhere a name does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FreqsegError, ModelError
from .modelfile import ModelMeta, read_meta

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "bundled_models"
USER_DIR_ENV = "FREQSEG_MODELS"
MODEL_SUFFIX = ".safetensors"
#: The bundled model offered first (and used when none is named): in the controlled comparison it is
#: ahead of the supervised control la-vnet-sup on clean scans and in 8 of 9 shift conditions (+1.2 Dice
#: points clean, two seeds), a gain whose interval still includes 0 (benchmarks/RESULTS.md).
PREFERRED = "la-vnet-freq-bfa"


#: What a model name may hold: it becomes a file name in the user folder, never a path.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")


def check_model_name(name: str) -> str:
    """`name` itself when it can name a model file; ModelError otherwise (no folders, no '..')."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise ModelError(
            f"{name!r} is not a model name: use letters, digits and . _ - + @ (no folders), e.g. la-vnet-sup@site-ft1"
        )
    return name


def user_models_dir() -> Path:
    """The user model folder (it may not exist yet)."""
    env = os.environ.get(USER_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".napari-freqseg" / "models"


@dataclass(frozen=True)
class ModelEntry:
    """A model file and its metadata; `error` says why a file could not be read (meta is then None)."""

    name: str
    path: Path
    source: str  # "bundled" or "user"
    meta: ModelMeta | None = None
    error: str = ""

    def summary(self) -> dict[str, Any]:
        """What `freqseg models` lists."""
        m = self.meta
        return {
            "name": self.name,
            "source": self.source,
            "path": str(self.path),
            "task": m.task if m else "",
            "architecture": m.architecture if m else "",
            "classes": list(m.classes) if m else [],
            "spacing": m.spacing if m else None,
            "patch_size": list(m.patch_size) if m else [],
            "method": _method_name((m.training or {}).get("method", "")) if m else "",
            "metrics": {k: v for k, v in m.metrics.items() if isinstance(v, (int, float, str))} if m else {},
            "parent": m.parent if m else None,
            "style_scans": int(m.style.get("scans", 0)) if m and m.style else 0,  # harmonisation needs a stored style
            "error": self.error,
        }


def _method_name(method: str | list[str]) -> str:
    """Training components as one name, e.g. 'supervised+mean_teacher'."""
    return "+".join(map(str, method)) if isinstance(method, list) else str(method)


def _entries(folder: Path, source: str) -> list[ModelEntry]:
    if not folder.is_dir():
        return []
    entries = []
    for path in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
        if path.name.startswith("."):
            continue  # temp files of an interrupted save
        try:
            meta = read_meta(path)
        except FreqsegError as exc:
            entries.append(ModelEntry(path.stem, path, source, None, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - one damaged file must not hide every other model
            entries.append(
                ModelEntry(path.stem, path, source, None, f"{path.name}: unreadable model file ({type(exc).__name__})")
            )
            continue
        entries.append(ModelEntry(meta.name or path.stem, path, source, meta))
    return entries


def _user_folder(user_dir: str | os.PathLike | None) -> Path:
    return Path(user_dir) if user_dir is not None else user_models_dir()


def list_models(user_dir: str | os.PathLike | None = None) -> list[ModelEntry]:
    """Bundled models first (PREFERRED leading), then the user folder's; unreadable files are listed
    with their error."""
    bundled = sorted(_entries(BUNDLED_DIR, "bundled"), key=lambda e: e.name != PREFERRED)
    return bundled + _entries(_user_folder(user_dir), "user")


def find_model(spec: str, user_dir: str | os.PathLike | None = None) -> Path:
    """Path of the model named `spec` (metadata name or file stem), or `spec` itself if it is a file."""
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    entries = list_models(user_dir)
    for entry in entries:
        if spec in (entry.name, entry.path.stem):
            if entry.error:
                raise ModelError(entry.error)
            return entry.path
    if p.suffix == MODEL_SUFFIX or os.sep in spec:
        raise ModelError(f"{spec}: no such model file")
    known = ", ".join(e.name for e in entries if not e.error) or "none"
    raise ModelError(f"no model named {spec!r} (known: {known}; user folder {_user_folder(user_dir)})")


def default_model(user_dir: str | os.PathLike | None = None) -> Path:
    """The first readable bundled model, else the first user model."""
    for entry in list_models(user_dir):
        if not entry.error:
            return entry.path
    raise ModelError(
        f"no model installed: give a model file (--model PATH) or put one in {_user_folder(user_dir)} "
        f"(or the folder named by ${USER_DIR_ENV})"
    )


#: A fine-tuned model's name: `<base>@<site>-ft<n>` (the site part is optional for older rounds).
_TUNED = re.compile(r"^(?P<base>[^@]+?)(?:@(?P<site>[^@]+?))?-ft(?P<n>\d+)$")
#: DICOM tags that name where a scan was made, most specific first.
_SITE_TAGS = ("0008|0080", "0008|1090", "0008|0070")  # institution, scanner model, manufacturer


def scan_site(header: dict[str, str], source: str = "") -> str:
    """Where a scan comes from, as a model-name part: its institution or scanner (DICOM), else the
    scan's own name (a series tied to one file)."""
    for tag in _SITE_TAGS:
        value = str(header.get(tag, "")).strip()
        if value:
            break
    else:
        from ..io.volume import volume_stem

        value = volume_stem(source) if source else "scan"
    site = re.sub(r"[^A-Za-z0-9_.+-]+", "-", value).strip("-._")[:40]
    return site or "scan"


def base_name(name: str) -> str:
    """The model a (possibly fine-tuned) model descends from by name: 'la-vnet-sup@X-ft2' -> 'la-vnet-sup'."""
    m = _TUNED.match(name)
    return m.group("base") if m else name


def is_round(name: str) -> bool:
    """Whether a model name is a fine-tuning round's (`<base>@<site>-ft<n>` or `<base>-ft<n>`)."""
    return _TUNED.match(name) is not None


def round_site(name: str) -> str | None:
    """The site a round was tuned for ('la-vnet-sup@X-ft2' -> 'X'); None for other models."""
    m = _TUNED.match(name)
    return m.group("site") if m else None


def round_path(parent_name: str, site: str, folder: Path) -> tuple[str, Path]:
    """Name and file of the next fine-tuning round of `parent_name` for `site` in `folder`:
    `<base>@<site>-ft<n>`, n one more than the site's latest round (so the newest round is always
    the one `tuned_for_site` picks, also after an earlier round was deleted)."""
    base = base_name(parent_name)
    numbers = [0]
    for file in folder.glob(f"*{MODEL_SUFFIX}") if folder.is_dir() else ():
        m = _TUNED.match(file.name[: -len(MODEL_SUFFIX)])
        if m and m.group("base") == base and m.group("site") == site:
            numbers.append(int(m.group("n")))
    name = check_model_name(f"{base}@{site}-ft{max(numbers) + 1}")
    return name, folder / f"{name}{MODEL_SUFFIX}"


def tuned_for_site(model_name: str, site: str, user_dir: str | os.PathLike | None = None) -> ModelEntry | None:
    """The latest readable round of `model_name`'s base tuned for `site` (user folder), if any."""
    base = base_name(model_name)
    best: tuple[int, ModelEntry] | None = None
    for entry in _entries(_user_folder(user_dir), "user"):
        m = _TUNED.match(entry.name)
        if entry.error or not m or m.group("base") != base or m.group("site") != site:
            continue
        if best is None or int(m.group("n")) > best[0]:
            best = (int(m.group("n")), entry)
    return best[1] if best else None
