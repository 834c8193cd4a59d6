"""The lecture figures, drawn from a run folder's checkpoints and records: nothing is trained.

    python -m benchmarks.explore results/mnist5k-quick [--models ae,vae] [--samples 500]

Writes RUN/explore/: one PNG per figure, `explore.json` (every number the figures show) and
`explore.md` (the "Lecture figures" section; `section(run_folder)` gives it with paths relative to
the run folder, for embedding in results.md). The figures (the course's lecture notes, issue 15):

1. latent statistics of every `Latent` model's test codes, beside the anime study's numbers;
2. holes in a plain AE's code space: random codes at its cloud's scale vs its fitted Gaussian vs a VAE's prior;
3. interpolation and fusion between test images of different classes, with a smoothness number;
4. perturbation of codes along random and principal directions;
5. a 2-D latent: decoded grid of prior quantiles and the test codes (for models with a 2-D code);
6. how each paradigm draws: a step-by-step sampler's trajectory (diffusion's, under its forward
   process on a test image) or canvas (autoregressive), a Gaussian code decoded at temperatures (a
   flow's, under test images taken through it and back), a decoder's mean beside a draw from p(x|z);
7. is it just copying? each model's samples nearest to a training image, beside that image (the copy rate's question);
8. how each paradigm learns: each model's snapshot strips, drawn from the same noise at every point of its
   quality curve (`benchmarks.curves`), from 1/32 of the training budget to all of it, with the FID there.
   It reads only the records and RUN/snapshots/, no checkpoint: `--figures training` draws it from a
   folder whose checkpoints are gone or do not load.
9. images as tokens: a tokenizing model's token grids of test images, the images decoded from them, and
   images decoded from token grids its prior drew.

A model that lacks what a figure needs is listed under the figure as skipped, with the reason in
one line. The computations are `zoo.explore`'s functions; this module only loads and draws, and
chooses what to draw from each model's declared capabilities (`zoo.base`: `Latent`, `CodeSampler`,
`Invertible`, `Stepwise`, `Noising`, `ProbabilisticDecoder`, `Tokenized`), never from its name.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid  # type: ignore[import-untyped]

import zoo
import zoo.explore as ex
from benchmarks import report
from benchmarks.cli import Parser, comma_list, set_threads
from benchmarks.curves import share_name, share_of
from benchmarks.evaluate import fid_and_classes
from benchmarks.presets import PRESETS
from benchmarks.records import DATA_ROW, Record, RunFolder
from benchmarks.score import run_settings
from zoo.base import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CodeSampler,
    Conditional,
    GaussianPrior,
    Generator,
    GenzooError,
    Invertible,
    Latent,
    Noising,
    Stepwise,
    Tokenized,
    one_line,
    saved_spec,
)
from zoo.checkpoint import file_hash
from zoo.data import Splits, load_splits, to_float
from zoo.files import check_writable, set_aside
from zoo.metrics import fidelity, memorisation
from zoo.metrics.features import FeatureSpace, check_cache, classifier_space, load_feature_net
from zoo.seeds import derive_seed
from zoo.train import Interrupted, resolve_device

matplotlib.use("Agg")  # files only, no display

FIGURES = ("latent_statistics", "holes", "interpolation", "perturbation", "latent_2d", "drawing", "copies", "training",
           "tokens")
NO_CHECKPOINTS = ("{path} has no checkpoints to {use} (the committed reference folders carry none). "
                  "`python -m benchmarks.run` writes a run with them to results/mnist5k-quick; "
                  "then: python -m benchmarks.{command} results/mnist5k-quick")
NOT_LATENT = "not `Latent` (no encode and decode of one code vector per image)"  # ldm's latent is a grid, not a code
RECORD_FIGURES = frozenset({"training"})  # drawn from records and files alone: no model is loaded for them
MAX_SAMPLES = PRESETS["full"].eval.samples  # --samples: as many as the full preset's FID; more only takes longer
MAX_PAIRS = 10  # --pairs: a row per pair and model of the interpolation figure; 5 use every class of 10
TITLES = {
    "latent_statistics": "1. Latent statistics",
    "holes": "2. Holes in a plain autoencoder's code space",
    "interpolation": "3. Interpolation and fusion",
    "perturbation": "4. Perturbation",
    "latent_2d": "5. A 2-D latent space",
    "drawing": "6. How each paradigm draws",
    "copies": "7. Is it just copying?",
    "training": "8. How each paradigm learns",
    "tokens": "9. Images as tokens",
}

# What each figure shows, for its caption on the run's page (`benchmarks.html_report`): TITLES name
# the figures, this says what to look at.
CAPTIONS = {
    "latent_statistics": "Each encoder's codes of the test images on their top two principal components, coloured by "
                         "class; above each, the code's dimension, spread per dimension, length, and the distance "
                         "between classes over that within one (diff/same).",
    "holes": "Random codes decoded, a row per way of drawing them: every model's codes drawn uniformly in their box, a "
             "plain autoencoder's also per dimension and from a fitted Gaussian, the models trained to match a prior "
             "from it, with FID and recognisable share per row. Codes off the training codes' density decode to images "
             "unlike the data's.",
    "interpolation": "Paths between two test images of different classes (the outer columns): a pixel blend, then "
                     "each model's path through its code (frames 0 and 1 are its reconstructions; a model without an "
                     "encoder goes between two random codes). A good code space keeps an image like the data's at every frame.",
    "perturbation": "Two test images' codes moved along random and principal directions by growing multiples of the "
                    "training codes' spread, then decoded, beside the input and its reconstruction: how far a step in "
                    "the code moves the image.",
    "latent_2d": "The whole of a 2-D code space: a grid of the prior's quantiles decoded, beside the test codes coloured by "
                 "class with the grid's points.",
    "drawing": "How a model makes an image: a step-by-step sampler's images along its trajectory (a latent diffusion "
               "model's codes, decoded), then the sample (with the forward process above it, which takes a test image "
               "to the same noise levels with no network), or its canvas filling in; or one Gaussian code decoded at "
               "several temperatures (for a flow, with test images through it and back above them).",
    "copies": "Each model's samples nearest to a training image, each followed by that training image (nearest in the "
              "feature space) and by its nearest in pixel space, with the copy rate: is the model copying its data?",
    "training": "Each model's first samples from the same noise at each share of its training budget (the columns), "
                "with the FID there: what each paradigm draws as it learns.",
    "tokens": "Test images, their grids of tokens (one colour per codebook entry, its index in the cell), the images "
              "decoded from those tokens, and images decoded from token grids the prior drew: an image as a short "
              "sequence of symbols, which a sequence model generates.",
}


@dataclass
class Settings:
    samples: int = 500  # images per row of the holes figure (FID, recognisable)
    pairs: int = 3  # interpolation pairs per model
    steps: int = 9  # frames per interpolation
    perturb_images: int = 2
    directions: int = 3  # random and principal directions each
    scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    grid: int = 15  # side of the 2-D latent grid
    draw_images: int = 4  # images per "how it draws" panel
    points: int = 8  # trajectory points / canvas snapshots
    temperatures: tuple[float, ...] = (0.5, 0.7, 0.85, 1.0)
    copy_samples: int = 100  # samples per model searched for the ones nearest to a training image
    copies_shown: int = 3  # of them, the nearest shown
    training_images: int = 4  # of each snapshot strip's images, the first this many per cell of the training figure
    seed: int = 0


@dataclass
class Loaded:
    record: Record
    model: Generator

    @property
    def name(self) -> str:
        """The record's name, which figures show: ddim@10 for a variant, which the model itself calls ddim."""
        return self.record.model


@dataclass
class Context:
    folder: RunFolder
    out: Path
    run: dict[str, Any]  # results.json's run info
    records: list[Record]  # every record of the folder, models not loaded included
    names: list[str] | None  # --models, or None for every model
    models: list[Loaded]
    settings: Settings
    numbers: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    images: dict[str, list[str]] = field(default_factory=dict)
    drawing: str | None = None  # the model a figure works on (`each_model`)
    _splits: Splits | None = None
    _space: FeatureSpace | None = None
    _feature_net: torch.nn.Module | None = None

    @property
    def splits(self) -> Splits:
        """The run's own data, loaded when a figure first asks (the training figure never does)."""
        if self._splits is None:
            self._splits = run_data(self.folder, self.run, "explore draws")
        return self._splits

    @property
    def space(self) -> FeatureSpace:
        """The run's own ruler, loaded when a figure first asks."""
        if self._space is None:
            self._space = classifier_space(self.splits, net_path=run_settings(self.run).get("feature_net"))
        return self._space

    def feature_space_name(self) -> str:
        return self._space.name if self._space is not None else str(self.run.get("feature_space", {}).get("name", "?"))

    def gen(self, *what: Any) -> torch.Generator:
        """A CPU generator seeded from the settings' seed and a label (`derive_seed`, as every other
        seed): each figure draws the same numbers whatever else is drawn. Figures label their draws with
        the model's registered name (`m.name`), not the record's, so a variant (ddim@5) starts from
        its base model's noise and the two drawings differ only by the sampler."""
        return torch.Generator().manual_seed(derive_seed(self.settings.seed, "explore", *what))

    def test_images(self, k: int, *what: Any) -> Tensor:
        """k test images (k,C,H,W) in [0,1], picked by a seeded shuffle (`gen(*what)`): the same for every model."""
        x = self.splits.x_test
        return to_float(x[torch.randperm(len(x), generator=self.gen(*what))[:k]])

    def each_model(self) -> Iterator[Loaded]:
        """The loaded models, in order, each named in `drawing` while a figure works on it: a model
        whose method fails is then left out of the figure by name, not the whole figure with it."""
        for item in self.models:
            self.drawing = item.name
            yield item
        self.drawing = None

    def skip(self, figure: str, model: str, reason: str) -> None:
        self.skipped.setdefault(figure, []).append((model, reason))

    def feature_net(self) -> torch.nn.Module:
        if self._feature_net is None:
            self._feature_net = load_feature_net(str(self.space.weights_path))[0]
        return self._feature_net

    def save(self, fig: plt.Figure, name: str, figure: str) -> None:
        path = self.out / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.images.setdefault(figure, []).append(name)


