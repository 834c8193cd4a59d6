"""Tables, figures and files of a run: results.json, results.csv, results.md, plots and the rich table.

Everything is made from the records and the saved sample grids alone, so a report can be
regenerated without training:

    python -m benchmarks.report results/mnist5k-quick-seed0
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

# The keys every record has (null where a model has no such figure), in table order.
RECORD_KEYS = (
    "model", "status", "fid", "kid", "precision", "recall", "feature_space", "fid_samples",
    "bits_per_dim", "bpd_kind", "nfe", "sample_images_per_s", "train_seconds", "train_images_per_s",
    "peak_memory_mb", "memory_kind", "params", "modes", "mode_kl", "label_accuracy",
)

# (key, header with unit, format): the columns of the printed and markdown tables.
COLUMNS = (
    ("model", "model", "{}"),
    ("status", "status", "{}"),
    ("fid", "FID ↓", "{:.2f}"),
    ("kid", "KID ↓", "{:.3f}"),
    ("precision", "precision ↑", "{:.3f}"),
    ("recall", "recall ↑", "{:.3f}"),
    ("fid_samples", "samples", "{:d}"),
    ("modes", "modes ↑", "{:d}"),
    ("mode_kl", "mode KL ↓", "{:.3f}"),
    ("label_accuracy", "label acc ↑", "{:.3f}"),
    ("bits_per_dim", "bits/dim ↓", "{:.3f}"),
    ("bpd_kind", "bpd kind", "{}"),
    ("nfe", "NFE", "{:d}"),
    ("sample_images_per_s", "sample img/s", "{:.1f}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("train_images_per_s", "train img/s", "{:.0f}"),
    ("peak_memory_mb", "peak MB", "{:.0f}"),
    ("params", "params", "{:,}"),
)


def fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def rows(records: list[dict]) -> list[list[str]]:
    return [[fmt(r.get(k), f) for k, _, f in COLUMNS] for r in records]


def rich_table(records: list[dict], title: str | None = None, caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption)
    for key, header, _ in COLUMNS:
        table.add_column(header, justify="left" if key in ("model", "status") else "right")
    for r, cells in zip(records, rows(records)):
        style = None if r.get("status") == "ok" else "red"
        table.add_row(*cells, style=style)
    return table


def footnote(run: dict, records: list[dict]) -> str:
    """What a reader needs to compare the numbers: feature space, sample counts, reference, memory kind."""
    spaces = sorted({r["feature_space"] for r in records if r.get("feature_space")})
    counts = sorted({r["fid_samples"] for r in records if r.get("fid_samples")})
    kinds = sorted({r["memory_kind"] for r in records if r.get("memory_kind")})
    ref = run.get("reference", {})
    return (
        f"Feature space: {', '.join(spaces) or '–'}; generated samples per metric: {', '.join(map(str, counts)) or '–'} "
        f"against {ref.get('split', '?')} ({ref.get('images', '?')} images). "
        f"Bits/dim on the {run.get('bpd_split', 'test')} split, 8-bit scale. Memory: {', '.join(kinds) or '–'}."
    )


# (file in the run folder, caption): the figures results.md embeds when they exist.
FIGURES = (
    ("comparison.png", "Samples, one row per model, with FID and sampling speed"),
    ("plots/quality_vs_cost.png", "Sample quality against sampling cost"),
    ("plots/bits_per_dim.png", "Bits per dimension: exact likelihoods solid, bounds hatched"),
    ("plots/diffusion_steps.png", "One diffusion network, several samplers: FID against seconds per sample"),
    ("plots/loss_curves.png", "Training loss per model"),
)


def markdown(run: dict, records: list[dict], folder: Path | None = None) -> str:
    head = [h for _, h, _ in COLUMNS]
    lines = [
        f"# genzoo results: {run['dataset']}, preset {run['preset']}, seed {run['seed']}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(cells) + " |" for cells in rows(records)),
        "",
        footnote(run, records),
        "",
        f"Device: {run['device']} ({run.get('device_name', '')}, {run.get('threads', '?')} threads)  ",
        f"Budget per model: {_budget(run.get('budget', {}))}  ",
        f"Data split: {run.get('split', '?')}  ",
        f"Feature net: {_feature_net(run.get('feature_space', {}))}  ",
        *(f"Command: `{h['command']}`, {h['wall_seconds'] / 60:.1f} min of training and evaluation  "
          for h in run.get("history", [])),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items()),
    ]
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines += ["", "## Models that did not finish", ""]
        lines += [f"- **{r['model']}**: {r['status']} — {r.get('error', '')}" for r in failed]
    figures = [(f, c) for f, c in FIGURES if folder is not None and (Path(folder) / f).is_file()]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"**{c}**\n\n![{c}]({f})\n" for f, c in figures]
    lines += ["", "## Samples", ""]
    lines += [f"**{r['model']}**  \n![{r['model']}](samples/{r['model']}.png)\n" for r in records if r.get("status") == "ok"]
    return "\n".join(lines) + "\n"


def _budget(b: dict) -> str:
    parts = [f"{b[k]:g} {k}" for k in ("seconds", "epochs", "steps") if b.get(k) is not None]
    return " or ".join(parts) + (f", batch {b['batch_size']}" if b.get("batch_size") else "") if parts else "?"


def _feature_net(space: dict) -> str:
    if "test_accuracy" in space:
        return f"{space.get('name')}, trained on {space.get('task')}, test accuracy {space['test_accuracy']:.3f}"
    return str(space.get("name", "?"))


def write(folder: Path, run: dict, records: list[dict]) -> None:
    """Write results.json, results.csv and results.md; each file is replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / "results.json", json.dumps({"run": run, "models": records}, indent=2))
    flat = [{k: r.get(k) for k in RECORD_KEYS} for r in records]
    _atomic(folder / "results.csv", pd.DataFrame(flat, columns=list(RECORD_KEYS)).to_csv(index=False))
    _atomic(folder / "results.md", markdown(run, records, folder))


def render(folder: str | Path) -> list[Path]:
    """Redraw every figure and rewrite every table of a run folder from its results.json."""
    from benchmarks import plots

    folder = Path(folder)
    run, records = read(folder)
    made = [
        plots.comparison(records, folder, folder / "comparison.png"),
        plots.quality_vs_cost(records, folder / "plots" / "quality_vs_cost.png"),
        plots.bits_per_dim(records, folder / "plots" / "bits_per_dim.png"),
        plots.sampler_tradeoff(records, folder / "plots" / "diffusion_steps.png"),
        plots.loss_curves(records, folder / "plots" / "loss_curves.png"),
    ]
    write(folder, run, records)
    return [p for p in made if p is not None]


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from rich.console import Console

    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description="Regenerate a run's tables and plots.")
    p.add_argument("folder", help="a run folder holding results.json")
    args = p.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    if not (Path(args.folder) / "results.json").is_file():
        console.print(f"[red]error:[/] no results.json in {args.folder}; pass a run folder written by benchmarks.run")
        return 2
    made = render(args.folder)
    run, records = read(Path(args.folder))
    console.print(rich_table(records, title=f"genzoo · {run['dataset']} · {run['preset']}", caption=footnote(run, records)))
    console.print("wrote " + ", ".join(str(m) for m in made), highlight=False)
    return 0



def read(folder: Path) -> tuple[dict, list[dict]]:
    data = json.loads((Path(folder) / "results.json").read_text())
    return data["run"], data["models"]


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
