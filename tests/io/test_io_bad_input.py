"""Bad input to the core io: one clear message (VolumeReadError/VolumeWriteError), nothing overwritten."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_freqseg.errors import GeometryMismatchError, VolumeReadError, VolumeWriteError
from napari_freqseg.io import volume as volume_module
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import read_volume, write_volume

GRID = Geometry(size=(14, 12, 10), spacing=(0.8, 0.8, 2.0), origin=(1, 2, 3), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def ramp(shape: tuple[int, ...] = GRID.shape_zyx, dtype: type = np.float32) -> np.ndarray:
    return (np.arange(np.prod(shape)) % 97).reshape(shape).astype(dtype)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message and len(message) < 300
    return message


def truncated_copy(src: Path, fraction: float = 0.6) -> Path:
    data = src.read_bytes()
    dst = src.with_name("cut_" + src.name)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_truncated_file_is_refused(tmp_path: Path, suffix: str):
    good = write_volume(ramp(), GRID, tmp_path / f"scan{suffix}")
    with pytest.raises(VolumeReadError) as err:
        read_volume(truncated_copy(good))
    assert one_line(err).startswith(f"cut_scan{suffix}: truncated or corrupt")


def test_corrupt_gzip_body_is_refused(tmp_path: Path):
    good = write_volume(np.random.default_rng(0).normal(size=GRID.shape_zyx).astype(np.float32), GRID,
                        tmp_path / "scan.nii.gz")  # fmt: skip
    data = bytearray(good.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zero a stretch of compressed data
    good.write_bytes(bytes(data))
    with pytest.raises(VolumeReadError) as err:
        read_volume(good)
    assert "truncated or corrupt" in one_line(err)


@pytest.mark.parametrize(
    ("name", "content"),
    [("notes.nii.gz", b"just some text, no gzip, no image" * 20), ("photo.mha", b"\x89PNG\r\n\x1a\n" + bytes(200)),
     ("empty.nrrd", b""), ("table.nii", b"a,b,c\n1,2,3\n" * 40)],
)  # fmt: skip
def test_non_image_with_a_volume_ending(tmp_path: Path, name: str, content: bytes):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(VolumeReadError) as err:
        read_volume(tmp_path / name)
    assert one_line(err).startswith(f"{name}: not a")


def test_unsupported_ending_and_missing_path(tmp_path: Path):
    (tmp_path / "slice.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(VolumeReadError, match=r"slice.png: not a supported volume \(use .nii.gz"):
        read_volume(tmp_path / "slice.png")
    with pytest.raises(VolumeReadError, match="no such file or folder"):
        read_volume(tmp_path / "nowhere" / "scan.nii.gz")


@pytest.mark.parametrize("shape", [(12, 14), (1, 12, 14)])
def test_2d_image_is_refused(tmp_path: Path, shape: tuple[int, ...]):
    sitk.WriteImage(sitk.GetImageFromArray(ramp(shape)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(VolumeReadError, match=r"flat.nii.gz: 2D image \(14×12(×1)?\); a 3D volume is needed"):
        read_volume(tmp_path / "flat.nii.gz")


def test_4d_image_gives_its_first_volume_and_says_so(tmp_path: Path):
    frames = [GRID.apply_to(sitk.GetImageFromArray(ramp() + 1000 * t)) for t in range(3)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(tmp_path / "dynamic.nii.gz"))
    vol = read_volume(tmp_path / "dynamic.nii.gz")
    assert vol.array.shape == GRID.shape_zyx
    np.testing.assert_array_equal(vol.array, ramp())
    assert vol.notes == ["4D image with 3 volumes: took volume 0"]
    np.testing.assert_allclose(vol.geometry.spacing, GRID.spacing, atol=1e-6)


def test_nan_and_inf_are_replaced_and_reported(tmp_path: Path):
    array = ramp() + 5.0
    array[0, 0, :3] = (np.nan, np.inf, -np.inf)
    write_volume(array, GRID, tmp_path / "holes.nrrd")
    vol = read_volume(tmp_path / "holes.nrrd")
    assert np.isfinite(vol.array).all()
    assert vol.array[0, 0, :3].tolist() == [5.0, 5.0, 5.0]
    assert vol.notes == ["3 NaN/Inf voxels replaced by the lowest finite value 5"]
    write_volume(np.full(GRID.shape_zyx, np.nan, np.float32), GRID, tmp_path / "void.mha")
    with pytest.raises(VolumeReadError, match="every voxel is NaN or infinite"):
        read_volume(tmp_path / "void.mha")


@pytest.mark.parametrize(
    ("other", "difference"),
    [
        (Geometry((14, 12, 11), GRID.spacing, GRID.origin, GRID.direction), r"size 14×12×11 vs 14×12×10"),
        (Geometry(GRID.size, (0.8, 0.8, 2.5), GRID.origin, GRID.direction), r"spacing \(0.8, 0.8, 2.5\) vs"),
        (Geometry(GRID.size, GRID.spacing, (1, 2, 4), GRID.direction), r"origin \(1, 2, 4\) vs \(1, 2, 3\) mm"),
        (Geometry(GRID.size, GRID.spacing, GRID.origin, (-1, 0, 0, 0, -1, 0, 0, 0, 1)), "direction differs"),
    ],
)
def test_label_grid_that_differs_is_named(other: Geometry, difference: str):
    GRID.check_same_grid(GRID)
    with pytest.raises(GeometryMismatchError, match=rf"^label grid differs from its image: {difference}"):
        GRID.check_same_grid(other)


def test_write_into_missing_or_wrong_places(tmp_path: Path):
    labels = np.ones(GRID.shape_zyx, np.uint8)
    (tmp_path / "file.txt").write_text("x")
    cases = {
        tmp_path / "no" / "such" / "seg.nii.gz": "output folder does not exist",
        tmp_path / "file.txt" / "seg.nii.gz": "output folder does not exist",
        tmp_path: "cannot write this format",
        tmp_path / "seg.png": "cannot write this format",
    }
    (tmp_path / "dir.nii.gz").mkdir()
    cases[tmp_path / "dir.nii.gz"] = "is a folder"
    for path, message in cases.items():
        with pytest.raises(VolumeWriteError, match=message):
            write_volume(labels, GRID, path)


def test_unwritable_folder(tmp_path: Path):
    """/sys refuses new files even to root; elsewhere a read-only folder does (when not root)."""
    folder = Path("/sys")
    if not folder.is_dir():
        pytest.skip("no /sys on this system")
    with pytest.raises(VolumeWriteError, match=r"could not be written|not writable"):
        write_volume(np.ones(GRID.shape_zyx, np.uint8), GRID, folder / "freqseg-test.nii.gz")
    assert not (folder / "freqseg-test.nii.gz").exists()


def test_failed_write_leaves_existing_output_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "seg.nii.gz"
    out.write_bytes(b"previous result")

    def disk_full(image: sitk.Image, path: str, useCompression: bool) -> None:  # noqa: N803 (SimpleITK's name)
        Path(path).write_bytes(b"half a file")
        raise RuntimeError("sitk::ERROR: No space left on device")

    monkeypatch.setattr(volume_module.sitk, "WriteImage", disk_full)
    with pytest.raises(VolumeWriteError, match=r"seg.nii.gz: could not be written \(No space left on device\)"):
        write_volume(np.ones(GRID.shape_zyx, np.uint8), GRID, out)
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.nii.gz"]  # no temporary file left


def test_refusals_before_writing_leave_existing_output_untouched(tmp_path: Path):
    out = tmp_path / "seg.nrrd"
    out.write_bytes(b"previous result")
    with pytest.raises(VolumeWriteError, match=r"array shape 3×4×5 \(z, y, x\) does not fit the grid 10×12×14"):
        write_volume(np.ones((3, 4, 5), np.uint8), GRID, out)
    with pytest.raises(VolumeWriteError, match="exists"):
        write_volume(np.ones(GRID.shape_zyx, np.uint8), GRID, out, overwrite=False)
    assert out.read_bytes() == b"previous result"


def test_itk_warnings_are_muted_only_while_reading(tmp_path: Path):
    import threading

    write_volume(ramp(), GRID, tmp_path / "a.nrrd")
    assert sitk.ProcessObject.GetGlobalWarningDisplay()
    threads = [threading.Thread(target=read_volume, args=(tmp_path / "a.nrrd",)) for _ in range(4)]
    with volume_module.quiet_itk():
        assert not sitk.ProcessObject.GetGlobalWarningDisplay()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not sitk.ProcessObject.GetGlobalWarningDisplay()
    assert sitk.ProcessObject.GetGlobalWarningDisplay()


def test_gzip_with_a_wrong_crc_is_refused(tmp_path: Path):
    """Deflate data that decodes, with the right length in the trailer but a wrong CRC-32 (damaged
    content), is refused, and the message names the file itself."""
    import gzip
    import zlib

    good = write_volume(ramp(), GRID, tmp_path / "scan.nii.gz")
    raw = bytearray(gzip.decompress(good.read_bytes()))
    crc = zlib.crc32(raw)
    raw[len(raw) // 2] ^= 0xFF  # one damaged voxel
    damaged = bytearray(gzip.compress(bytes(raw)))
    damaged[-8:-4] = crc.to_bytes(4, "little")  # the trailer of the undamaged data
    bad = tmp_path / "damaged.nii.gz"
    bad.write_bytes(bytes(damaged))
    with pytest.raises(VolumeReadError) as err:
        read_volume(bad)
    assert one_line(err).startswith("damaged.nii.gz: truncated or corrupt") and "CRC" in str(err.value)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mha"])
def test_short_write_on_a_full_disk_is_an_error_and_keeps_the_old_file(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
):
    """ITK's NIfTI writer only warns when the disk fills up: the written file is checked before it
    replaces the old one."""
    out = write_volume(ramp(), GRID, tmp_path / f"seg{suffix}")
    before = out.read_bytes()
    real_write = sitk.WriteImage

    def short_write(image: sitk.Image, path: str, useCompression: bool) -> None:  # noqa: N803 (SimpleITK's name)
        real_write(image, path, useCompression)
        with open(path, "r+b") as fh:  # what a full disk leaves: the first part of the file
            fh.truncate(Path(path).stat().st_size // 2)

    monkeypatch.setattr(volume_module.sitk, "WriteImage", short_write)
    with pytest.raises(VolumeWriteError, match=rf"seg{re.escape(suffix)}: could not be written \(.*is the disk full\?\)"):
        write_volume(ramp() + 1, GRID, out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"seg{suffix}"]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_zero_voxel_size_in_a_nifti_header_is_refused(tmp_path: Path, suffix: str):
    import gzip
    import struct

    plain = write_volume(ramp(), GRID, tmp_path / "scan.nii")
    data = bytearray(plain.read_bytes())
    data[80:84] = struct.pack("<f", 0.0)  # pixdim[1]
    bad = tmp_path / f"zero{suffix}"
    bad.write_bytes(gzip.compress(bytes(data)) if suffix == ".nii.gz" else bytes(data))
    with pytest.raises(VolumeReadError) as err:
        read_volume(bad)
    assert one_line(err) == f"zero{suffix}: its header gives no voxel size on axis 1 (pixdim); ITK would assume 1 mm"


def test_skewed_axes_are_refused(tmp_path: Path):
    """A grid whose axes are not orthogonal cannot be given back exactly by a label map."""
    header = "\n".join([
        "NRRD0004", "type: short", "dimension: 3", "space: left-posterior-superior", "sizes: 6 5 4",
        "space directions: (0.5,0,0) (0.3,0.7,0) (0,0,2)", "kinds: domain domain domain", "endian: little",
        "encoding: raw", "space origin: (0,0,0)", "", "",
    ])  # fmt: skip
    path = tmp_path / "skew.nrrd"
    path.write_bytes(header.encode() + np.arange(120, dtype=np.int16).tobytes())
    with pytest.raises(VolumeReadError) as err:
        read_volume(path)
    assert "skewed or scaled" in one_line(err)


def test_stale_temporaries_of_killed_writes_are_cleaned(tmp_path: Path):
    import os
    import time

    stale, fresh = tmp_path / ".freqseg-old.nii.gz", tmp_path / ".freqseg-new.nii.gz"
    stale.write_bytes(b"half"), fresh.write_bytes(b"being written")
    day_ago = time.time() - 86400
    os.utime(stale, (day_ago, day_ago))
    write_volume(ramp(), GRID, tmp_path / "out.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".freqseg-new.nii.gz",
        "out.nii.gz",
    ]  # another write may own the fresh one


@pytest.mark.parametrize("kind", ["nrrd", "mha"])
def test_tiny_file_declaring_a_huge_volume_is_refused_before_allocating(tmp_path: Path, kind: str):
    """A few hundred bytes must not make the reader allocate gigabytes (decompression bomb)."""
    import gzip
    import resource
    import zlib

    if kind == "nrrd":
        head = (
            "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 4000 4000 4000\n"
            "space directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: gzip\nendian: little\n\n"
        )
        data = gzip.compress(bytes(4000))
    else:
        data = zlib.compress(bytes(1000))
        head = (
            f"ObjectType = Image\nNDims = 3\nDimSize = 3000 3000 3000\nElementType = MET_FLOAT\nCompressedData = True\n"
            f"CompressedDataSize = {len(data)}\nElementDataFile = LOCAL\n"
        )
    path = tmp_path / f"bomb.{kind}"
    path.write_bytes(head.encode() + data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(VolumeReadError) as err:
        read_volume(path)
    assert "cannot hold" in one_line(err) and "GB" in str(err.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB: nothing near the declared size


def test_volume_larger_than_the_free_memory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import psutil

    path = write_volume(ramp(), GRID, tmp_path / "scan.nii")
    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: real._replace(available=1000))
    with pytest.raises(VolumeReadError, match=r"needs .* GB, more than the free memory allows"):
        read_volume(path)


@pytest.mark.parametrize("sizes", ["8 0 8", "8 8 8 0"])
def test_image_with_an_empty_axis_is_refused(tmp_path: Path, sizes: str):
    header = (
        f"ObjectType = Image\nNDims = {len(sizes.split())}\nDimSize = {sizes}\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n"
    )
    (tmp_path / "empty.mha").write_text(header)
    with pytest.raises(VolumeReadError) as exc:
        read_volume(tmp_path / "empty.mha")
    assert one_line(exc) == f"empty.mha: empty image ({sizes.replace(' ', '×')}); a 3D volume is needed"
