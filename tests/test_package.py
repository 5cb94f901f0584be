"""Packaging: the wheel carries the manifest and sample data; npe2 validates the manifest; the editable
install finds the top-level napari.yaml through the symlink in src/."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from npe2 import PluginManifest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = SRC / "napari_freqseg"
SAMPLE_FILES = sorted(p.name for p in (REPO / "sample_data").iterdir() if p.is_file())
_NOT_SOURCES = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                      "runs", ".ci-test.log", ".whl", ".gl", ".devcarry")  # fmt: skip


def run_python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the source tree (symlinks kept as symlinks)."""
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "napari-freqseg"
    shutil.copytree(REPO, tree, symlinks=True, ignore=_NOT_SOURCES)
    assert (tree / "src" / "napari_freqseg" / "napari.yaml").is_symlink()
    proc = run_python("-m", "build", "--wheel", "--no-isolation", "--outdir", str(work / "dist"), cwd=tree)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [built] = (work / "dist").glob("napari_freqseg-*.whl")
    return built


def test_wheel_holds_the_manifest_as_a_real_file(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("napari_freqseg/napari.yaml")
        assert not stat.S_ISLNK(info.external_attr >> 16)
        assert zf.read(info) == (REPO / "napari.yaml").read_bytes()
        entry_points = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "[napari.manifest]\nnapari-freqseg = napari_freqseg:napari.yaml" in entry_points
    assert "freqseg = napari_freqseg.cli:entry" in entry_points


def test_wheel_holds_every_sample_file_unchanged(wheel: Path):
    assert {"README.md", "cohort.csv", "la_CCGAKN4EDT72KC8TTJ76_image.nii.gz"} <= set(SAMPLE_FILES)
    with zipfile.ZipFile(wheel) as zf:
        for name in SAMPLE_FILES:
            assert zf.read(f"napari_freqseg/sample_data/{name}") == (REPO / "sample_data" / name).read_bytes()
    size = sum((REPO / "sample_data" / n).stat().st_size for n in SAMPLE_FILES)
    assert size < 15e6


def test_npe2_validate_passes():
    for target in ("napari-freqseg", str(REPO / "napari.yaml")):
        proc = run_python("-m", "npe2", "validate", target)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "valid" in proc.stdout.lower()


def test_manifest_commands_resolve_to_callables():
    manifest = PluginManifest.from_file(REPO / "napari.yaml")
    resolved = []
    for command in manifest.contributions.commands or []:
        module, _, attr = command.python_name.partition(":")
        if importlib.util.find_spec(module) is None:
            continue  # a contribution whose module is not in this tree yet
        assert callable(getattr(importlib.import_module(module), attr)), command.python_name
        resolved.append(command.id)
    assert {"napari-freqseg.get_reader", "napari-freqseg.write_labels", "napari-freqseg.cohort_widget",
            "napari-freqseg.sample_la"} <= set(resolved)  # fmt: skip


def test_editable_install_reads_the_top_level_manifest_through_src_symlinks():
    assert (PACKAGE / "napari.yaml").is_symlink() and (PACKAGE / "sample_data").is_symlink()
    assert (PACKAGE / "napari.yaml").resolve() == (REPO / "napari.yaml").resolve()
    packaged = importlib.resources.files("napari_freqseg") / "napari.yaml"
    assert packaged.read_bytes() == (REPO / "napari.yaml").read_bytes()
    assert (importlib.resources.files("napari_freqseg") / "sample_data" / "cohort.csv").is_file()
    [entry] = [e for e in importlib.metadata.entry_points(group="napari.manifest") if e.name == "napari-freqseg"]
    assert entry.value == "napari_freqseg:napari.yaml"
    manifest = PluginManifest.from_distribution("napari-freqseg")
    assert manifest.name == "napari-freqseg"
    assert "Cohort" in [w.display_name for w in manifest.contributions.widgets]
    assert {s.key for s in manifest.contributions.sample_data} >= {"la", "icbm152", "colin27"}


def test_command_line_starts_without_torch() -> None:
    """`freqseg --help` (and every parser) must not load torch, monai or napari: start-up in well
    under a second (benchmarks/bench_cli_start.py)."""
    import subprocess
    import sys

    code = (
        "import sys, napari_freqseg.cli as c; c.build_parser(); "
        "print(sorted(m for m in ('torch', 'monai', 'napari', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_core_modules_import_without_qt_or_napari() -> None:
    """Compute lives in the core: every core module imports with napari and every Qt binding
    made unimportable (a fresh interpreter with a blocking import hook)."""
    import subprocess
    import sys

    code = """
import importlib, importlib.abc, pkgutil, sys
BLOCKED = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "magicgui", "vispy")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
import napari_freqseg
CORE = ("io", "frequency", "models", "inference", "training", "correction", "cli")
names = [f"napari_freqseg.{m}" for m in ("errors", "metrics", "evaluation", "shift")]
for pkg in CORE:
    mod = importlib.import_module(f"napari_freqseg.{pkg}")
    names += [mod.__name__] + [i.name for i in pkgutil.walk_packages(mod.__path__, mod.__name__ + ".") if not i.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) > 60
