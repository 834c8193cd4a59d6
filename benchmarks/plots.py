"""Plots of a run, made from its records (and saved sample grids) alone, so they can be redrawn
from the run folder: `python -m benchmarks.report RUN_FOLDER`.

`quality_vs_cost`: FID against seconds per image, one point per model (error bars over seeds; hollow
where its FID is on fewer samples than the others'), the data row as a line: the paradigm trade-off.
`bits_per_dim`: every likelihood model, exact and bound styled apart, with the other figures a model
reports (a VAE's ELBO) beside it. `loss_curves`: training loss per model. `comparison`: one row of
samples per model, real test images on top. `sampler_tradeoff`: rows that share one training (ddpm,
ddim, ddim@10, ...) are samplers of the same network; FID against seconds per sample shows what each
extra network evaluation buys. `quality_vs_training_compute`: each training's quality curve
(`benchmarks.curves`), FID and the recognisable share against the training FLOPs spent so far: what
more training buys each model. `guidance_tradeoff`: rows of one training that differ only in the
guidance scale (ddpm-cond@0,1,3,7), the field a `Guided` model declares: precision, recall and label
accuracy, and FID beside them, against the scale: fidelity bought with diversity.
"""
from __future__ import annotations

import json
import math
import statistics
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from benchmarks.curves import TARGET_FACTOR, share_of, target_fid  # noqa: E402
from benchmarks.records import DATA_ROW, Record, Row, RunFolder, aggregate, is_number  # noqa: E402
from zoo import registry  # noqa: E402
from zoo.base import GenzooError, Guided, one_line  # noqa: E402
from zoo.checkpoint import split_training_key  # noqa: E402
from zoo.files import say  # noqa: E402
from zoo.registry import split_variant  # noqa: E402


def _rows(records: list[Record], key: str) -> list[Row]:
    """Aggregated rows of models (not the data row) with a finished seed and `key`: a model with some
    seeds diverged is drawn from those that finished, as its row in the table is, and says so (`_seeds`)."""
    return [r for r in aggregate(records)
            if r.model != DATA_ROW and _finished(r) and r.cells.get(key, (None,))[0] is not None]


def _finished(row: Row) -> list[Record]:
    """The row's records of the seeds that finished: those its cells are the mean of."""
    return [r for r in row.records if r.ok]


def _seeds(row: Row) -> str:
    """"2 of 3 seeds" where fewer than the table's seeds finished (its status in the table says why); else ""."""
    done = len(_finished(row))
    return f"{done} of {row.table_seeds} seeds" if done < row.table_seeds else ""


def _label(row: Row, *notes: str) -> str:
    """The row's name, wrapped, with its notes and, where fewer seeds finished, how many: "ddim (50 NFE; 2 of 3 seeds)"."""
    said = [note for note in (*notes, _seeds(row)) if note]
    return _wrap(row.model) + (f" ({'; '.join(said)})" if said else "")


def _wrap(name: str, width: int = 20) -> str:
    """A model's name in lines of at most `width` characters, broken at its hyphens where it has them:
    a plugin's or a scored row's long name would squeeze the figure beside it."""
    return textwrap.fill(name, width, break_on_hyphens=True)


def _data_value(records: list[Record], key: str) -> float | None:
    return next((getattr(r, key) for r in records if r.model == DATA_ROW and r.ok), None)


def sampler_groups(records: list[Record]) -> dict[str, list[Row]]:
    """The rows that share one training (a key per seed), two or more, by that training's family
    ("diffusion" for ddpm and ddim; with the keys' hashes where two groups share a family)."""
    groups: dict[str, list[Row]] = defaultdict(list)  # rows with the same trainings (one per seed) are samplers of them
    for row in _rows(records, "fid"):
        keys = sorted({r.train_key or "" for r in _finished(row)})
        if all(keys) and row.cells["sample_images_per_s"][0] and guidance_field(row) is None:  # guidance: guidance_tradeoff
            groups[" ".join(keys)].append(row)
    shared = {keys: rows for keys, rows in groups.items() if len(rows) >= 2}
    split = [[split_training_key(key) for key in keys.split()] for keys in shared]
    families = [parts[0][0] for parts in split]
    return {family if families.count(family) == 1 else f"{family} {' '.join(h for _, h in parts)}": rows
            for family, parts, rows in zip(families, split, shared.values())}