# -- loading ------------------------------------------------------------------------------------

def run_data(folder: RunFolder, run: dict[str, Any], who: str, uint8: bool = False) -> Splits:
    """The data a run folder was made with (its run info `run`), as read now. Data moved or deleted
    since, or changed, is one line: `who` ("explore draws") sets models against their training data,
    and other images would draw a false lesson."""
    options = run_settings(run)
    try:
        splits = load_splits(run["dataset"], image_size=options.get("image_size"), labels=options.get("labels", "auto"),
                             data_root=options.get("data_root", "data"), uint8=uint8, download=False)
    except GenzooError as e:  # say which run's data, not which option to pass
        raise GenzooError(f"{folder.path} was run on {run['dataset']}, which cannot be read now: {e}") from None
    folder.check_same_data(run, splits.content_hash, run["dataset"],
                           f"its images, or how genzoo reads them, changed since the run; {who} against the run's own data")
    return splits


def weights_problem(folder: RunFolder, rec: Record) -> str | None:
    """Why a record's checkpoint cannot be drawn from: none (samples scored from a file), missing, or
    not the weights it was scored with."""
    if not rec.checkpoint and rec.scored:
        return "its samples were scored from a file (benchmarks.score): there is no model to draw from"
    ckpt = folder.checkpoint_of(rec)
    if ckpt is None and rec.checkpoint:
        return f"its record names a checkpoint outside {folder.path} ({rec.checkpoint}; edited by hand?)"
    if ckpt is None or not (ckpt / CONFIG_FILE).is_file() or not (ckpt / WEIGHTS_FILE).is_file():
        return f"no checkpoint at {ckpt or folder.path} ({WEIGHTS_FILE} + {CONFIG_FILE})"
    if rec.weights_hash and file_hash(ckpt / WEIGHTS_FILE) != rec.weights_hash:
        return (f"{ckpt / WEIGHTS_FILE} is not the file {rec.model} seed {rec.seed} was scored with (its hash "
                "differs from the record's); the run's command trains or scores it again")
    return None


def load_model(folder: RunFolder, rec: Record) -> Generator:
    """Rebuild a record's model from its checkpoint: the record's own name and hparams (ddim and
    ddpm share a checkpoint saved under whichever trained first), then the weights."""
    if why := weights_problem(folder, rec):
        raise GenzooError(why)
    ckpt = folder.checkpoint_of(rec)
    assert ckpt is not None  # weights_problem said none
    model = zoo.create(rec.model, saved_spec(ckpt), **rec.hparams)
    model.load_weights(ckpt)
    return model.eval()


def lowest_seeds(records: list[Record]) -> dict[str, Record]:
    """Per model (the data row aside), in the records' order, the record of its lowest seed: the one
    the figures and the page draw."""
    lowest: dict[str, Record] = {}
    for rec in records:
        if rec.model != DATA_ROW and (rec.model not in lowest or rec.seed < lowest[rec.model].seed):
            lowest[rec.model] = rec
    return lowest


def load_models(folder: RunFolder, records: list[Record], names: list[str] | None,
                skipped: list[tuple[str, str]]) -> list[Loaded]:
    out = []
    for rec in sorted(lowest_seeds(records).values(), key=lambda r: (r.seed, r.model)):
        if names and rec.model not in names:
            continue
        if not rec.ok:
            skipped.append((rec.model, f"status {rec.status}" + (f": {rec.error}" if rec.error else "")))
            continue
        try:
            out.append(Loaded(rec, load_model(folder, rec)))
        except GenzooError as e:
            skipped.append((rec.model, str(e)))
        except Exception as e:  # noqa: BLE001 - a checkpoint that does not load is one line, not a crash
            skipped.append((rec.model, f"could not load {folder.checkpoint_of(rec)}: {one_line(e)}"))
    return out


# -- drawing helpers ----------------------------------------------------------------------------

def show_rows(ax: plt.Axes, rows: list[Tensor], labels: list[str], columns: list[str] | None = None,
              title: str | None = None) -> None:
    """Rows of images (each (K,C,H,W), shorter rows padded white) as one grid on `ax`, with a
    label left of each row and optional column labels above."""
    k = max(len(r) for r in rows)
    c, h, w = rows[0].shape[1:]
    padded = [torch.cat([r, torch.ones(k - len(r), c, h, w)]) if len(r) < k else r for r in rows]
    grid = make_grid(torch.cat(padded), nrow=k, padding=2, pad_value=1.0)  # (3,H',W')
    ax.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_yticks([2 + (h + 2) * i + h / 2 for i in range(len(rows))], labels, fontsize=8)
    if columns:
        ax.set_xticks([2 + (w + 2) * i + w / 2 for i in range(len(columns))], columns, fontsize=7)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)


def rows_figure(rows: list[Tensor], labels: list[str], columns: list[str] | None = None, title: str | None = None,
                cell: float = 0.42) -> plt.Figure:
    return panels_figure([(rows, labels, columns, title)], cell)


Panel = tuple[list[Tensor], list[str], "list[str] | None", "str | None"]


def panels_figure(panels: list[Panel], cell: float = 0.42, side_by_side: bool = False) -> plt.Figure:
    """Panels of image rows (rows, row labels, column labels, title), stacked or side by side."""
    widths = [max(len(r) for r in p[0]) for p in panels]
    heights = [len(p[0]) for p in panels]
    if side_by_side:
        fig, axes = plt.subplots(1, len(panels), figsize=(sum(2.2 + cell * w for w in widths), 0.7 + cell * max(heights)),
                                 gridspec_kw={"width_ratios": widths}, squeeze=False)
        axes = axes[0]
    else:
        fig, axes = plt.subplots(len(panels), 1, figsize=(2.2 + cell * max(widths), sum(0.6 + cell * h for h in heights)),
                                 gridspec_kw={"height_ratios": heights}, squeeze=False)
        axes = axes[:, 0]
    for ax, (rows, labels, columns, title) in zip(axes, panels):
        show_rows(ax, rows, labels, columns, title)
    return fig


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def code_dim(model: Generator) -> int | None:
    return ex.latent_dim(model)


def smaller_code(model: Generator) -> bool:
    """A `Latent` model whose code is smaller than the image (an AE or a VAE, not a bijection)."""
    d = code_dim(model)
    return d is not None and d < model.spec.dims


# -- 1. latent statistics ---------------------------------------------------------------------

def fig_latent_statistics(ctx: Context) -> None:
    fig_name = "latent_statistics"
    x, y = ctx.splits.x_test, ctx.splits.y_test
    stats, clouds = {}, []
    for item in ctx.each_model():
        m = item.model
        name = item.name
        if not isinstance(m, Latent):
            ctx.skip(fig_name, name, NOT_LATENT + ": no codes to measure")
            continue
        z = ex.codes(m, x)
        stats[name] = ex.latent_statistics(None, z=z, y=y)
        clouds.append((name, z))
    ctx.numbers[fig_name] = {"split": "test", "ours": stats, "anime_study": ex.ANIME_REFERENCE,
                             "note": "codes are the encoder's output (the VAE's posterior mean); distances Euclidean"}
    if not clouds:
        return
    fig, axes = plt.subplots(1, len(clouds), figsize=(3.6 * len(clouds) + (0.6 if y is not None else 0), 3.3), squeeze=False,
                             layout="constrained")  # room for each panel's axis labels
    for ax, (name, z) in zip(axes[0], clouds):
        dirs, _ = ex.principal_directions(z, 2)
        p = ((z - z.mean(0)) @ dirs.T).numpy()
        points = ax.scatter(p[:, 0], p[:, 1], s=3, alpha=0.7, **({} if y is None else {"c": y.numpy(), "cmap": "tab10"}))
        s = stats[name]
        ax.set_title(f"{name}: {s['dims']}-d codes, top-2 PCs\nstd/dim {fmt(s['per_dim_std'])}, "
                     f"length {fmt(s['code_length'])}, diff/same {fmt(s.get('class_ratio'))}", fontsize=8)
        ax.set_xlabel("principal component 1", fontsize=7)
        ax.set_ylabel("principal component 2", fontsize=7)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
    if y is not None:  # which colour is which class, once, right of the last panel
        handles, names = points.legend_elements(num=sorted(set(y.tolist())))
        axes[0][-1].legend(handles, names, title="class", fontsize=6, title_fontsize=7, loc="center left",
                           bbox_to_anchor=(1.02, 0.5), frameon=False)
    ctx.save(fig, "latent_statistics.png", fig_name)


# -- 2. holes ---------------------------------------------------------------------------------

