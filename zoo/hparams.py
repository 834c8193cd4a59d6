"""What a model's hyper-parameter accepts: `hparam(default, ge=..., choices=...)` declares it on a
Config field, and `check_config` checks every field of a config against its type and those bounds
when a model is built, refusing a bad value in one line.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any

from zoo.errors import GenzooError

MAX_WIDTH = 1024  # channels or units of one layer, or a code's size: twice the widest preset; more is a typo


@dataclass(frozen=True)
class Accepts:
    """What one Config field accepts besides its annotated type: bounds (ge, gt, le, lt: a number, or
    the name of an earlier field of the same config, as ddim's `le="train_timesteps"`), choices, odd
    ints only, and for a list its length (min_len, max_len; the bounds then hold for each item).
    A float is always finite; an int field takes no bool and no float."""

    ge: float | str | None = None
    gt: float | str | None = None
    le: float | str | None = None
    lt: float | str | None = None
    choices: tuple[Any, ...] | None = None
    odd: bool = False
    min_len: int = 0
    max_len: int | None = None

    def admits(self, value: Any, kind: Any, config: Any = None) -> bool:
        if not of_type(value, kind) or (self.choices is not None and value not in self.choices):
            return False
        if isinstance(value, (list, tuple)):
            if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
                return False
        items = value if isinstance(value, (list, tuple)) else [value]
        ge, gt, le, lt = (self.bound(b, config) for b in (self.ge, self.gt, self.le, self.lt))
        return all(math.isfinite(v) and (ge is None or v >= ge) and (gt is None or v > gt) and (le is None or v <= le)
                   and (lt is None or v < lt) and not (self.odd and v % 2 == 0)
                   for v in items if isinstance(v, (int, float)) and not isinstance(v, bool))

    @staticmethod
    def bound(bound: float | str | None, config: Any) -> Any:
        """A bound's value: a number, or the value of the field it names (its name without a config)."""
        return getattr(config, bound) if isinstance(bound, str) and config is not None else bound

    def describe(self, kind: Any, config: Any = None) -> str:
        """What it accepts, as the end of "latent_dim must be ...": "an int in [1, 1024]", "in (0, 1]";
        with `config`, a bound that names a field is given as that field's value."""
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        bounds = self._bounds(config)
        if typing.get_origin(kind) is list:
            item = (typing.get_args(kind) or (None,))[0]
            plural = {int: "ints", float: "numbers", str: "strings"}.get(item, "items")
            return " ".join(filter(None, ["a list of", self._length(), "odd " * self.odd + plural, bounds]))
        if kind is int:
            return " ".join(filter(None, ["an odd int" if self.odd else "an int", bounds]))
        if kind in _NOUNS:
            return _NOUNS[kind]
        if kind is float and bounds.startswith((">", "<")):  # one-sided: inf is beyond it, yet refused
            return f"a finite number {bounds}"
        return bounds or ("a finite number" if kind is float else "a value")

    def _bounds(self, config: Any) -> str:
        show = lambda b: f"{b:g}" if isinstance(b, (int, float)) else str(b)
        ge, gt, le, lt = (self.bound(b, config) for b in (self.ge, self.gt, self.le, self.lt))
        low = ("[", ge) if ge is not None else ("(", gt) if gt is not None else None
        high = (le, "]") if le is not None else (lt, ")") if lt is not None else None
        if low and high:
            return f"in {low[0]}{show(low[1])}, {show(high[0])}{high[1]}"
        if low:
            return f"{'>=' if low[0] == '[' else '>'} {show(low[1])}"
        if high:
            return f"{'<=' if high[1] == ']' else '<'} {show(high[0])}"
        return ""

    def _length(self) -> str:
        if self.max_len is None:
            return f"at least {self.min_len}" if self.min_len else ""
        if self.min_len == self.max_len:
            return str(self.max_len)
        return f"{self.min_len} to {self.max_len}" if self.min_len else f"at most {self.max_len}"


_NOUNS = {bool: "true or false", str: "a string"}  # a float is described by its bounds alone: "in (0, 1]", "> 0"


def of_type(value: Any, kind: Any, finite: bool = True) -> bool:
    """Whether `value` is of the annotated type: int, float, bool, str, list[...], dict[..., ...],
    X | None, items and values too. A float must be finite unless `finite` is False (a record's
    metric may be inf or NaN; a hyper-parameter may not). Other annotations (Any, a plugin's own
    types) are not checked."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(of_type(value, arg, finite) for arg in args)
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and (not finite or math.isfinite(value))
    if kind is str:
        return isinstance(value, str)
    if origin is list:  # a tuple too: JSON and callers may hand one over
        return isinstance(value, (list, tuple)) and all(of_type(v, args[0], finite) for v in value if args)
    if origin is dict:
        return isinstance(value, dict) and all(of_type(v, args[1], finite) for v in value.values() if args)
    return True


def hparam(default: Any, **accepts: Any) -> Any:
    """A Config field and what it accepts (`Accepts`' fields): `lr: float = hparam(1e-3, gt=0, le=1)`.
    A subclass that only changes the default (`lr: float = 1e-4`) keeps what its parent accepts."""
    meta = {"accepts": Accepts(**accepts)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def width(default: int) -> Any:
    """A layer's channels or units, or a code's size: an int in [1, MAX_WIDTH]."""
    return hparam(default, ge=1, le=MAX_WIDTH)


def learning_rate(default: float) -> Any:
    """An optimizer's learning rate: in (0, 1]."""
    return hparam(default, gt=0, le=1)


def accepts(config: type, name: str) -> Accepts:
    """What field `name` of a Config class accepts: declared on it, or on the nearest parent that declares it."""
    for klass in config.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and "accepts" in f.metadata:
            return f.metadata["accepts"]
    return Accepts()


def config_types(config: type) -> dict[str, Any]:
    """Each field's annotated type, resolved, by name; {} when an annotation does not resolve (then no
    field's type is checked)."""
    module = sys.modules.get(config.__module__)
    try:
        return typing.get_type_hints(config, globalns=vars(module) if module else None)
    except (NameError, TypeError):
        return {}


def check_config(model: str, config: Any) -> None:
    """Every field of a model's config against its type and what it accepts: the first that is refused
    is one GenzooError line naming the model, the field, the value and what is accepted."""
    kinds = config_types(type(config))
    for f in dataclasses.fields(config):
        value, kind, ok = getattr(config, f.name), kinds.get(f.name), accepts(type(config), f.name)
        if not ok.admits(value, kind, config):
            named = [b for b in (ok.ge, ok.gt, ok.le, ok.lt) if isinstance(b, str)]
            # A default refused by a bound that names another field: the user set that field, not this one.
            why = (f" (its default; the {' and '.join(named)} given rule{'s' * (len(named) == 1)} it out: set {f.name} too)"
                   if named and value == f.default else "")
            raise GenzooError(f"{model}: {f.name} must be {ok.describe(kind, config)}, got {value!r}{why}")
