"""Registry of loss components: a config table `[components.<name>]` becomes a `Component`.

A method module registers its factories with `@register_component("name")`; the factory takes the
component's config table (a dict, already without the shared keys `enabled`) and the `TrainSetup`
(networks, class count, feature channels, schedule) and returns a `Component`. Factories validate
their own table and raise `ConfigError` with a one-line message for a bad key or value.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .components import Component
from .config import ConfigError

#: Modules that define components; each is imported once, on first use of the registry.
COMPONENT_MODULES: tuple[str, ...] = ("supervised", "mean_teacher", "freqshortcut", "bfa", "midss")


@dataclass
class TrainSetup:
    """What a component factory may need to build itself.

    `teacher` is None until a factory calls `require_teacher()`: the trainer then keeps it as the
    exponential moving average of the student (updated after every optimizer step).
    """

    n_classes: int
    student: nn.Module
    feature_channels: int
    total_iterations: int
    patch_size: tuple[int, int, int]  # (z, y, x)
    device: torch.device
    sites: list[str] = field(default_factory=list)  # site names; `site_l`/`site_u` index into this
    spacing: tuple[float, float, float] | None = None  # (z, y, x) mm of the patches; None = native grids
    seed: int = 0
    teacher: nn.Module | None = None
    make_teacher: Callable[[], nn.Module] | None = None

    def require_teacher(self) -> nn.Module:
        """The EMA teacher, created on first request (a frozen copy of the student)."""
        if self.teacher is None:
            if self.make_teacher is None:
                raise RuntimeError("this training setup cannot create a teacher")
            self.teacher = self.make_teacher()
        return self.teacher


ComponentFactory = Callable[[dict[str, Any], TrainSetup], Component]

#: name -> factory. Filled by `register_component` when the component modules are imported.
COMPONENTS: dict[str, ComponentFactory] = {}
_loaded = False


def register_component(name: str) -> Callable[[ComponentFactory], ComponentFactory]:
    """Decorator: make `factory` available as `[components.<name>]` in training configs."""

    def deco(factory: ComponentFactory) -> ComponentFactory:
        if name in COMPONENTS and COMPONENTS[name] is not factory:
            raise RuntimeError(f"component {name!r} is registered twice")
        COMPONENTS[name] = factory
        return factory

    return deco


def load_components() -> dict[str, ComponentFactory]:
    """Import the component modules that exist in this version and return the registry."""
    global _loaded
    if not _loaded:
        for module in COMPONENT_MODULES:
            if importlib.util.find_spec(f"{__package__}.{module}") is not None:
                importlib.import_module(f".{module}", __package__)
        _loaded = True
    return COMPONENTS


def build_components(tables: dict[str, dict[str, Any]], setup: TrainSetup) -> list[Component]:
    """Components for the enabled `[components.*]` tables, in the config's order."""
    registry = load_components()
    built: list[Component] = []
    for name, table in tables.items():
        table = dict(table)
        if not table.pop("enabled", True):
            continue
        factory = registry.get(name)
        if factory is None:
            raise ConfigError(f"[components.{name}]: unknown component (known: {', '.join(sorted(registry))})")
        built.append(factory(table, setup))
    if not built:
        raise ConfigError("no component is enabled: add at least [components.supervised]")
    return built
