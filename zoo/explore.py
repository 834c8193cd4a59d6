"""What the lecture figures compute, as plain functions a notebook can call on a trained model.

    import zoo, zoo.explore as ex
    ae, vae = zoo.load("runs/x/checkpoints/ae-..."), zoo.load("runs/x/checkpoints/vae-...")
    ex.latent_statistics(vae, x_test, y_test)            # spread, length, class distances of codes
    frames = ex.interpolate(vae, x_a, x_b, steps=9)      # (P, 9, C, H, W), slerp for a Gaussian code
    ex.perturb(ae, x, directions, scales=(0.5, 1, 2), reference=ex.codes(ae, x_train))

Models are reached through their capabilities (`Latent`: encode/decode) and a few attributes that
name what a paradigm has: a diffusion model's `predict` and `noise_scheduler`, a GAN's generator
`G` and `config.z_dim`, PixelCNN's cached sampler, a flow's base distribution. This is the one
place outside `zoo/models/` that knows those attributes; `benchmarks/explore.py` only draws.

Which Gaussian a code space has (`prior_of`): the VAE's N(0, I), the flow's learned N(loc, scale)
(its `q0`, one per scale), a GAN's N(0, I) over z, and for a plain AE the Gaussian fitted to its
training codes after training (kind "fitted": nothing in training put the codes there).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.base import Conditional, Latent

# -- helpers -----------------------------------------------------------------------------------


@torch.no_grad()
def codes(model: Any, x: Tensor, batch: int = 256) -> Tensor:
    """Encode images (N,C,H,W) in [0,1] in batches, in eval mode: codes (N,D) on the CPU (the VAE's
    code is the posterior mean)."""
    _check_latent(model)
    model.eval()
    return torch.cat([model.encode(b.to(model.device)).flatten(1).cpu() for b in x.split(batch)])


@torch.no_grad()
def decode(model: Any, z: Tensor, batch: int = 256) -> Tensor:
    """Decode codes (N,D) in batches: images (N,C,H,W) in [0,1] on the CPU."""
    _check_latent(model)
    model.eval()
    return torch.cat([model.decode(b.to(model.device)).clamp(0, 1).float().cpu() for b in z.split(batch)])


def is_latent(model: Any) -> bool:
    """A model with an encoder and a decoder (the `Latent` capability)."""
    return isinstance(model, Latent)


def _check_latent(model: Any) -> None:
    if not is_latent(model):
        raise TypeError(f"{model.name} has no encoder (it is not `Latent`)")


def is_diffusion(model: Any) -> bool:
    """A model whose network predicts noise (or v, or x0) at a timestep: `predict(x_t, t)` + `noise_scheduler`."""
    return callable(getattr(model, "predict", None)) and hasattr(model, "noise_scheduler")


def is_gan(model: Any) -> bool:
    """A model that draws G(z) from z ~ N(0, I): a generator network `G` and `config.z_dim`."""
    return isinstance(getattr(model, "G", None), torch.nn.Module) and hasattr(model.config, "z_dim")


def is_conditional(model: Any) -> bool:
    """A class-conditional model (`Conditional`): it draws the labels it is asked for."""
    return isinstance(model, Conditional)


def has_raster_sampler(model: Any) -> bool:
    """An autoregressive model with the cached raster-order sampler (PixelCNN's `_sample_fast`)."""
    return callable(getattr(model, "_sample_fast", None))


# -- the Gaussian of a code space ----------------------------------------------------------------


@dataclass
class GaussianPrior:
    """N(loc, scale scale^T) over codes (D,): `scale` is (D,) for a diagonal Gaussian or a (D,D)
    lower-triangular factor. kind: "prior" (what the model was trained to match) or "fitted"
    (fitted to the codes after training, as the plain AE does)."""

    loc: Tensor
    scale: Tensor
    kind: str

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

    def std(self) -> Tensor:
        """Per-dimension standard deviation (D,)."""
        return self.scale if self.scale.dim() == 1 else self.scale.pow(2).sum(1).sqrt()


def prior_of(model: Any) -> GaussianPrior | None:
    """The Gaussian a model's codes are drawn from when it generates, or None if it has none.
    A model may define `latent_prior() -> GaussianPrior` itself; otherwise the known paradigms."""
    own = getattr(model, "latent_prior", None)
    if callable(own):
        return own()
    flow = getattr(model, "flow", None)
    if flow is not None and hasattr(flow, "q0") and is_latent(model):
        # normflows' DiagGaussian per scale, in the order `encode` concatenates them (coarsest first)
        locs = [q.loc.detach().expand(1, *s).flatten() for q, s in zip(flow.q0, model.latent_shapes)]
        scales = [q.log_scale.detach().exp().expand(1, *s).flatten() for q, s in zip(flow.q0, model.latent_shapes)]
        return GaussianPrior(torch.cat(locs).cpu(), torch.cat(scales).cpu(), "prior")
    if hasattr(model, "code_mean") and hasattr(model, "code_scale"):  # the plain AE's fitted Gaussian
        return GaussianPrior(model.code_mean.detach().cpu(), model.code_scale.detach().cpu(), "fitted")
    if is_gan(model):
        d = model.config.z_dim
        return GaussianPrior(torch.zeros(d), torch.ones(d), "prior")
    if is_latent(model) and getattr(model, "bpd_kind", None) == "bound" and hasattr(model.config, "latent_dim"):
        d = model.config.latent_dim  # the VAE: q(z|x) is pulled toward N(0, I) by its KL term
        return GaussianPrior(torch.zeros(d), torch.ones(d), "prior")
    return None


def latent_dim(model: Any) -> int | None:
    """Size of a `Latent` model's code, from its prior or one encoded image."""
    if not is_latent(model):
        return None
    p = prior_of(model)
    if p is not None:
        return p.dim
    return codes(model, torch.zeros(1, *model.spec.shape)).shape[1]


# -- 1. latent statistics -------------------------------------------------------------------------


def latent_statistics(model: Any, x: Tensor | None = None, y: Tensor | None = None, *,
                      z: Tensor | None = None) -> dict[str, float]:
    """Statistics of the codes of images x (or of given codes z (N,D)), with labels y (N,) if any.

    - per_dim_std: the standard deviation of each code dimension over the images (population,
      ddof 0), averaged over dimensions.
    - code_length: mean Euclidean norm of a code.
    - same_class / different_class: mean distance between codes of two different images of the same
      class / of different classes (every unordered pair once); class_ratio = different / same.
    - nearest_neighbour: mean distance from a code to its nearest other code; nn_relative divides it
      by the mean distance over all pairs, a number that does not depend on the code's scale (so an
      AE and a VAE compare).
    """
    if z is None:
        if model is None or x is None:
            raise TypeError("latent_statistics needs a model and images, or codes z")
        z = codes(model, x)
    z = z.double().flatten(1)
    n = len(z)
    out = {"images": n, "dims": z.shape[1],
           "per_dim_std": z.std(0, unbiased=False).mean().item(),
           "code_length": z.norm(dim=1).mean().item()}
    d = torch.cdist(z, z)  # (N,N)
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    out["mean_distance"] = d[upper].mean().item()
    if y is not None:
        y = torch.as_tensor(y).flatten()
        same = (y[:, None] == y[None, :]) & upper
        diff = (y[:, None] != y[None, :]) & upper
        out["same_class"] = d[same].mean().item() if same.any() else math.nan
        out["different_class"] = d[diff].mean().item() if diff.any() else math.nan
        out["class_ratio"] = out["different_class"] / out["same_class"]
    nn_d = d + torch.diag(torch.full((n,), math.inf, dtype=d.dtype))
    out["nearest_neighbour"] = nn_d.min(1).values.mean().item()
    out["nn_relative"] = out["nearest_neighbour"] / out["mean_distance"]
    return out


# The anime-face study's figures (VAE with a 50-d latent vs an AE with a 256-d code), lecture-notes.md.
ANIME_REFERENCE = {
    "vae": {"per_dim_std": 0.2, "code_length": 19.0, "same_class": "1.15-1.75 (similar images)",
            "different_class": "> 2.0 (different characters)"},
    "ae": {"per_dim_std": 53.5, "code_length": 4246.0},
}


# -- 2. holes: codes at the scale of the cloud, but not from a density fitted to it ---------------


def random_codes(reference: Tensor, n: int, kind: str, generator: torch.Generator | None = None) -> Tensor:
    """n codes (n,D) at the scale of the reference codes (N,D), not from a fitted density:
    "box": uniform in the per-dimension [min, max] box; "independent": Gaussian with each
    dimension's mean and std, dimensions independent (the correlations dropped)."""
    reference = reference.float()
    if kind == "box":
        lo, hi = reference.min(0).values, reference.max(0).values
        return lo + (hi - lo) * torch.rand(n, reference.shape[1], generator=generator)
    if kind == "independent":
        return reference.mean(0) + reference.std(0) * torch.randn(n, reference.shape[1], generator=generator)
    raise ValueError(f"kind must be 'box' or 'independent', got {kind!r}")


def prior_codes(model: Any, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
    """n codes from the model's Gaussian (its prior, or the AE's fitted one), scaled by temperature."""
    p = prior_of(model)
    if p is None:
        raise TypeError(f"{model.name} has no Gaussian over its codes")
    return p.from_standard(temperature * torch.randn(n, p.dim, generator=generator))


# -- 3. interpolation and fusion -------------------------------------------------------------------


def slerp(a: Tensor, b: Tensor, t: Tensor | float) -> Tensor:
    """Spherical interpolation between rows of a and b (N,D) at t in [0,1] (scalar, or (T,) giving
    (T,N,D)). Falls back to linear where a and b are (anti)parallel. t = 0 gives a, t = 1 gives b exactly."""
    a, b = a.flatten(1), b.flatten(1)
    t = torch.as_tensor(t, dtype=a.dtype)
    scalar = t.dim() == 0
    t = t.reshape(-1, 1, 1)
    cos = F.cosine_similarity(a, b, dim=1).clamp(-1, 1)[None, :, None]  # (1,N,1)
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    safe = so.abs() > 1e-6
    so_safe = torch.where(safe, so, torch.ones_like(so))
    wa = torch.where(safe, torch.sin((1 - t) * omega) / so_safe, 1 - t)
    wb = torch.where(safe, torch.sin(t * omega) / so_safe, t)
    out = wa * a + wb * b
    out = torch.where(t == 0, a.expand_as(out), torch.where(t == 1, b.expand_as(out), out))
    return out[0] if scalar else out


def lerp(a: Tensor, b: Tensor, t: Tensor | float) -> Tensor:
    """Linear interpolation, same shapes as `slerp`."""
    a, b = a.flatten(1), b.flatten(1)
    t = torch.as_tensor(t, dtype=a.dtype)
    scalar = t.dim() == 0
    t = t.reshape(-1, 1, 1)
    out = torch.where(t == 0, a.expand(len(t), *a.shape), torch.where(t == 1, b.expand(len(t), *b.shape), (1 - t) * a + t * b))
    return out[0] if scalar else out


def path(a: Tensor, b: Tensor, steps: int, kind: str, prior: GaussianPrior | None = None) -> Tensor:
    """Codes (steps, N, D) from a to b. "slerp" walks the great circle of the *standardised* codes
    (eps = (z - loc) / scale under the Gaussian `prior`, if given), where a Gaussian puts its mass."""
    t = torch.linspace(0, 1, steps, dtype=a.dtype)
    if kind == "linear":
        return lerp(a, b, t)
    if kind != "slerp":
        raise ValueError(f"kind must be 'linear' or 'slerp', got {kind!r}")
    if prior is None:
        return slerp(a, b, t)
    ea, eb = prior.to_standard(a.flatten(1)), prior.to_standard(b.flatten(1))
    out = prior.from_standard(slerp(ea, eb, t).flatten(0, 1)).view(steps, *ea.shape)
    out[0], out[-1] = a.flatten(1), b.flatten(1)  # the ends are the codes themselves, exactly
    return out


def default_kind(model: Any) -> str:
    """slerp where the code space has a Gaussian the model was trained toward (VAE, flow, GAN,
    diffusion noise); linear for the plain AE, whose Gaussian was only fitted afterwards."""
    if is_diffusion(model):
        return "slerp"
    p = prior_of(model)
    return "slerp" if p is not None and p.kind == "prior" else "linear"


@torch.no_grad()
def interpolate(model: Any, x_a: Tensor | None, x_b: Tensor | None, steps: int = 9, kind: str | None = None,
                *, generator: torch.Generator | None = None, n: int | None = None, inversion_steps: int = 50
                ) -> tuple[Tensor, str]:
    """Frames (P, steps, C, H, W) from image x_a[i] to x_b[i] (P pairs), and the path kind used.

    - `Latent` models: encode both, walk `kind` (default: `default_kind`), decode. The first and
      last frames are decode(encode(x_a)) and decode(encode(x_b)).
    - diffusion models: DDIM-invert both images to noise (`ddim_invert`), slerp the noises, and
      DDIM-sample every frame from its noise.
    - GANs (no encoder): two random codes per pair (x_a, x_b ignored; `n` pairs), slerp, G(z).
    """
    kind = kind or default_kind(model)
    model.eval()
    if (is_latent(model) or is_diffusion(model)) and (x_a is None or x_b is None):
        raise TypeError(f"{model.name}: interpolate needs the two images x_a and x_b")
    if is_latent(model):
        za, zb = codes(model, x_a), codes(model, x_b)  # type: ignore[arg-type]  # checked above
        prior = prior_of(model) if kind == "slerp" else None
        z = path(za, zb, steps, kind, prior)  # (steps, P, D)
        frames = decode(model, z.flatten(0, 1).to(za.dtype)).view(steps, len(za), *model.spec.shape)
        return frames.transpose(0, 1), kind
    if is_diffusion(model):
        na = ddim_invert(model, x_a, inversion_steps)  # type: ignore[arg-type]  # checked above
        nb = ddim_invert(model, x_b, inversion_steps)  # type: ignore[arg-type]
        noise = path(na, nb, steps, kind).view(steps * len(na), *model.spec.shape)
        frames = ddim_sample(model, noise, inversion_steps).view(steps, len(na), *model.spec.shape)
        return frames.transpose(0, 1), kind
    if is_gan(model):
        pairs = n if n is not None else (len(x_a) if x_a is not None else 1)
        d = model.config.z_dim
        za, zb = torch.randn(pairs, d, generator=generator), torch.randn(pairs, d, generator=generator)
        z = path(za, zb, steps, kind).flatten(0, 1)
        frames = gan_decode(model, z).view(steps, pairs, *model.spec.shape)
        return frames.transpose(0, 1), kind
    raise TypeError(f"{model.name} has no encoder, no DDIM inversion and no generator network to interpolate with")


@torch.no_grad()
def gan_decode(model: Any, z: Tensor, labels: Tensor | None = None) -> Tensor:
    """G(z) in [0,1] for codes z (N, z_dim); a conditional GAN needs labels (N,)."""
    model.eval()
    if is_conditional(model) and labels is None:
        raise TypeError(f"{model.name} is class-conditional: pass labels")
    return ((model.G(z.to(model.device), labels) + 1) / 2).clamp(0, 1).float().cpu()


def load_feature_net(weights_path: str | Path) -> torch.nn.Module:
    """The feature space's FeatureNet (classifier features), from its cached weights and JSON."""
    from safetensors.torch import load_file

    from zoo.metrics.features import FeatureNet

    path = Path(weights_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    net = FeatureNet(meta["channels"], meta["num_classes"])
    net.load_state_dict(load_file(str(path)))
    return net.eval()


@torch.no_grad()
def smoothness(frames: Tensor, feature_net: torch.nn.Module) -> dict[str, float]:
    """How smooth interpolations (P, T, C, H, W) look to a feature net (its penultimate features):
    step = mean feature distance between consecutive frames; path_ratio = (sum of steps) / distance
    between the end frames, 1 for a straight walk, larger when the path detours through other images;
    max_step_ratio = largest step / mean step, large when one step jumps."""
    P, T = frames.shape[:2]
    f = feature_net(frames.flatten(0, 1))[0].view(P, T, -1).double()
    steps = (f[:, 1:] - f[:, :-1]).norm(dim=2)  # (P, T-1)
    ends = (f[:, -1] - f[:, 0]).norm(dim=1).clamp(min=1e-12)
    return {"step": steps.mean().item(), "path_ratio": (steps.sum(1) / ends).mean().item(),
            "max_step_ratio": (steps.max(1).values / steps.mean(1).clamp(min=1e-12)).mean().item()}


# -- 4. perturbation -----------------------------------------------------------------------------


def principal_directions(reference: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The top-k principal directions (k,D), unit length, of reference codes (N,D), and the codes'
    standard deviation along each (k,), largest first."""
    z = reference.double().flatten(1)
    cov = torch.cov(z.T).reshape(z.shape[1], z.shape[1])
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    order = evals.argsort(descending=True)[:k]
    return evecs[:, order].T.float(), evals[order].clamp(min=0).sqrt().float()


def random_directions(dim: int, k: int, generator: torch.Generator | None = None) -> Tensor:
    """k random unit directions (k, dim), uniform on the sphere."""
    d = torch.randn(k, dim, generator=generator)
    return d / d.norm(dim=1, keepdim=True)


def std_along(reference: Tensor, directions: Tensor) -> Tensor:
    """Standard deviation of the reference codes (N,D) along each unit direction (k,D): (k,)."""
    z = reference.double().flatten(1)
    proj = (z - z.mean(0)) @ directions.double().T  # (N,k)
    return proj.std(0, unbiased=True).float()


@torch.no_grad()
def perturb(model: Any, x: Tensor, directions: Tensor, scales: tuple[float, ...] = (0.5, 1.0, 2.0), *,
            reference: Tensor) -> Tensor:
    """Decode codes moved along unit directions (k,D) by scale x the reference codes' std along
    that direction: images (N, k, S, C, H, W) for images x (N,...) and S scales. The code's own
    spread sets the step, so an AE's and a VAE's figures compare."""
    z = codes(model, x)  # (N,D)
    sd = std_along(reference, directions)  # (k,)
    s = torch.as_tensor(scales, dtype=z.dtype)
    moved = z[:, None, None] + (s[None, :, None] * sd[:, None, None] * directions[:, None, :])[None]  # (N,k,S,D)
    out = decode(model, moved.flatten(0, 2))
    return out.view(len(x), len(directions), len(scales), *model.spec.shape)


# -- 5. a 2-D latent ---------------------------------------------------------------------------------


def prior_quantiles(n: int) -> Tensor:
    """The standard normal's quantiles at n evenly spaced probabilities (i + 0.5) / n."""
    p = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.distributions.Normal(0.0, 1.0).icdf(p).float()


@torch.no_grad()
def latent_grid_2d(model: Any, n: int = 15) -> tuple[Tensor, Tensor]:
    """For a model with a 2-D code: codes (n*n, 2) on the grid of its Gaussian's quantiles (row-major,
    first coordinate along the columns, second down the rows, descending so "up" is larger) and
    their decoded images (n*n, C, H, W). The AE uses its fitted Gaussian."""
    p = prior_of(model)
    if p is None or p.dim != 2:
        raise TypeError(f"{model.name} needs a Gaussian over a 2-D code, got {None if p is None else p.dim}-D")
    q = prior_quantiles(n)
    e1, e2 = torch.meshgrid(q, q.flip(0), indexing="xy")  # (n,n): columns vary e1, rows vary e2 (top = high)
    eps = torch.stack([e1.flatten(), e2.flatten()], dim=1)
    z = p.from_standard(eps)
    return z, decode(model, z)


# -- 6. how each paradigm draws ----------------------------------------------------------------------


def _x0_and_eps(model: Any, out: Tensor, x_t: Tensor, abar: Tensor) -> tuple[Tensor, Tensor]:
    """The network's output at x_t -> (x0, eps), whatever it predicts (noise, v or x0)."""
    kind = model.noise_scheduler.config.prediction_type
    a, s = abar.sqrt(), (1 - abar).sqrt()
    if kind == "epsilon":
        eps = out
        x0 = (x_t - s * eps) / a
    elif kind == "v_prediction":
        x0 = a * x_t - s * out
        eps = a * out + s * x_t
    else:
        x0 = out
        eps = (x_t - a * x0) / s
    return x0, eps


def ddim_scheduler(model: Any, steps: int):
    """The deterministic DDIM scheduler the `ddim` model samples with ("trailing" spacing, eta 0,
    x0 clipped with the noise re-derived from it), at `steps` steps, for any diffusion model."""
    from diffusers import DDIMScheduler

    s = DDIMScheduler.from_config(model.noise_scheduler.config, timestep_spacing="trailing")
    s.set_timesteps(steps)
    return s


@torch.no_grad()
def ddim_sample(model: Any, noise: Tensor, steps: int = 50, batch: int = 64) -> Tensor:
    """DDIM (eta 0) from given x_T noise (N,C,H,W): images in [0,1] on the CPU. With the `ddim`
    model's own steps this is its sampler, with x_T given instead of drawn."""
    model.eval()
    outs = []
    for x in noise.split(batch):
        s = ddim_scheduler(model, steps)
        x = x.to(model.device)
        for t in s.timesteps:
            out = model.predict(x, t.to(model.device).expand(len(x)))
            x = s.step(out, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
        outs.append(((x + 1) / 2).clamp(0, 1).float().cpu())
    return torch.cat(outs)


@torch.no_grad()
def ddim_invert(model: Any, x: Tensor, steps: int = 50, batch: int = 64) -> Tensor:
    """DDIM inversion: images (N,C,H,W) in [0,1] -> the x_T noise that DDIM sampling at `steps`
    steps maps back (approximately) to them. The DDIM update run backwards: from level s to the next
    noisier level t, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, with (x0, eps) from the network at
    timestep t on the current x_s (the exact inverse would need it on x_t itself, which is unknown;
    that is the whole approximation, as in diffusers' DDIMInverseScheduler). x0 is clipped to
    [-1, 1] and eps re-derived from it, as the sampler does."""
    model.eval()
    s = ddim_scheduler(model, steps)
    ts = list(reversed(s.timesteps.tolist()))  # ascending: e.g. 19, 39, ..., 999 for 50 steps
    abars = s.alphas_cumprod.to(torch.float64)
    outs = []
    for xb in x.split(batch):
        cur = (xb.to(model.device) * 2 - 1).double()
        abar_cur = torch.tensor(float(s.final_alpha_cumprod), dtype=torch.float64)  # the clean image's level
        for t in ts:
            abar_t = abars[t]
            out = model.predict(cur.float(), torch.full((len(cur),), t, device=model.device)).double()
            if model.noise_scheduler.config.prediction_type == "epsilon":
                eps = out  # the net's noise at timestep t, applied to the current, less noisy x
            else:  # v or x0: read the noise as the net would at level t (x0 from its output at t)
                eps = _x0_and_eps(model, out, cur, abar_t)[1]
            x0 = ((cur - (1 - abar_cur).sqrt() * eps) / abar_cur.sqrt()) if abar_cur < 1 else cur
            x0 = x0.clamp(-1, 1)
            eps = (cur - abar_cur.sqrt() * x0) / (1 - abar_cur).sqrt() if abar_cur < 1 else eps
            cur = abar_t.sqrt() * x0 + (1 - abar_t).sqrt() * eps
            abar_cur = abar_t
        outs.append(cur.float().cpu())
    return torch.cat(outs)


@torch.no_grad()
def diffusion_trajectory(model: Any, n: int = 4, points: int = 8, *, generator: torch.Generator | None = None,
                         scheduler=None) -> dict[str, Any]:
    """Run the model's own sampler (`model.sampler()`: DDPM's 1000 ancestral steps, DDIM's few
    deterministic ones) on n images, keeping x_t and the predicted clean image x0 at `points` steps
    spread evenly over the run (the last one is the final image). Returns timesteps (points,),
    step indices, x_t and x0 (points, n, C, H, W) in [0,1] (x_t clipped for display)."""
    model.eval()
    if scheduler is None:
        scheduler, kwargs = model.sampler()
    else:
        kwargs = {}
    ts = scheduler.timesteps
    keep = sorted({round(i * (len(ts) - 1) / (points - 1)) for i in range(points)})
    x = model.randn(n, *model.spec.shape, generator=generator)
    xt, x0, kept_t = [], [], []
    for i, t in enumerate(ts):
        out = model.predict(x, t.to(model.device).expand(n))
        step = scheduler.step(out, t, x, generator=generator, **kwargs)
        if i in keep:
            xt.append(((x + 1) / 2).clamp(0, 1).float().cpu())
            x0.append(((step.pred_original_sample + 1) / 2).clamp(0, 1).float().cpu())
            kept_t.append(int(t))
        x = step.prev_sample
    final = ((x + 1) / 2).clamp(0, 1).float().cpu()
    return {"timesteps": kept_t, "steps": keep, "total_steps": len(ts), "x_t": torch.stack(xt),
            "x0": torch.stack(x0), "final": final}


@torch.no_grad()
def pixelcnn_snapshots(model: Any, n: int = 4, parts: int = 8, *, generator: torch.Generator | None = None,
                       labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The canvas of the raster-order sampler after 1/parts, 2/parts, ..., all of the sub-pixels:
    (parts, n, C, H, W) in [0,1], undrawn sub-pixels 0; and the number of sub-pixels drawn at each
    (parts,). Draws exactly as `model.sample(n, generator=...)` does (the same uniforms, the fast
    sampler), so the last snapshot is that sample."""
    from zoo.models.pixelcnn import LEVELS, _frozen_masks

    model.eval()
    if is_conditional(model):
        labels = model.default_labels(n, generator) if labels is None else model.check_labels(labels, n)
    u = model.rand(n, *model.spec.shape, generator=generator)  # as `_sample` draws them
    total = model.spec.dims
    marks = {round(k * total / parts): k - 1 for k in range(1, parts + 1)}
    shots: list[Tensor] = [torch.empty(0)] * parts

    def watch(drawn: int, levels: Tensor) -> None:
        if drawn in marks:
            shots[marks[drawn]] = levels.float().cpu() / (LEVELS - 1)

    with _frozen_masks(model):
        final = model._sample_fast(u, labels, snapshot=watch)
    shots[-1] = final.float().cpu() / (LEVELS - 1)
    return torch.stack(shots), torch.tensor(sorted(marks))


@torch.no_grad()
def temperature_samples(model: Any, n: int = 8, temperatures: tuple[float, ...] = (0.5, 0.7, 0.85, 1.0), *,
                        generator: torch.Generator | None = None) -> Tensor:
    """The same standard-normal draw eps, decoded at each temperature T as loc + T scale eps:
    (len(temperatures), n, C, H, W). For a flow, T = 1 samples its density and T < 1 trades variety
    for cleaner images (Glow)."""
    p = prior_of(model)
    if p is None or not is_latent(model):
        raise TypeError(f"{model.name} has no Gaussian code with a decoder")
    eps = torch.randn(n, p.dim, generator=generator)
    return torch.stack([decode(model, p.from_standard(t * eps)) for t in temperatures])


@torch.no_grad()
def likelihood_mean_and_draw(model: Any, z: Tensor, generator: torch.Generator | None = None
                             ) -> dict[str, Tensor]:
    """For a decoder with a pixel distribution p(x|z) (`sample_likelihood`: the VAE): per code z (N,D),
    the distribution's mean image, which is what `decode` shows, and one draw from p(x|z) (N,C,H,W
    each, in [0,1]). A decoder that gives one image per code (the AE, the AAE, the VAE-GAN's GAN-trained
    decoder) has no such distribution: TypeError."""
    draw_fn = getattr(model, "sample_likelihood", None)
    if not callable(draw_fn):
        raise TypeError(f"{model.name}: its decoder gives one image per code, no distribution p(x|z) to draw from")
    z = z.to(model.device)
    model.eval()
    return {"mean": model.decode(z).clamp(0, 1).float().cpu(), "draw": draw_fn(z, generator).clamp(0, 1).float().cpu()}
