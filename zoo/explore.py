"""What the lecture figures compute, as plain functions a notebook can call on a trained model.

    import zoo, zoo.explore as ex
    model = zoo.load("runs/x/checkpoints/<model>-...")      # any model with an encoder (`Latent`)
    ex.latent_statistics(model, x_test, y_test)              # spread, length, class distances of codes
    frames, kind = ex.interpolate(model, x_a, x_b, steps=9)  # (P, 9, C, H, W), slerp for a Gaussian code
    ex.perturb(model, x, directions, scales=(0.5, 1, 2), reference=ex.codes(model, x_train))

Models are reached only through their declared capabilities (`zoo.base`), never through names or
attributes: `Latent` (encode, decode, and the Gaussian of the codes, `latent_prior`), `CodeSampler`
(a Gaussian code decoded without an encoder), `Invertible` (images to noise and back), `Stepwise`
(a sampler that can be watched step by step) and `ProbabilisticDecoder` (a draw from p(x|z)).
`benchmarks/explore.py` only draws what these compute.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.base import (
    CodeSampler,
    GaussianPrior,
    Generator,
    GenzooError,
    Invertible,
    Latent,
    Noising,
    ProbabilisticDecoder,
    SamplingStep,
)

# -- helpers -----------------------------------------------------------------------------------


@torch.no_grad()
def codes(model: Generator, x: Tensor, batch: int = 256) -> Tensor:
    """Encode images (N,C,H,W) in [0,1] in batches, in eval mode: codes (N,D) on the CPU (the
    encoder's output: a Gaussian encoder's posterior mean)."""
    if not isinstance(model, Latent):
        raise TypeError(f"{model.name} has no codes of images to give (it is not `Latent`)")
    model.eval()
    z = torch.cat([model.encode(b.to(model.device)).flatten(1).cpu() for b in x.split(batch)])
    if not torch.isfinite(z).all():  # said here, in the model's turn: later they fail a whole figure's statistics
        raise GenzooError(f"{model.name}: encode gave codes that are not finite (NaN or inf)")
    return z


@torch.no_grad()
def decode(model: Generator, z: Tensor, batch: int = 256) -> Tensor:
    """Decode codes (N,D) in batches (a `Latent` model's decoder or an unconditional `CodeSampler`'s):
    images (N,C,H,W) in [0,1] on the CPU."""
    if not isinstance(model, (Latent, CodeSampler)):
        raise TypeError(f"{model.name} has no decoder of codes (neither `Latent` nor `CodeSampler`)")
    model.eval()
    return torch.cat([_images(model, "decode", model.decode(b.to(model.device)), len(b)).clamp(0, 1).float().cpu()
                      for b in z.split(batch)])


def _images(model: Generator, method: str, x: Any, n: int) -> Tensor:
    """x, if it is n images of the model's shape, as `sample` checks its `_sample`; else one line naming the
    method (a flat (n, C*H*W) would fail later, inside a feature net's conv)."""
    shape = (n, *model.spec.shape)
    if not isinstance(x, Tensor) or tuple(x.shape) != shape or not x.is_floating_point():
        got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
        raise GenzooError(f"{model.name}: {method} returned {got}; expected floats of shape {shape} in [0, 1]")
    return x


def code_prior(model: Generator) -> GaussianPrior | None:
    """The Gaussian a model's samples decode codes of (`latent_prior`), or None if it has none. A
    `Latent` model's must be over codes of the size it encodes to: else every figure that draws from
    it fails in torch's words (`mat1 and mat2 shapes cannot be multiplied`)."""
    prior = model.latent_prior() if isinstance(model, (Latent, CodeSampler)) else None
    if prior is not None and isinstance(model, Latent):
        encoded = codes(model, torch.zeros(1, *model.spec.shape)).shape[1]
        if prior.dim != encoded:
            raise GenzooError(f"{model.name}: latent_prior() is a Gaussian over {prior.dim} dimensions, but encode "
                              f"gives codes of {encoded}; give the prior over the codes encode gives")
    return prior


def latent_dim(model: Generator) -> int | None:
    """Size of a `Latent` model's code, from its prior or one encoded image."""
    if not isinstance(model, Latent):
        return None
    p = model.latent_prior()
    if p is not None:
        return p.dim
    return codes(model, torch.zeros(1, *model.spec.shape)).shape[1]


# -- 1. latent statistics -------------------------------------------------------------------------


def latent_statistics(model: Generator | None, x: Tensor | None = None, y: Tensor | None = None, *,
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


# The anime-face study's figures (a VAE with a 50-d latent vs an AE with a 256-d code), from the course's lecture notes.
ANIME_REFERENCE = {
    "VAE": {"dims": 50, "per_dim_std": 0.2, "code_length": 19.0, "same_class": "1.15-1.75 (similar images)",
            "different_class": "> 2.0 (different characters)"},
    "AE": {"dims": 256, "per_dim_std": 53.5, "code_length": 4246.0},
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


def path(a: Tensor, b: Tensor, steps: int, kind: str, prior: GaussianPrior | None = None) -> Tensor:
    """Codes (steps, N, D) from a to b. "slerp" walks the great circle of the *standardised* codes
    (eps = (z - loc) / scale under the Gaussian `prior`, if given), where a Gaussian puts its mass."""
    a, b = a.flatten(1), b.flatten(1)
    t = torch.linspace(0, 1, steps, dtype=a.dtype)
    if kind == "linear":
        return torch.lerp(a, b, t[:, None, None])  # the ends are a and b exactly
    if kind != "slerp":
        raise ValueError(f"kind must be 'linear' or 'slerp', got {kind!r}")
    if prior is None:
        return slerp(a, b, t)
    ea, eb = prior.to_standard(a), prior.to_standard(b)
    out = prior.from_standard(slerp(ea, eb, t).flatten(0, 1)).view(steps, *ea.shape)
    out[0], out[-1] = a, b  # the ends are the codes themselves, exactly
    return out


def default_kind(model: Generator) -> str:
    """slerp where the code space has a Gaussian the model was trained toward (a prior of kind
    "prior", an inversion's noise); linear where the Gaussian was only fitted afterwards."""
    if isinstance(model, Invertible):
        return "slerp"
    p = code_prior(model)
    return "slerp" if p is not None and p.kind == "prior" else "linear"


@torch.no_grad()
def interpolate(model: Generator, x_a: Tensor | None, x_b: Tensor | None, steps: int = 9, kind: str | None = None,
                *, generator: torch.Generator | None = None, n: int | None = None) -> tuple[Tensor, str]:
    """Frames (P, steps, C, H, W) from image x_a[i] to x_b[i] (P pairs), and the path kind used.

    - `Latent` models: encode both, walk `kind` (default: `default_kind`), decode. The first and
      last frames are decode(encode(x_a)) and decode(encode(x_b)).
    - `Invertible` models: invert both images to noise, slerp the noises, and generate every frame
      from its noise.
    - `CodeSampler`s (no encoder): two random codes per pair (x_a, x_b ignored; `n` pairs), walked
      and decoded.
    """
    kind = kind or default_kind(model)
    model.eval()
    if isinstance(model, (Latent, Invertible)) and (x_a is None or x_b is None):
        raise TypeError(f"{model.name}: interpolate needs the two images x_a and x_b")
    if isinstance(model, Latent):
        za, zb = codes(model, x_a), codes(model, x_b)  # type: ignore[arg-type]  # checked above
        prior = model.latent_prior() if kind == "slerp" else None
        z = path(za, zb, steps, kind, prior)  # (steps, P, D)
        frames = decode(model, z.flatten(0, 1).to(za.dtype)).view(steps, len(za), *model.spec.shape)
        return frames.transpose(0, 1), kind
    if isinstance(model, Invertible):
        na, nb = invert(model, x_a), invert(model, x_b)  # type: ignore[arg-type]  # checked above
        noise = path(na, nb, steps, kind).view(steps * len(na), *model.spec.shape)
        frames = generate(model, noise).view(steps, len(na), *model.spec.shape)
        return frames.transpose(0, 1), kind
    if isinstance(model, CodeSampler):
        pairs = n if n is not None else (len(x_a) if x_a is not None else 1)
        p = model.latent_prior()
        za, zb = p.sample(pairs, generator), p.sample(pairs, generator)
        z = path(za, zb, steps, kind).flatten(0, 1)
        frames = decode(model, z).view(steps, pairs, *model.spec.shape)
        return frames.transpose(0, 1), kind
    raise TypeError(f"{model.name} is not `Latent`, `Invertible` or a `CodeSampler`: nothing to interpolate with")


@torch.no_grad()
def invert(model: Generator, x: Tensor, batch: int = 64) -> Tensor:
    """An `Invertible` model's noise for images x (N,C,H,W) in [0,1], in batches: (N,C,H,W) on the CPU."""
    if not isinstance(model, Invertible):
        raise TypeError(f"{model.name} cannot map images back to noise (it is not `Invertible`)")
    model.eval()
    return torch.cat([model.invert(b).float().cpu() for b in x.split(batch)])


@torch.no_grad()
def generate(model: Generator, noise: Tensor, batch: int = 64) -> Tensor:
    """An `Invertible` model's images from noise (N,C,H,W), in batches: in [0,1] on the CPU."""
    if not isinstance(model, Invertible):
        raise TypeError(f"{model.name} has no deterministic map from noise (it is not `Invertible`)")
    model.eval()
    return torch.cat([model.generate(b).clamp(0, 1).float().cpu() for b in noise.split(batch)])


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
def perturb(model: Generator, x: Tensor, directions: Tensor, scales: tuple[float, ...] = (0.5, 1.0, 2.0), *,
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


def standard_grid_2d(n: int) -> Tensor:
    """(n*n, 2): an n x n grid of the standard normal's quantiles, row-major, the first coordinate
    along the columns and the second down the rows, descending so "up" is larger."""
    q = prior_quantiles(n)
    e1, e2 = torch.meshgrid(q, q.flip(0), indexing="xy")
    return torch.stack([e1.flatten(), e2.flatten()], dim=1)


@torch.no_grad()
def latent_grid_2d(model: Generator, n: int = 15) -> tuple[Tensor, Tensor]:
    """For a model with a 2-D code: codes (n*n, 2) on the grid of its Gaussian's quantiles
    (`standard_grid_2d`) and their decoded images (n*n, C, H, W). A fitted Gaussian (the plain AE's)
    serves as well."""
    p = code_prior(model)
    if p is None or p.dim != 2:
        raise TypeError(f"{model.name} needs a Gaussian over a 2-D code, got {None if p is None else p.dim}-D")
    z = p.from_standard(standard_grid_2d(n))
    return z, decode(model, z)


# -- 6. how each paradigm draws ----------------------------------------------------------------------


def _watched(model: Generator, n: int, keep: Callable[[int], set[int]], generator: torch.Generator | None,
             labels: Tensor | None) -> tuple[list[SamplingStep], int, Tensor]:
    """`model.sample(n, callback=...)`, keeping the steps whose index is in `keep(total steps)`:
    those steps (their tensors on the CPU), the number of steps, and the sample (on the CPU)."""
    kept: list[SamplingStep] = []
    wanted: set[int] = set()
    total = 0

    def watch(step: SamplingStep) -> None:
        nonlocal total
        if step.index == 0:
            total = step.total
            wanted.update(keep(total))
        if step.index in wanted:
            cpu = {k: getattr(step, k).cpu() for k in ("images", "prediction", "drawn") if getattr(step, k) is not None}
            kept.append(dataclasses.replace(step, **cpu))

    final = model.sample(n, generator=generator, labels=labels, callback=watch)
    return kept, total, final.cpu()


class _Seen(Exception):
    """Carries the first step out of a sampler that `first_step` stops."""


@torch.no_grad()
def first_step(model: Generator) -> SamplingStep:
    """The first `SamplingStep` of a `Stepwise` model's sampler on one image (what its steps carry:
    a prediction, a timestep, which sub-pixels are drawn), stopping the sampler there; the global
    random state is left alone."""
    def stop(step: SamplingStep) -> None:
        raise _Seen(step)

    try:
        model.sample(1, generator=torch.Generator(model.device).manual_seed(0), callback=stop)
    except _Seen as seen:
        return seen.args[0]
    raise TypeError(f"{model.name}: its sampler never called the callback")


@torch.no_grad()
def trajectory(model: Generator, n: int = 4, points: int = 8, *, generator: torch.Generator | None = None,
               labels: Tensor | None = None) -> dict[str, Any]:
    """Sample n images with a `Stepwise` model, keeping the state each step starts from at `points`
    steps spread evenly over the run (the first and the last included): a diffusion model's x_t
    and its predicted clean image x0. Draws exactly what `model.sample(n, generator=...)` draws.
    Returns timesteps (the steps' noise levels, None where the sampler has none), step indices,
    total_steps, x_t (points, n, C, H, W) in [0,1] (clipped for display), x0 (the same, or None
    where the model makes no prediction), decoded (whether those are a latent state's decodings, as
    `SamplingStep.decoded` says) and final (the sample)."""
    gaps = max(points - 1, 1)  # one point (a one-step sampler's one frame): the first step alone
    steps, total, final = _watched(model, n, lambda total: {round(i * (total - 1) / gaps) for i in range(points)},
                                   generator, labels)
    predicted = [s.prediction for s in steps if s.prediction is not None]
    return {"timesteps": [s.timestep for s in steps], "steps": [s.index for s in steps], "total_steps": total,
            "x_t": torch.stack([s.images.clamp(0, 1).float() for s in steps]),
            "x0": torch.stack([p.clamp(0, 1).float() for p in predicted]) if len(predicted) == len(steps) else None,
            "decoded": steps[0].decoded, "final": final}


@torch.no_grad()
def forward_process(model: Generator, x: Tensor, timesteps: list[int], noise: Tensor) -> Tensor:
    """Images x (N,C,H,W) in [0,1] taken by a `Noising` model's forward process to each of
    `timesteps` with one noise draw (no network), then x itself: (T+1,N,C,H,W) in [0,1], on the CPU,
    to set beside a `trajectory` at its timesteps."""
    assert isinstance(model, Noising)
    x, noise = x.to(model.device), noise.to(model.device)
    return torch.stack([*(model.noise_image(x, t, noise) for t in timesteps), x]).clamp(0, 1).float().cpu()


@torch.no_grad()
def snapshots(model: Generator, n: int = 4, parts: int = 8, *, generator: torch.Generator | None = None,
              labels: Tensor | None = None) -> dict[str, Any]:
    """The partial result of a `Stepwise` model's sampler after 1/parts, 2/parts, ..., all of its
    steps (an autoregressive model's canvas, undrawn sub-pixels 0), drawing exactly what `model.sample(n,
    generator=..., labels=...)` draws, so the last snapshot is that sample. Returns images (parts, n,
    C, H, W) in [0,1], steps (parts,): how many steps were done at each, and drawn (parts, C, H, W)
    bool, the sub-pixels final at each, or None where the sampler does not say."""
    def marks(total: int) -> set[int]:
        return {round(k * total / parts) for k in range(1, parts + 1)}  # the last, all of them, is the sample

    steps, total, final = _watched(model, n, marks, generator, labels)
    done = sorted(marks(total))
    shot = {s.index: s for s in steps}
    images = torch.stack([shot[k].images.clamp(0, 1).float() if k < total else final for k in done])
    drawn = None
    if all(shot[k].drawn is not None for k in done if k < total):
        everything = torch.ones(final.shape[1:], dtype=torch.bool)
        drawn = torch.stack([shot[k].drawn if k < total else everything for k in done])  # type: ignore[misc]
    return {"images": images, "steps": torch.tensor(done), "drawn": drawn}


@torch.no_grad()
def temperature_samples(model: Generator, n: int = 8, temperatures: tuple[float, ...] = (0.5, 0.7, 0.85, 1.0), *,
                        generator: torch.Generator | None = None) -> Tensor:
    """The same standard-normal draw eps, decoded at each temperature T as loc + T scale eps:
    (len(temperatures), n, C, H, W). For a flow, T = 1 samples its density and T < 1 trades variety
    for cleaner images (Glow)."""
    p = code_prior(model)
    if p is None:
        raise TypeError(f"{model.name} has no Gaussian code with a decoder")
    eps = torch.randn(n, p.dim, generator=generator)
    return torch.stack([decode(model, p.from_standard(t * eps)) for t in temperatures])


@torch.no_grad()
def likelihood_mean_and_draw(model: Generator, z: Tensor, generator: torch.Generator | None = None
                             ) -> dict[str, Tensor]:
    """For a decoder with a pixel distribution p(x|z) (`ProbabilisticDecoder`): per code z (N,D), the
    distribution's mean image, which is what `decode` shows, and one draw from p(x|z) (N,C,H,W each,
    in [0,1]). A decoder that gives one image per code has no such distribution: TypeError."""
    if not isinstance(model, ProbabilisticDecoder):
        raise TypeError(f"{model.name}: its decoder gives one image per code, no distribution p(x|z) to draw from")
    mean = decode(model, z)  # in eval mode, as is the draw
    return {"mean": mean, "draw": model.sample_likelihood(z.to(model.device), generator).clamp(0, 1).float().cpu()}