def fig_holes(ctx: Context) -> None:
    fig_name = "holes"
    n = ctx.settings.samples
    rows, labels, scores = [], [], {}
    for item in ctx.each_model():
        m = item.model
        name = item.name
        if not isinstance(m, Latent):
            ctx.skip(fig_name, name, NOT_LATENT)
            continue
        if not smaller_code(m):
            ctx.skip(fig_name, name, "its code is as large as the image (a bijection): every code decodes to an image")
            continue
        prior = m.latent_prior()
        if prior is None:
            ctx.skip(fig_name, name, "no Gaussian over its codes to compare with")
            continue
        # every model's codes drawn uniformly in their box, the same off-density draw for each: the AE's
        # holes against what a prior-shaped code space decodes there
        ref = ex.codes(m, ctx.splits.x_train)
        kinds: list[tuple[str, Callable[..., Tensor]]] = [
            ("uniform in the codes' box", lambda m=m, ref=ref: ex.random_codes(ref, n, "box", ctx.gen("holes", m.name, "box")))]
        if prior.kind == "fitted":
            kinds += [
                ("independent Gaussian",
                 lambda m=m, ref=ref: ex.random_codes(ref, n, "independent", ctx.gen("holes", m.name, "ind"))),
                ("fitted Gaussian", lambda m=m, prior=prior: prior.sample(n, ctx.gen("holes", m.name, "fit"))),
            ]
        else:
            kinds.insert(0, ("its prior N(0, I)" if bool((prior.loc == 0).all() and (prior.scale == 1).all()) else "its prior",
                             lambda m=m, prior=prior: prior.sample(n, ctx.gen("holes", m.name, "prior"))))
        for label, draw in kinds:
            images = ex.decode(m, draw())
            s = fid_and_classes(images, ctx.splits, ctx.space)
            key = f"{name}: {label}"
            scores[key] = {"fid": s.get("fid"), "recognisable": s.get("recognisable"), "samples": len(images)}
            rows.append(images[:12])
            labels.append(f"{key}\nFID {fmt(s.get('fid'), 4)}, recog. {fmt(s.get('recognisable'), 2)}")
    ctx.numbers[fig_name] = {"rows": scores, "what": {
        "uniform in the codes' box": "each code dimension uniform between the training codes' min and max",
        "independent Gaussian": "each dimension Gaussian with the training codes' mean and std, dimensions independent",
        "fitted Gaussian": "the full-covariance Gaussian the AE fits to its training codes (what it samples with)",
        "its prior": "the model's own prior (what it samples with)"}}
    if rows:
        fig = rows_figure(rows, labels, title=f"decoded random codes (FID and recognisable share on {n} samples)")
        ctx.save(fig, "holes.png", fig_name)


# -- 3. interpolation ------------------------------------------------------------------------------

def interpolation_pairs(splits: Splits, pairs: int, gen: torch.Generator) -> tuple[Tensor, Tensor, list[str]]:
    """Pairs of test images of different classes, no class used twice while classes last (any two
    different images if unlabeled), picked by a seeded shuffle."""
    order = torch.randperm(len(splits.x_test), generator=gen).tolist()
    y = splits.y_test
    label = (lambda i: i) if y is None else (lambda i: int(y[i]))
    chosen: list[tuple[int, int]] = []
    classes: set[int] = set()
    for strict in (True, False):
        for i in order:
            if len(chosen) == pairs:
                break
            if any(i in c for c in chosen) or (strict and label(i) in classes):
                continue
            j = next((j for j in order if j != i and label(j) != label(i) and not any(j in c for c in chosen)
                      and not (strict and label(j) in classes)), None)
            if j is not None:
                chosen.append((i, j))
                classes |= {label(i), label(j)}
    a, b = [c[0] for c in chosen], [c[1] for c in chosen]
    names = [f"{label(i)}→{label(j)}" if y is not None else f"#{i}→#{j}" for i, j in chosen]
    return splits.x_test[a], splits.x_test[b], names


def fig_interpolation(ctx: Context) -> None:
    fig_name = "interpolation"
    st = ctx.settings
    xa, xb, pair_names = interpolation_pairs(ctx.splits, st.pairs, ctx.gen("pairs"))
    t = torch.linspace(0, 1, st.steps)
    blend = (1 - t)[None, :, None, None, None] * xa[:, None] + t[None, :, None, None, None] * xb[:, None]
    rows, labels = [], []
    numbers: dict[str, Any] = {"pairs": pair_names, "steps": st.steps,
                               "pixel blend": {"kind": "pixel cross-fade (no model)",
                                               **ex.smoothness(blend, ctx.feature_net())}}
    blank = torch.ones(1, *ctx.splits.spec.shape)
    for p in range(len(xa)):
        rows.append(torch.cat([xa[p:p + 1], blend[p], xb[p:p + 1]]))
        labels.append(f"pixel blend {pair_names[p]}")
    inverted: dict[str, str] = {}  # checkpoint -> the model whose row walks its network through its inversion
    for item in ctx.each_model():
        m, rec = item.model, item.record
        name = item.name
        if rec.checkpoint in inverted:
            ctx.skip(fig_name, name, f"the same network as {inverted[rec.checkpoint]} (one checkpoint); "
                                     f"interpolation goes through {inverted[rec.checkpoint]}'s inversion, shown in that row")
            continue
        if not isinstance(m, (Latent, Invertible, CodeSampler)):
            ctx.skip(fig_name, name, "not `Latent`, not `Invertible` and no `CodeSampler`: no codes of images, no inversion to noise "
                                     "and no random codes to walk between")
            continue
        from_images = isinstance(m, (Latent, Invertible))  # else two random codes of a `CodeSampler`
        if not from_images and isinstance(m, Conditional):
            ctx.skip(fig_name, name, "class-conditional: interpolating codes needs a label too (not drawn)")
            continue
        frames, kind = ex.interpolate(m, xa, xb, st.steps, generator=ctx.gen("interp", m.name), n=len(xa))
        if isinstance(m, Latent):
            how = f"{kind} between the codes"
        elif isinstance(m, Invertible):
            inverted[rec.checkpoint or ""] = name
            how = f"{m.inversion_name}, slerp of the noises"
        else:
            how = f"{kind} between two random codes (no encoder)"
        numbers[name] = {"kind": how, **ex.smoothness(frames, ctx.feature_net())}
        for p in range(len(frames)):
            ends = (xa[p:p + 1], xb[p:p + 1]) if from_images else (blank, blank)
            rows.append(torch.cat([ends[0], frames[p], ends[1]]))
            labels.append(f"{name} {pair_names[p] if from_images else 'z→z'}")
    ctx.numbers[fig_name] = numbers
    cols = ["image"] + [f"{v:.2f}" for v in t.tolist()] + ["image"]
    fig = rows_figure(rows, labels, cols, title="interpolation between two test images (outer columns); frames 0 and 1 "
                                                "are the model's reconstructions (a GAN: two random codes)")
    ctx.save(fig, "interpolation.png", fig_name)


# -- 4. perturbation -----------------------------------------------------------------------------

def fig_perturbation(ctx: Context) -> None:
    fig_name = "perturbation"
    st = ctx.settings
    x = ctx.test_images(st.perturb_images, "perturb")
    panels, numbers = [], {}
    for item in ctx.each_model():
        m = item.model
        name = item.name
        if not isinstance(m, Latent):
            ctx.skip(fig_name, name, NOT_LATENT + ": no code to perturb")
            continue
        ref = ex.codes(m, ctx.splits.x_train)
        pcs, pc_sd = ex.principal_directions(ref, st.directions)
        rnd = ex.random_directions(ref.shape[1], st.directions, ctx.gen("dirs", m.name))
        recon = ex.decode(m, ex.codes(m, x))
        rows, labels = [], []
        stats: dict[str, Any] = {"step": "scale x the training codes' std along the direction"}
        net = ctx.feature_net()
        with torch.no_grad():
            f0, logits0 = net(recon)
        for kind, dirs in (("random", rnd), ("principal", pcs)):
            imgs = ex.perturb(m, x, dirs, st.scales, reference=ref)  # (N,k,S,C,H,W)
            with torch.no_grad():
                f, logits = net(imgs.flatten(0, 2))
            f = f.view(len(x), len(dirs), len(st.scales), -1)
            cls = logits.argmax(1).view(len(x), len(dirs), len(st.scales))
            stats[kind] = {
                f"{s}": {"feature_change": (f[:, :, j] - f0[:, None]).norm(dim=-1).mean().item(),
                         "class_changed": (cls[:, :, j] != logits0.argmax(1)[:, None]).float().mean().item()}
                for j, s in enumerate(st.scales)}
            for i in range(len(x)):
                for d in range(len(dirs)):
                    rows.append(torch.cat([x[i:i + 1], recon[i:i + 1], imgs[i, d]]))
                    labels.append(f"image {i + 1}, {kind} {d + 1}")
        stats["principal_std"] = pc_sd.tolist()
        numbers[name] = stats
        panels.append((name, rows, labels))
    ctx.numbers[fig_name] = numbers
    if not panels:
        return
    cols = ["in", "dec"] + [f"+{s:g}σ" for s in st.scales]
    fig = panels_figure([(rows, labels, cols, name) for name, rows, labels in panels], side_by_side=True)
    ctx.save(fig, "perturbation.png", fig_name)


# -- 5. 2-D latent --------------------------------------------------------------------------------

