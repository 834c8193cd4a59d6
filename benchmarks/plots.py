"""Plots of a run, made from its records (and saved sample grids) alone, so they can be redrawn
from results.json: `python -m benchmarks.report RUN_FOLDER`.

`quality_vs_cost`: FID against seconds per image, one point per model, the paradigm trade-off.
`bits_per_dim`: every likelihood model, exact and bound styled apart.
`loss_curves`: training loss per model. `comparison`: one row of samples per model.
`sampler_tradeoff`: rows that share one training (ddpm, ddim, ddim@10, ...) are samplers of the same
network; FID against seconds per sample shows what each extra network evaluation buys.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def sampler_points(records: list[dict]) -> dict[str, list[dict]]:
    """Groups of >= 2 finished rows sharing a training key -> [{model, nfe, seconds_per_sample, fid, kid}], by NFE."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok" and r.get("train_key") and r.get("fid") is not None and r.get("sample_images_per_s"):
            groups[r["train_key"]].append({
                "model": r["model"], "nfe": r.get("nfe"), "seconds_per_sample": 1.0 / r["sample_images_per_s"],
                "fid": r["fid"], "kid": r.get("kid"), "fid_samples": r.get("fid_samples"),
            })
    return {k: sorted(v, key=lambda p: p["nfe"] or 0) for k, v in groups.items() if len(v) >= 2}


def sampler_tradeoff(records: list[dict], path: str | Path, title: str = "one training, several samplers") -> Path | None:
    """FID against seconds per sample (log scale) for every group of sampler variants; None if there is none."""
    groups = sampler_points(records)
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    counts = set()
    for key, points in groups.items():
        by_sampler: dict[str, list[dict]] = defaultdict(list)  # ddim@10, ddim@20, ddim -> one line; ddpm -> another
        for p in points:
            by_sampler[p["model"].split("@")[0]].append(p)
            counts.add(p["fid_samples"])
        for sampler, ps in by_sampler.items():
            xs, ys = [p["seconds_per_sample"] for p in ps], [p["fid"] for p in ps]
            ax.plot(xs, ys, "o-", label=f"{sampler} ({key})")
            for p in ps:
                ax.annotate(f"{p['nfe']} NFE", (p["seconds_per_sample"], p["fid"]),
                            textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per sample (1 / sample img/s)")
    ax.set_ylabel("FID ↓")
    ax.set_title(f"{title}; FID on {', '.join(map(str, sorted(counts, key=str)))} samples", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _finished(records: list[dict], key: str) -> list[dict]:
    return [r for r in records if r.get("status") == "ok" and r.get(key) is not None]


def quality_vs_cost(records: list[dict], path: str | Path) -> Path | None:
    """The paradigm trade-off at a glance: FID against seconds per generated image, one point a model."""
    rows = [r for r in _finished(records, "fid") if r.get("sample_images_per_s")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    for r in rows:
        x = 1.0 / r["sample_images_per_s"]
        ax.scatter(x, r["fid"], s=36)
        ax.annotate(f"{r['model']} ({r['nfe']} NFE)", (x, r["fid"]), textcoords="offset points", xytext=(5, 3),
                    fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds per generated image (log)")
    ax.set_ylabel(f"FID ↓ (log), {rows[0].get('feature_space')}")
    ax.set_title("sample quality against sampling cost", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def bits_per_dim(records: list[dict], path: str | Path) -> Path | None:
    """Bits/dim of every likelihood model: exact likelihoods solid, bounds hatched."""
    rows = []
    for r in _finished(records, "bits_per_dim"):
        rows.append(r)
        if r.get("bpd_elbo") is not None:  # a model with a tighter bound shows its ELBO too
            rows.append({"model": f"{r['model']} (ELBO)", "bits_per_dim": r["bpd_elbo"], "bpd_kind": "bound"})
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(rows) + 1.5), dpi=120)
    for i, r in enumerate(rows):
        exact = r.get("bpd_kind") == "exact"
        ax.barh(i, r["bits_per_dim"], color="tab:blue" if exact else "white", edgecolor="tab:blue",
                hatch=None if exact else "//", label="exact" if exact else "bound (upper)")
        ax.annotate(f"{r['bits_per_dim']:.3f} ({r.get('bpd_kind')})", (r["bits_per_dim"], i),
                    textcoords="offset points", xytext=(4, -3), fontsize=8)
    ax.set_yticks(range(len(rows)), [r["model"] for r in rows])
    ax.axvline(8, color="grey", ls=":", lw=1)
    ax.set_xlim(0, max(9.5, 1.15 * max(r["bits_per_dim"] for r in rows)))
    ax.set_xlabel("bits/dim on the test split ↓ (8 = uniform over 256 levels)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    return _save(fig, path)


def loss_curves(records: list[dict], path: str | Path) -> Path | None:
    """Training loss per model, one small panel each (the losses are on different scales)."""
    rows = [r for r in records if r.get("loss_curve")]
    if not rows:
        return None
    cols = min(4, len(rows))
    nrows = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), dpi=110, squeeze=False)
    for ax, r in zip(axes.flat, rows):
        steps, losses = zip(*r["loss_curve"])
        ax.plot(steps, losses, lw=1)
        ax.set_title(r["model"], fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    return _save(fig, path)


def comparison(records: list[dict], folder: str | Path, path: str | Path, per_row: int = 8) -> Path | None:
    """One row of samples per model (the top row of its grid), labelled with its FID and images/s."""
    folder = Path(folder)
    rows = [r for r in records if r.get("status") == "ok" and (folder / "samples" / f"{r['model']}.png").is_file()]
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.15 * len(rows)), dpi=120, squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        grid = plt.imread(folder / "samples" / f"{r['model']}.png")
        cell = (grid.shape[1] - 2) // per_row  # make_grid: 2 px padding around each image
        ax.imshow(grid[: cell + 2], cmap="gray", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        fid = "–" if r.get("fid") is None else f"{r['fid']:.1f}"
        ax.set_ylabel(r["model"], rotation=0, ha="right", va="center", fontsize=9)
        ax.set_title(f"FID {fid} · {r['sample_images_per_s']:.3g} img/s · NFE {r['nfe']}", fontsize=8, loc="right")
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
