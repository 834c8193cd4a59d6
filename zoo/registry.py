"""The model registry: `register` a Generator class, `create` it by name, list what is `available`.

Built-in models live in `zoo.models` (one file each). Third-party packages plug in through the
entry-point group "genzoo.models": each entry point names a module (or a class) that, when
loaded, registers its models with `@zoo.register`.
"""
from __future__ import annotations

import importlib
import json
import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from zoo.base import DataSpec, Generator, GenzooError

ENTRY_POINT_GROUP = "genzoo.models"
_REGISTRY: dict[str, type[Generator]] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
_discovered = False


def register(cls: type[Generator]) -> type[Generator]:
    """Class decorator: validates the name and the class, refuses duplicates."""
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise TypeError(f"register expects a subclass of zoo.Generator, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{cls.__name__}.name must be lower-case letters, digits, '-' or '_', got {name!r}")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].__module__}")
    if not hasattr(cls, "Config"):
        raise TypeError(f"{cls.__name__} must define a Config dataclass of its hyper-parameters")
    _REGISTRY[name] = cls
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    importlib.import_module("zoo.models")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()  # importing the plugin runs its @register decorators


def available() -> list[str]:
    """Every registered model name, built-in and plugin, sorted."""
    _discover()
    return sorted(_REGISTRY)


def get(name: str) -> type[Generator]:
    """The class registered as `name` (a variant `name@V` gives the class of `name`)."""
    _discover()
    base = name.split("@", 1)[0]
    if base not in _REGISTRY:
        raise GenzooError(f"unknown model {name!r}; available: {', '.join(available())}")
    return _REGISTRY[base]


def parse(name: str) -> tuple[type[Generator], dict[str, Any]]:
    """`ddim@10` -> (DDIM class, {"steps": 10}); a plain name -> (class, {})."""
    cls = get(name)
    if "@" not in name:
        return cls, {}
    value = name.split("@", 1)[1]
    if cls.variant_param is None or not value.isdigit():
        hint = f"{cls.name}@<int> sets {cls.variant_param}" if cls.variant_param else f"{cls.name} has no variants"
        raise GenzooError(f"bad model variant {name!r}: {hint}")
    return cls, {cls.variant_param: int(value)}


def create(name: str, spec: DataSpec, preset: str | None = None, **hparams: Any) -> Generator:
    """Build a model: the preset's reference hparams, then the variant, then explicit `hparams`."""
    cls, variant = parse(name)
    if preset is not None and cls.presets and preset not in cls.presets:
        raise GenzooError(f"{cls.name} has no preset {preset!r}; presets: {', '.join(cls.presets)}")
    merged = {**(cls.presets.get(preset, {}) if preset else {}), **variant, **hparams}
    return cls(spec, **merged)


def load(path: str | Path, device: str | None = None) -> Generator:
    """Load a model saved with `Generator.save`: `zoo.load(path).sample(64)`."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise GenzooError(f"no saved model at {path}: expected config.json and model.safetensors there")
    meta = json.loads((path / "config.json").read_text())
    model = create(meta["model"], DataSpec(**meta["spec"]), **meta["hparams"])
    if device is not None:
        from zoo.train import resolve_device

        model.to(resolve_device(device))
    model.load_weights(path)
    return model.eval()