def fig_latent_2d(ctx: Context) -> None:
    fig_name = "latent_2d"
    n = ctx.settings.grid
    panels, numbers = [], {}
    for item in ctx.each_model():
        m = item.model
        name = item.name
        if not isinstance(m, Latent):
            ctx.skip(fig_name, name, NOT_LATENT)
            continue
        d = code_dim(m)
        prior = m.latent_prior()
        if d != 2 or prior is None:
            if d == 2:
                why = "no Gaussian over its codes to take quantiles of"
            elif m.code_size_hparam is not None:
                why = f"its code has {d} dimensions; a run with --set {m.name}.{m.code_size_hparam}=2 draws this"
            else:
                why = f"its code has {d} dimensions, fixed by the model"
            ctx.skip(fig_name, name, why)
            continue
        grid_z, images = ex.latent_grid_2d(m, n)
        z = ex.codes(m, ctx.splits.x_test)
        numbers[name] = {"grid": f"{n}x{n} quantiles of its {prior.kind} Gaussian at (i+0.5)/{n}",
                         "grid_extent": [grid_z.min(0).values.tolist(), grid_z.max(0).values.tolist()],
                         "codes_extent": [z.min(0).values.tolist(), z.max(0).values.tolist()]}
        panels.append((name, prior, grid_z, images, z))
    ctx.numbers[fig_name] = numbers
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 2, figsize=(9, 4.4 * len(panels)), squeeze=False)
    y = ctx.splits.y_test
    for (ax_img, ax_sc), (name, prior, grid_z, images, z) in zip(axes, panels):
        grid = make_grid(images, nrow=n, padding=0)
        ax_img.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax_img.set_axis_off()
        ax_img.set_title(f"{name}: decoded {n}x{n} grid of its {prior.kind} Gaussian's quantiles", fontsize=8)
        sc = ax_sc.scatter(z[:, 0], z[:, 1], s=4, alpha=0.7, **({} if y is None else {"c": y.numpy(), "cmap": "tab10"}))
        ax_sc.scatter(grid_z[:, 0], grid_z[:, 1], marker="+", c="k", s=8, linewidths=0.5, label="grid")
        ax_sc.set_title(f"{name}: test codes by class, + = grid points", fontsize=8)
        ax_sc.tick_params(labelsize=7)
        if y is not None:
            ax_sc.legend(*sc.legend_elements(), fontsize=6, loc="upper right", markerscale=0.6)
    ctx.save(fig, "latent_2d.png", fig_name)


# -- 6. how each paradigm draws ------------------------------------------------------------------

def fig_drawing(ctx: Context) -> None:
    fig_name = "drawing"
    st = ctx.settings
    numbers: dict[str, Any] = {}
    for item in ctx.each_model():
        m = item.model
        name = item.name
        k = st.draw_images
        prior = m.latent_prior() if isinstance(m, Latent) else None
        if isinstance(m, Stepwise):
            fig, numbers[name] = draw_steps(ctx, m, name, k)
        elif prior is not None and prior.kind == "prior":
            temps = ex.temperature_samples(m, k, st.temperatures, generator=ctx.gen("temp", m.name))
            rows = [temps[:, i] for i in range(k)]
            cols = [f"T={t:g}" for t in st.temperatures]
            labels = [f"draw {i + 1}" for i in range(k)]
            numbers[name] = {"what": "one noise draw per row decoded at temperatures", "temperatures": list(st.temperatures)}
            out = None
            if smaller_code(m):  # a decoder, not a bijection; only one with a pixel distribution draws from it
                try:
                    z = prior.sample(k, ctx.gen("lik", m.name))
                    out = ex.likelihood_mean_and_draw(m, z, generator=ctx.gen("likdraw", m.name))
                except TypeError as e:
                    ctx.skip(fig_name, name + " (mean vs draw)", str(e))
            panels: list[Panel] = [(rows, labels, cols, f"{name}: one noise draw per row, decoded at temperatures")]
            if code_dim(m) == m.spec.dims:  # maybe a bijection (a flow): shown where decode(encode(x)) is x
                trip = round_trip(ctx, m, prior, k)  # (the run's data was read before any figure: `explore`)
                if trip.max_error < INVERTIBLE:
                    panels.insert(0, trip.panel(name))
                    numbers[name]["round_trip_max_error"] = trip.max_error
                    numbers[name]["what"] += (f"; above them, {k} test images x, their codes z = f(x) (as many "
                                              f"numbers as the image) and f⁻¹(z): largest error {trip.max_error:.1g}")
            if out is not None:
                lik_rows = [torch.stack([out["mean"][i], out["draw"][i]]) for i in range(k)]
                panels.insert(0, (lik_rows, [f"z {i + 1}" for i in range(k)], ["mean", "draw"],
                                  f"{name}: z from the prior; p(x|z)'s mean beside a draw"))
                numbers[name]["mean_vs_draw"] = "per code: the decoder's mean image (what decode shows), one draw from p(x|z)"
                numbers[name]["what"] += "; above them, codes from the prior: p(x|z)'s mean beside a draw from it"
            fig = panels_figure(panels)
        elif isinstance(m, CodeSampler):
            ctx.skip(fig_name, name, "one generator pass G(z): nothing between noise and image to show "
                                     "(how it learns: the training figure)")
            continue
        elif isinstance(m, Latent):
            ctx.skip(fig_name, name, "one decoder pass of a code from a Gaussian fitted after training: nothing "
                                     "between noise and image to show (see the holes figure)")
            continue
        else:
            ctx.skip(fig_name, name, "no trajectory, canvas or temperature to show for this model")
            continue
        ctx.save(fig, f"drawing-{name}.png", fig_name)
    ctx.numbers[fig_name] = numbers


@dataclass
class RoundTrip:
    """Test images x, their codes z = f(x) shown as images, and f^-1(z), each (k,C,H,W) in [0,1]."""

    x: Tensor
    z: Tensor
    back: Tensor

    @property
    def max_error(self) -> float:
        return float((self.back - self.x).abs().max())

    def panel(self, name: str) -> Panel:
        rows = [torch.stack(images) for images in zip(self.x, self.z, self.back)]
        return (rows, [f"test image {i + 1}" for i in range(len(rows))], ["x", "z = f(x)", "f⁻¹(z)"],
                f"{name}, invertible: z = f(x) has as many numbers as x (standardised, through the\nnormal CDF, "
                f"in the code's order), and f⁻¹(z) gives x back (largest error {self.max_error:.1g})")


INVERTIBLE = 1e-3  # decode(encode(x)) this near x on the [0,1] scale: a bijection up to float rounding


def round_trip(ctx: Context, m: Generator, prior: GaussianPrior, k: int) -> RoundTrip:
    """k test images through a `Latent` model whose code has as many numbers as the image and back:
    its codes standardised by its prior and drawn through the normal CDF (grey noise where the
    model fits), laid out in the code's order at the image's shape."""
    x = ctx.test_images(k, "round trip")
    z = ex.codes(m, x)
    shown = (0.5 * (1 + torch.erf(prior.to_standard(z) / math.sqrt(2)))).reshape(x.shape)
    return RoundTrip(x, shown, ex.decode(m, z))


def draw_steps(ctx: Context, m: Generator, name: str, k: int) -> tuple[plt.Figure, dict[str, Any]]:
    """A `Stepwise` model's sampler, watched: the canvas after each 1/points of the steps where the
    sampler says which sub-pixels are final (autoregressive), else the trajectory: each step's
    images and the model's prediction of the finished ones, at `points` steps."""
    points = ctx.settings.points
    classes = drawn_classes(ctx, m, k)  # a conditional model draws named classes, each row saying which
    row_names = [f"image {i + 1}" + (f" (class {int(classes[i])})" if classes is not None else "") for i in range(k)]
    if ex.first_step(m).drawn is not None:
        shots = ex.snapshots(m, k, points, generator=ctx.gen("raster", m.name), labels=classes)
        images = tint_undrawn(shots["images"], shots["drawn"])
        total = int(shots["steps"][-1])
        cols = [f"{j + 1}/{points}" for j in range(points)]
        numbers = {"what": f"the canvas after each 1/{points} of its {total} sampler steps",
                   "sub_pixels_drawn": shots["drawn"].flatten(1).sum(1).tolist()}
        fig = rows_figure([images[:, i] for i in range(k)], row_names, cols,
                          title=f"{name}: {total} steps, {m.nfe} network evaluations (blue: not drawn yet)")
        return fig, numbers
    tr = ex.trajectory(m, k, points, generator=ctx.gen("traj", m.name), labels=classes)
    state, predicted = ("z_t decoded", "predicted z0 decoded") if tr["decoded"] else ("x_t", "predicted x0")
    rows, labels = [], []
    for i in range(k):  # each step's state, then the sample the last step made
        rows.append(torch.cat([tr["x_t"][:, i], tr["final"][i][None]]))
        labels.append(f"{row_names[i]}: {state}")
        if tr["x0"] is not None:
            rows.append(torch.cat([tr["x0"][:, i], tr["final"][i][None]]))
            labels.append(f"{row_names[i]}: {predicted}")
    timesteps = tr["timesteps"]
    cols = [f"t={t}" if t is not None else f"step {s}" for t, s in zip(timesteps, tr["steps"])] + ["sample"]
    shown = "x_t and the predicted clean image" if tr["x0"] is not None else "the partial images"
    if tr["decoded"]:  # the sampler works on codes: what is shown is their decoding, not a noisy image
        shown = "the latent z_t and its predicted clean z0, each decoded," if tr["x0"] is not None else "the latent z_t, decoded,"
    numbers = {"what": f"{shown} at {len(cols) - 1} of {tr['total_steps']} sampler steps, then the sample",
               "timesteps": timesteps, "total_steps": tr["total_steps"]}
    scale = f" (t: the noise level, {timesteps[0]} pure noise, 0 the image)" if None not in timesteps else ""
    panels: list[Panel] = [(rows, labels, cols, f"{name}: {tr['total_steps']} steps from noise to image{scale}")]
    if isinstance(m, Noising) and None not in timesteps:
        panels.insert(0, ([noised_test_image(ctx, m, timesteps)], ["a test image"], cols[:-1] + ["x_0"],
                          "the forward process: the test image noised to each t, as training does (no network)"))
        numbers["what"] += "; above them, a test image taken to each t by the forward process (no network)"
    if classes is not None:
        numbers["classes"] = classes.tolist()
    return panels_figure(panels), numbers