def sampler_tradeoff(records: list[Record], path: str | Path) -> Path | None:
    """FID against seconds per sample (log scale) for every training with >= 2 sampler rows; None if none."""
    groups = sampler_groups(records)
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for key, rows in groups.items():
        by_sampler: dict[str, list[Row]] = defaultdict(list)  # ddim@10, ddim@20, ddim -> one line; ddpm -> another
        for row in rows:
            by_sampler[split_variant(row.model)[0]].append(row)
        for sampler, rs in by_sampler.items():
            rs.sort(key=lambda r: r.cells["nfe"][0] or 0)
            xs = [1.0 / r.cells["sample_images_per_s"][0] for r in rs]
            ys = [r.cells["fid"][0] for r in rs]
            err = [r.cells["fid"][1] or 0 for r in rs]
            ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, label=f"{sampler} ({key})")
            for x, y, r in zip(xs, ys, rs):
                ax.annotate(f"{r.cells['nfe'][0]} NFE", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    counts = sorted({r.fid_samples for rs in groups.values() for row in rs for r in row.records if r.fid_samples})
    ax.set_xscale("log")  # samplers a decade or two apart: 0.02, 0.05, 0.1 rather than one label, 10⁻¹
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(_two_and_five))
    ax.set_xlabel("seconds per sample (1 / sample img/s)")
    ax.set_ylabel("FID ↓")
    trainings = "one training, several samplers" if len(groups) == 1 else f"{len(groups)} trainings, several samplers each"
    ax.set_title(f"{trainings}; FID on {', '.join(map(str, counts))} samples", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def guidance_field(row: Row) -> str | None:
    """The hyper-parameter holding the row's guidance scale, as its model declares it (`Guided`); None
    where the model is not guided, is not installed here, or its records lack the field."""
    try:
        cls = registry.get(row.model)
    except GenzooError:  # the data row, a scored row, a plugin absent here
        return None
    field = cls.guidance_hparam if issubclass(cls, Guided) else None
    return field if field is not None and all(field in r.hparams for r in _finished(row)) else None


GUIDANCE_METRICS = (("precision", "precision ↑", "o"), ("recall", "recall ↑", "s"), ("label_accuracy", "label accuracy ↑", "D"))


def guidance_sweeps(records: list[Record]) -> dict[str, list[tuple[float, Row]]]:
    """Each training whose rows differ only in the guidance scale (the same train keys, and every
    other hyper-parameter alike), with >= 2 scales: its model's name -> (scale, row), by scale. Two
    rows at one scale (ddpm-cond and ddpm-cond@3) are one measurement: the first is kept."""
    groups: dict[tuple[str, str], dict[float, Row]] = defaultdict(dict)
    for row in _rows(records, "fid"):
        finished = _finished(row)
        keys = sorted({r.train_key or "" for r in finished})
        field = guidance_field(row)
        if all(keys) and field is not None:
            rest = {k: v for k, v in finished[0].hparams.items() if k != field}  # steps, ...: alike within a sweep
            groups[(" ".join(keys), json.dumps(rest, sort_keys=True, default=str))].setdefault(
                float(finished[0].hparams[field]), row)
    sweeps: dict[str, list[tuple[float, Row]]] = {}
    for scales in groups.values():
        if len(scales) >= 2:
            name = split_variant(next(iter(scales.values())).model)[0]
            label, n = name, 1
            while label in sweeps:  # a second training of the same model (another --set): numbered
                n += 1
                label = f"{name} ({n})"
            sweeps[label] = sorted(scales.items())
    return sweeps


def guidance_tradeoff(records: list[Record], path: str | Path) -> Path | None:
    """Precision, recall and label accuracy (left) and FID (right) against the guidance scale, one line
    per training swept over it (`guidance_sweeps`); None when no run swept one."""
    sweeps = guidance_sweeps(records)
    if not sweeps:
        return None
    fig, (shares, fids) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    styles = ["-", "--", ":", "-."]
    for i, (label, points) in enumerate(sweeps.items()):
        scales = [w for w, _ in points]
        suffix = f" ({label})" if len(sweeps) > 1 else ""
        for j, (key, header, marker) in enumerate(GUIDANCE_METRICS):
            cells = [row.cells[key] for _, row in points]
            if all(mean is None for mean, _ in cells):  # no label accuracy without a classifier's feature space
                continue
            ys = [math.nan if mean is None else mean for mean, _ in cells]
            shares.errorbar(scales, ys, yerr=[half or 0 for _, half in cells], fmt=marker, ls=styles[i % len(styles)], capsize=3, ms=5,
                            color=f"C{j}", label=header + suffix)
        fid = [row.cells["fid"] for _, row in points]
        fids.errorbar(scales, [m for m, _ in fid], yerr=[h or 0 for _, h in fid], fmt="o", ls=styles[i % len(styles)],
                      capsize=3, color="C3", label=f"FID{suffix}")
        for w, row in points:
            fids.annotate(f"{row.cells['nfe'][0]} NFE", (w, row.cells["fid"][0]), textcoords="offset points",
                          xytext=(4, 4), fontsize=7)
    counts = sorted({r.fid_samples for points in sweeps.values() for _, row in points for r in row.records if r.fid_samples})
    data_fid, data_samples = _data_value(records, "fid"), _data_value(records, "fid_samples")
    if data_fid:  # on another count than the sweep's, the floor it draws is not the one the sweep's FID has
        other = f", {data_samples} samples" if data_samples and counts and data_samples not in counts else ""
        fids.axhline(data_fid, color="black", ls="--", lw=1, label=f"data (held-out test images{other})")
    for ax in (shares, fids):
        ax.axvline(1, color="grey", ls=":", lw=1)  # the plain conditional model; left of it toward unconditional
        ax.set_xlabel("guidance scale w (0: unconditional, 1: conditional)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    shares.set_ylim(-0.02, 1.02)
    shares.set_ylabel("share")
    fids.set_yscale("log")  # the models' FIDs and the data row's, often a decade or more apart
    fids.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 10, 100 rather than 10¹, 10²
    fids.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
    fids.set_ylabel("FID ↓ (log)")
    fig.suptitle(f"one training, several guidance scales: fidelity against diversity; FID on "
                 f"{', '.join(map(str, counts)) or '?'} samples", fontsize=10)
    return _save(fig, path)


def _two_and_five(value: float, _: Any) -> str:
    """A minor tick's label on a log axis: 20, 50, 200, ... labelled, the ticks between them not (they crowd)."""
    return f"{value:g}" if value > 0 and round(value / 10 ** math.floor(math.log10(value))) in (2, 5) else ""


def quality_vs_cost(records: list[Record], path: str | Path) -> Path | None:
    """The paradigm trade-off at a glance: FID against seconds per generated image, one point a model."""
    rows = [r for r in _rows(records, "fid") if r.cells["sample_images_per_s"][0]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]  # a zoo has more models than the default cycle's 10 colours
    # FID reads higher on fewer samples, and a costly sampler is scored on fewer: mark those points, so that a
    # dot's height against the data line (and against the cheap models') is not read as its images' alone
    counts = [min((rec.fid_samples for rec in _finished(r) if rec.fid_samples), default=0) for r in rows]
    full = max([*counts, _data_value(records, "fid_samples") or 0])
    points = []
    for i, r in enumerate(rows):
        x = 1.0 / r.cells["sample_images_per_s"][0]
        fid, half = r.cells["fid"]
        colour = colours[i % len(colours)]
        ax.errorbar(x, fid, yerr=half or 0, fmt="o", capsize=3, ms=6, color=colour,
                    mfc="white" if 0 < counts[i] < full else colour)
        points.append((x, fid, _label(r, f"{r.cells['nfe'][0]} NFE")))
    data_fid = _data_value(records, "fid")
    if data_fid:
        ax.axhline(data_fid, color="black", ls="--", lw=1)
        ax.annotate("data (held-out test images)", (0, data_fid), xycoords=("axes fraction", "data"),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds per generated image (log)")
    space = next((r.feature_space for r in records if r.feature_space), "")
    ax.set_ylabel(f"FID ↓ (log), {space}")
    seeds = sorted({r.seed for r in records})
    title = "sample quality against sampling cost" + (f" (95% interval over {len(seeds)} seeds)" if len(seeds) > 1 else "")
    fewer = sorted({n for n in counts if 0 < n < full})
    if fewer:
        title += f"\nFID on {full} samples; hollow dots on {', '.join(map(str, fewer))}, where FID reads higher"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    _label_points(ax, points)
    return _save(fig, path)


def _label_points(ax, points: list[tuple[float, float, str]], fontsize: float = 8) -> None:
    """Label each point at the first place, near it, where the label covers no other label or dot and
    stays inside the axes: to its upper right, its upper left, then a line lower at a time, right before
    left, with a thin line back to the dot once it is more than a line away (the 1-NFE models crowd one
    corner of the quality/cost plot). Call it last: it reads the axes' final limits and layout to know
    where the points land."""
    ax.figure.tight_layout()
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    line = 1.15 * fontsize  # in points, as are all offsets here
    frame = ax.get_window_extent(renderer)
    dot = 3 * ax.figure.dpi / 72  # half a marker, in pixels
    dots = [Bbox.from_extents(px - dot, py - dot, px + dot, py + dot)
            for px, py in (ax.transData.transform((x, y)) for x, y, _ in points)]
    labels: list[Bbox] = []
    places = [(side * 5, 3 - k * line, "left" if side > 0 else "right") for k in range(30) for side in (1, -1)]
    for i in sorted(range(len(points)), key=lambda i: -points[i][1]):
        x, y, text = points[i]
        in_the_way = labels + dots[:i] + dots[i + 1:]
        for dx, dy, side in places:
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=side, fontsize=fontsize,
                                arrowprops=dict(arrowstyle="-", lw=0.5, color="grey") if dy < 3 - line else None)
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer)  # the words alone, not the line back to the dot
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(b) for b in in_the_way):
                break
            label.remove()
        else:  # nowhere free: the first place after all
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=places[0][:2], fontsize=fontsize)
            box = label.get_window_extent(renderer)
        labels.append(box)


