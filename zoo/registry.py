"""The model registry: `register` a Generator class, `create` it by name, list what is `available`.

Built-in models live in `zoo.models` (one file per paradigm). Third-party packages plug in through the
entry-point group "genzoo.models": each entry point names a module (or a class) that, when
loaded, registers its models with `@zoo.register`.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import os
import pkgutil
import re
import types
import typing
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

from zoo.base import (
    BPD_KINDS,
    CONFIG_FILE,
    WEIGHTS_FILE,
    Conditional,
    DataSpec,
    Generator,
    GenzooError,
    Guided,
    Likelihood,
    ModelConfig,
    Stepwise,
    accepts,
    check_config,
    config_types,
    of_type,
    one_line,
    saved_spec,
)
from zoo.files import say, user_path

ENTRY_POINT_GROUP = "genzoo.models"
_REGISTRY: dict[str, type[Generator]] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
_discovered = False
# A preset a model has no entry for takes another's: `lecture` is `quick` trained four times longer.
# The one place that knows it, for hyper-parameters and evaluation sample counts alike, so a model
# or plugin needs no entry for a new preset.
PRESET_FALLBACK = {"lecture": "quick"}
DATA_ROW = "data"  # the runner's row for the test split, scored like a model: no model may take its name
T = TypeVar("T")


def register(cls: type[Generator]) -> type[Generator]:
    """Class decorator: validates the name, the Config and the methods, and refuses duplicates."""
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise TypeError(f"register expects a subclass of zoo.Generator, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{cls.__name__}.name must be a lower-case letter, then lower-case letters, digits, '-' or '_', got {name!r}")
    if name == DATA_ROW:
        raise ValueError(f"{cls.__name__}.name {name!r} is the name of the runner's row for the data itself; choose another")
    before = _REGISTRY.get(name)
    if before is not None and (before.__module__, before.__qualname__) != (cls.__module__, cls.__qualname__):
        # the same class defined again (a notebook cell run twice, importlib.reload) replaces itself
        raise ValueError(f"{cls.__module__}.{cls.__qualname__}: model name {name!r} is already registered by "
                         f"{before.__module__}.{before.__qualname__}")
    config = cls.__dict__.get("Config", cls.Config)
    if not (dataclasses.is_dataclass(config) and isinstance(config, type) and issubclass(config, ModelConfig)):
        raise TypeError(f"{cls.__name__}.Config must be a dataclass subclassing zoo.ModelConfig")
    if "__dataclass_params__" not in vars(config):  # a subclass of a dataclass is not one itself
        raise TypeError(f"{cls.__name__}.Config is not decorated with @dataclass, so its fields are not hyper-parameters")
    fields = {f.name for f in dataclasses.fields(config)}
    if undeclared := [k for k in vars(config) if k in fields and k not in inspect.get_annotations(config)]:
        raise TypeError(f"{cls.__name__}.Config sets {', '.join(undeclared)} without a type, which changes no default: "
                        f"write it as a field ({undeclared[0]}: float = ...)")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise TypeError(f"{cls.__name__} cannot be registered: it does not implement {missing}")
    if issubclass(cls, Stepwise) and not (_takes(cls._sample, 1, None, None, None) and _takes(cls._sample, 1, None, None)):
        raise TypeError(f"{cls.__name__} is Stepwise, so its _sample takes callback=None and calls it after each step")
    # As the loop, `sample`, `--set` and `zoo.load` call them: else a step or a sample fails mid-run, and
    # an `__init__(self, spec)` trains and scores but its checkpoint never loads
    if not _takes(cls.__init__, DataSpec(1, 1, 1), **{f: None for f in fields}):
        raise TypeError(f"{cls.__name__}.__init__ must take (spec, **hparams) and pass both to super().__init__: "
                        "--set, presets and zoo.load build it with its Config's fields as keywords")
    if not _takes(cls.train_step, None, None):
        raise TypeError(f"{cls.__name__}.train_step must take (x, y=None): the loop hands it each batch and its "
                        "labels (None for unlabeled data)")
    if not _takes(cls._sample, 1, None, None):  # a Stepwise one's told above
        raise TypeError(f"{cls.__name__}._sample must take (n, generator, labels): labels is None unless the model "
                        "is Conditional")
    for preset, values in {"(defaults)": {}, **cls.presets}.items():  # each value against what its field accepts
        try:
            check_config(name, config(**values))
        except (GenzooError, TypeError) as e:
            raise ValueError(f"{cls.__name__} preset {preset}: {e}") from None
    for preset, count in cls.eval_samples.items():
        if not of_type(count, int) or count < 1:
            raise ValueError(f"{cls.__name__}.eval_samples[{preset!r}] must be an int >= 1 (samples per metric), got {count!r}")
    _check_fields_named(cls, config)
    for preset, values in {"(defaults)": {}, **cls.presets}.items():  # what a checkpoint saves is what it loads
        made = config(**values)
        try:
            again = config(**json.loads(json.dumps(dataclasses.asdict(made))))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{cls.__name__}.Config does not save as JSON ({e}); use numbers, strings, lists or None") from None
        if again != made:
            changed = next(f for f in fields if getattr(again, f) != getattr(made, f))
            raise ValueError(f"{cls.__name__}.Config ({preset}) does not load as it saved: {changed} {getattr(made, changed)!r} "
                             f"comes back as {getattr(again, changed)!r}; use lists, not tuples, and keep __post_init__ "
                             "from changing the fields")
    if issubclass(cls, Likelihood) and cls.bpd_kind not in BPD_KINDS:
        raise ValueError(f"{cls.__name__}.bpd_kind must be one of {', '.join(BPD_KINDS)}, got {cls.bpd_kind!r}")
    _REGISTRY[name] = cls
    return cls


def _takes(method: Any, *args: Any, **kwargs: Any) -> bool:
    """Whether a model class's `method` (the function, not a bound method) takes these arguments after self."""
    try:
        inspect.signature(method).bind(None, *args, **kwargs)
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): not ours to refuse
        return True
    return True


