"""How long a model trains: a number of seconds, steps, epochs or training FLOPs, and a batch size."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

from zoo.base import GenzooError

BUDGET_UNITS = {"s": "seconds", "steps": "steps", "epochs": "epochs", "flops": "flops"}


@dataclass(frozen=True)
class Budget:
    """How long a model trains: `amount` of `unit` (seconds, steps, epochs or training FLOPs).

    Seconds are a wall-clock race (the table then depends on how busy the machine was); steps,
    epochs and FLOPs give the same training on any machine. A FLOP budget spends the same compute
    on every model: the loop runs floor(flops / flops_per_step) steps."""

    amount: float
    unit: str = "steps"
    batch_size: int = 64

    def __post_init__(self):
        if self.unit not in BUDGET_UNITS.values():
            raise GenzooError(f"unknown budget unit {self.unit!r}; accepted: {', '.join(BUDGET_UNITS.values())}")
        if not (math.isfinite(self.amount) and self.amount > 0):
            raise GenzooError(f"a budget must be a positive number of {self.unit}, got {self.amount:g}")
        if self.unit == "steps" and self.amount != int(self.amount):
            raise GenzooError(f"a step budget must be a whole number, got {self.amount}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise GenzooError(f"batch size must be a positive int, got {self.batch_size!r}")

    @classmethod
    def parse(cls, text: str, batch_size: int = 64) -> Budget:
        """"60s", "2000steps", "10epochs", "3e12flops" -> Budget."""
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(s|steps|epochs|flops)\s*", str(text))
        try:
            amount = float(m.group(1)) if m else math.nan
        except ValueError:
            amount = math.nan
        if math.isinf(amount):
            raise GenzooError(f"budget {text!r} overflows: {m.group(1) if m else text} is beyond the largest float "
                              "(about 1.8e308); give a smaller one")
        if m is not None and amount == 0 and not m.group(1).startswith("-") and re.search(r"[1-9]", re.split("[eE]", m.group(1))[0]):
            raise GenzooError(f"budget {text!r} underflows: {m.group(1)} is below the smallest float (about 5e-324) "
                              "and reads as 0; a budget must be a positive number")
        if m is None or not math.isfinite(amount):
            raise GenzooError(f"bad budget {text!r}; accepted: a number and a unit, e.g. 60s, 2000steps, 10epochs, 3e12flops")
        return cls(amount, BUDGET_UNITS[m.group(2)], batch_size)

    @property
    def tag(self) -> str:
        """The budget as one word for a folder's name, the same however it was written: "20 steps" and
        2e1steps are 20steps, 3e+12flops is 3e12flops. The amount's shortest exact digits: steps written
        out (1000000steps), other units up to six characters (0.5epochs, 3600s), else the shorter of
        that and e-notation (1e6flops)."""
        amount = Decimal(repr(self.amount)).normalize()
        _, digits, exponent = amount.as_tuple()
        assert isinstance(exponent, int)  # a finite amount (`__post_init__`)
        plain = format(amount, "f")
        mantissa = "".join(map(str, digits))
        scientific = f"{mantissa[0]}{'.' + mantissa[1:] if len(mantissa) > 1 else ''}e{exponent + len(digits) - 1}"
        short = next(k for k, unit in BUDGET_UNITS.items() if unit == self.unit)
        written_out = self.unit == "steps" or len(plain) <= 6 or len(plain) <= len(scientific)
        return (plain if written_out else scientific) + short

    def __str__(self) -> str:
        amount = f"{self.amount:.3g}" if self.unit == "flops" else f"{self.amount:g}"
        return f"{amount} {self.unit}, batch {self.batch_size}"

    def max_steps(self, steps_per_epoch: int, flops_per_step: float | None) -> float:
        """Steps this budget allows (inf for a wall-clock budget, which the loop stops by time)."""
        if self.unit == "steps":
            return int(self.amount)
        if self.unit == "epochs":
            steps = self.amount * steps_per_epoch
            return max(1, math.ceil(steps)) if math.isfinite(steps) else math.inf  # 1e308 epochs: until stopped
        if self.unit == "flops":
            if flops_per_step == 0:  # a model of elementwise operations only: the budget would never run out
                raise GenzooError("a FLOP budget needs a training step that costs FLOPs, and torch's FlopCounterMode "
                                  "counted none in this model's (it counts matrix products and convolutions); "
                                  "give --budget in steps, epochs or seconds")
            return max(1, math.floor(self.amount / flops_per_step)) if flops_per_step else math.inf
        return math.inf

    def below_one_step(self, flops_per_step: float) -> str | None:
        """What to say where a FLOP budget is smaller than one step's cost (that one step is trained)."""
        if self.unit == "flops" and flops_per_step > self.amount:
            return f"the budget of {self.amount:.3g} FLOPs is below one step's {flops_per_step:.3g}: trained one step"
        return None