def bits_per_dim(records: list[Record], path: str | Path) -> Path | None:
    """Bits/dim of every likelihood model: exact likelihoods solid, bounds hatched, with error bars; the
    other figures a model reports beside it (the VAE's looser ELBO, the VQ-VAE's code bits) dotted,
    named by their label alone (the model's kind is its main figure's, not theirs)."""
    bars: list[tuple[str, float, float | None, str | None]] = []  # label, mean, half-width, kind (None: an extra)
    for row in _rows(records, "bits_per_dim"):
        mean, half = row.cells["bits_per_dim"]
        bars.append((_label(row), mean, half, row.cells["bpd_kind"][0]))
        for label in sorted({k for r in _finished(row) for k in r.bpd_extras}):  # other figures the model reports, e.g. the VAE's looser ELBO
            values = [r.bpd_extras[label] for r in _finished(row) if label in r.bpd_extras]
            bars.append((f"{_wrap(row.model)} ({label})", sum(values) / len(values), None, None))
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(bars) + 1.5), dpi=120)
    styles = {"exact": (None, "tab:blue", "exact"), "bound": ("//", "white", "bound (upper)"),
              None: ("..", "white", "another figure it reports")}
    for i, (_, mean, half, kind) in enumerate(bars):
        hatch, color, legend = styles.get(kind, ("//", "white", str(kind)))
        ax.barh(i, mean, xerr=half, capsize=3, color=color, edgecolor="tab:blue", hatch=hatch, label=legend)
        ax.annotate(f"{mean:.3f}" + (f" ({kind})" if kind else ""), (mean, i), textcoords="offset points", xytext=(4, -3), fontsize=8)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars])
    ax.axvline(8, color="grey", ls=":", lw=1)
    ax.set_xlim(0, max(9.5, 1.15 * max(b[1] for b in bars)))
    ax.set_xlabel("bits/dim on the test split ↓ (8 = uniform over 256 levels)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    return _save(fig, path)


def loss_curves(records: list[Record], path: str | Path) -> Path | None:
    """Training loss per model (first seed), one small panel each: each model's own objective, on its
    own scale."""
    seen, rows = set(), []
    for r in sorted(records, key=lambda r: r.seed):
        if r.loss_curve and r.model not in seen:
            seen.add(r.model)
            rows.append(r)
    if not rows:
        return None
    cols = min(4, len(rows))
    nrows = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), dpi=110, squeeze=False)
    for ax, r in zip(axes.flat, rows):
        steps, losses = zip(*r.loss_curve)
        ax.plot(steps, losses, lw=1)
        ax.set_title(_wrap(r.model, 32), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss", fontsize=8)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.suptitle("training loss, first seed: the 'loss' each model's train_step returns, its own objective on its own "
                 "scale:\nnot comparable across models", fontsize=9)
    return _save(fig, path)