def _check_fields_named(cls: type[Generator], config: type) -> None:
    """`sampler_params` (a tuple, not a string: `("steps")` lacks its comma) and `variant_param` name
    fields of the Config: a sampler field missed would put a training's weights under another key.
    A `Stepwise` model's `steps_hparam` and a `Guided` one's `guidance_hparam` name sampler fields."""
    fields = [f.name for f in dataclasses.fields(config)]
    params = cls.sampler_params
    if not isinstance(params, (tuple, list)) or not all(isinstance(p, str) for p in params):
        raise ValueError(f"{cls.__name__}.sampler_params must be a tuple of field names, e.g. ('steps',), got {params!r}")
    for p in [*params, *([cls.variant_param] if cls.variant_param is not None else [])]:
        if p not in fields:
            raise ValueError(f"{cls.__name__} names {p!r} in sampler_params or variant_param, not a field of its Config "
                             f"({', '.join(fields)})")
    if issubclass(cls, Guided) and not issubclass(cls, Conditional):
        raise ValueError(f"{cls.__name__} is Guided but not Conditional: guidance steers toward an asked-for class")
    named: dict[str, str | None] = {"steps_hparam": cls.steps_hparam if issubclass(cls, Stepwise) else None,
                                    "guidance_hparam": getattr(cls, "guidance_hparam", "") if issubclass(cls, Guided) else None}
    for attr, name in named.items():
        if name is not None and name not in params:
            got = f"got {name!r}" if name else "it names none"
            raise ValueError(f"{cls.__name__}.{attr} must name a field in its sampler_params ({', '.join(params) or 'none'}), {got}")


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    import_each("zoo.models")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        before = set(_REGISTRY.values())
        try:
            loaded = ep.load()  # importing the plugin runs its @register decorators
        except Exception as e:  # one broken plugin must not take every command down with a traceback
            say(f"warning: plugin {ep.name} = {ep.value} failed to load, the zoo runs without it: {one_line(e)}")
            continue
        if not _registered_by(loaded, before):  # else its model is only an 'unknown model' later
            say(f"warning: plugin {ep.name} = {ep.value} registers no model: is its class decorated with @zoo.register?")


def _registered_by(loaded: Any, before: set[type[Generator]]) -> bool:
    """Whether a plugin's entry point (a module, or a class) registered a model: one new in the registry
    or, were the plugin imported before, one it holds or one of its package's modules defines."""
    now = set(_REGISTRY.values())
    if now - before:
        return True
    held = {id(v) for v in (vars(loaded).values() if isinstance(loaded, types.ModuleType) else [loaded])}
    package = getattr(loaded, "__name__", None) if isinstance(loaded, types.ModuleType) else None
    return any(id(c) in held or (package and c.__module__.startswith(f"{package}.")) for c in now)


