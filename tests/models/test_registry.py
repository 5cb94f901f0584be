"""Model registry: bundled + user folder ($FREQSEG_MODELS), lookup by name or path, clear errors."""

from __future__ import annotations

import pytest
from synthetic import tiny_vnet_meta

from napari_freqseg.errors import ModelError
from napari_freqseg.models import build_network, save_model
from napari_freqseg.models import registry


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