def comparison(records: list[Record], folder: RunFolder, path: str | Path, per_row: int = 8) -> Path | None:
    """One row of samples per model (the top row of its first seed's grid), labelled with its FID and images/s."""
    first: dict[str, tuple[Record, np.ndarray]] = {}
    for r in sorted(records, key=lambda r: r.seed):
        if r.ok and r.model not in first and (grid := _read_grid(folder.samples(r))) is not None:
            first[r.model] = (r, grid)
    rows = sorted(first.values(), key=lambda row: row[0].model != DATA_ROW)  # the real images first
    if not rows:
        return None
    several_seeds = len({r.seed for r in records}) > 1  # then a row is one seed's, not the table's mean
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.15 * len(rows)), dpi=120, squeeze=False)
    for ax, (r, grid) in zip(axes[:, 0], rows):
        cell = (grid.shape[1] - 2) // per_row  # make_grid: 2 px padding around each image
        ax.imshow(grid[: cell + 2], cmap="gray", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(_wrap(r.model), rotation=0, ha="right", va="center", fontsize=9)
        parts = ([f"seed {r.seed}"] if several_seeds and r.model != DATA_ROW else []) + [
            f"FID {r.fid:.1f}" if r.fid is not None else "FID –"]
        if r.recognisable is not None:
            parts.append(f"recognisable {r.recognisable:.2f}")
        if r.sample_images_per_s:
            parts.append(f"{r.sample_images_per_s:.3g} img/s · NFE {r.nfe}")
        ax.set_title(" · ".join(parts), fontsize=8, loc="right")
    return _save(fig, path)


def _read_grid(path: Path) -> np.ndarray | None:
    """A sample grid as an array; None where there is none, and where it does not read (a truncated
    file), with one warning line: the other rows are drawn."""
    if not path.is_file():
        return None
    try:
        return plt.imread(path)
    except Exception as e:  # noqa: BLE001 - PIL and matplotlib raise several kinds for a damaged PNG
        say(f"warning: {path} does not read as an image ({one_line(e)}); left out of comparison.png")
        return None


@dataclass
class CurveLine:
    """One training's quality curve as drawn: over its seeds, at each point, the median and the
    lowest and highest value of each metric (NaN where no seed has it, a gap in the line)."""

    label: str  # the models that share the training, and the sampler that drew it where it is another
    seeds: int
    flops: list[float]
    values: dict[str, tuple[list[float], list[float], list[float]]]  # metric -> (median, low, high) per point


CURVE_METRICS = ("fid", "recognisable")  # the panels
# A point whose samples fall in this few classes is a blank or uniform canvas early in training, which
# the classifier may name with confidence: its recognisable share is drawn as a cross, off the line.
COLLAPSED_MODES = 2


def curve_lines(records: list[Record]) -> list[CurveLine]:
    """The lines of `quality_vs_training_compute`, one per training with a curve of >= 2 points."""
    return [_curve_line(models, rs) for models, rs in _trainings(records)]


def _trainings(records: list[Record]) -> list[tuple[list[str], list[Record]]]:
    """Each training with a curve once, with the models that share it and one record per seed:
    ddpm, ddim and ddim@K train one network (the same train_key for a seed), so their curves are
    the same measurement and one line carries all their names."""
    by_model: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.ok and r.model != DATA_ROW and len(r.quality_curve) >= 2:
            by_model[r.model].append(r)
    groups: dict[tuple[str, ...], tuple[list[str], list[Record]]] = {}
    for model, rs in by_model.items():
        key = tuple(sorted(r.train_key or f"{model}--seed{r.seed}" for r in rs))  # no key: a training of its own
        names, _ = groups.setdefault(key, ([], sorted(rs, key=lambda r: r.seed)))
        names.append(model)
    return list(groups.values())


def _curve_line(models: list[str], records: list[Record]) -> CurveLine:
    samplers = sorted({p["sampler"] for r in records for p in r.quality_curve if p.get("sampler")})
    label = ", ".join(models)
    if any(split_variant(m)[0] != s for m in models for s in samplers):  # ddpm's curve is drawn by DDIM
        label += f" (drawn with {', '.join(samplers)})"
    flops, _, _ = _spread(records, "flops")
    return CurveLine(label, len(records), flops, {key: _spread(records, key) for key in (*CURVE_METRICS, "modes")})


def recognisable_apart(line: CurveLine) -> tuple[list[float], list[tuple[float, float]]]:
    """A line's recognisable shares with its collapsed points (median modes <= COLLAPSED_MODES) taken
    out (NaN, a gap), and those points as (FLOPs, share) for the crosses."""
    shares, modes = line.values["recognisable"][0], line.values["modes"][0]
    collapsed = [m <= COLLAPSED_MODES for m in modes]
    crosses = [(f, v) for f, v, c in zip(line.flops, shares, collapsed) if c]
    return [math.nan if c else v for v, c in zip(shares, collapsed)], crosses


def _spread(records: list[Record], key: str) -> tuple[list[float], list[float], list[float]]:
    """Median, lowest and highest of `key` over the seeds at each share of the budget any of them
    measured, in order: a seed reused from a run with another --curves holds other shares than the
    rest, so points are matched by their share, not their place in the curve."""
    middle: list[float] = []
    low: list[float] = []
    high: list[float] = []
    for share in sorted({share_of(p["fraction"]) for r in records for p in r.quality_curve}):
        values = [_number(p.get(key)) for r in records for p in r.quality_curve if share_of(p["fraction"]) == share]
        found = [v for v in values if not math.isnan(v)] or [math.nan]
        middle.append(statistics.median(found))
        low.append(min(found))
        high.append(max(found))
    return middle, low, high


def _number(value: Any) -> float:
    ok = is_number(value) and math.isfinite(value)
    return float(value) if ok else math.nan


def _curve_samples(records: list[Record]) -> list[int]:
    """The sample counts the curves' points (and the data row's floor) were scored on."""
    return sorted({p["samples"] for r in records if r.ok for p in r.quality_curve if p.get("samples")})


def quality_vs_training_compute(records: list[Record], path: str | Path) -> Path | None:
    """FID (log) and the recognisable share against training FLOPs (log), one line per training,
    with the data row's floor at the curves' sample count and the "TFLOP to target FID" target;
    None when no record has a curve of >= 2 points."""
    lines = curve_lines(records)
    if not lines:
        return None
    floor = next((r.quality_curve for r in records if r.model == DATA_ROW and r.ok and r.quality_curve), [])
    metrics = [m for m in CURVE_METRICS if m == "fid" or any(not math.isnan(v) for line in lines for v in line.values[m][0])]
    columns = 2 if len(metrics) == 1 else 3  # of the legend
    legend_rows = math.ceil((len(lines) + 3) / columns)
    fig = plt.figure(figsize=(5.2 * len(metrics) + 0.6, 4.4 + 0.2 * legend_rows), dpi=120)
    grid = fig.add_gridspec(2, len(metrics), height_ratios=[4.4, 0.2 * legend_rows + 0.1])
    axes = [fig.add_subplot(grid[0, i]) for i in range(len(metrics))]
    # a zoo has more models than the default cycle's 10 colours; tab20's dark shades first, then its
    # light ones, so that neighbouring lines differ in hue and not only in shade
    colours = [plt.get_cmap("tab20")(i) for i in [*range(0, 20, 2), *range(1, 20, 2)]]
    markers = "osD^v<>phX"
    for i, line in enumerate(lines):
        colour = colours[i % len(colours)]
        for ax, metric in zip(axes, metrics):
            middle, low, high = line.values[metric]
            if metric == "recognisable":
                middle, crosses = recognisable_apart(line)
                if crosses:
                    ax.scatter([f for f, _ in crosses], [v for _, v in crosses], marker="x", s=20, lw=1, color=colour)
            ax.plot(line.flops, middle, marker=markers[i % len(markers)], ms=4, lw=1.3, color=colour, label=line.label)
            if line.seeds > 1:
                ax.fill_between(line.flops, low, high, color=colour, alpha=0.15, lw=0)
    _floor_lines(axes, metrics, floor)
    _style_curve_axes(axes, metrics)
    handles: dict[str, Any] = {}
    for ax in axes:  # every line, the floor and the target once
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if "recognisable" in metrics:
        handles["collapsed"] = Line2D([], [], marker="x", ls="", color="grey",
                                      label=f"samples of ≤ {COLLAPSED_MODES} classes: the share means nothing there")
    key = fig.add_subplot(grid[1, :])
    key.axis("off")
    key.legend(handles.values(), [h.get_label() if k == "collapsed" else k for k, h in handles.items()],
               loc="upper center", ncol=columns, fontsize=8, frameon=False)
    fig.suptitle(_curve_title(records, lines), fontsize=10)
    return _save(fig, path)


def _floor_lines(axes: list, metrics: list[str], floor: list[dict[str, Any]]) -> None:
    """The data row's floor (dashed) in each panel, and the target FID (dotted) in the FID panel."""
    point = floor[0] if floor else {}
    for ax, metric in zip(axes, metrics):
        value = _number(point.get(metric))
        if not math.isnan(value):
            ax.axhline(value, color="black", ls="--", lw=1, label=f"data (test split, {point.get('samples', '?')} samples)")
    target = target_fid(floor)
    if target is not None and "fid" in metrics:
        axes[metrics.index("fid")].axhline(target, color="grey", ls=":", lw=1.5, label=f"target ({TARGET_FACTOR:g}× data)")


def _style_curve_axes(axes: list, metrics: list[str]) -> None:
    for ax, metric in zip(axes, metrics):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # a span under a decade labels minor ticks, which collide
        ax.set_xlabel("training FLOPs so far (log)")
        if metric == "fid":
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_ylabel("FID ↓ (log)")
        else:
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("recognisable share ↑")
        ax.grid(True, which="both", alpha=0.3)


def _curve_title(records: list[Record], lines: list[CurveLine]) -> str:
    """Says the points' sample count: fewer samples than the table's give a higher FID, so the
    curves' ends are not the table's numbers."""
    counts = ", ".join(map(str, _curve_samples(records))) or "?"
    table = sorted({r.fid_samples for r in records if r.ok and r.model != DATA_ROW and r.fid_samples})
    title = f"quality against training compute: FID on {counts} samples per point"
    if table:
        title += f"; the table's FID on {', '.join(map(str, table))}"
    seeds = max(line.seeds for line in lines)
    if seeds > 1:
        title += f"\nmedian over {seeds} seeds, the band from the lowest to the highest"
    return title


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