def drawn_classes(ctx: Context, m: Generator, k: int) -> Tensor | None:
    """For a `Conditional` model, k class indices for its k drawn images, no class twice while the
    classes last, picked by a seeded shuffle; None for another model."""
    if not isinstance(m, Conditional):
        return None
    shuffled = torch.randperm(m.spec.num_classes or 1, generator=ctx.gen("classes", m.name))
    return shuffled[torch.arange(k) % len(shuffled)]


def noised_test_image(ctx: Context, m: Generator, timesteps: list[int]) -> Tensor:
    """One test image (the same for every model) noised to each of `timesteps` by a `Noising` model's
    forward process, with one noise draw, then the image itself: (T+1,C,H,W) in [0,1] for display."""
    x = ctx.test_images(1, "forward")
    return ex.forward_process(m, x, timesteps, torch.randn(x.shape, generator=ctx.gen("forward noise")))[:, 0]


def tint_undrawn(shots: Tensor, drawn: Tensor) -> Tensor:
    """Canvases (P,N,C,H,W) as RGB with the pixels not drawn yet (`drawn`: (P,C,H,W), the sub-pixels
    final at each of the P snapshots) painted blue, so they do not read as black ink-free paper."""
    rgb = shots.expand(-1, -1, 3, -1, -1).clone() if shots.shape[2] == 1 else shots.clone()
    for j, done in enumerate(drawn.any(1)):  # a pixel counts once any of its channels is drawn
        rgb[j, :, :, ~done] = torch.tensor([0.35, 0.45, 0.8])[None, :, None]
    return rgb


# -- 7. copies ---------------------------------------------------------------------------------------

COPY_COLUMNS = ["sample", "feat. NN", "pixel NN"]


def fig_copies(ctx: Context) -> None:
    """Every model samples, so every model is here: of `copy_samples` samples, the `copies_shown`
    nearest to a training image in the feature space (the copy rate's distance), each followed by
    that training image and by its nearest training image in pixel space. The test images that did
    not set the copy threshold come first, as the baseline."""
    from benchmarks.evaluate import copy_reference

    fig_name, n, k = "copies", ctx.settings.copy_samples, ctx.settings.copies_shown
    splits, space = ctx.splits, ctx.space
    train = to_float(splits.x_train)
    train_feats = fidelity.features(train, space, cache_as=fidelity.cache_name(splits.content_hash, space))
    test_nn = copy_reference(splits, space, train_feats)
    median, threshold = float(test_nn.median()), memorisation.threshold(test_nn)
    _, other = memorisation.reference_half(len(splits.x_test))
    pick = other[torch.randperm(len(other), generator=torch.Generator().manual_seed(derive_seed(ctx.settings.seed, "copies")))[:n]]
    rows, labels, numbers = [], [], {}

    def add_row(name: str, images: Tensor) -> None:
        dist, idx = memorisation.nearest(fidelity.features(images, space), train_feats)
        stats = memorisation.memorisation(dist, test_nn)
        shown = dist.argsort()[:k]
        pixel_dist, pixel_idx = memorisation.nearest(images[shown].flatten(1), train.flatten(1))
        rows.append(torch.stack([im for j, p in zip(shown.tolist(), pixel_idx.tolist())
                                 for im in (images[j], train[idx[j]], train[p])]))
        ratios = [float(dist[j]) / median for j in shown]
        numbers[name] = {"samples": len(images), "copy_rate": stats["copy_rate"], "nn_distance_ratio": stats["nn_distance_ratio"],
                         "shown": [{"feature_distance_ratio": r, "train_index_features": int(idx[j]),
                                    "train_index_pixels": int(p), "pixel_distance": float(d)}
                                   for r, j, p, d in zip(ratios, shown.tolist(), pixel_idx.tolist(), pixel_dist.tolist())]}
        labels.append(f"{name}: copy rate {fmt(stats['copy_rate'], 2)}\nnearest {', '.join(fmt(r, 2) for r in ratios)} × test median")

    add_row("data (test images)", to_float(splits.x_test[pick]))
    for item in ctx.each_model():
        gen = torch.Generator().manual_seed(derive_seed(ctx.settings.seed, "copies", item.name))
        add_row(item.name, item.model.sample(n, generator=gen).detach().cpu().clamp(0, 1))
    ctx.numbers[fig_name] = {"rows": numbers, "threshold_ratio": threshold / median, "test_median": median,
                             "percentile": memorisation.COPY_PERCENTILE, "space": space.name}
    fig = rows_figure(rows, labels, COPY_COLUMNS * k, title=(
        f"the {k} of {n} samples nearest to a training image in the feature space ({space.name}),\n"
        "each followed by that training image and by its nearest training image in pixel space;\n"
        f"a copy is nearer than {fmt(threshold / median, 2)} × the test images' median distance"), cell=0.6)
    ctx.save(fig, "copies.png", fig_name)


# -- 8. how each paradigm learns ------------------------------------------------------------------

NO_CURVE = "no quality curve: trained with --curves off, the smoke preset (none by default) or before curves existed"


def budget_share(fraction: float | None) -> str:
    """The share of the budget a curve point was due at, as "1/32", ..., "1/2", "1"; "?" for none."""
    return share_name(share_of(fraction)) if fraction and fraction > 0 else "?"


def read_strip(path: Path) -> Tensor:
    """A snapshot strip (torchvision's save_image of one row, 2 px padding) cut back into its images,
    (N,3,H,W) in [0,1]; a file that is not such a strip comes back whole, as one image."""
    from PIL import Image

    with Image.open(path) as img:
        strip = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1).float() / 255
    side = strip.shape[1] - 4
    n = (strip.shape[2] - 2) // (side + 2) if side > 0 else 0
    if n < 1 or strip.shape[2] != n * (side + 2) + 2:
        return strip[None]
    return torch.stack([strip[:, 2:2 + side, 2 + j * (side + 2):2 + j * (side + 2) + side] for j in range(n)])


@dataclass
class Learner:
    """One training of the run as the training figure draws it: the models sharing it (ddpm and ddim),
    its record (the lowest seed) and, per curve point, its snapshot's images or None."""

    label: str
    record: Record
    points: list[dict[str, Any]]
    strips: list[Tensor | None]


def learners(ctx: Context, fig_name: str) -> list[Learner]:
    """Every training of the run with a quality curve and snapshot strips, in the run's order, one per
    train_key; the others are listed as skipped, with the reason."""
    first: dict[str, Record] = {}
    for rec in ctx.records:
        if rec.model == DATA_ROW or (ctx.names and rec.model not in ctx.names):
            continue
        if rec.model not in first or rec.seed < first[rec.model].seed:
            first[rec.model] = rec
    groups: dict[str, list[Record]] = {}
    for rec in first.values():
        groups.setdefault(rec.train_key or f"model:{rec.model}", []).append(rec)
    out = []
    for recs in groups.values():
        label = ", ".join(r.model for r in recs)
        rec = next((r for r in recs if r.quality_curve), recs[0])
        if not rec.quality_curve:
            why = f"status {rec.status}" + (f": {rec.error}" if rec.error else "") if not rec.ok else NO_CURVE
            ctx.skip(fig_name, label, why)
            continue
        folder = ctx.folder.snapshots(rec.train_key) if rec.train_key else None
        strips = [read_strip(folder / p["snapshot"]) if folder and p.get("snapshot") and (folder / p["snapshot"]).is_file()
                  else None for p in rec.quality_curve]
        if all(s is None for s in strips):
            where = f"snapshots/{rec.train_key}/" if rec.train_key else "snapshots/ (the record has no train_key)"
            ctx.skip(fig_name, label, f"its quality curve has no snapshot strips in {where}")
            continue
        out.append(Learner(label, rec, rec.quality_curve, strips))
    return out


def data_count(numbers: dict[str, Any]) -> str:
    """How many test images the training figure's data FID is on: "as many" as the models' samples,
    or their number (where the points' counts differ, or the test split has fewer)."""
    data, samples = numbers.get("data_samples"), numbers["samples"]
    if data is None or data == samples:
        return "as many"
    return f"{data}" + (" (all the test split holds)" if data < max(samples if isinstance(samples, list) else [samples]) else "")


