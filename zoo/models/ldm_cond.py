"""A small Stable Diffusion: `ldm-cond`, class-conditional latent diffusion with classifier-free guidance.

Stable Diffusion (Rombach et al. 2022) is three networks, and so is this model:

    Stable Diffusion                          ldm-cond
    1. text encoder (CLIP's, frozen):         a label embedding: one learned vector per class, plus a
       the prompt -> token vectors              "null" class for "no label" (the empty prompt's place)
    2. UNet, diffusion in the latent space    ddpm-cond's UNet (`guided_diffusion.py`) on ldm's codes:
       of (1)'s conditioning, guided            diffused, denoised by DDIM, guided toward the label
    3. VAE decoder (KL-regularised first      ldm's first stage (`ldm.py`): an autoencoder to a 4x7x7
       stage): latent -> image                  code, its decoder turning the sampled code into digits

So `ldm-cond` is `ldm` whose second stage is `ddpm-cond` instead of `ddim`. Nothing of either is
written again here: `LDM` trains the first stage and hands its normalised codes to a second-stage
model it holds (`denoiser_class`); here that model is `GuidedDDPM`, built on the code's shape with
the dataset's classes. Training: label dropout (`label_dropout`, 0.1) teaches the one UNet both
the conditional and the unconditional prediction of the code's noise. Sampling: DDIM in latent
space on eps_u + w (eps_c - eps_u), w = `guidance`, then one decoder pass:

    z_T ~ N(0, I) (n,zc,h,w), labels y --guided DDIM, 2 x `steps` UNet passes--> z_0 --D--> images
    (`steps` passes where w is 0 or 1: one prediction is all the guided one needs)

Where it differs from Stable Diffusion, for a 28x28 digit on a CPU: a label is one token, so its
vector is added to the timestep's embedding (diffusers' `num_class_embeds`) rather than read
through cross-attention, which a prompt of many tokens needs; the label embedding is learned with
the UNet, whereas Stable Diffusion's text encoder is trained beforehand, on captions, and frozen;
and the first stage is trained here, jointly for its first `ae_steps` steps, then frozen, rather
than taken ready-made. The guidance scale is the same knob (`guidance_scale` in diffusers;
Stable Diffusion's default is 7.5).

The budget is ldm's: the two stages share it, and every step is charged the price of a joint
step. The guidance scale, the DDIM steps and eta change sampling only: `ldm-cond@1`, `ldm-cond@3`
and `--sweep ldm-cond@0,1,3,7` all sample one training, as for ddpm-cond.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from zoo.base import Conditional, Generator, GenzooError, Guided
from zoo.models.guided_diffusion import GuidedDDPM, check_guidance, guidance_scale, label_dropout_share
from zoo.models.ldm import LDM
from zoo.registry import register


@register
class GuidedLDM(LDM, Conditional, Guided):
    """A small Stable Diffusion: ldm's autoencoder, a label embedding, guided DDIM on its codes."""

    name = "ldm-cond"
    sampler_params = ("steps", "eta", "guidance")  # sampling only: every ldm-cond@w shares one training
    variant_param = "guidance"  # ldm-cond@3 = guidance 3
    guidance_hparam = "guidance"
    denoiser_class: ClassVar[type[Generator]] = GuidedDDPM

    @dataclass
    class Config(LDM.Config):  # ldm's first stage and latent UNet, plus ddpm-cond's guidance fields
        guidance: float = guidance_scale()  # 0: unconditional, 1: conditional, > 1: guided
        label_dropout: float = label_dropout_share()  # share of training labels replaced by the null class

    # ldm's; at smoke with quick's v-prediction and cosine schedule, as ddpm-cond's, because guidance
    # multiplies a barely trained network's error (guided_diffusion.py).
    presets = {
        "smoke": dict(LDM.presets["smoke"], prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2"),
        "quick": dict(LDM.presets["quick"]),
        "full": dict(LDM.presets["full"]),
    }

    def validate(self) -> None:
        """ldm's checks, and guidance other than 1 only with label dropout (ddpm-cond's)."""
        super().validate()
        check_guidance(self.name, self.config)

    def diffusion_loss(self, z: Tensor, noise: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        """ddpm-cond's loss on the codes, with the batch's labels, some dropped to the null class."""
        if y is None:
            raise GenzooError(f"{self.name} trains on labeled batches: train_step(x, y) needs the class labels y")
        return self.denoiser.loss(z, noise, t, self.denoiser.drop_labels(y.to(z.device).long(), torch.rand(len(y), device=z.device)))

    def denoise_latent(self, z_T: Tensor, generator, labels: Tensor | None, watch) -> Tensor:
        """ddpm-cond's guided DDIM from z_T toward `labels` (`generator` for the fresh noise of eta > 0)."""
        assert labels is not None, "`sample` hands a conditional model its labels"
        return self.denoiser.denoise(z_T, labels, generator, watch)

