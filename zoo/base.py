"""The one interface every model in the zoo implements, and its optional capabilities.

A model is a `Generator`: built from a `DataSpec` and its `Config` dataclass (a `ModelConfig`),
it owns its optimizers (`train_step` does its own backward and step), and `sample` returns images
in [0,1]. Capabilities are small mix-ins the runner checks with `isinstance`.
"""
from __future__ import annotations

import abc
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn


class GenzooError(ValueError):
    """Bad input from a user: the message is one line that says what was wrong and what is accepted."""


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data: shape, classes, and pixel levels (8-bit = 256)."""

    channels: int
    height: int
    width: int
    num_classes: int | None = None
    levels: int = 256

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width


# Learning-rate factor at training progress p in [0, 1] (share of the budget spent).
LR_SCHEDULES = {
    "constant": lambda p: 1.0,
    "cosine": lambda p: 0.5 * (1 + math.cos(math.pi * min(p, 1.0))),
}


@dataclass
class ModelConfig:
    """Hyper-parameters every model has; a model's `Config` is a dataclass that subclasses this.

    ema: decay of the exponential moving average of the weights (Polyak averaging). With ema > 0 the
    training loop updates the average after every step and leaves the model with it: what is
    evaluated and saved. 0 keeps the last weights.
    lr_schedule: how the training loop scales every optimizer's learning rate over the training:
    "constant", or "cosine" (from the model's rate down to 0 at the budget's last step; Loshchilov &
    Hutter's SGDR without restarts).
    """

    ema: float = 0.0
    lr_schedule: str = "constant"


class Generator(nn.Module, metaclass=abc.ABCMeta):
    """Base class of every model: subclass it, give it a `name` and a `Config`, and `@register` it."""

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    config: Any  # an instance of the model's own Config
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # reference hparams per preset, next to the code
    eval_samples: ClassVar[dict[str, int]] = {}  # per preset, for models whose sampling is costly
    # Sampler variants of one trained model (ddpm/ddim) share `train_family`; hparams listed in
    # `sampler_params` change sampling only, so they are left out of the training key.
    train_family: ClassVar[str | None] = None
    sampler_params: ClassVar[tuple[str, ...]] = ()
    variant_param: ClassVar[str | None] = None  # `name@V` sets this hparam to int(V), e.g. ddim@10
    # Set by the training loop under fp16 (`zoo.train.fit`): `optimize` scales losses through it.
    grad_scaler: torch.amp.GradScaler | None = None

    def __init__(self, spec: DataSpec, **hparams: Any):
        super().__init__()
        fields = {f.name for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(hparams) - fields)
        if unknown:
            raise GenzooError(f"unknown hyper-parameter(s) {unknown} for {self.name}; accepted: {sorted(fields)}")
        if isinstance(self, Conditional) and spec.num_classes is None:
            raise GenzooError(f"{self.name} is class-conditional and needs a labeled dataset; this one has no classes")
        self.spec = spec
        self.config = self.Config(**hparams)
        if not 0 <= self.config.ema < 1:
            raise GenzooError(f"{self.name}: ema must be in [0, 1) (0 = no weight averaging), got {self.config.ema}")
        if self.config.lr_schedule not in LR_SCHEDULES:
            raise GenzooError(f"{self.name}: unknown lr_schedule {self.config.lr_schedule!r}; "
                              f"accepted: {', '.join(LR_SCHEDULES)}")

    # -- what every model implements -------------------------------------------------------
    @abc.abstractmethod
    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, float]:
        """One optimisation step on a batch x (B,C,H,W) in [0,1]; returns losses, "loss" first."""

    @abc.abstractmethod
    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None) -> Tensor:
        """Draw n images (n,C,H,W); called under no_grad in eval mode. A `Conditional` model always
        gets labels (n,); others get None."""

    def optimize(self, opt: torch.optim.Optimizer, loss: Tensor, clip: float | None = None) -> None:
        """One update of `opt` on `loss`: zero the gradients, backward, clip their norm (if `clip`),
        step. Models step through here (like accelerate's `accelerator.backward`) so that the loop can
        scale fp16 losses with a GradScaler without any model knowing."""
        opt.zero_grad(set_to_none=True)
        params = [p for group in opt.param_groups for p in group["params"]]
        scaler = self.grad_scaler
        if scaler is None:
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            return
        scaler.scale(loss).backward()
        if clip:
            scaler.unscale_(opt)  # clip the true gradients
            nn.utils.clip_grad_norm_(params, clip)
        scaler.step(opt)  # skipped when the scaled gradients overflowed
        scaler.update()  # after each step: a GAN's critic steps the same optimizer several times a train_step

    def after_training(self, x: Tensor, y: Tensor | None) -> None:
        """Called once by the training loop with the whole training set (e.g. the AE fits its code prior);
        x may be uint8 (0..255): `zoo.data.to_float` a chunk at a time."""

    @property
    def nfe(self) -> int:
        """Network evaluations one sample costs."""
        return 1

    # -- shared behaviour ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """n images (n,C,H,W), float in [0,1]; the same seeded `generator` gives the same images."""
        if not isinstance(n, int) or n < 1:
            raise GenzooError(f"sample: n must be a positive int, got {n!r}")
        if isinstance(self, Conditional):
            labels = self.default_labels(n, generator) if labels is None else self._check_labels(labels, n)
        elif labels is not None:
            raise GenzooError(f"{self.name} is not class-conditional; sample without labels")
        was_training = self.training
        self.eval()
        try:
            x = self._sample(n, generator, labels)
        finally:
            self.train(was_training)
        return x.clamp(0, 1).float()

    def default_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """For a `Conditional` model: n class indices, uniform over the classes, drawn from `generator`."""
        dev = generator.device if generator is not None else self.device
        return torch.randint(self.spec.num_classes or 1, (n,), generator=generator, device=dev).to(self.device)

    def _check_labels(self, labels: Tensor, n: int) -> Tensor:
        labels = torch.as_tensor(labels, dtype=torch.long)
        k = self.spec.num_classes
        if labels.shape != (n,):
            raise GenzooError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        if k is None or labels.min() < 0 or labels.max() >= k:
            raise GenzooError(f"labels must be class indices in [0, {k}), got range [{labels.min()}, {labels.max()}]")
        return labels.to(self.device)

    def randn(self, *shape: int, generator: torch.Generator | None = None) -> Tensor:
        """Gaussian noise drawn on the generator's device (so a CPU seed reproduces on CUDA too)."""
        dev = generator.device if generator is not None else self.device
        return torch.randn(*shape, generator=generator, device=dev).to(self.device)

    def rand(self, *shape: int, generator: torch.Generator | None = None) -> Tensor:
        dev = generator.device if generator is not None else self.device
        return torch.rand(*shape, generator=generator, device=dev).to(self.device)

    def training_config(self) -> dict[str, Any]:
        """The hparams that change training (sampler-only ones left out): part of the training key."""
        c = dataclasses.asdict(self.config)
        return {k: v for k, v in c.items() if k not in self.sampler_params}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, path: str | Path) -> Path:
        """Write `model.safetensors` (weights and buffers) and `config.json` (name, hparams, DataSpec)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_model(self, str(path / "model.safetensors"))
        meta = {"model": self.name, "hparams": dataclasses.asdict(self.config), "spec": dataclasses.asdict(self.spec)}
        (path / "config.json").write_text(json.dumps(meta, indent=2))
        return path

    def load_weights(self, path: str | Path) -> None:
        load_model(self, str(Path(path) / "model.safetensors"), device=str(self.device))


class Likelihood:
    """Capability: a density on the 8-bit scale. `bpd_kind` is "exact" or "bound".

    Continuous models are scored on uniformly dequantized data y = (255 x + u) / 256, u ~ U[0,1)^D,
    so that -log2 P(x) <= -log2 p(y) + 8 D: a model uniform over [0,1]^D scores exactly 8 bits/dim.
    """

    bpd_kind: ClassVar[str] = "exact"

    @staticmethod
    def dequantize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x in {0, 1/255, ..., 1} -> y in [0,1): each pixel spread uniformly over its 1/256 bin."""
        dev = generator.device if generator is not None else x.device
        u = torch.rand(x.shape, generator=generator, device=dev).to(x.device)
        return (torch.round(x * 255) + u) / 256

    @staticmethod
    def continuous_bits_per_dim(nll_nats: Tensor, dims: int) -> Tensor:
        """Per-image nats of a density on dequantized [0,1]^D -> bits/dim on the 8-bit scale."""
        return nll_nats / (dims * math.log(2)) + 8.0

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


class Latent:
    """Capability: an encoder and a decoder, for interpolation and traversal."""

    @abc.abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """Images (B,C,H,W) in [0,1] -> codes (B,D)."""

    @abc.abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Codes (B,D) -> images (B,C,H,W) in [0,1]."""


class Conditional:
    """Capability: `sample(n, labels=...)` draws images of the asked-for classes.

    The base `Generator` implements what this means, once: a conditional model is refused at
    construction on a dataset without classes; `sample` checks the labels it is given and, without
    labels, draws them uniformly over the classes from the same seeded generator (`default_labels`),
    so `_sample` always receives labels (n,)."""