def fig_training(ctx: Context) -> None:
    """Each training's snapshot strips: the same noise (the same latent codes) drawn at every point of its
    quality curve, so a row is one set of samples learning. Rows are the models, columns the shares of
    the budget, each cell the strip's first `training_images` images over the point's FID: a paradigm's
    learning reads along its row, the paradigms compare down a column (one block per model, a row per
    point, would run to a page per model and lose that)."""
    fig_name = "training"
    items = learners(ctx, fig_name)
    floor = next((r.quality_curve[0] for r in ctx.records if r.model == DATA_ROW and r.quality_curve), {})
    samples = sorted({int(p["samples"]) for it in items for p in it.points if p.get("samples")})
    numbers: dict[str, Any] = {
        "samples": samples[0] if len(samples) == 1 else samples, "feature_space": ctx.feature_space_name(),
        "data_fid": floor.get("fid"), "data_samples": floor.get("samples"), "models": {}}
    for it in items:
        rec = it.record
        numbers["models"][it.label] = {
            "models": it.label.split(", "), "seed": rec.seed, "status": rec.status, "train_key": rec.train_key,
            "sampler": next((p["sampler"] for p in it.points if p.get("sampler")), None),
            "points": [{"share": budget_share(p.get("fraction")), "fraction": p.get("fraction"), "steps": p.get("steps"),
                        "flops": p.get("flops"), "fid": p.get("fid"), "recognisable": p.get("recognisable"),
                        "snapshot": (f"snapshots/{rec.train_key}/{p['snapshot']}" if strip is not None else None)}
                       for p, strip in zip(it.points, it.strips)]}
    ctx.numbers[fig_name] = numbers
    if not items:
        return
    k = ctx.settings.training_images
    n_text = fmt(numbers["samples"]) if len(samples) == 1 else "/".join(map(str, samples))
    floor_text = (f"; the test images score {fmt(floor['fid'], 3)} on {data_count(numbers)}"
                  if floor.get("fid") is not None else "")
    title = (f"each model's first {k} samples from the same noise, at each share of its training budget (columns);\n"
             f"FID on {n_text} samples{floor_text}")
    shares = sorted({budget_share(p.get("fraction")) for it in items for p in it.points},
                    key=lambda s: float("inf") if s == "?" else share_value(s))
    some = next(s for it in items for s in it.strips if s is not None)
    blank = torch.ones(min(k, len(some)), *some.shape[1:])  # where a point's strip is missing
    cell = 0.3  # inches per image
    height = 0.8 + len(items) * (cell + 0.32)
    fig, axes = plt.subplots(len(items), len(shares), squeeze=False,
                             figsize=(1.5 + len(shares) * (k * cell + 0.15), height))
    for r, it in enumerate(items):
        at = {budget_share(p.get("fraction")): (p, s) for p, s in zip(it.points, it.strips)}
        for c, share in enumerate(shares):
            ax = axes[r, c]
            ax.set_axis_off()
            if r == 0:
                ax.set_title(share, fontsize=9)
            if share not in at:
                continue
            p, strip = at[share]
            grid = make_grid(blank if strip is None else strip[:k], nrow=k, padding=2, pad_value=1.0)
            ax.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.text(0.5, -0.04, f"FID {fmt(p.get('fid'), 3)}" + ("" if strip is not None else " (no snapshot)"),
                    transform=ax.transAxes, ha="center", va="top", fontsize=7)
        sampler = numbers["models"][it.label]["sampler"]
        drawn = f"\n(drawn with {sampler})" if sampler and sampler not in it.label.split(", ") else ""
        status = "" if it.record.ok else f"\n[{it.record.status}]"
        axes[r, 0].text(-0.04, 0.5, it.label + drawn + status, transform=axes[r, 0].transAxes,
                        ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9, y=1 - 0.05 / height, va="top")
    fig.subplots_adjust(wspace=0.08, hspace=0.45, top=1 - 0.75 / height, bottom=0.25 / height)
    ctx.save(fig, "training.png", fig_name)


def share_value(share: str) -> float:
    """"1/32" -> 0.03125, "1" -> 1.0."""
    num, _, den = share.partition("/")
    return float(num) / float(den or 1)


# -- 9. images as tokens --------------------------------------------------------------------------

def fig_tokens(ctx: Context) -> None:
    """Every `Tokenized` model: test images, their token grids (one colour per code, its index written
    in the cell), the images decoded from those tokens, and images decoded from token grids its prior
    drew (its samples); with how many of the codes the test split uses."""
    fig_name = "tokens"
    k = ctx.settings.draw_images
    x_test = ctx.splits.x_test
    x = to_float(x_test[distinct_classes(ctx.splits, k, ctx.gen("tokens"))])
    numbers: dict[str, Any] = {}
    for item in ctx.each_model():
        m = item.model
        name = item.name
        if not isinstance(m, Tokenized):
            ctx.skip(fig_name, name, "no codebook (not `Tokenized`): its codes are not a grid of tokens")
            continue
        K = m.codebook_size
        with torch.no_grad():
            tokens = m.encode_tokens(x.to(m.device))  # (k,h,w)
            decoded = m.decode_tokens(tokens).cpu().clamp(0, 1)
            used = torch.cat([m.encode_tokens(to_float(chunk).to(m.device)).flatten().cpu() for chunk in x_test.split(256)])
        samples = m.sample(2 * k, generator=ctx.gen("tokens", m.name)).cpu()
        share = torch.bincount(used, minlength=K).float() / len(used)
        h, w = tokens.shape[1:]
        numbers[name] = {
            "codebook_size": K, "grid": [h, w], "bits_per_image": h * w * math.log2(K),
            "codes_used": int((share > 0).sum()),
            "perplexity": math.exp(-float((share[share > 0] * share[share > 0].log()).sum())),
            "most_used_share": float(share.max())}
        ctx.save(tokens_figure(name, x, tokens.cpu(), decoded, samples, K, numbers[name]), f"tokens-{name}.png",
                 fig_name)
    ctx.numbers[fig_name] = numbers


def distinct_classes(splits: Splits, k: int, gen: torch.Generator) -> list[int]:
    """k test images in a seeded shuffle, each of a class not shown yet while classes last (the first k
    of the shuffle where the split has no labels)."""
    order = torch.randperm(len(splits.x_test), generator=gen).tolist()
    if splits.y_test is None:
        return order[:k]
    first = {int(splits.y_test[i]): i for i in reversed(order)}  # each class's first image in the shuffle
    picked = sorted(first.values(), key=order.index)[:k]
    return picked + [i for i in order if i not in picked][:k - len(picked)]


def token_colours(K: int) -> matplotlib.colors.ListedColormap:
    """K distinct colours in a fixed shuffled order, so that neighbouring indices do not look alike."""
    base = plt.get_cmap("tab20")(np.arange(20)) if K <= 20 else plt.get_cmap("hsv")(np.linspace(0, 1, K, endpoint=False))
    order = np.random.default_rng(0).permutation(K)
    return matplotlib.colors.ListedColormap([base[i % len(base)] for i in order])


