"""The one interface every model in the zoo implements, and its optional capabilities.

A model is a `Generator`: built from a `DataSpec` and its `Config` dataclass (a `ModelConfig`),
it owns its optimizers (`train_step` does its own backward and step), and `sample` returns images
in [0,1]. Capabilities are small mix-ins the runner checks with `isinstance`.

Read top to bottom: `DataSpec`, `ModelConfig`, `Generator`, then the capabilities a model may
declare (`Likelihood` to `Tokenized`). What a hyper-parameter accepts is `zoo.hparams`'s, and
`GenzooError` is `zoo.errors`'; both are imported from here too.
"""
from __future__ import annotations

import abc
import dataclasses
import itertools
import json
import math
import numbers
import os
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

# Re-exported (noqa: F401): a model file imports what it builds on from zoo.base.
from zoo.errors import GenzooError, one_line  # noqa: F401
from zoo.files import unwritable, user_path
from zoo.hparams import (  # noqa: F401
    MAX_WIDTH,
    Accepts,
    accepts,
    check_config,
    config_types,
    hparam,
    learning_rate,
    of_type,
    width,
)

# What a refusal of the data's image size advises, read from the command line and from Python alike.
OTHER_IMAGE_SIZE = "pass --image-size (image_size= from Python)"

# A saved model's two files (`Generator.save`): its weights, and its name, hyper-parameters and DataSpec.
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data: shape, classes, and pixel levels (8-bit = 256)."""

    channels: int
    height: int
    width: int
    num_classes: int | None = None
    levels: int = 256

    def __post_init__(self) -> None:
        whole = lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)  # noqa: E731
        for name in ("channels", "height", "width", "num_classes", "levels"):  # a numpy int as a Python int
            if whole(getattr(self, name)):
                object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("channels", "height", "width"):
            if not (whole(getattr(self, name)) and getattr(self, name) >= 1):
                raise GenzooError(f"DataSpec: {name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.num_classes is not None and not (whole(self.num_classes) and self.num_classes >= 1):
            raise GenzooError(f"DataSpec: num_classes must be an int >= 1, or None for unlabeled data; got {self.num_classes!r}")
        if not (whole(self.levels) and self.levels >= 2):
            raise GenzooError(f"DataSpec: levels must be an int >= 2, got {self.levels!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width


def saved_spec(path: str | Path) -> DataSpec:
    """The DataSpec a model was saved with (`Generator.save`), from its config file in `path`."""
    return DataSpec(**json.loads((Path(path) / CONFIG_FILE).read_text())["spec"])


# Learning-rate factor at training progress p in [0, 1] (share of the budget spent).
LR_SCHEDULES = {
    "constant": lambda p: 1.0,
    "cosine": lambda p: 0.5 * (1 + math.cos(math.pi * min(p, 1.0))),
}


@dataclass
class ModelConfig:
    """Hyper-parameters every model has; a model's `Config` is a dataclass that subclasses this.

    Each field says what it accepts with `hparam` (bounds, choices, list lengths), and every value is
    checked against it when a model is built; checks that involve several fields or the data go in
    the model's `validate`.

    ema: decay of the exponential moving average of the weights (Polyak averaging). With ema > 0 the
    training loop updates the average after every step and leaves the model with it: what is
    evaluated and saved. 0 keeps the last weights.
    lr_schedule: how the training loop scales every optimizer's learning rate over the training:
    "constant", or "cosine" (from the model's rate down to 0 at the budget's last step; Loshchilov &
    Hutter's SGDR without restarts).
    """

    ema: float = hparam(0.0, ge=0, lt=1)
    lr_schedule: str = hparam("constant", choices=tuple(LR_SCHEDULES))


ConfigT = TypeVar("ConfigT", bound=ModelConfig)


def _plain(value: Any) -> Any:
    """A number of another library's type (numpy's int64, float32) as Python's int or float; anything else as it is."""
    if isinstance(value, (bool, int, float)) or not isinstance(value, numbers.Real):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def check_class_indices(labels: Tensor, n: int, num_classes: int | None) -> None:
    """Labels (n,) as integer class indices in [0, num_classes) (any integer where that is None), for
    `sample` and `fit` alike; else one GenzooError line."""
    if labels.shape != (n,):
        raise GenzooError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:  # 2.7 was class 2
        raise GenzooError(f"labels must be integer class indices, got {labels.dtype}")
    if num_classes is not None and n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise GenzooError(f"labels must be class indices in [0, {num_classes}), "
                          f"got range [{int(labels.min())}, {int(labels.max())}]")