def import_each(package: str) -> None:
    """Import every module of `package` (the built-in models' files, each registering itself), each on
    its own: a file that fails to import or register is one warning line, and the zoo runs without it."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        try:
            importlib.import_module(f"{package}.{module.name}")
        except Exception as e:  # a file added to zoo/models/ (add-a-model.md) must not take every command down
            say(f"warning: {package.replace('.', '/')}/{module.name}.py failed to load, the zoo runs without it: "
                f"{one_line(e)}")


def available() -> list[str]:
    """Every registered model name, built-in and plugin, sorted."""
    _discover()
    return sorted(_REGISTRY)


def split_variant(name: str) -> tuple[str, str | None]:
    """"ddim@10" -> ("ddim", "10"); "vae" -> ("vae", None). The one place that reads a `name@K`."""
    base, at, value = name.partition("@")
    return base, value if at else None


def get(name: str) -> type[Generator]:
    """The class registered as `name` (a variant `name@V` gives the class of `name`)."""
    _discover()
    base, _ = split_variant(name)
    if base not in _REGISTRY:
        raise GenzooError(f"unknown model {name!r}; available: {', '.join(available())}")
    return _REGISTRY[base]


# What a variant's value may be written as, by the type of the field it sets: digits, and for a
# float a decimal point too (ddpm-cond@1.5). No sign, exponent, nan or inf: a variant is a plain
# count or scale; anything else goes through --set.
VARIANT_TEXT = {int: (re.compile(r"[0-9]+"), "int"), float: (re.compile(r"[0-9]+(\.[0-9]+)?"), "number")}


def parse(name: str) -> tuple[type[Generator], dict[str, Any]]:
    """`ddim@10` -> (DDIM class, {"steps": 10}); `ddpm-cond@1.5` -> (its class, {"guidance": 1.5}): the
    value takes the type of the field `variant_param` names, an int or a float; a plain name -> (class, {})."""
    cls = get(name)
    _, value = split_variant(name)
    if value is None:
        return cls, {}
    if cls.variant_param is None:
        raise GenzooError(f"bad model variant {name!r}: {cls.name} has no variants")
    kind = config_types(cls.Config).get(cls.variant_param)
    kind = kind if kind in VARIANT_TEXT else int  # an annotation that does not resolve: an int
    pattern, noun = VARIANT_TEXT[kind]
    if not pattern.fullmatch(value):
        raise GenzooError(f"bad model variant {name!r}: {cls.name}@<{noun}> sets {cls.variant_param}")
    return cls, {cls.variant_param: convert(value, kind)}


def preset_entry(table: Mapping[str, T], preset: str) -> T | None:
    """A model's entry for `preset` in one of its per-preset tables (`presets`, `eval_samples`), or
    the entry of the preset it falls back to (PRESET_FALLBACK), or None."""
    while preset not in table and preset in PRESET_FALLBACK:
        preset = PRESET_FALLBACK[preset]
    return table.get(preset)


def create(name: str, spec: DataSpec, preset: str | None = None, **hparams: Any) -> Generator:
    """Build a model: the preset's reference hparams, then the variant, then explicit `hparams`."""
    if not isinstance(name, str) or not isinstance(spec, DataSpec):
        raise GenzooError(f"create takes a model's name and a zoo.DataSpec, got {type(name).__name__} and {type(spec).__name__}")
    cls, variant = parse(name)
    values = preset_entry(cls.presets, preset) if preset is not None else {}
    if values is None and cls.presets:
        named = [*cls.presets, *(p for p in PRESET_FALLBACK if p not in cls.presets and preset_entry(cls.presets, p) is not None)]
        raise GenzooError(f"{cls.name} has no preset {preset!r}; presets: {', '.join(named)}")
    merged = {**(values or {}), **variant, **hparams}
    return _constructed(cls, spec, merged)


def _constructed(cls: type[Generator], spec: DataSpec, hparams: dict[str, Any]) -> Generator:
    """`cls(spec, **hparams)`, with a plugin's `__init__` that skips or postpones `super().__init__`
    said as that, rather than as torch's attribute error at the first layer or the first step."""
    call_first = f"{cls.name}: {cls.__name__}.__init__ must call super().__init__(spec, **hparams) first"
    try:
        model = cls(spec, **hparams)
    except AttributeError as e:
        if "before Module.__init__() call" not in str(e):  # torch's words for a layer set too early
            raise
        raise GenzooError(f"{call_first}, before it sets a layer or parameter (torch said: {one_line(e)})") from None
    if not {"training", "config"} <= vars(model).keys():  # what Module.__init__ and Generator.__init__ set
        raise GenzooError(f"{call_first}: it never did, so nothing checked its hyper-parameters and torch cannot hold its layers")
    return model


