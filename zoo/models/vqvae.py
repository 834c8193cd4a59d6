"""VQ-VAE (van den Oord et al. 2017): images as a grid of discrete tokens, and a PixelCNN over the tokens.

PixelCNN writes an image as a sequence of 784 sub-pixels and predicts each from the ones before.
A VQ-VAE first learns a much shorter sequence to say the same thing: a grid of tokens, each one of
K learned symbols. A sequence model over those tokens is then the generator, and a decoder turns
its tokens into pixels. Three parts, trained in two phases: an autoencoder whose code is quantised
to a learned codebook (1-4 below), the decoder's likelihood of the pixels, and a prior over tokens.

1. **Vector quantisation.** A conv encoder E maps an image to a grid of D-dimensional vectors,
   z_e = E(x) (B,D,h,w); for 28x28 digits two stride-2 convs give a 7x7 grid (ldm's encoder and
   decoder). A codebook holds K vectors e_1..e_K (K,D). Each cell's vector is replaced by its
   nearest codebook vector:

       c*(i,j) = argmin_k || z_e(i,j) - e_k ||^2,    z_q(i,j) = e_{c*(i,j)}

   The image is now 49 integers in [0, K): at K = 64, 49 x 6 = 294 bits, against the 784 bytes of
   the pixels. The decoder G maps z_q back to an image.

2. **Straight-through gradient.** argmin has no gradient, so the encoder would learn nothing from
   the reconstruction. The straight-through estimator (Bengio et al. 2013) copies the gradient
   past the quantiser: the decoder gets z_e + sg(z_q - z_e), which equals z_q going forward (sg:
   stop-gradient, `.detach()`) and has the gradient of z_e going backward. The encoder then moves
   as if the decoder had been handed its own output, which is close to right when z_q is close to
   z_e.

3. **Commitment loss.** Nothing above stops the encoder's outputs from drifting away from the
   codebook (or growing without bound) faster than the codebook follows. The commitment term
   beta || z_e - sg(z_q) ||^2 pulls each output toward the code it was given (`commitment`, beta =
   0.25 in the paper); the stop-gradient keeps it from moving the codebook. The paper sums both
   terms; here each is a mean (the reconstruction over the C*H*W sub-pixels, the commitment over the
   h*w*D code elements), so the same beta pulls C*H*W / (h*w*D) times as hard against the
   reconstruction as the paper's (twice on MNIST at D = 8).

4. **The codebook, learned by EMA.** The paper's codebook loss || sg(z_e) - e ||^2 moves each code
   toward the encoder outputs assigned to it: a gradient step of k-means. Here the codebook is
   instead set as k-means would set it, as a moving average (the paper's appendix; Razavi et al.
   2019): per code k, the count n_k and the sum s_k of the outputs assigned to it in a batch,

       N_k <- decay N_k + (1 - decay) n_k,   S_k <- decay S_k + (1 - decay) s_k,   e_k = S_k / N_k

   (N_k Laplace-smoothed, so that an unused code divides by no zero). Each code is the running mean
   of its cluster, a Lloyd step per batch, with no learning rate to tune and no optimizer state
   (the codebook is a set of buffers, not weights), and it settles faster and more steadily than
   the codebook loss, which matters under a short budget. It starts as encoder outputs of the first batch,
   not random vectors that no output would be near. A code no output is assigned to gets no
   update and stays unused for good ("dead"); one whose count N_k falls below `dead_threshold` is
   restarted at a random encoder output of the batch, with a count of one (Jukebox's random
   restarts, Dhariwal et al. 2020), so that all K codes keep describing the data.

**The decoder's likelihood and bits/dim.** The decoder gives, per sub-pixel, the location and
log-scale of a logistic discretized to the 256 pixel levels (`vae.discretized_logistic_nll`, as
PixelCNN++), so P(x | c) is a probability of the 8-bit image; reconstruction is trained on that
negative log-likelihood per sub-pixel. The location is the decoder's output plus 0.5 (mid-grey at
initialisation), not squashed into [0,1] by a sigmoid: most pixels are black, so the decoder soon drives every location down, and
a sigmoid there saturates and passes almost no gradient from the ink pixels; the decoder then stays
at all-black images. Unbounded, a location below 0 just puts the mass in the end bin (x = 0), and
the ink pixels keep their pull. The model the three parts define is P(x) = sum_c p(c) P(x|c)
over all K^(h w) token grids c, with p the prior below. One term of that sum bounds it:
P(x) >= p(c*) P(x | c*) for the encoder's grid c*, so

    bits/dim = [ -log2 p(c*) - log2 P(x | c*) ] / (C H W)  >=  -log2 P(x) / (C H W)

is an upper bound (`bpd_kind = "bound"`). It is a single-code bound: a VAE's ELBO for a posterior
that puts all its mass on c* (no entropy term), not a Gaussian VAE's ELBO over many draws, and not
the exact likelihood (the sum over grids is intractable). `nll_bits_per_dim_with_extras` also
returns the prior's share, "code bits" = -log2 p(c*) / (C H W): how many of the bits the tokens
carry, the rest being the decoder's pixel noise around its reconstruction.

**The prior over tokens.** A PixelCNN over the code grid, as in the paper: each token is embedded
(nn.Embedding of the K indices), passed through the gated masked layers of `zoo.models.pixelcnn`
(one "colour" channel: a token is one symbol), and a 1x1 head gives K-way logits per cell, so that
p(c) = prod_(i,j) p(c_ij | tokens before it in raster order). Trained by cross-entropy on the
encoder's tokens; a learned bias per grid position is added to the first layer's gates (as
PixelCNN's row and column biases: where a token is says much about which one it is).

**Sampling.** Raster-order ancestral sampling of a token grid (h w prior passes: 49 on a 7x7 grid,
each drawing one token by inverting the CDF of its softmax with a uniform from the seeded
generator), then one decoder pass. `nfe` = h w + 1. The image is the decoder's location per
sub-pixel clipped to [0,1] (the mean image, as the VAE's samples), not a draw from P(x | c).

**Why this is how images became a language.** Once an image is a short sequence of discrete
symbols, any sequence model can generate it, with the machinery built for text. DALL·E (Ramesh et
al. 2021) turns a 256x256 image into 32x32 tokens of a discrete VAE with 8192 codes and models the
text tokens followed by the image tokens with one autoregressive transformer; Parti (Yu et al.
2022) does the same with a ViT-VQGAN tokenizer and an encoder-decoder transformer; MaskGIT (Chang
et al. 2022) keeps the VQGAN tokens but predicts masked tokens in parallel, filling the grid in a
few steps instead of one token at a time. This model is the small version of that recipe: a
tokenizer (the VQ-VAE) and a sequence model over its tokens (a PixelCNN standing for the
transformer): 49 sampling steps, where the pixel PixelCNN takes 784.

**Training budget.** Both phases are paid from the one budget, exactly as in ldm. The training
loop counts the FLOPs of the *first* step and charges every step that much, so for the first
`vq_steps` steps each `train_step` does both updates: one VQ-VAE step (encoder, decoder, codebook)
and one prior step on the detached tokens of that batch. After `vq_steps` the VQ-VAE and its
codebook freeze and each step is a prior step alone, on the tokens of the frozen encoder, charged
the price of a joint step: an upper bound, so the model gets no compute it does not pay for.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.base import Generator, GenzooError, Likelihood, ModelConfig, Tokenized, hparam, learning_rate, width
from zoo.models.ldm import DOWNSAMPLE, LatentDecoder, LatentEncoder, StepCounted, check_sides
from zoo.models.pixelcnn import GatedLayer, draw, gated_stacks
from zoo.models.vae import discretized_logistic_nll
from zoo.registry import register

LAPLACE = 1e-5  # smoothing of the codebook's counts, so that an unused code divides by no zero


# -- the quantiser ---------------------------------------------------------------------------------

def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Vectors z (N,D), codebook (K,D) -> index (N,) of each vector's nearest code (squared Euclidean
    distance, |z|^2 - 2 z.e + |e|^2: one matrix product instead of an (N,K,D) difference)."""
    distance = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)
    return distance.argmin(1)