def check_images(x: Tensor, spec: DataSpec, who: str) -> None:
    """Images (N,C,H,W) of `spec`'s shape, N >= 1, as uint8 0..255 or floats in [0, 1], for `fit` and
    `bits_per_dim` alike; else one GenzooError line beginning with `who`. Without it a wrong shape
    fails inside a layer, and floats in 0..255 are taken silently."""
    shape = "(N,{},{},{})".format(*spec.shape)
    if x.dim() != 4 or tuple(x.shape[1:]) != spec.shape or len(x) == 0:
        raise GenzooError(f"{who} takes images {shape} with N >= 1 (its DataSpec), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return
    if not x.is_floating_point():
        raise GenzooError(f"{who}: images must be floats in [0, 1] or uint8 0..255, got {x.dtype}")
    low, high = (float(v) for v in torch.aminmax(x))
    if not (low >= 0 and high <= 1):  # NaN fails too
        raise GenzooError(f"{who}: images must be floats in [0, 1] or uint8 0..255, got values in [{low:g}, {high:g}]"
                          + (": divide by 255" if high > 1 and low >= 0 else ""))


class Generator(nn.Module, Generic[ConfigT], metaclass=abc.ABCMeta):
    """Base class of every model: subclass it, give it a `name` and a `Config`, and `@register` it.
    It is generic in its config (`class VAE(Generator["VAE.Config"])`), so that a model's body sees
    its own hyper-parameters with their types; code that handles any model takes a plain `Generator`."""

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    config: ConfigT  # an instance of the model's own Config
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # reference hparams per preset, next to the code
    eval_samples: ClassVar[dict[str, int]] = {}  # per preset: fewer samples than the preset scores (a costly sampler, or a model compared with one)
    # Sampler variants of one trained model (ddpm/ddim) share `train_family`; hparams listed in
    # `sampler_params` change sampling only, so they are left out of the training key.
    train_family: ClassVar[str | None] = None
    sampler_params: ClassVar[tuple[str, ...]] = ()
    variant_param: ClassVar[str | None] = None  # `name@V` sets this int or float hparam to V: ddim@10, ddpm-cond@1.5
    # True: the training loop hands `after_training` the whole training set (False spares loading it).
    fits_after_training: ClassVar[bool] = False
    # Why this model's training step can never be replayed as a CUDA graph (`zoo.graphs`), in a few
    # words; "" when it can. Steps that differ from one another are declared by `capture_phase`.
    not_capturable: ClassVar[str] = ""
    _grad_scaler: torch.amp.GradScaler | None = None  # inside `loss_scaling` only

    def __init__(self, spec: DataSpec, **hparams: Any):
        super().__init__()
        fields = {f.name for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(hparams) - fields)
        if unknown:
            raise GenzooError(f"unknown hyper-parameter(s) {unknown} for {self.name}; accepted: {sorted(fields)}")
        if isinstance(self, Conditional) and spec.num_classes is None:
            raise GenzooError(f"{self.name} is class-conditional and needs a labeled dataset; this one has no classes")
        self.spec = spec
        # a numpy number (a sweep over np.arange) as the Python one: else "an int ..., got np.int64(2)", and no JSON
        hparams = {k: [_plain(v) for v in x] if isinstance(x, list) else _plain(x) for k, x in hparams.items()}
        self.config = cast(ConfigT, self.Config(**hparams))  # `Config` is ConfigT (a ClassVar cannot say so)
        check_config(self.name, self.config)
        self.validate()

    def validate(self) -> None:
        """Checks that involve several hyper-parameters or the data (ddim's steps against its
        train_timesteps, image sides a network can take): override to raise one GenzooError line.
        Runs at construction, before any network is built, once every field has passed its own check."""

    # -- what every model implements -------------------------------------------------------
    @abc.abstractmethod
    def train_step(self, x: Tensor, y: Tensor | None = None) -> Mapping[str, Tensor | float]:
        """One optimisation step on a batch x (B,C,H,W) in [0,1]; returns named losses as 0-d tensors
        (floats are accepted too; the loop reads them every few steps), "loss" first.

        Return them detached (`loss.detach()`), not as `loss.item()`: reading a number off the device
        makes the host wait for the step to finish, at every step. For the same reason nothing in a
        step should branch on a tensor's value (`if t:`, `bool(t)`, `float(t)`, `.tolist()`).
        (Typed as a `Mapping`, whose values are covariant, so that a model may declare
        `-> dict[str, Tensor]`.)"""

    @abc.abstractmethod
    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None) -> Tensor:
        """Draw n images (n,C,H,W); called under no_grad in eval mode. A `Conditional` model always
        gets labels (n,); others get None."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The model's optimizers by name: the training loop schedules their learning rates and saves
        and restores their state in a resume file, under these names. By default every optimizer held
        as an attribute of the model itself, or in a list, tuple or dict attribute (`opts.0`, `opts.g`);
        a model that holds one elsewhere overrides this."""
        found: dict[str, torch.optim.Optimizer] = {}
        for k, v in vars(self).items():
            if isinstance(v, torch.optim.Optimizer):
                found[k] = v
            elif isinstance(v, (list, tuple, dict)):  # held in a collection: scheduled and resumed all the same
                items = v.items() if isinstance(v, dict) else enumerate(v)
                found.update({f"{k}.{i}": o for i, o in items if isinstance(o, torch.optim.Optimizer)})
        return found

    def capture_phase(self, step: int) -> Hashable | None:
        """Which CUDA graph replays training step `step` (the number of steps done before it), for
        `zoo.graphs`. Steps of one phase launch the same kernels on the same tensors, so one graph,
        captured once, replays them all; None runs this step eagerly (a one-off: a data-dependent
        initialisation, the first step of a new stage). A replayed step runs no Python, so the loop
        calls this before every step, replayed or not: a model whose `train_step` keeps host-side
        state (a step count, a stage) takes it from `step` here. By default every step is alike."""
        return "train"

    @contextmanager
    def loss_scaling(self, scaler: torch.amp.GradScaler | None) -> Iterator[None]:
        """Inside: `optimize` scales every loss through `scaler` and steps through it (the training loop
        enters this around the training under fp16); with None, and outside, losses are not scaled."""
        previous, self._grad_scaler = self._grad_scaler, scaler
        try:
            yield
        finally:
            self._grad_scaler = previous

    def optimize(self, opt: torch.optim.Optimizer, loss: Tensor, clip: float | None = None, *,
                 inputs: list[Tensor] | None = None, retain_graph: bool = False) -> None:
        """One update of `opt` on `loss`: zero the gradients, backward, clip their norm (if `clip`),
        step. `inputs` and `retain_graph` go to `backward` as in torch (a backward that reaches only
        these weights; a graph kept for a second backward). Models step through here (like
        accelerate's `accelerator.backward`) so that fp16 losses are scaled (see `loss_scaling`)
        without any model knowing."""
        opt.zero_grad(set_to_none=True)
        params = [p for group in opt.param_groups for p in group["params"]]
        scaler = self._grad_scaler
        if scaler is None:
            loss.backward(inputs=inputs, retain_graph=retain_graph)
            if clip:
                nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            return
        scaler.scale(loss).backward(inputs=inputs, retain_graph=retain_graph)
        if clip:
            scaler.unscale_(opt)  # clip the true gradients
            nn.utils.clip_grad_norm_(params, clip)
        scaler.step(opt)  # skipped when the scaled gradients overflowed
        scaler.update()  # after each step: a GAN's critic steps the same optimizer several times a train_step

    def after_training(self, x: Tensor, y: Tensor | None) -> None:
        """Called once by the training loop, when the class sets `fits_after_training`, with the whole
        training set and the final weights (the AE fits its code prior); x may be uint8 (0..255):
        `zoo.data.to_float` a chunk at a time."""

    @property
    def nfe(self) -> int:
        """Network evaluations one sample costs."""
        return 1

    def fast_sampler(self) -> Generator:
        """This trained model with a sampler cheap enough to look at it often, as the quality curves
        do during training: the model itself, unless its own sampler is costly (ddpm's 1000 steps)."""
        return self

    # -- shared behaviour ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where its parameters are (its buffers', for a model without parameters; else the CPU)."""
        held = next(itertools.chain(self.parameters(), self.buffers()), None)
        return held.device if held is not None else torch.device("cpu")

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: Callable[[SamplingStep], None] | None = None) -> Tensor:
        """n images (n,C,H,W), float in [0,1]; the same seeded `generator` gives the same images.

        callback: for a `Stepwise` model, called at every step of its sampler with a `SamplingStep`
        (the partial result); it only watches, the images are the same as without it. Any other
        model refuses one."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:  # a numpy int too
            raise GenzooError(f"sample: n must be a positive int, got {n!r}")
        n = int(n)
        if generator is not None and not isinstance(generator, torch.Generator):
            kind = type(generator)
            raise GenzooError(f"sample: generator must be a torch.Generator, got {kind.__module__}.{kind.__qualname__}")
        if isinstance(self, Conditional):
            labels = self.default_labels(n, generator) if labels is None else self.check_labels(labels, n)
        elif labels is not None:
            raise GenzooError(f"{self.name} is not class-conditional; sample without labels")
        if callback is not None and not isinstance(self, Stepwise):
            raise GenzooError(f"{self.name} draws in one pass (it is not `Stepwise`): sample without a callback")
        if callback is not None and not callable(callback):  # else a TypeError at the sampler's first step
            raise GenzooError(f"sample: callback must be a function of one zoo.SamplingStep, got {type(callback).__name__}")
        was_training = self.training
        self.eval()
        # Did _sample keep to its generator? Not asked of torch's default generator (torch.manual_seed(0)
        # returns it: the global numbers are the ones handed). The global state is compared around
        # _sample's own work only: a callback may draw from the global numbers.
        checked = generator is not None and generator is not torch.default_generator
        expected = [torch.get_rng_state()] if checked else []  # the state _sample must leave as it found
        drew = False

        def watched(step: SamplingStep) -> None:
            nonlocal drew
            drew = drew or not torch.equal(expected[0], torch.get_rng_state())
            assert callback is not None
            callback(step)
            expected[0] = torch.get_rng_state()

        try:
            if callback is None:
                x = self._sample(n, generator, labels)
            else:
                x = cast(Stepwise, self)._sample(n, generator, labels, watched if checked else callback)
        finally:
            self.train(was_training)
        shape = (n, *self.spec.shape)
        if not isinstance(x, Tensor) or tuple(x.shape) != shape or not x.is_floating_point():  # else scored as if right
            got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
            raise GenzooError(f"{self.name}: _sample returned {got}; expected floats of shape {shape} in [0, 1]")
        if checked and (drew or not torch.equal(expected[0], torch.get_rng_state())):  # else a seed repeats nothing
            raise GenzooError(f"{self.name}: _sample drew from torch's global random numbers, not the generator it was "
                              "handed, so a seed does not give the same images: draw with "
                              "self.randn(..., generator=generator) or pass generator= to torch")
        return x.clamp(0, 1).float()

    def default_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """For a `Conditional` model: n class indices, uniform over the classes, drawn from `generator`."""
        dev = generator.device if generator is not None else self.device
        return torch.randint(self.spec.num_classes or 1, (n,), generator=generator, device=dev).to(self.device)

    def check_labels(self, labels: Tensor, n: int) -> Tensor:
        """For a `Conditional` model: labels for n images as class indices (n,) on the model's device,
        or a one-line GenzooError saying what is accepted."""
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError) as e:
            raise GenzooError(f"labels must be integer class indices ({n},), got {one_line(e)}") from e
        check_class_indices(labels, n, self.spec.num_classes)
        return labels.long().to(self.device)

    def randn(self, *shape: int, generator: torch.Generator | None = None) -> Tensor:
        """Gaussian noise drawn on the generator's device (so a CPU seed reproduces on CUDA too)."""
        dev = generator.device if generator is not None else self.device
        return torch.randn(*shape, generator=generator, device=dev).to(self.device)

    def rand(self, *shape: int, generator: torch.Generator | None = None) -> Tensor:
        dev = generator.device if generator is not None else self.device
        return torch.rand(*shape, generator=generator, device=dev).to(self.device)

    @classmethod
    def training_family(cls) -> str:
        """The name its training goes by: shared by the sampler variants of one trained model (ddpm/ddim)."""
        return cls.train_family or cls.name

    def training_config(self) -> dict[str, Any]:
        """The hparams that change training (sampler-only ones left out): part of the training key."""
        c = dataclasses.asdict(self.config)
        return {k: v for k, v in c.items() if k not in self.sampler_params}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, path: str | Path) -> Path:
        """Write `model.safetensors` (weights and buffers) and `config.json` (name, hparams, DataSpec) in
        the folder `path` (`~` is the home folder), made if missing; one GenzooError line where it is a
        file or cannot be written."""
        if not isinstance(path, (str, os.PathLike)):
            raise GenzooError(f"save takes the folder to write the model in (a str or a Path), got {type(path).__name__}")
        path = Path(user_path(path, "save: path", "the folder to write the model in (made if missing)"))
        if path.exists() and not path.is_dir():  # else pathlib's FileExistsError from mkdir
            raise GenzooError(f"cannot save {self.name} in {path}: it is a file; give a folder (save writes "
                              f"{WEIGHTS_FILE} and {CONFIG_FILE} in it)")
        try:
            path.mkdir(parents=True, exist_ok=True)
            save_model(self, str(path / WEIGHTS_FILE))
            meta = {"model": self.name, "hparams": dataclasses.asdict(self.config), "spec": dataclasses.asdict(self.spec)}
            (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        except OSError as e:  # a read-only folder, a full disk: the file and why, not pathlib's traceback
            raise unwritable(e.filename or path, e) from None
        return path

    def load_weights(self, path: str | Path) -> None:
        load_model(self, str(Path(path) / WEIGHTS_FILE), device=str(self.device))


# Whether a Likelihood computes its own negative log-likelihood ("exact": a flow, an autoregressive
# model) or only an upper bound on it ("bound": a VAE, whose marginal over the code is intractable).
BPD_KINDS = ("exact", "bound")


def capabilities(cls: type[Generator]) -> list[str]:
    """The capability mix-ins of this module a model class declares, by name (a new one included)."""
    return [c.__name__ for c in cls.__mro__ if c.__module__ == __name__ and not issubclass(c, Generator)]


class Likelihood:
    """Capability: a density on the 8-bit scale. `bpd_kind` is "exact" or "bound" (BPD_KINDS).

    Continuous models are scored on uniformly dequantized data y = (255 x + u) / 256, u ~ U[0,1)^D,
    so that -log2 P(x) <= E_u[-log2 p(y)] + 8 D (Jensen's inequality; Theis et al. 2016): a model
    uniform over [0,1]^D scores exactly 8 bits/dim. A continuous model's "exact" is its own density
    of y, computed exactly; as bits/dim of the 8-bit images it is, as everywhere in the literature,
    this dequantized upper bound.
    """

    bpd_kind: ClassVar[str] = "exact"

    @staticmethod
    def dequantize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x in {0, 1/255, ..., 1} -> y in [0,1): each pixel spread uniformly over its 1/256 bin."""
        dev = generator.device if generator is not None else x.device
        u = torch.rand(x.shape, generator=generator, device=dev).to(x.device)
        return (torch.round(x * 255) + u) / 256

    @staticmethod
    def discrete_bits_per_dim(nll_nats: Tensor, dims: int) -> Tensor:
        """Per-image nats of a probability of the 8-bit image itself (no dequantization) -> bits/dim."""
        return nll_nats / (dims * math.log(2))

    @staticmethod
    def continuous_bits_per_dim(nll_nats: Tensor, dims: int) -> Tensor:
        """Per-image nats of a density on dequantized [0,1]^D -> bits/dim on the 8-bit scale (a density
        over 256 levels per dimension reads 8 bits higher as a probability of the level)."""
        return Likelihood.discrete_bits_per_dim(nll_nats, dims) + 8.0

    @abc.abstractmethod
    def nll_bits_per_dim(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Per-image negative log-likelihood in bits per dimension (B,), for x (B,C,H,W) in [0,1].

        `generator` seeds whatever the estimate draws (dequantization noise, posterior samples)."""

    def nll_bits_per_dim_with_extras(self, x: Tensor, generator: torch.Generator | None = None
                                     ) -> tuple[Tensor, dict[str, Tensor]]:
        """`nll_bits_per_dim` plus other per-image bits/dim worth showing beside it, keyed by the label
        a table or plot gives them (the VAE adds its looser bound as "ELBO"); override to compute
        them in one pass."""
        return self.nll_bits_per_dim(x, generator), {}


# What a `GaussianPrior` over codes is: the density training pulled them toward, or one fitted to them afterwards.
PRIOR_KINDS = ("prior", "fitted")


@dataclass
class GaussianPrior:
    """N(loc, scale scale^T) over codes (D,): `scale` is (D,) for a diagonal Gaussian or a (D,D)
    lower-triangular factor. kind: "prior" (the Gaussian the model was trained with: its codes pulled
    toward it, or its generator fed draws of it) or "fitted" (fitted to the codes after training, as
    the plain AE does)."""

    loc: Tensor
    scale: Tensor
    kind: str

    def __post_init__(self) -> None:  # else a plugin's "learned" or "Prior" reads as fitted in every figure, silently
        if self.kind not in PRIOR_KINDS:
            raise GenzooError(f"GaussianPrior kind must be one of {', '.join(map(repr, PRIOR_KINDS))}, got {self.kind!r}")

    @classmethod
    def standard(cls, dim: int) -> GaussianPrior:
        """N(0, I) over codes of `dim` dimensions: the prior a VAE or an AAE pulls its codes toward, and
        the noise a GAN's generator is trained on."""
        return cls(torch.zeros(dim), torch.ones(dim), "prior")

    @property
    def dim(self) -> int:
        return self.loc.numel()

    def from_standard(self, eps: Tensor) -> Tensor:
        """eps (N,D) ~ N(0, I) -> codes (N,D) of this Gaussian."""
        return self.loc + (eps * self.scale if self.scale.dim() == 1 else eps @ self.scale.T)

    def to_standard(self, z: Tensor) -> Tensor:
        """Codes (N,D) -> the standard-normal eps that `from_standard` maps to them."""
        if self.scale.dim() == 1:
            return (z - self.loc) / self.scale
        return torch.linalg.solve_triangular(self.scale, (z - self.loc).T, upper=False).T

    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """n codes (n,D) on the Gaussian's device: its standard normal, drawn from `generator` on the
        generator's device and scaled by `temperature`, mapped through `from_standard`."""
        dev = generator.device if generator is not None else self.loc.device
        eps = torch.randn(n, self.dim, generator=generator, device=dev).to(self.loc.device)
        return self.from_standard(temperature * eps)


class Objective:
    """Capability: the training step is one optimizer minimising one loss, written as two pure parts,
    so that `zoo.fused` can train several seeds of the model as one batched ensemble:

    - `training_noise(x, y, generator)`: every random number the step needs, drawn from `generator`
      (the global RNG for None), as named tensors;
    - `training_loss(x, y, noise)`: the named losses, "loss" first (the one minimised), computed from
      the batch and those draws alone: no randomness, no host-side state, no in-place change of a
      buffer, no optimizer.

    The model's `train_step` is then `return self.minimise(x, y)`: its one optimizer (`optimizers()`)
    steps on "loss", with the gradient norm clipped at `gradient_clip()` (None: not clipped)."""

    def training_noise(self, x: Tensor, y: Tensor | None, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {}

    @abc.abstractmethod
    def training_loss(self, x: Tensor, y: Tensor | None, noise: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Named 0-d losses, "loss" first, for batch x (B,C,H,W) in [0,1] and the step's `noise`."""

    def gradient_clip(self) -> float | None:
        return None

    def minimise(self, x: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        """One training step: the losses on fresh noise from the global RNG, one update, the losses detached."""
        model = cast(Generator, self)
        losses = self.training_loss(x, y, self.training_noise(x, y, None))
        (opt,) = model.optimizers().values()
        model.optimize(opt, losses["loss"], self.gradient_clip())
        return {k: v.detach() for k, v in losses.items()}


class Latent:
    """Capability: an encoder and a decoder, for interpolation and traversal; and, if the model has
    one, the Gaussian its codes are drawn from (`latent_prior`).

    `code_size_hparam` names the hyper-parameter that sets the code's size D ("latent_dim"), or is
    None where the model fixes it (a flow's code is as large as the image): the lecture figures say
    which `--set` gives a 2-D code."""

    code_size_hparam: ClassVar[str | None] = None

    @abc.abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """Images (B,C,H,W) in [0,1] -> codes (B,D)."""

    @abc.abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Codes (B,D) -> images (B,C,H,W) in [0,1] (a flow's exact inverse, unclamped, strays a little
        outside it for codes far from its data's; `sample` clamps)."""

    def latent_prior(self) -> GaussianPrior | None:
        """The Gaussian over codes (D,) whose decoded draws are the model's samples: kind "prior"
        when training pulled the codes toward it (a VAE's N(0, I), a flow's base density), "fitted"
        when it was fitted to the codes afterwards (the plain AE). None: no Gaussian over the codes."""
        return None


class Conditional:
    """Capability: `sample(n, labels=...)` draws images of the asked-for classes.

    The base `Generator` implements what this means, once: a conditional model is refused at
    construction on a dataset without classes; `sample` checks the labels it is given and, without
    labels, draws them uniformly over the classes from the same seeded generator (`default_labels`),
    so `_sample` always receives labels (n,)."""


class Guided:
    """Capability of a `Conditional` model: classifier-free guidance (Ho & Salimans 2022), a sampler
    that mixes the model's conditional and unconditional predictions at a scale w set by the sampler
    field `guidance_hparam` names (listed in `sampler_params`: every scale shares one training). The
    guidance plot sweeps it and the lecture page offers it as a slider, finding it here, not by name."""

    guidance_hparam: ClassVar[str]  # each guided model names its own: `register` checks it


class CodeSampler:
    """Capability: the model draws an image by decoding a code z (D,) drawn from a Gaussian, and has
    no encoder (a GAN's G(z)): `latent_prior()` says which Gaussian (its `dim` is the code size,
    its `sample` draws codes) and `decode(z, labels)` gives the images. A model with an encoder
    declares the same through `Latent`."""

    @abc.abstractmethod
    def latent_prior(self) -> GaussianPrior:
        """The Gaussian the model draws its codes from when it samples."""

    @abc.abstractmethod
    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Codes (B,D) -> images (B,C,H,W) in [0,1]; a `Conditional` model needs labels (B,)."""


class ProbabilisticDecoder:
    """Capability of a `Latent` model whose decoder gives a distribution p(x|z) per code, of which
    `decode(z)` shows the mean (a VAE's): `sample_likelihood` draws from it."""

    @abc.abstractmethod
    def sample_likelihood(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw from p(x|z) per code z (B,D): images (B,C,H,W) in [0,1]."""


@dataclass(frozen=True, eq=False)
class SamplingStep:
    """What a `Stepwise` model hands `sample`'s callback at every step of its sampler: the state the
    step starts from. Tensors are on the model's device.

    index: the step, 0 .. total-1 (step 0 starts from pure noise or an empty canvas); the image
    `sample` returns is the result of the last one.
    images: the partial result, (n,C,H,W) on the [0,1] scale, not clipped (a diffusion model's x_t
    strays outside it; clip to show it).
    prediction: the model's estimate at this step of the finished images (a diffusion model's
    predicted x0), same shape and scale; None where the model makes none.
    timestep: the noise level the step starts from, in the model's training timesteps; None for a
    sampler without one.
    drawn: (C,H,W) bool, the sub-pixels already final (an autoregressive canvas; the rest are 0 in
    `images`); None where every pixel can change at every step.
    decoded: whether `images` and `prediction` are the decoder's rendering of a latent state (a latent
    diffusion model's z_t and predicted z_0), rather than the pixels the sampler itself works on.
    """

    index: int
    total: int
    images: Tensor
    prediction: Tensor | None = None
    timestep: int | None = None
    drawn: Tensor | None = None
    decoded: bool = False


class Stepwise:
    """Capability: the sampler runs in steps that a caller can watch (e.g. diffusion, flow matching,
    PixelCNN): `sample(n, callback=fn)` calls `fn(step)` with a `SamplingStep` at each step, and
    draws exactly what `sample(n)` draws. The model's `_sample` takes the callback as a fourth
    argument, None when nobody watches.

    `steps_hparam` names the sampler field (in `sampler_params`) that sets how many steps the sampler
    takes (the lecture page's slider), or is None where the model fixes them (PixelCNN: one a pixel)."""

    steps_hparam: ClassVar[str | None] = None

    @abc.abstractmethod
    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None,
                callback: Callable[[SamplingStep], None] | None = None) -> Tensor:
        """`Generator._sample`, calling `callback` (if any) at every step."""


class Noising:
    """Capability: the model learns to undo a fixed forward process that takes an image to noise with
    no network (diffusion's q(x_t | x_0), flow matching's straight line): `noise_image` takes images
    to the noise level a `SamplingStep.timestep` names, so a figure sets the forward process beside
    the learned reverse one."""

    @abc.abstractmethod
    def noise_image(self, x: Tensor, timestep: int, noise: Tensor) -> Tensor:
        """Images x (N,C,H,W) in [0,1] and standard-normal `noise` of their shape -> x at `timestep`
        (N,C,H,W), on the scale of the sampler's `SamplingStep.images`: as training noises them."""


class Invertible:
    """Capability: images map back to the noise a deterministic sampler draws them from (DDIM
    inversion), so two images can be interpolated through their noises: `generate(invert(x))` is
    about x. The noise is (B,C,H,W), standard normal where the model's samples come from."""

    @property
    @abc.abstractmethod
    def inversion_name(self) -> str:
        """How `invert` works, in a few words, for figure labels: "DDIM inversion (50 steps)"."""

    @abc.abstractmethod
    def invert(self, x: Tensor) -> Tensor:
        """Images (B,C,H,W) in [0,1] -> their noise (B,C,H,W)."""

    @abc.abstractmethod
    def generate(self, noise: Tensor) -> Tensor:
        """Noise (B,C,H,W) -> images (B,C,H,W) in [0,1], deterministically: the map `invert` inverts."""


class Tokenized:
    """Capability: images as a grid of discrete tokens, the indices of a learned codebook's vectors (a
    VQ-VAE's codes): `encode_tokens` maps an image to the index of the codebook vector nearest to each
    cell of its code grid, `decode_tokens` maps any grid of indices back to an image. The model's
    samples are decoded token grids, drawn from a prior over them. `codebook_size` is K, the number of
    distinct tokens; a token grid of h x w cells then holds at most h w log2 K bits."""

    @property
    @abc.abstractmethod
    def codebook_size(self) -> int:
        """K: tokens are indices in [0, K)."""

    @abc.abstractmethod
    def encode_tokens(self, x: Tensor) -> Tensor:
        """Images (B,C,H,W) in [0,1] -> token indices (B,h,w), long, in [0, codebook_size)."""

    @abc.abstractmethod
    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """Token indices (B,h,w) -> images (B,C,H,W) in [0,1]."""