def load(path: str | Path, device: str | None = None, **sampler: Any) -> Generator:
    """Load a model saved with `Generator.save`: `zoo.load(path).sample(64)`. Keywords set its sampler
    (its `sampler_params`, which leave the weights as they are): `zoo.load(path, steps=10)` samples a
    DDIM in 10 steps. `~` is the home folder. A folder that does not load (a config edited by hand,
    damaged weights) is one GenzooError naming it."""
    if not isinstance(path, (str, os.PathLike)):
        raise GenzooError(f"load takes the folder a model was saved in (a str or a Path), got {type(path).__name__}")
    path = Path(user_path(path, "load: path", "the folder a model was saved in"))
    if not (path / CONFIG_FILE).is_file():
        raise GenzooError(f"no saved model at {path}: expected {CONFIG_FILE} and {WEIGHTS_FILE} there")
    said = f"{path} does not load as a saved model ({CONFIG_FILE}, {WEIGHTS_FILE})"
    try:
        meta = json.loads((path / CONFIG_FILE).read_text())
        model = create(meta["model"], saved_spec(path), **meta["hparams"])
    except GenzooError as e:  # a config edited by hand: an unknown model, a value out of range
        raise GenzooError(f"{said}: {e}") from e
    except Exception as e:  # whatever a damaged file raises, from json or the spec
        raise GenzooError(f"{said}: {one_line(e)}") from e
    if sampler:  # after the saved config loaded: a setting out of range is the caller's line, not the file's
        if other := sorted(set(sampler) - set(model.sampler_params)):
            accepted = ", ".join(model.sampler_params) or f"none ({model.name} has no sampler settings)"
            raise GenzooError(f"load: {', '.join(other)} of {model.name} would need other weights, not these; "
                              f"its sampler settings: {accepted}")
        model = create(meta["model"], model.spec, **{**meta["hparams"], **sampler})
    if device is not None:
        from zoo.train import resolve_device

        model.to(resolve_device(str(device)))
    try:
        model.load_weights(path)
    except Exception as e:  # damaged weights, or another model's (safetensors, torch)
        raise GenzooError(f"{said}: {one_line(e)}") from e
    return model.eval()


# -- hyper-parameters from the command line: --set vae.latent_dim=2 ---------------------------

def convert(value: str, kind: Any) -> Any:
    """A command-line string -> a value of the Config field's type; ValueError when it is not one."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # e.g. str | None
        if value.lower() == "none" and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return convert(value, arg)
                except ValueError:
                    pass
        raise ValueError(value)
    if kind is bool:
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise ValueError(value)
    if kind is int:
        return int(value)
    if kind is float:
        return float(value)
    if kind is str:
        return value
    if origin is list:  # [32,64] or 32,64
        text = value if value.startswith("[") else f"[{value}]"
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(value) from None
        return [convert(str(v), args[0] if args else str) for v in items]
    raise ValueError(value)


def _type_name(kind: Any) -> str:
    """"an int", "a float", "a list[int]", "a str | None"."""
    name = kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """["vae.latent_dim=2", "dcgan.lr=1e-4"] -> {"vae": {"latent_dim": 2}, "dcgan": {"lr": 0.0001}},
    each value converted to its Config field's type; anything wrong is one GenzooError line."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        model, dot, field = target.partition(".")
        if not (sep and dot and model and field):
            raise GenzooError(f"--set takes MODEL.FIELD=VALUE, e.g. vae.latent_dim=2; got {item!r}")
        base, variant = split_variant(model)
        if variant is not None:
            raise GenzooError(f"--set applies to a whole model, not a variant: use {base}.{field}")
        cls = get(model)
        kinds = config_types(cls.Config)
        if field not in kinds:
            raise GenzooError(f"{model} has no hyper-parameter {field!r}; accepted: {', '.join(kinds)}")
        if field in out.get(model, {}):
            raise GenzooError(f"--set {model}.{field} is given twice; give it once")
        try:
            out.setdefault(model, {})[field] = convert(value, kinds[field])
        except ValueError:
            raise GenzooError(f"--set {item}: {value!r} is not {_type_name(kinds[field])}; "
                              f"{field} must be {accepts(cls.Config, field).describe(kinds[field])}") from None
    return out


def describe_hparams(cls: type[Generator]) -> list[tuple[str, Any, str]]:
    """(field, default, what it accepts) for each hyper-parameter of a model, in declaration order."""
    kinds = config_types(cls.Config)
    defaults = cls.Config()
    return [(f.name, getattr(defaults, f.name), accepts(cls.Config, f.name).describe(kinds.get(f.name)))
            for f in dataclasses.fields(cls.Config)]
