"""Class-conditional diffusion with classifier-free guidance (Ho & Salimans 2022): `ddpm-cond`.

Conditioning. ddpm's UNet (diffusers' `UNet2DModel`) gets one more input, the class label y, as a
learned embedding vector that is added to the timestep's embedding (diffusers' `num_class_embeds`),
so every residual block sees it. The network eps_theta(x_t, t, y) is trained exactly as ddpm's, on
labelled images: it learns the noise of images of class y, and sampled as it is, it draws from its
estimate of p(x | y).

Why guide. Seen as scores (eps_theta(x_t, t) = -sqrt(1 - abar_t) * grad log p_t(x_t)), Bayes' rule
gives the gradient of a classifier for free:

    grad log p_t(y | x_t) = grad log p_t(x_t | y) - grad log p_t(x_t),

the conditional score minus the unconditional one. Classifier guidance (Dhariwal & Nichol 2021)
trained a separate classifier on noisy images and added s times its gradient to the score: roughly
a sample of p(x) p(y | x)^s, which for s > 1 favours images the classifier finds more typical of y
than the conditional model's own (s = 1), at the cost of diversity. Classifier-free guidance takes
the difference above as that gradient, so it needs no classifier, only the unconditional score as
well ("roughly": the noisy levels of a tilted distribution are not the tilted noisy levels, so
neither kind of guidance samples p(x) p(y | x)^s exactly).

One network for both. Label dropout: at every training step each label is replaced, with
probability `label_dropout` (0.1), by one extra "null" class (index K for K classes; the embedding
table has K + 1 rows). The same weights learn eps_theta(x_t, t, y) on nine images in ten and
eps_theta(x_t, t, null), the unconditional model, on the tenth. Ho & Salimans found 0.1 and 0.2
about equally good and 0.5 worse; 0.1 costs the conditional model the fewest examples, and on ten
classes still gives the unconditional model as many as any one class gets.

Sampling. At every step both predictions are made, and

    eps = eps_uncond + w (eps_cond - eps_uncond),      w = `guidance`

that is, the unconditional score plus w times the implicit classifier's gradient. w = 0 is the
unconditional model (the label is ignored), w = 1 the plain conditional model, and w > 1
extrapolates past it, away from the unconditional prediction: samples more typical of their
class (higher precision and label accuracy) and less diverse (lower recall), with FID first better
then worse as w grows; a guidance sweep's `plots/guidance_tradeoff.png` draws the curve
(results/cpu-mnist5k-guidance/). (This is diffusers' and
Stable Diffusion's `guidance_scale`; Ho & Salimans write (1 + w) eps_cond - w eps_uncond, so their
w is this one minus 1.) The UNet predicts v at the quick preset (as ddpm's), not eps: x0 and eps
are affine in v at a given x_t and t, and the weights (1 - w) and w sum to 1, so guiding v guides
eps and x0 the same way; `guided` mixes whatever the UNet predicts. A large w pushes the predicted x0 out of [-1, 1]; the scheduler
clips it (Imagen's "static thresholding") and re-derives the noise from the clipped x0.

Cost: guidance doubles the network passes, two a step (the conditional and the unconditional one,
run as one UNet call on a batch of 2B images) when w is neither 0 nor 1, one otherwise: `nfe` is
2 x steps or steps.

The sampler is ddim's (diffusers' `DDIMScheduler`, `eta` 0 by default), `steps` = 50 by default.
Ancestral sampling over all 1000 timesteps (ddpm's) would cost 1000 passes a sample, 2000 guided:
too slow on a CPU to evaluate even one guidance scale, let alone a sweep. Guidance changes sampling
only, so `ddpm-cond@3`, `--sweep ddpm-cond@0,1,3,7` and `--set ddpm-cond.guidance=3` all sample
one training (as `ddim@K` does ddpm's); so do other `steps`.

Where it sits in Stable Diffusion: the same guidance, in latent space (`ldm`'s idea) and on text.
A text encoder (CLIP's) replaces the label embedding, and its token vectors enter the UNet through
cross-attention rather than added to the timestep's embedding; the "null class" is the encoding of
the empty prompt, captions are dropped in training as labels are here, and a negative prompt
is a null condition of the user's choosing. Its default guidance_scale is 7.5.

The network, its sizes per preset, the noise schedule, prediction type, rate and weight average are
ddpm's at the quick and full presets, so `ddpm-cond@1` and `ddim` compare a conditional and an
unconditional model of one size under one sampler (and `ddpm-cond@0` the same network unconditioned).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.base import Conditional, Generator, GenzooError, Guided, Noising, Objective, SamplingStep, Stepwise, hparam
from zoo.models.diffusion import DDIM, DDPM, build_unet, check_unet, ddim_sampler, forward_process, noised, noised_to, padded_unet, reverse_process
from zoo.registry import register


def guidance_scale() -> Any:
    """The guidance scale w, a Config field of every guided model: 3 by default, in [0, 20]."""
    # 3 (Ho & Salimans' 2): their best FIDs came with little guidance (their w 0.1 to 0.3, 1.1 to
    # 1.3 here), their Inception scores kept rising up to the largest they tried (their 4); 3 leans
    # toward digits of the asked-for class, short of the saturated images of large w. A sweep draws
    # the whole trade-off from one training.
    return hparam(3.0, ge=0, le=20)


def label_dropout_share() -> Any:
    """The share of training labels replaced by the null class, a Config field of every guided model."""
    return hparam(0.1, ge=0, lt=1)


def check_guidance(model: str, config: Any) -> None:
    """Guidance other than 1 needs the unconditional model, which only label dropout trains."""
    if config.label_dropout == 0 and config.guidance != 1:
        raise GenzooError(f"{model}: guidance {config.guidance:g} needs the unconditional model, which label_dropout=0 "
                          "never trains; set label_dropout > 0, or guidance=1 for the plain conditional model")


def guide(cond: Tensor, uncond: Tensor, w: float) -> Tensor:
    """Classifier-free guidance: uncond + w (cond - uncond). w = 0 gives uncond, w = 1 cond."""
    return uncond + w * (cond - uncond)


@register
class GuidedDDPM(Generator["GuidedDDPM.Config"], Conditional, Guided, Stepwise, Noising, Objective):
    """Class-conditional diffusion, classifier-free guidance, DDIM: `steps` network evaluations a sample, twice that guided."""

    name = "ddpm-cond"
    sampler_params = ("steps", "eta", "guidance")  # sampling only: every ddpm-cond@w shares one training
    variant_param = "guidance"  # ddpm-cond@3 = guidance 3, ddpm-cond@1.5 = 1.5
    steps_hparam = "steps"
    guidance_hparam = "guidance"

    @dataclass
    class Config(DDIM.Config):  # ddpm's UNet, schedule, prediction type and rate; ddim's steps and eta
        guidance: float = guidance_scale()  # 0: unconditional, 1: conditional, > 1: guided
        label_dropout: float = label_dropout_share()  # share of training labels replaced by the null class

    config: GuidedDDPM.Config

    # ddpm's networks and rates, so that the conditional and the unconditional models compare; at smoke
    # with quick's v-prediction and cosine schedule too: guidance multiplies a barely trained network's
    # prediction error, which epsilon prediction at the linear schedule's noisy end magnifies again
    # (diffusion.py's docstring), and smoke's few steps train it barely.
    presets = {
        "smoke": dict(DDPM.presets["smoke"], prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2"),
        "quick": dict(DDPM.presets["quick"]),
        "full": dict(DDPM.presets["full"]),
    }
    eval_samples = DDIM.eval_samples  # ddim's counts: FIDs of ddpm-cond@w and ddim on as many samples

    def validate(self) -> None:
        """UNet fields as ddpm's; guidance other than 1 needs label_dropout > 0 (the unconditional model)."""
        check_unet(self.name, self.config)
        check_guidance(self.name, self.config)

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        self.null_class = spec.num_classes  # the "no label" class: the last row of the embedding table
        self.unet, self.multiple = build_unet(spec, c, class_embeds=spec.num_classes + 1)  # sides: multiples of `multiple`
        # The forward process, as ddpm's; sampling builds its own DDIM scheduler from its config.
        self.noise_scheduler = forward_process(c)
        self.opt = torch.optim.Adam(self.unet.parameters(), lr=c.lr)

    def predict(self, x_t: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """The UNet's prediction (noise, v or x0: `prediction_type`) for x_t (B,C,H,W) at timesteps t (B,)
        given labels (B,): class indices, or `null_class` for the unconditional model."""
        return padded_unet(self.unet, x_t, t, self.multiple, labels)

    def noise_image(self, x: Tensor, timestep: int, noise: Tensor) -> Tensor:
        return noised_to(self.noise_scheduler, x, timestep, noise)

    def guided(self, x_t: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """The prediction at guidance w for labels (B,): `guide` of the conditional and the unconditional
        predictions, both from one UNet call on 2B images; one call on B where w = 1 (the conditional
        alone) or w = 0 (the unconditional alone)."""
        w = self.config.guidance
        null = torch.full_like(labels, self.null_class)
        if w in (0, 1):
            return self.predict(x_t, t, labels if w == 1 else null)
        cond, uncond = self.predict(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
        return guide(cond, uncond, w)

    # -- training: ddpm's loss, with labels, some dropped --------------------------------------
    def drop_labels(self, y: Tensor, u: Tensor) -> Tensor:
        """Labels (B,) with each replaced by `null_class` where its uniform draw u (B,) is below
        `label_dropout` (no value is read on the host)."""
        return torch.where(u < self.config.label_dropout, torch.full_like(y, self.null_class), y)

    def loss(self, x: Tensor, noise: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """ddpm's MSE for images x in [0,1], given the noise, timesteps and the labels (B,) the UNet sees."""
        x_t, target = noised(self.noise_scheduler, x, noise, t)
        return F.mse_loss(self.predict(x_t, t, labels), target)

    def training_noise(self, x: Tensor, y: Tensor | None, generator: torch.Generator | None) -> dict[str, Tensor]:
        t = torch.randint(0, self.config.train_timesteps, (len(x),), generator=generator, device=x.device)
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        return {"t": t, "noise": noise, "drop": torch.rand(len(x), generator=generator, device=x.device)}

    def training_loss(self, x: Tensor, y: Tensor | None, noise: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if y is None:
            raise GenzooError(f"{self.name} trains on labeled batches: train_step(x, y) needs the class labels y")
        labels = self.drop_labels(y.to(x.device, torch.long), noise["drop"])
        return {"loss": self.loss(x, noise["noise"], noise["t"], labels)}

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        return self.minimise(x, y)

    # -- sampling: DDIM on the guided prediction --------------------------------------------------
    def sampler(self) -> tuple[Any, dict[str, Any]]:
        """ddim's: a fresh DDIM scheduler at `steps` ("trailing" spacing, from t = T-1), x0 clipped."""
        return ddim_sampler(self.noise_scheduler, self.config.steps, self.config.eta)

    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None,
                callback: Callable[[SamplingStep], None] | None = None) -> Tensor:
        assert labels is not None, "`sample` hands a conditional model its labels"
        return self.denoise(self.randn(n, *self.spec.shape, generator=generator), labels, generator, callback)  # x_T ~ N(0, I)

    def denoise(self, noise: Tensor, labels: Tensor, generator: torch.Generator | None = None,
                callback: Callable[[SamplingStep], None] | None = None) -> Tensor:
        """DDIM from x_T = `noise` (n,C,H,W) toward labels (n,) with the guided prediction: images on the
        [0,1] scale, not clamped. Deterministic at eta 0; at eta > 0 each step's fresh noise comes from
        `generator`. `callback` as in `sample`; call it under no_grad in eval mode."""
        scheduler, kwargs = self.sampler()
        return reverse_process(lambda x, t: self.guided(x, t, labels), scheduler, kwargs, noise, generator, callback)

    @property
    def nfe(self) -> int:
        """Network evaluations a sample: two a step when guided (w neither 0 nor 1), else one."""
        return self.config.steps * (1 if self.config.guidance in (0, 1) else 2)

    def fast_sampler(self) -> Generator:
        """Itself: DDIM at its `steps` already, so the training curves are drawn by the sampler the table measures."""
        return self
