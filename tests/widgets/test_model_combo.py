"""The one model picker: registry models, extras, files chosen here, the file chooser."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from synthetic import ThresholdNet, threshold_meta

from napari_freqseg.harmonize import StyleAccumulator
from napari_freqseg.models import registry
from napari_freqseg.models.modelfile import save_model
from napari_freqseg.widgets import _model_combo
from napari_freqseg.widgets._model_combo import CHOOSE_FILE, ModelCombo


@pytest.fixture
def user_models(monkeypatch, tmp_path, threshold_model):
    """Two readable user models (one with a training style) and one damaged file."""
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(registry.USER_DIR_ENV, str(tmp_path / "user"))
    save_model(tmp_path / "user" / "alpha.safetensors", ThresholdNet(), threshold_meta(name="alpha"))
    acc = StyleAccumulator([16, 16, 16])
    acc.add(np.random.default_rng(0).normal(size=(24, 24, 24)).astype(np.float32))
    styled = dataclasses.replace(threshold_meta(name="beta"), style=acc.result().to_dict())
    save_model(tmp_path / "user" / "beta.safetensors", ThresholdNet(), styled)
    (tmp_path / "user" / "broken.safetensors").write_bytes(b"not a model")
    return tmp_path / "user"


def _texts(combo: ModelCombo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_lists_readable_models_then_the_chooser(user_models, qtbot) -> None:
    combo = ModelCombo()
    qtbot.addWidget(combo)
    assert _texts(combo) == ["alpha (user)", "beta (user)", CHOOSE_FILE]  # the damaged file is left out
    assert combo.model_path() == (user_models / "alpha.safetensors").resolve()


def test_accept_filters_and_extras_come_first(user_models, qtbot) -> None:
    combo = ModelCombo(extras=[("random V-Net", "random")], accept=lambda e: e.meta.style is not None, choose_file=False)
    qtbot.addWidget(combo)
    assert _texts(combo) == ["random V-Net", "beta (user)"]
    assert combo.value() == "random" and combo.model_path() is None  # an extra is no file


def test_a_chosen_file_stays_across_refresh_and_keeps_the_choice(user_models, threshold_model, qtbot) -> None:
    combo = ModelCombo()
    qtbot.addWidget(combo)
    seen: list = []
    combo.model_changed.connect(seen.append)
    combo.set_model_path(threshold_model)
    assert combo.model_path() == threshold_model.resolve() and seen[-1] == str(threshold_model.resolve())
    save_model(user_models / "gamma.safetensors", ThresholdNet(), threshold_meta(name="gamma"))
    combo.refresh()
    assert _texts(combo) == ["alpha (user)", "beta (user)", "gamma (user)", "threshold (file)", CHOOSE_FILE]
    assert combo.model_path() == threshold_model.resolve()
    combo.set_model_path(user_models / "gamma.safetensors")  # a listed model is chosen, not added twice
    assert combo.count() == 5 and combo.currentText() == "gamma (user)"


def test_chooser_opens_a_file_and_cancel_goes_back(user_models, threshold_model, qtbot, monkeypatch) -> None:
    combo = ModelCombo()
    qtbot.addWidget(combo)
    combo.setCurrentIndex(1)
    answers = iter([("", ""), (str(threshold_model), "")])
    monkeypatch.setattr(_model_combo.QFileDialog, "getOpenFileName", lambda *a, **k: next(answers))
    chooser = combo.count() - 1
    combo.setCurrentIndex(chooser)
    combo.activated.emit(chooser)  # cancelled: back to the previous model
    assert combo.currentText() == "beta (user)"
    combo.setCurrentIndex(chooser)
    combo.activated.emit(chooser)
    assert combo.model_path() == threshold_model.resolve() and _texts(combo)[-1] == CHOOSE_FILE


def test_nothing_installed_leaves_only_the_chooser(monkeypatch, tmp_path, qtbot) -> None:
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(registry.USER_DIR_ENV, str(tmp_path / "empty"))
    combo = ModelCombo()
    qtbot.addWidget(combo)
    assert _texts(combo) == [CHOOSE_FILE] and combo.value() is None and combo.model_path() is None
