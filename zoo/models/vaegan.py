"""VAE-GAN (Larsen et al. 2016): a VAE whose decoder is also a GAN generator.

A VAE's decoder is trained by a per-pixel likelihood, which rewards the *average* of the plausible
images: blurry digits. A GAN's generator is rewarded for images a discriminator cannot tell from
real ones: sharp, but with no encoder and no guarantee of covering the data. The VAE-GAN bolts a
discriminator onto a VAE, so the decoder serves as the GAN's generator:

    x (B,C,H,W) --Enc--> mu, log var (B,d) --z = mu + sigma eps--> Dec --> x_tilde (B,C,H,W)
    z_p ~ N(0, I) (B,d)                                   --> Dec --> x_p     (B,C,H,W)
    Dis: x, x_tilde, x_p --> real or fake?  (its hidden layer Dis_l(.) is also a feature space)

Losses, with the discriminator's logits s(.) and BCE written with softplus:

    L_prior = KL(q(z|x) || N(0, I))
    L_rec   = "pixel":   BCE(x_tilde, x)                        (the plain VAE reconstruction)
              "feature": 1/2 || Dis_l(x_tilde) - Dis_l(x) ||^2  (Larsen's learned similarity: compare
                         images where the discriminator looks, not pixel by pixel)
    L_GAN   = Dis: softplus(-s(x)) + [softplus(s(x_tilde)) + softplus(s(x_p))] / 2
              Dec: [softplus(-s(x_tilde)) + softplus(-s(x_p))] / 2    (non-saturating)

As in the paper, each network gets only its own terms (per dimension of the reconstruction, so KL is
weighed as in a per-dimension ELBO):

    Enc:  L_rec + beta * L_prior / dims(L_rec)   (no GAN gradient: the encoder is not a generator)
    Dec:  L_rec + adv_weight * L_GAN(Dec)
    Dis:  L_GAN(Dis)                              (the feature reconstruction does not train it)

`recon` chooses the reconstruction term. The feature version trains the discriminator's features
only through the GAN game, so they are meaningful only once it has learned something; the pixel
version gives the encoder a clear signal from the first step.

The networks are shared with the rest of the zoo: `zoo.nets`' conv encoder and decoder (as in the
VAE) and `zoo.models.gan`'s DCGAN discriminator, whose `features` (the flattened last conv level) are
Dis_l. The discriminator uses layer norm by default, so each image's features depend on that image
alone (with batch norm, x and x_tilde would be normalised with different batch statistics).

There is no likelihood here: the adversarial and feature terms make the objective no bound on
log p(x), so the model is `Latent` (encode -> posterior mean, decode -> image) but not `Likelihood`.
Samples decode z ~ N(0, I).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.base import GaussianPrior, Generator, Latent, ModelConfig, hparam, learning_rate, width
from zoo.models.gan import GANDiscriminator, dcgan_init
from zoo.nets import ConvDecoder, ConvEncoder, gaussian_kl, reparameterize, to_signed
from zoo.registry import register

RECON = ("pixel", "feature")


@register
class VAEGAN(Generator["VAEGAN.Config"], Latent):
    """VAE-GAN: a VAE whose decoder is also trained against a discriminator on its decodings."""

    name = "vae-gan"
    code_size_hparam = "latent_dim"

    @dataclass
    class Config(ModelConfig):
        latent_dim: int = width(16)
        hidden: int = width(32)  # channels of the encoder's and discriminator's first level, the decoder's last
        # "pixel" (BCE on pixels) or "feature" (squared error in Dis_l) (docs/experiments/2026-11-25-vae-gan-reconstruction.md)
        recon: str = hparam("pixel", choices=RECON)
        beta: float = hparam(1.0, ge=0)  # weight of KL (per reconstruction dimension) in the encoder's loss
        adv_weight: float = hparam(0.01, ge=0)  # weight of the GAN term in the decoder's loss
        d_norm: str | None = hparam("layer", choices=("layer", "batch", None))  # the discriminator's norm
        lr: float = learning_rate(1e-3)
        d_lr: float = learning_rate(2e-4)

    presets = {
        "smoke": dict(latent_dim=4, hidden=8),
        # A short budget: 4x the default learning rate, and 8 latent dimensions (as the aae's); each drew
        # better digits, on FID and the recognisable share alike
        # (docs/experiments/2026-11-25-learning-rates.md, 2026-12-02-code-size.md).
        "quick": dict(latent_dim=8, hidden=32, lr=4e-3),
        "full": dict(latent_dim=32, hidden=64),
    }

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        self.encoder = ConvEncoder(spec, c.hidden, 2 * c.latent_dim, model=self.name)  # -> (B,2d): mu, log var
        self.decoder = ConvDecoder(spec, c.hidden, c.latent_dim, model=self.name)  # (B,d) -> (B,C,H,W) logits
        self.D = GANDiscriminator(spec, c.hidden, norm=c.d_norm, model=self.name)  # (B,C,H,W) in [-1,1] -> (B,)
        dcgan_init(self.D)
        self.opt_enc = torch.optim.Adam(self.encoder.parameters(), lr=c.lr)
        self.opt_dec = torch.optim.Adam(self.decoder.parameters(), lr=c.lr)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=c.d_lr, betas=(0.5, 0.999))  # DCGAN's, as gan.py

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x).chunk(2, dim=1)[0]

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z))

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        c = self.config
        real = to_signed(x)  # the discriminator sees [-1, 1], as in the GANs
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B,d) each
        z = reparameterize(mu, logvar, torch.randn_like(mu))
        logits = self.decoder(z)  # (B,C,H,W)
        x_tilde = to_signed(torch.sigmoid(logits))
        x_p = to_signed(torch.sigmoid(self.decoder(torch.randn_like(mu))))  # decoded prior draws

        # Discriminator: real -> 1, reconstructions and prior samples -> 0 (fakes detached).
        s_real, s_fake = self.D(real), self.D(torch.cat([x_tilde, x_p]).detach())
        d_loss = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
        self.optimize(self.opt_d, d_loss)

        # Reconstruction, in pixels or in the (just updated) discriminator's feature space.
        if c.recon == "pixel":
            rec = F.binary_cross_entropy_with_logits(logits, x)  # per pixel
            rec_dims = self.spec.dims
        else:
            target = self.D.features(real).detach()  # (B,F)
            rec = 0.5 * F.mse_loss(self.D.features(x_tilde), target)  # per feature
            rec_dims = target.shape[1]
        kl = gaussian_kl(mu, logvar).sum(1).mean()  # per image
        g_adv = F.softplus(-self.D(torch.cat([x_tilde, x_p]))).mean()

        # Each network its own terms: two backward passes, each reaching only its network's weights
        # (`inputs`), so the encoder's step cannot touch what the decoder's backward reads. (Backward,
        # not autograd.grad: the loop's hooks see gradients that accumulate, which is how data-parallel
        # training averages them.)
        enc_loss = rec + c.beta * kl / rec_dims
        dec_loss = rec + c.adv_weight * g_adv
        self.optimize(self.opt_enc, enc_loss, inputs=list(self.encoder.parameters()), retain_graph=True)
        self.optimize(self.opt_dec, dec_loss, inputs=list(self.decoder.parameters()))
        return {"loss": enc_loss.detach(), "rec": rec.detach(), "kl": kl.detach(), "d_loss": d_loss.detach(),
                "g_loss": g_adv.detach()}

    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None) -> Tensor:
        return self.decode(self.randn(n, self.config.latent_dim, generator=generator))

    def latent_prior(self) -> GaussianPrior:
        """N(0, I): the prior the codes were trained to match and samples are drawn from."""
        return GaussianPrior.standard(self.config.latent_dim)
