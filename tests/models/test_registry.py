"""Model registry: bundled + user folder ($FREQSEG_MODELS), lookup by name or path, clear errors."""

from __future__ import annotations

import dataclasses

import pytest
from synthetic import tiny_vnet_meta

from napari_freqseg.errors import ModelError
from napari_freqseg.models import build_network, registry, save_model


@pytest.fixture
def user_dir(tmp_path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "user-models"
    monkeypatch.setenv(registry.USER_DIR_ENV, str(folder))
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "bundled")
    return folder


def test_lists_bundled_then_user_models_and_unreadable_ones(user_dir, tmp_path) -> None:
    assert registry.user_models_dir() == user_dir
    assert registry.list_models() == []
    meta = tiny_vnet_meta(name="la-vnet", task="left atrium", metrics={"val_dice": 0.84}, training={"method": "mean-teacher"})
    save_model(tmp_path / "bundled" / "la.safetensors", build_network(meta), meta)
    save_model(user_dir / "mine.safetensors", build_network(meta), tiny_vnet_meta(name="mine"))
    (user_dir / "broken.safetensors").write_bytes(b"not a model")
    entries = registry.list_models()
    assert [(e.name, e.source) for e in entries] == [("la-vnet", "bundled"), ("broken", "user"), ("mine", "user")]
    s = entries[0].summary()
    assert s["task"] == "left atrium" and s["method"] == "mean-teacher" and s["metrics"] == {"val_dice": 0.84}
    assert s["classes"] == ["background", "blob"] and s["patch_size"] == [16, 16, 16]
    assert entries[1].meta is None and "not a readable model file" in entries[1].error


def test_find_by_name_stem_or_path(user_dir, tmp_path) -> None:
    meta = tiny_vnet_meta(name="pretty name")
    path = save_model(user_dir / "file-stem.safetensors", build_network(meta), meta)
    assert registry.find_model("pretty name") == path
    assert registry.find_model("file-stem") == path
    assert registry.find_model(str(path)) == path
    assert registry.default_model() == path
    with pytest.raises(ModelError, match=r"no model named 'other' \(known: pretty name"):
        registry.find_model("other")
    with pytest.raises(ModelError, match="no such model file"):
        registry.find_model(str(tmp_path / "missing.safetensors"))


def test_the_preferred_bundled_model_comes_first_and_is_the_default(user_dir, tmp_path) -> None:
    for name in ("aaa", registry.PREFERRED, "zzz"):
        meta = tiny_vnet_meta(name=name)
        save_model(tmp_path / "bundled" / f"{name}.safetensors", build_network(meta), meta)
    assert [e.name for e in registry.list_models()] == [registry.PREFERRED, "aaa", "zzz"]
    assert registry.default_model().stem == registry.PREFERRED


def test_no_model_installed_says_where_to_put_one(user_dir) -> None:
    with pytest.raises(ModelError, match="no model installed: give a model file"):
        registry.default_model()


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("[1, 2, 3]", "metadata is not a table"),
        (
            '{"format": "napari-freqseg-model", "name": "m", "architecture": "vnet", "arch_args": {}, "classes": ["a", "b"], "spacing": [0, 1, 1]}',
            "spacing must be three positive sizes",
        ),
        (
            '{"format": "napari-freqseg-model", "name": "m", "architecture": "vnet", "arch_args": {}, "classes": ["a", "b"], "orientation": "QQQ"}',
            "orientation 'QQQ' is not a three-letter code",
        ),
        (
            '{"format": "napari-freqseg-model", "name": "m", "architecture": "vnet", "arch_args": {}, "classes": ["a", "b"], "patch_size": [16, -1, 16]}',
            "patch_size must be three positive whole numbers",
        ),
    ],
)
def test_one_malformed_model_is_listed_with_its_reason_and_hides_nothing(user_dir, tmp_path, metadata, message) -> None:
    """A damaged model in the user folder is named with why; every other model still lists and loads."""
    import torch
    from safetensors.torch import save_file

    meta = tiny_vnet_meta(name="good")
    save_model(user_dir / "good.safetensors", build_network(meta), meta)
    save_file({"w": torch.zeros(1)}, str(user_dir / "bad.safetensors"), metadata={"freqseg": metadata})
    entries = {e.name: e for e in registry.list_models()}
    assert entries["good"].meta is not None and registry.default_model() == user_dir / "good.safetensors"
    assert entries["bad"].meta is None and message in entries["bad"].error and "\n" not in entries["bad"].error
    with pytest.raises(ModelError, match=message):
        registry.find_model("bad")


def test_metadata_is_checked_before_a_model_is_written(tmp_path) -> None:
    meta = tiny_vnet_meta(name="m")
    meta.orientation = "QQQ"
    with pytest.raises(ModelError, match="orientation 'QQQ'"):
        save_model(tmp_path / "m.safetensors", build_network(tiny_vnet_meta(name="m")), meta)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".hidden", "", "x" * 101])
def test_model_names_are_names_not_paths(name) -> None:
    with pytest.raises(ModelError, match="is not a model name"):
        registry.check_model_name(name)
    assert registry.check_model_name("la-vnet-mt@site-ft1") == "la-vnet-mt@site-ft1"


def test_a_tuned_round_is_named_after_its_site_and_found_for_scans_of_that_site(tmp_path, monkeypatch) -> None:
    header = {"0008|0080": "St. Elsewhere / Cardiology", "0008|0070": "Siemens"}
    assert registry.scan_site(header) == "St.-Elsewhere-Cardiology"
    assert registry.scan_site({"0008|0070": "GE"}, "x.nii.gz") == "GE"
    assert registry.scan_site({}, "/data/case 7/image.nii.gz") == "case-7"  # no DICOM site: the scan's own name
    user = tmp_path / "user"
    name, path = registry.round_path("la-vnet-mt", "GE", user)
    assert (name, path) == ("la-vnet-mt@GE-ft1", user / "la-vnet-mt@GE-ft1.safetensors")
    meta = tiny_vnet_meta()
    for n in ("la-vnet-mt@GE-ft1", "la-vnet-mt@GE-ft2", "la-vnet-mt@Philips-ft3", "other@GE-ft9"):
        save_model(user / f"{n}.safetensors", build_network(meta), dataclasses.replace(meta, name=n))
    assert registry.round_path("la-vnet-mt@GE-ft2", "GE", user)[0] == "la-vnet-mt@GE-ft3"  # a round of a round: next number
    assert registry.tuned_for_site("la-vnet-mt", "GE", user).name == "la-vnet-mt@GE-ft2"
    assert registry.tuned_for_site("la-vnet-mt@Philips-ft3", "GE", user).name == "la-vnet-mt@GE-ft2"
    assert registry.tuned_for_site("la-vnet-mt", "Canon", user) is None
    (user / "la-vnet-mt@GE-ft1.safetensors").unlink()  # an early round deleted: the next is still the newest
    name, path = registry.round_path("la-vnet-mt", "GE", user)
    assert name == "la-vnet-mt@GE-ft3"
    save_model(path, build_network(meta), dataclasses.replace(meta, name=name))
    assert registry.tuned_for_site("la-vnet-mt", "GE", user).name == "la-vnet-mt@GE-ft3"
    assert registry.is_round("la-vnet-mt@GE-ft3") and registry.is_round("la-vnet-mt-ft2") and not registry.is_round("la-vnet-mt")