def one_hot(index: Tensor, K: int) -> Tensor:
    """Indices (N,) -> (N,K) bool, by comparison: F.one_hot reads the indices' range on the host, a
    wait for the device at every step."""
    return index[:, None] == torch.arange(K, device=index.device)


def ema_codebook(z: Tensor, index: Tensor, counts: Tensor, sums: Tensor, decay: float
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """One moving-average k-means step: vectors z (N,D) assigned to codes `index` (N,), the running
    counts (K,) and sums (K,D) -> their new values and the new codebook (K,D), each code the running
    mean of the vectors assigned to it (counts Laplace-smoothed)."""
    K = counts.shape[0]
    onehot = one_hot(index, K).type_as(z)  # (N,K): the sums as a matrix product, not a scatter, so they are deterministic
    counts = decay * counts + (1 - decay) * onehot.sum(0)
    sums = decay * sums + (1 - decay) * onehot.T @ z
    total = counts.sum()
    smoothed = (counts + LAPLACE) / (total + K * LAPLACE) * total
    return counts, sums, sums / smoothed[:, None]


# -- the prior over tokens -------------------------------------------------------------------------

class CodePrior(nn.Module):
    """A gated PixelCNN over a grid of tokens: (B,h,w) indices in [0,K) -> (B,K,h,w) logits, the
    logits at (i,j) seeing only the tokens before (i,j) in raster order. PixelCNN's layers with one
    colour group, on an embedding of the tokens instead of pixel values."""

    def __init__(self, K: int, h: int, w: int, hidden: int, layers: int, first_kernel: int, kernel: int,
                 head: int):
        super().__init__()
        self.embed = nn.Embedding(K, hidden)
        self.layers = nn.ModuleList(GatedLayer(hidden, hidden, 1, first_kernel if i == 0 else kernel, first=i == 0)
                                    for i in range(layers))
        self.position = nn.Parameter(torch.zeros(2 * hidden, h, w))  # a bias per grid cell on the first gates
        self.head = nn.Sequential(nn.ELU(), nn.Conv2d(hidden, head, 1), nn.ELU(), nn.Conv2d(head, K, 1))

    @property
    def _gated_layers(self) -> Sequence[GatedLayer]:
        return cast("Sequence[GatedLayer]", self.layers)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(gated_stacks(self._gated_layers, self.embed(tokens).permute(0, 3, 1, 2), self.position))

    def nll(self, tokens: Tensor) -> Tensor:
        """-log p(tokens) in nats per grid (B,): the summed cross-entropy of every cell."""
        return F.cross_entropy(self(tokens), tokens, reduction="none").flatten(1).sum(1)


# -- the model -------------------------------------------------------------------------------------

@register
class VQVAE(StepCounted, Generator["VQVAE.Config"], Likelihood, Tokenized):
    """VQ-VAE with an EMA codebook and a PixelCNN prior over its (H/4)x(W/4) token grid; bits/dim a single-code bound."""

    name = "vqvae"
    bpd_kind = "bound"

    @dataclass
    class Config(ModelConfig):
        codebook_size: int = hparam(64, ge=2, le=4096)  # K: tokens are indices in [0, K)
        code_channels: int = hparam(8, ge=1, le=256)  # D: the size of each codebook vector
        hidden: int = width(32)  # channels of the encoder's first level and the decoder's last (doubled between)
        commitment: float = hparam(0.25, ge=0)  # beta: weight of || z_e - sg(z_q) ||^2
        codebook_decay: float = hparam(0.99, ge=0, lt=1)  # of the codebook's moving averages
        dead_threshold: float = hparam(1.0, ge=0)  # a code whose running count falls below this is restarted (0: never)
        vq_steps: int = hparam(1000, ge=1)  # steps during which the VQ-VAE trains (with the prior); then it is frozen
        vq_lr: float = learning_rate(1e-3)
        prior_hidden: int = width(32)  # the token embedding's size and the prior's feature channels
        prior_layers: int = hparam(5, ge=1, le=64)  # gated layers of the prior (the first one has mask A)
        prior_first_kernel: int = hparam(5, ge=3, le=31, odd=True)  # the prior's first kernel: it reaches first_kernel//2 rows up
        prior_kernel: int = hparam(3, ge=3, le=31, odd=True)  # later layers' kernel: each reaches kernel//2 more rows/columns
        prior_head: int = width(64)  # width of the prior's 1x1 output head
        prior_lr: float = learning_rate(2e-3)

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": dict(codebook_size=16, code_channels=4, hidden=8, vq_steps=40, vq_lr=3e-3, prior_hidden=8, prior_layers=2,
                      prior_first_kernel=3, prior_head=16),
        # quick: the autoencoder reconstructs digits long before the prior draws them, so it freezes early
        # (vq_steps) and the rest of the budget goes to the prior, on fixed tokens: the prior is what the
        # samples are limited by. 32 codes: MNIST's 4x4-pixel cells need few, and a smaller alphabet is a
        # shorter lesson for the prior. The weight average (ema) smooths the prior's last steps, as
        # PixelCNN's; the frozen autoencoder's average is its own weights, the freeze being long before
        # the end.
        "quick": dict(codebook_size=32, code_channels=8, hidden=32, vq_steps=350, vq_lr=2e-3, prior_hidden=32,
                      prior_layers=5, prior_head=64, prior_lr=5e-3, ema=0.98),
        "full": dict(codebook_size=512, code_channels=64, hidden=128, vq_steps=5000, vq_lr=2e-4, prior_hidden=128,
                     prior_layers=12, prior_head=512, prior_lr=3e-4),
    }
    codebook: Tensor  # buffers, registered in __init__
    code_counts: Tensor
    code_sums: Tensor

    def validate(self) -> None:
        """Image sides multiples of 4 (two stride-2 levels)."""
        check_sides(self.name, self.spec)

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        K, D = c.codebook_size, c.code_channels
        self.grid = (spec.height // DOWNSAMPLE, spec.width // DOWNSAMPLE)  # (h, w) of the token grid
        self.encoder = LatentEncoder(spec.channels, c.hidden, D)
        self.decoder = LatentDecoder(2 * spec.channels, c.hidden, D)  # per sub-pixel: location, log-scale
        self.prior = CodePrior(K, *self.grid, c.prior_hidden, c.prior_layers, c.prior_first_kernel, c.prior_kernel,
                               c.prior_head)
        self.opt_vq = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], lr=c.vq_lr)
        self.opt_prior = torch.optim.Adam(self.prior.parameters(), lr=c.prior_lr)
        # The codebook and its moving averages, and the step count: buffers, saved with the weights and
        # restored on resume, and left out of the optimizers (the codebook is not learned by gradients).
        self.register_buffer("codebook", torch.randn(K, D))  # replaced by encoder outputs at the first step
        self.register_buffer("code_counts", torch.zeros(K))
        self.register_buffer("code_sums", torch.zeros(K, D))
        self.start_counting()

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def nfe(self) -> int:
        return self.grid[0] * self.grid[1] + 1  # one prior pass per token, one decoder pass

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_vq": self.opt_vq, "opt_prior": self.opt_prior}

    def capture_phase(self, step: int) -> Hashable | None:
        """Two phases, the joint VQ-VAE and prior steps and the prior alone; the first step, which sets
        the codebook from the batch's encoder outputs, runs eagerly. A replayed step runs no Python, so
        the step count `train_step` goes by is taken from the loop's `step` here."""
        self.set_steps(step)
        if step == 0:
            return None
        return "vqvae" if step < self.config.vq_steps else "prior"

    # -- tokens: the quantiser -----------------------------------------------------------------------
    def _vectors(self, x: Tensor) -> Tensor:
        """Images -> the encoder's vectors z_e, one per grid cell, as rows (B*h*w, D)."""
        return self.encoder(x).permute(0, 2, 3, 1).flatten(0, 2)

    def _vector_grid(self, rows: Tensor, batch: int) -> Tensor:
        """Vectors as rows (B*h*w, D) back to their grid (B,D,h,w)."""
        return rows.unflatten(0, (batch, *self.grid)).permute(0, 3, 1, 2)

    def encode_tokens(self, x: Tensor) -> Tensor:
        """Images (B,C,H,W) in [0,1] -> the index of each grid cell's nearest code (B,h,w)."""
        with torch.no_grad():
            return nearest_code(self._vectors(x), self.codebook).view(len(x), *self.grid)

    def _quantised(self, tokens: Tensor) -> Tensor:
        """Tokens (B,h,w) -> their codebook vectors z_q (B,D,h,w)."""
        return self.codebook[tokens].permute(0, 3, 1, 2)

    def _likelihood_params(self, z_q: Tensor) -> tuple[Tensor, Tensor]:
        """Code vectors (B,D,h,w) -> P(x|c)'s location (on the [0,1] scale, unbounded: see the module
        docstring) and log-scale, each (B,C,H,W)."""
        location, log_scale = self.decoder(z_q).chunk(2, dim=1)
        return location + 0.5, log_scale  # mid-grey where the untrained decoder's outputs are about 0

    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """Tokens (B,h,w) -> the decoder's mean image (B,C,H,W): P(x|c)'s location per sub-pixel,
        clipped to [0,1]. Tokens of another grid shape or outside [0, K) are one GenzooError line."""
        K, (h, w) = self.codebook_size, self.grid
        tokens = torch.as_tensor(tokens, device=self.device)
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != self.grid or tokens.is_floating_point():
            raise GenzooError(f"vqvae: tokens must be integer indices (B,{h},{w}), got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= K):
            raise GenzooError(f"vqvae: tokens must be indices in [0, {K}), got range [{tokens.min()}, {tokens.max()}]")
        return self._mean_image(tokens.long())

    def _mean_image(self, tokens: Tensor) -> Tensor:
        return self._likelihood_params(self._quantised(tokens))[0].clamp(0, 1)

    def _decoder_nll(self, x: Tensor, z_q: Tensor) -> Tensor:
        """-log P(x | z_q) of the 8-bit image in nats, per sub-pixel (B,C,H,W)."""
        mean, log_scale = self._likelihood_params(z_q)
        return discretized_logistic_nll(torch.round(x * 255) / 255, mean, log_scale)

    # -- the codebook ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _restart(self, z: Tensor, which: Tensor) -> None:
        """Codes `which` (K,) bool restart at random rows of z (N,D), encoder outputs of the batch, each
        the mean of that one output: count 1, sum the output itself. Every code is drawn for and
        `torch.where` keeps the others, so that the step's work never depends on how many are dead."""
        pick = z[torch.randint(len(z), (self.codebook_size,), device=z.device)]
        self.codebook.copy_(torch.where(which[:, None], pick, self.codebook))
        self.code_counts.copy_(torch.where(which, torch.ones_like(self.code_counts), self.code_counts))
        self.code_sums.copy_(torch.where(which[:, None], pick, self.code_sums))

    @torch.no_grad()
    def _update_codebook(self, z: Tensor, index: Tensor) -> None:
        counts, sums, codebook = ema_codebook(z, index, self.code_counts, self.code_sums, self.config.codebook_decay)
        self.code_counts.copy_(counts)
        self.code_sums.copy_(sums)
        self.codebook.copy_(codebook)
        if self.config.dead_threshold:
            self._restart(z, self.code_counts < self.config.dead_threshold)

    # -- training --------------------------------------------------------------------------------------
    def _vq_step(self, x: Tensor, first: bool) -> tuple[dict[str, Tensor], Tensor]:
        """One VQ-VAE update (`first`: the training's first step, which sets the codebook from this
        batch); returns its losses and the batch's tokens (B,h,w)."""
        z_e = self._vectors(x)  # (N,D), N = B*h*w
        if first:
            self._restart(z_e.detach(), torch.ones(self.codebook_size, dtype=torch.bool, device=x.device))
        index = nearest_code(z_e.detach(), self.codebook)  # (N,)
        z_q = self.codebook[index]  # a buffer: no gradient reaches the codebook
        commit = F.mse_loss(z_e, z_q)  # || z_e - sg(z_q) ||^2, per element
        z_st = z_e + (z_q - z_e).detach()  # straight-through: z_q forward, the gradient of z_e backward
        rec = self._decoder_nll(x, self._vector_grid(z_st, len(x))).mean()  # nats per sub-pixel
        self.optimize(self.opt_vq, rec + self.config.commitment * commit)
        self._update_codebook(z_e.detach(), index)
        usage = one_hot(index, self.codebook_size).float().mean(0)  # the batch's share of each code
        perplexity = torch.exp(-(usage * usage.clamp(min=1e-10).log()).sum())  # K when all codes are used alike
        return {"rec": rec.detach(), "commit": commit.detach(), "perplexity": perplexity}, index.view(len(x), *self.grid)

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        stats: dict[str, Tensor] = {}
        steps = self.steps_trained()
        if steps < self.config.vq_steps:
            stats, tokens = self._vq_step(x, first=steps == 0)  # phase 1, with the prior step below on its tokens
        else:
            tokens = self.encode_tokens(x)  # phase 2: the frozen encoder's tokens
        loss = self.prior.nll(tokens).mean() / tokens[0].numel()  # nats per token
        self.optimize(self.opt_prior, loss)
        self.count_step(steps)
        return {"loss": loss.detach(), **stats}

    # -- likelihood ------------------------------------------------------------------------------------
    @torch.no_grad()
    def bits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per image (B,): the bound -log2 p(c*) - log2 P(x | c*) and its code part -log2 p(c*), both
        per image dimension, for the encoder's tokens c*."""
        tokens = self.encode_tokens(x)
        code_nats = self.prior.nll(tokens)
        decoder_nats = self._decoder_nll(x, self._quantised(tokens)).flatten(1).sum(1)
        return (self.discrete_bits_per_dim(code_nats + decoder_nats, self.spec.dims),
                self.discrete_bits_per_dim(code_nats, self.spec.dims))

    def nll_bits_per_dim(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The single-code bound in bits/dim (module docstring): deterministic, `generator` is unused."""
        return self.bits(x)[0]

    def nll_bits_per_dim_with_extras(self, x: Tensor, generator: torch.Generator | None = None
                                     ) -> tuple[Tensor, dict[str, Tensor]]:
        total, code = self.bits(x)
        return total, {"code bits": code}

    # -- sampling --------------------------------------------------------------------------------------
    def sample_tokens(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n token grids (n,h,w) from the prior, in raster order: one prior pass per token."""
        h, w = self.grid
        u = self.rand(n, h, w, generator=generator)  # one uniform per token, drawn up front
        tokens = torch.zeros(n, h, w, dtype=torch.long, device=self.device)
        for i in range(h):
            for j in range(w):
                tokens[:, i, j] = draw(self.prior(tokens)[:, :, i, j], u[:, i, j])
        return tokens

    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None) -> Tensor:
        return self._mean_image(self.sample_tokens(n, generator))
