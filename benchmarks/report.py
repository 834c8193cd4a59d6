"""Tables and files of a run: results.json, results.csv, results.md and the rich table.

Every table is made from the records alone, so a report can be regenerated from results.json.
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


def markdown(run: dict, records: list[dict]) -> str:
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
        f"Command: `{run['command']}`  ",
        f"Device: {run['device']}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items()),
    ]
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines += ["", "## Models that did not finish", ""]
        lines += [f"- **{r['model']}**: {r['status']} — {r.get('error', '')}" for r in failed]
    lines += ["", "## Samples", ""]
    lines += [f"**{r['model']}**  \n![{r['model']}](samples/{r['model']}.png)\n" for r in records if r.get("status") == "ok"]
    return "\n".join(lines) + "\n"


def write(folder: Path, run: dict, records: list[dict]) -> None:
    """Write results.json, results.csv and results.md; each file is replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / "results.json", json.dumps({"run": run, "models": records}, indent=2))
    flat = [{k: r.get(k) for k in RECORD_KEYS} for r in records]
    _atomic(folder / "results.csv", pd.DataFrame(flat, columns=list(RECORD_KEYS)).to_csv(index=False))
    _atomic(folder / "results.md", markdown(run, records))


def read(folder: Path) -> tuple[dict, list[dict]]:
    data = json.loads((Path(folder) / "results.json").read_text())
    return data["run"], data["models"]


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