def tokens_figure(name: str, x: Tensor, tokens: Tensor, decoded: Tensor, samples: Tensor, K: int,
                  stats: dict[str, Any]) -> plt.Figure:
    """Columns of (image, its token grid, decoded from the tokens), then a row of samples."""
    k, (h, w) = len(x), tokens.shape[1:]
    fig, axes = plt.subplots(4, max(k, 1), figsize=(1.45 * k + 0.9, 6.4), squeeze=False)
    cmap, legible = token_colours(K), h * w <= 100
    for j in range(k):
        axes[0, j].imshow(x[j].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        axes[1, j].imshow(tokens[j].numpy(), cmap=cmap, vmin=-0.5, vmax=K - 0.5, interpolation="nearest")
        if legible:
            for (i, jj), t in np.ndenumerate(tokens[j].numpy()):
                axes[1, j].text(jj, i, str(t), ha="center", va="center", fontsize=5.5, color="black")
        axes[2, j].imshow(decoded[j].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
    grid = make_grid(samples, nrow=len(samples), padding=2, pad_value=1.0)
    row = fig.add_subplot(4, 1, 4)
    for ax in axes[3]:
        ax.remove()
    row.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    for ax in [*axes[:3].flatten(), row]:
        ax.set_xticks([])
        ax.set_yticks([])
    for r, label in enumerate(["test image", f"its {h}x{w} tokens", "decoded"]):
        axes[r, 0].set_ylabel(label, fontsize=8)
    row.set_title("decoded from token grids drawn by the prior (its samples)", fontsize=8)
    fig.suptitle(f"{name}: each image as {h * w} tokens of {K} codes ({h * w * math.log2(K):.0f} bits); "
                 f"the test split uses {stats['codes_used']} of the codes", fontsize=9)
    return fig


FIGURE_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "latent_statistics": fig_latent_statistics, "holes": fig_holes, "interpolation": fig_interpolation,
    "perturbation": fig_perturbation, "latent_2d": fig_latent_2d, "drawing": fig_drawing, "copies": fig_copies,
    "training": fig_training, "tokens": fig_tokens,
}


# -- the markdown section --------------------------------------------------------------------------

def section(run_folder: str | Path, prefix: str = "explore/") -> str:
    """The "Lecture figures" markdown from RUN/explore/explore.json, image paths prefixed with
    `prefix` (relative to where the markdown lives: "explore/" from the run folder, "" from explore/)."""
    data = json.loads((Path(run_folder) / "explore" / "explore.json").read_text())
    numbers, skipped, images, settings = data["figures"], data["skipped"], data["images"], settings_of(data)
    shown = [key for key in FIGURES if numbers.get(key) or images.get(key) or skipped.get(key)]  # (older files lack some)
    seeds = {settings.get(key, {}).get("seed") for key in shown if key not in RECORD_FIGURES}  # those draw nothing at random
    lines = ["## Lecture figures", "",
             (f"Drawn from the run's checkpoints by `python -m benchmarks.explore` ({data['feature_space']} features"
              + (f"; seed {next(iter(seeds))}" if len(seeds) == 1 else "; each figure's seed under it" if seeds else "")
              + "); the training figure from its records and snapshot strips."), ""]
    for key in shown:
        lines += [f"### {TITLES[key]}", ""]
        if len(seeds) > 1 and key not in RECORD_FIGURES:  # a rerun of some figures with another --seed
            lines += [f"*Seed {settings.get(key, {}).get('seed', '?')}.*", ""]
        lines += _numbers_markdown(key, numbers.get(key, {}))
        lines += [f"![{Path(name).stem}]({prefix}{name})" for name in images.get(key, [])]
        lines += [""] if images.get(key) else []
        for model, reason in skipped.get(key, []):
            lines.append(f"- skipped {model}: {reason}")
        lines.append("")
    return "\n".join(lines)


def settings_of(data: dict[str, Any]) -> dict[str, Any]:
    """explore.json's settings per figure (a file from before they were kept per figure holds one set
    for all)."""
    settings = data.get("settings") or {}
    return {key: settings for key in FIGURES} if "seed" in settings else settings


def _numbers_markdown(key: str, nums: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if key == "latent_statistics" and nums.get("ours"):
        ref = nums["anime_study"]
        out += ["| | dims | std per dim | code length | same class | different class | diff / same | nearest neighbour | NN / mean distance |",
                "|---|---|---|---|---|---|---|---|---|"]
        for name, s in nums["ours"].items():
            out.append(f"| {name} (ours, test codes) | {s['dims']} | {fmt(s['per_dim_std'])} | {fmt(s['code_length'])} | "
                       f"{fmt(s.get('same_class'))} | {fmt(s.get('different_class'))} | {fmt(s.get('class_ratio'))} | "
                       f"{fmt(s['nearest_neighbour'])} | {fmt(s['nn_relative'])} |")
        for name, s in ref.items():
            out.append(f"| {name} (anime study) | {s.get('dims', '–')} | {fmt(s['per_dim_std'])} | "
                       f"{fmt(s['code_length'])} | {s.get('same_class', '–')} | {s.get('different_class', '–')} | – | – | – |")
        out += ["", ("Codes are the encoder's outputs (the VAE's posterior means). Raw distances depend on each "
                     "code's scale; the ratio columns do not."), ""]
    elif key == "holes" and nums.get("rows"):
        out += ["| codes decoded | FID ↓ | recognisable ↑ | samples |", "|---|---|---|---|"]
        out += [f"| {k} | {fmt(v['fid'], 4)} | {fmt(v['recognisable'])} | {v['samples']} |" for k, v in nums["rows"].items()]
        out += ["", "; ".join(f"*{k}*: {v}" for k, v in nums["what"].items()) + ".", ""]
    elif key == "interpolation" and nums:
        out += ["| model | path | mean step (features) ↓ | path length / end distance (1 = straight) | largest step / mean step |",
                "|---|---|---|---|---|"]
        for name, v in nums.items():
            if isinstance(v, dict):
                out.append(f"| {name} | {v['kind']} | {fmt(v['step'])} | {fmt(v['path_ratio'])} | {fmt(v['max_step_ratio'])} |")
        out += ["", (f"Pairs (classes): {', '.join(nums['pairs'])}; {nums['steps']} frames; distances between the "
                     "feature net's penultimate features of consecutive frames."), ""]
    elif key == "perturbation" and nums:
        out += ["| model | direction | " + " | ".join(f"+{s}σ: feature change / class changed" for s in
                                                       next(iter(nums.values()))["random"]) + " |",
                "|---|---|" + "---|" * len(next(iter(nums.values()))["random"])]
        for name, v in nums.items():
            for kind in ("random", "principal"):
                out.append(f"| {name} | {kind} | " + " | ".join(
                    f"{fmt(c['feature_change'])} / {fmt(c['class_changed'], 2)}" for c in v[kind].values()) + " |")
        out += ["", ("σ is the training codes' standard deviation along the direction; changes are measured "
                     "from the decoded (unperturbed) code."), ""]
    elif key == "latent_2d" and nums:
        out += [f"- {name}: {v['grid']}" for name, v in nums.items()] + [""]
    elif key == "drawing" and nums:
        out += [f"- {name}: {v['what']}" for name, v in nums.items()] + [""]
    elif key == "copies" and nums.get("rows"):
        out += ["| row | samples searched | copy rate | NN dist ratio | shown: distance / test median |", "|---|---|---|---|---|"]
        out += [f"| {name} | {v['samples']} | {fmt(v['copy_rate'])} | {fmt(v['nn_distance_ratio'])} | "
                f"{', '.join(fmt(s['feature_distance_ratio'], 2) for s in v['shown'])} |" for name, v in nums["rows"].items()]
        out += ["", (f"Each sample is followed by its nearest training image in the feature space ({nums['space']}: the "
                     "distance the copy rate measures) and by its nearest training image in pixel space (Euclidean). The "
                     "samples shown are the ones nearest to a training image in the feature space. A sample counts as a "
                     f"copy when it is nearer than the {fmt(nums['percentile'])}st percentile of the held-out test images' "
                     f"nearest-training distances ({fmt(nums['threshold_ratio'], 2)} × their median); the data row is test "
                     "images from the half that did not set that threshold. The run's table has the copy rate on all its "
                     "evaluation samples; these rates are on the samples searched here."), ""]
    elif key == "tokens" and nums:
        out += ["| model | codes | token grid | bits per image as tokens | codes the test split uses | "
                "usage perplexity | share of the most used code |", "|---|---|---|---|---|---|---|"]
        out += [f"| {name} | {v['codebook_size']} | {v['grid'][0]}x{v['grid'][1]} | {fmt(v['bits_per_image'])} | "
                f"{v['codes_used']} | {fmt(v['perplexity'])} | {fmt(v['most_used_share'], 2)} |" for name, v in nums.items()]
        out += ["", ("Each image is encoded to the grid of its nearest codebook vectors (the numbers are the code "
                     "indices) and decoded back; the samples are token grids drawn by the model's prior, decoded once. "
                     "Usage perplexity is exp of the entropy of the codes' shares over the test split: the number of "
                     "codes in equal use that would carry as much."), ""]
    elif key == "training" and nums.get("models"):
        shares = sorted({p["share"] for v in nums["models"].values() for p in v["points"]},
                        key=lambda s: float("inf") if s == "?" else share_value(s))
        out += ["| model | drawn with | " + " | ".join(f"FID at {s}" for s in shares) + " | steps at 1 |",
                "|---|---|" + "---|" * len(shares) + "---|"]
        for name, v in nums["models"].items():
            at = {p["share"]: p for p in v["points"]}
            out.append(f"| {name} | {v['sampler'] or '–'} | " + " | ".join(fmt(at[s]["fid"], 4) if s in at else "–" for s in shares)
                       + f" | {fmt(at['1']['steps']) if '1' in at else '–'} |")
        samples = nums["samples"]
        floor = (f" The test images score {fmt(nums['data_fid'], 4)} on {data_count(nums)}."
                 if nums.get("data_fid") is not None else "")
        out += ["", (f"Each row is one training, measured at shares of its budget (its quality curve, "
                     "`benchmarks.curves`): the images are the first the model draws from the same seeded noise (the same "
                     "latent codes) at every point, so a row shows those samples learning. FID against the training split "
                     f"on {samples if isinstance(samples, int) else '/'.join(map(str, samples))} samples per point "
                     f"({nums['feature_space']} features), drawn with the model's fast sampler (ddpm's network through "
                     "DDIM): a cheap curve, higher than the table's FID on more samples." + floor), ""]
    return out


# -- the command ---------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m benchmarks.explore", description=(__doc__ or "").split("\n\n")[0])
    p.add_path("run_folder", help="a run folder written by python -m benchmarks.run")
    p.add_argument("--models", help="comma-separated model names (default: every model of the run)")
    p.add_argument("--figures", help=f"comma-separated, of {', '.join(FIGURES)} (default: all)")
    p.add_argument("--samples", type=int, default=Settings.samples,
                   help=f"images per row of the holes figure (2..{MAX_SAMPLES})")
    p.add_argument("--pairs", type=int, default=Settings.pairs, help=f"interpolation pairs per model (1..{MAX_PAIRS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    return p.parse_args(argv)


def explore(run_folder: str | Path, models: list[str] | None = None, figures: list[str] | None = None,
            settings: Settings | None = None, device: str = "cpu", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Draw the figures of a run folder into RUN/explore/; returns what explore.json holds. Ctrl-C
    raises KeyboardInterrupt whose text says what of this call is on disk."""
    folder = RunFolder(run_folder)
    if not folder.path.is_dir():
        raise GenzooError(f"no run folder at {folder.path}")
    folder.check_subfolders("the run folder")
    run, records = folder.read()
    if "dataset" not in run:
        raise GenzooError(f"{folder.path}/results.json has no run info (dataset); is it a run folder?")
    unknown = sorted(set(figures or []) - set(FIGURES))
    if unknown:
        raise GenzooError(f"unknown figure(s) {unknown}; choose from {', '.join(FIGURES)}")
    held = list(lowest_seeds(records))
    absent = [m for m in models or [] if m not in held]
    if absent:  # a typo must not redraw the figures without the models meant
        raise GenzooError(f"--models names {', '.join(absent)}, not in {folder.path}; it holds {', '.join(held) or 'no model'}")
    on = resolve_device(device)  # `auto`, and one line for a device that is not here, before any work
    settings = settings or Settings()
    chosen = list(dict.fromkeys(figures)) if figures else list(FIGURES)
    load_skips: list[tuple[str, str]] = []
    out = folder.path / "explore"
    ctx = Context(folder, out, run, records, models, [], settings)
    needs_models = any(f not in RECORD_FIGURES for f in chosen)  # the training figure alone needs no checkpoint
    check_writable(folder.path, "explore writes its figures into RUN/explore/ and rewrites results.md; "
                                "copy the run folder somewhere writable")
    if needs_models:
        check_cache()  # holes and copies keep features there: one line now, not two failed figures
        ctx.models = load_models(folder, records, models, load_skips)
        if not ctx.models:  # the figures from checkpoints would draw the data alone over the ones drawn before
            trainings = folder.trainings
            if not (trainings / "checkpoints").is_dir() and not (trainings / "snapshots").is_dir():
                raise GenzooError(NO_CHECKPOINTS.format(path=folder.path, use="draw from", command="explore"))
            why = "; ".join(f"{m}: {reason}" for m, reason in load_skips) or "it holds no model"
            if all(f not in RECORD_FIGURES for f in chosen):
                raise GenzooError(f"no model of {folder.path} could be loaded: {why}")
            chosen = [f for f in chosen if f in RECORD_FIGURES]
            log(f"no model of {folder.path} could be loaded ({why}); drawing only the figures from its records: "
                + ", ".join(TITLES[f] for f in chosen))
            figures = chosen  # the others keep what they had
        else:
            _ = ctx.space  # the run's own data and ruler, up front: one error if the data is missing, not one per figure
    loaded = ctx.models
    for item in loaded:
        item.model.to(on)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for fig in chosen:
            for model, reason in load_skips if fig not in RECORD_FIGURES else []:
                ctx.skip(fig, model, reason)
            started = time.perf_counter()
            draw_figure(fig, ctx)
            log(f"{TITLES[fig]}: {', '.join(ctx.images.get(fig, [])) or 'no image'} ({time.perf_counter() - started:.0f} s)"
                + "".join(f"\n  skipped {m}: {r}" for m, r in ctx.skipped.get(fig, [])))
    except KeyboardInterrupt:  # the figures drawn are on disk; their numbers are not recorded
        drawn = ", ".join(name for names in ctx.images.values() for name in names)
        raise KeyboardInterrupt(f"stopped during figure {TITLES[fig]}; " + (f"written to {out}/: {drawn}" if drawn else
                                "no figure written") + "; explore.json, explore.md and results.md are as before "
                                "(a rerun draws and records every figure)") from None
    try:
        return record_figures(folder, run, ctx, loaded, settings, figures, log)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"stopped once the figures were drawn, writing explore.json, explore.md, results.md and "
                                f"index.html: python -m benchmarks.explore {folder.path} again draws and records them") from None


def draw_figure(fig: str, ctx: Context) -> None:
    """One figure. A model whose method fails while the figure works on it is left out, with the
    error as its skip reason, and the figure drawn again without it; a failure outside any model's
    turn fails the figure, whose traceback goes to FIGURE.error.txt."""
    models, skipped = ctx.models, list(ctx.skipped.get(fig, []))
    failed: list[tuple[str, str]] = []
    try:
        while True:
            ctx.drawing = None
            try:
                FIGURE_FUNCTIONS[fig](ctx)
                (ctx.out / f"{fig}.error.txt").unlink(missing_ok=True)  # an earlier call's failure, drawn now
                return
            except Exception as e:  # noqa: BLE001 - one model or figure failing must not lose the others
                if ctx.drawing is None:
                    ctx.skip(fig, "(figure)", f"failed: {one_line(e)}")
                    (ctx.out / f"{fig}.error.txt").write_text(traceback.format_exc())
                    return
                failed.append((ctx.drawing, f"failed: {one_line(e)}"))
                ctx.models = [item for item in ctx.models if item.name != ctx.drawing]
                ctx.numbers.pop(fig, None)  # this figure's try so far, drawn again
                ctx.images.pop(fig, None)
                ctx.skipped[fig] = list(skipped)
    finally:
        ctx.models = models
        for name, why in failed:
            ctx.skip(fig, name, why)


def record_figures(folder: RunFolder, run: dict[str, Any], ctx: Context, loaded: list[Loaded], settings: Settings,
                   figures: list[str] | None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """explore.json and explore.md for the figures drawn, and results.md and index.html with them."""
    out = folder.path / "explore"
    data = {"run_folder": str(folder.path), "dataset": run["dataset"], "feature_space": ctx.feature_space_name(),
            "models": {i.record.model: {"seed": i.record.seed, "checkpoint": i.record.checkpoint} for i in loaded},
            "settings": {fig: dataclasses.asdict(settings) for fig in figures or FIGURES},  # per figure: a rerun may redraw some
            "figures": ctx.numbers, "images": ctx.images, "skipped": {k: [list(s) for s in v] for k, v in ctx.skipped.items()}}
    old = earlier_record(out / "explore.json", folder.path)
    old_images = old.get("images", {})
    # A figure is replaced only where this call drew it whole: one that drew nothing now (its models
    # not loaded, no snapshots) or failed part-way keeps the images and numbers it had, as do the
    # figures not asked for.
    failed = {fig for fig, skips in ctx.skipped.items() if any(model == "(figure)" for model, _ in skips)}
    redrawn = [fig for fig in figures or FIGURES if ctx.images.get(fig) and fig not in failed or fig not in old_images]
    if old:
        kept = {k for key in ("figures", "images", "skipped") for k in old.get(key, {})}
        old["settings"] = {k: v for k, v in settings_of(old).items() if k in kept}
        for key in ("figures", "images", "skipped", "settings"):
            data[key] = {**{k: v for k, v in old.get(key, {}).items() if k not in redrawn},
                         **{k: v for k, v in data[key].items() if k in redrawn}}
        data["models"] = {**old.get("models", {}), **data["models"]}  # the kept figures' models too
    (out / "explore.json").write_text(json.dumps(data, indent=1, default=float))
    recorded = {name for names in data["images"].values() for name in names}
    for name in sorted({name for names in old_images.values() for name in names} - recorded):
        if Path(name).name == name and name.endswith(".png") and (out / name).exists():  # explore's own files only
            (out / name).unlink()  # a model's drawing left out of its figure's redraw: not what it shows now
            log(f"removed {name}: this redraw did not draw its model (left out of --models, or skipped above)")
    (out / "explore.md").write_text(section(folder.path, prefix=""))
    report.render(folder.path, draw=False)  # results.md and index.html now with these figures, as report writes them
    return data


def earlier_record(path: Path, run_folder: Path) -> dict[str, Any]:
    """The explore.json an earlier call wrote, or {} where there is none; one that does not parse,
    or is not what explore writes (edited by hand), is set aside with one line."""
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
        sections = [old.get(key, {}) for key in ("figures", "images", "skipped", "settings", "models")]
        if not all(isinstance(s, dict) for s in sections) or not all(
                isinstance(names, list) and all(isinstance(n, str) for n in names) for names in sections[1].values()):
            raise ValueError("not explore's record")
    except (ValueError, AttributeError, KeyError):
        set_aside(path, f"{path} did not parse", "the figures not redrawn now are left out of explore.md; "
                  f"python -m benchmarks.explore {run_folder} draws and records them all")
        return {}
    return old


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        set_threads(args.threads)
        names = comma_list("--models", args.models, "vae,ddim") if args.models is not None else None  # "" is refused
        figures = comma_list("--figures", args.figures, "holes,interpolation") if args.figures is not None else None
        if not 2 <= args.samples <= MAX_SAMPLES:
            raise GenzooError(f"--samples must be an int in [2, {MAX_SAMPLES}] (images per row of the holes figure; "
                              f"the full preset's FID takes {MAX_SAMPLES}), got {args.samples}")
        if not 1 <= args.pairs <= MAX_PAIRS:
            raise GenzooError(f"--pairs must be an int in [1, {MAX_PAIRS}] (each is a row per model of the "
                              f"interpolation figure), got {args.pairs}")
        if not 0 <= args.seed < 2**31:  # the page's range too
            raise GenzooError(f"--seed must be an int in [0, {2**31 - 1}], got {args.seed}")
        settings = Settings(samples=args.samples, pairs=args.pairs, seed=args.seed)
        explore(args.run_folder, names, figures, settings, device=args.device)
    except GenzooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C: one line saying what is on disk, and 128 + SIGINT, as benchmarks.run
        print(f"SIGINT: {str(e) or 'stopped before any figure was drawn: nothing written in the run folder'}", file=sys.stderr)
        return Interrupted(signal.SIGINT).exit_code
    print(f"figures in {Path(args.run_folder) / 'explore'}/: explore.md, explore.json and the PNGs; "
          "results.md and index.html rewritten with them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
