"""Tables, figures and files of a run: results.csv, results.md, plots and the rich table.

Everything is made from the records and the saved sample grids alone, so a report can be
regenerated without training:

    python -m benchmarks.report results/mnist5k-quick

With several seeds, each number is the mean over seeds ± the half-width of its 95 % t-interval.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table

from benchmarks.cli import Parser
from benchmarks.curves import TARGET_FACTOR, fractions, share_name, target_fid
from benchmarks.records import COLUMNS, DATA_ROW, Record, Row, RunFolder, aggregate, atomic_write, describe_device, is_number, warn_once
from zoo.base import GenzooError, one_line
from zoo.files import check_writable
from zoo.metrics.features import WEAK_NET
from zoo.registry import split_variant

FLAGGED = "flagged"  # the status of a record holding a number it cannot hold (damaged, or edited by hand)
SHARE = (0.0, 1.0)
# What each number of a record can be. A FID beyond 1e6 would need features a thousand apart in every
# dimension; KID, an unbiased estimate, may dip below 0 by its noise (see `problems`); the inception
# score is the exp of a mean KL divergence, which rounding takes a hair below 0 when every sample is
# classified alike (a collapsed model), so its floor has a rounding slack.
ROUNDING = 1e-9
VALID: dict[str, tuple[float, float]] = {
    "fid": (0, 1e6), "kid_std": (0, math.inf), "precision": SHARE, "recall": SHARE, "recognisable": SHARE,
    "label_accuracy": SHARE, "density": (0, math.inf), "coverage": SHARE, "copy_rate": SHARE,
    "nn_distance_ratio": (0, math.inf), "modes": (0, math.inf), "mode_kl": (0, math.inf), "bits_per_dim": (0, math.inf),
    "inception_score": (1 - ROUNDING, math.inf), "fid_samples": (1, math.inf), "nfe": (1, math.inf), "params": (0, math.inf),
    "sample_images_per_s": (0, math.inf), "train_steps": (0, math.inf), "train_flops": (0, math.inf),
    "train_seconds": (0, math.inf), "train_images_per_s": (0, math.inf), "peak_memory_mb": (0, math.inf),
    "flops_to_target": (0, math.inf),
}
# The words a number's field may hold instead: a curve that never reached the target FID says so.
WORDS: dict[str, set[str]] = {"flops_to_target": {"not reached"}}
KID_NOISE = 3  # a KID below -KID_NOISE * kid_std is not noise
NUMBERS = [f.name for f in dataclasses.fields(Record) if str(f.type).split(" ")[0] in ("int", "float")]


def problems(record: Record) -> list[str]:
    """What is impossible in a record: a number that is not finite or outside what it can be."""
    out = []
    numbers = [(name, getattr(record, name), name) for name in NUMBERS]
    numbers += [(f"bits/dim {label}", v, "bits_per_dim") for label, v in record.bpd_extras.items()]  # the VAE's ELBO
    numbers += [(f"nn_distance_quantiles {q}", v, "nn_distance_ratio") for q, v in record.nn_distance_quantiles.items()]
    for name, v, kind in numbers:
        low, high = VALID.get(kind, (-math.inf, math.inf))
        if v is None or (isinstance(v, str) and v in WORDS.get(name, set())):
            continue
        if not is_number(v):
            out.append(f"{name} is {v!r}, not a number")
        elif not math.isfinite(v):
            out.append(f"{name} is {v}")
        elif not low <= v <= high:
            out.append(f"{name} {v:g} is outside [{low:g}, {high:g}]")
    kid, std = record.kid, record.kid_std
    if all(isinstance(v, (int, float)) and math.isfinite(v) for v in (kid, std)) and kid < -KID_NOISE * std:  # type: ignore[operator]
        out.append(f"kid {kid:g} is below -{KID_NOISE} x its std {std:g}")
    return out


def flag(records: list[Record], warn: Any = print) -> list[Record]:
    """The records, each one holding an impossible number marked `flagged` with the reason as its
    error (so the tables show it in red and leave it out of the means), and one warning line each."""
    out = []
    for r in records:
        found = problems(r)
        if found:
            warn(f"warning: {r.model} seed {r.seed}: {'; '.join(found)}; flagged in the tables")
            r = dataclasses.replace(r, status=FLAGGED, error="; ".join(([r.error] if r.error else []) + found))
        out.append(r)
    return out


def sync_results(folder: RunFolder) -> bool:
    """Rewrite results.json from records/ when they disagree (a record added, removed or edited since
    the last merge); True when it was rewritten. A results.json that does not parse is left to the next
    runner, which rebuilds it with the run's settings (the report does not know them)."""
    records = folder.load_records()
    if not records or not folder.run_info():
        return False
    try:
        listed = json.loads(folder.results.read_text())["models"]
        merged = sorted(json.dumps(Record.from_json(m).to_json(), sort_keys=True) for m in listed)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        listed, merged = [], None
    if merged == sorted(json.dumps(r.to_json(), sort_keys=True) for r in records.values()):
        return False
    folder.merge({}, [m["model"] for m in listed if isinstance(m, dict) and "model" in m])
    return True


def fmt(value: Any, spec: str, half: float | None = None, scale: float = 1) -> str:
    """A cell: `spec`-formatted value (a mean of integers keeps one decimal), and "± half" with seeds."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if not is_number(value):
        return str(value)
    value = value * scale
    if spec in ("{:d}", "{:,}"):
        if float(value).is_integer():
            value = int(value)
        else:
            spec = "{:.1f}"
    text = spec.format(value)
    if half is not None:
        text += " ± " + spec.replace("{:d}", "{:.1f}").replace(",", "").format(half * scale)
    return text


def cells(row: Row) -> list[str]:
    return [row.model] + [fmt(row.cells[name][0], spec, row.cells[name][1], scale) + _words_aside(row, name)
                          for name, _, spec, _, scale in COLUMNS]


def _words_aside(row: Row, name: str) -> str:
    """Where some seeds measured a number and others a word (WORDS: "not reached"), the mean is of the
    numbers alone: the cell says over how many seeds, and how many gave the word."""
    values = [getattr(r, name) for r in row.records if r.ok] if name in WORDS else []
    words = [v for v in values if isinstance(v, str)]
    if not words or len(words) == len(values):
        return ""
    return f" ({len(values) - len(words)} of {len(values)} seeds; {words[0]}: {len(words)})"


def headers() -> list[str]:
    return ["model"] + [h for _, h, _, _, _ in COLUMNS]


def rich_table(records: list[Record], title: str | None = None, caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption)
    names = max([len("model"), *(len(r.model) for r in records)])
    for h in headers():  # the model's name whole, however many columns share the width
        table.add_column(h, justify="left" if h in ("model", "status") else "right", no_wrap=h == "model",
                         min_width=names if h == "model" else None)
    for row in aggregate(records):
        table.add_row(*cells(row), style=None if row.status.startswith(("ok", "skipped")) else "red")
    return table


def footnote(run: dict, records: list[Record]) -> str:
    """What a reader needs to compare the numbers: feature space, sample counts, reference, budget, seeds."""
    spaces = sorted({r.feature_space for r in records if r.feature_space})
    counts = sorted({r.fid_samples for r in records if r.fid_samples})
    kinds = sorted({r.memory_kind for r in records if r.memory_kind})
    # the records' own (a folder put together by hand may mix them); a record from before they kept it
    # was trained in the run's
    said = {r.train_precision or str(run.get("precision") or "").split(" ")[0] for r in records if r.train_steps}  # trained here
    precision = " and ".join(sorted(p for p in said if p))
    cuda = any(str(r.memory_kind).startswith("cuda") for r in records) or run.get("tf32_matmuls")
    if precision and (cuda or "TF32" in str(run.get("precision"))):  # (a run before tf32_matmuls wrote it into its precision)
        precision += " (TF32 matmuls on CUDA)"  # a rule, not a claim of every row: a CPU row may sit beside CUDA ones
    seeds = sorted({r.seed for r in records})
    ref = run.get("reference", {})
    interval = (f"Mean over {len(seeds)} seeds ({', '.join(map(str, seeds))}) ± half-width of the 95 % t-interval. "
                if len(seeds) > 1 else f"Seed {seeds[0] if seeds else '?'}. ")
    return (
        interval
        + f"Feature space: {', '.join(spaces) or '–'}; generated samples per metric: {', '.join(map(str, counts)) or '–'} "
        f"against {ref.get('split', '?')} ({ref.get('images', '?')} images); the data row is the held-out test split. "
        "Density and coverage (k = 5) against as many training images as samples. Copy rate: the share of samples "
        "nearer to a training image (in the feature space) than the 1st percentile of held-out test images' distances, "
        "the data row's on the test half that did not set it; NN dist ratio: the median sample's nearest-training "
        "distance over the test images' median. "
        f"Training budget per model: {run.get('budget', '?')}{f', in {precision}' if precision else ''}"
        + (" (train TFLOP: matmul and conv FLOPs of training, forward and backward, counted by torch.utils.flop_counter)"
           if any(r.train_steps for r in records) else "")  # not for rows of samples scored from a file alone
        + ". "
        f"Bits/dim on the {run.get('bpd_split', 'test')} split, 8-bit scale. Memory: {', '.join(kinds) or '–'}."
        + curves_note(records)
    )


def curves_note(records: list[Record]) -> str:
    """The footnote's sentence on the quality curves and the "TFLOP to target FID" column, with the
    sample count, shares and target read from the records; empty where no record has a curve."""
    models = [r for r in records if r.ok and r.model != DATA_ROW and r.quality_curve]
    if not models:
        return ""
    counts = sorted({p["samples"] for r in models for p in r.quality_curve if p.get("samples")})
    shares = _shares(fractions(max(len(r.quality_curve) for r in models)))
    likelihood = " (and bits/dim)" if any(p.get("bits_per_dim") is not None for r in models for p in r.quality_curve) else ""
    drawn = sorted({f"{r.model}'s network with {p['sampler']}'s sampler" for r in models for p in r.quality_curve
                    if p.get("sampler") and p["sampler"] != split_variant(r.model)[0]})
    floor = next((r.quality_curve for r in records if r.model == DATA_ROW and r.ok and r.quality_curve), [])
    target = target_fid(floor)
    text = (f" Quality curves: FID, recognisable share{likelihood} on {', '.join(map(str, counts)) or '?'} samples per "
            f"point at {shares} of the budget, drawn with each model's fast sampler"
            + (f" ({'; '.join(drawn)})" if drawn else "") + "; ")
    if target is None:
        return text + "TFLOP to target FID: not measured (the data row has no curve to set the target)."
    return text + (f"TFLOP to target FID: training compute until the curve's FID first falls to {target:.1f} "
                   f"({TARGET_FACTOR:g}× the data row's FID at the same sample count), interpolated in log–log, mean "
                   "over the seeds that reached it.")


def _shares(values: list[float]) -> str:
    """Budget shares as fractions, "1/32, 1/16, ..., 1"; a long list by its ends."""
    names = [share_name(v) for v in values]
    return ", ".join(names if len(names) <= 6 else [*names[:2], "...", *names[-2:]])


# (file in the run folder, caption): the figures results.md embeds when they exist.
FIGURES = (
    ("comparison.png", "Samples, one row per model (first seed), the data row on top"),
    ("plots/quality_vs_cost.png", "Sample quality against sampling cost: FID against seconds per generated image, "
     "one point a model; a hollow dot's FID is on fewer samples than the others' (the slow samplers'), which reads "
     "higher"),
    ("plots/bits_per_dim.png", "Bits per dimension: exact likelihoods solid, bounds hatched, the other figures a model "
                               "reports dotted (a VAE's looser ELBO; a VQ-VAE's code bits, its prior's share of its bound)"),
    ("plots/sampler_tradeoff.png", "Each trained network (its training family in brackets) with several samplers: "
                                   "FID against seconds per sample"),
    ("plots/guidance_tradeoff.png", "One trained network, several guidance scales: precision, recall and label accuracy "
     "(left) and FID (right) against the scale; w = 0 is the unconditional model, w = 1 the conditional one"),
    ("plots/quality_vs_training_compute.png", "Sample quality against training compute: FID and recognisable share "
     "at shares of each model's budget (fewer samples per point than the table's FID), the data row's floor dashed, "
     "the target FID dotted"),
    ("plots/loss_curves.png", "Training loss per model"),
)


def markdown(run: dict, records: list[Record], folder: RunFolder | None = None) -> str:
    head = headers()
    rows = aggregate(records)
    seeds = run.get("seeds", [run.get("seed", 0)])
    lines = [
        f"# genzoo results: {run.get('dataset', '?')}, preset {run.get('preset', '?')}, seed{'s' if len(seeds) > 1 else ''} "
        f"{', '.join(map(str, seeds))}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(cells(row)) + " |" for row in rows),
        "",
        footnote(run, records),
        "",
        f"Device: {describe_device(run, '?')}  ",
        f"Data split: {run.get('split', '?')}  ",
        f"Feature net: {_feature_net(run.get('feature_space', {}))}  ",
        *(f"Command: `{h['command']}`, {h['wall_seconds'] / 60:.1f} min end to end"
          + (f" ({h['interrupted']})" if h.get("interrupted") else "") + "  " for h in run.get("history", [])),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items()),
    ]
    extras = [(r.model, r.seed, k, v) for r in records for k, v in r.bpd_extras.items()]
    if extras:
        lines += ["", "Other likelihood figures: " + "; ".join(f"{m} (seed {s}) {k} {v:.3f} bits/dim" for m, s, k, v in extras)]
    unfinished = [r for r in records if r.status not in ("ok",)]
    if unfinished:
        lines += ["", "## Models that did not finish, were skipped or were flagged", ""]
        lines += [f"- **{r.model}** (seed {r.seed}): {r.status} — {r.error or ''}" for r in unfinished]
    figures = [(f, c) for f, c in FIGURES if folder is not None and (folder.path / f).is_file()]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"**{c}**\n\n![{c}]({f})\n" for f, c in figures]
    if folder is not None and (explored := folder.path / "explore" / "explore.json").is_file():
        from benchmarks.explore import section  # written by `python -m benchmarks.explore RUN`

        try:
            lines += ["", section(folder.path)]
        except Exception as e:  # noqa: BLE001 - damaged or unreadable: the tables are still written
            warn_once(explored, f"warning: {explored} does not read ({one_line(e)}); the lecture figures are left out "
                                f"of results.md (python -m benchmarks.explore {folder.path} draws and records them again)")
    if folder is not None:
        grids = [(r, folder.samples(r)) for r in records if r.ok and folder.samples(r).is_file()]
        if grids:
            lines += ["", "## Samples", ""]
            lines += [f"**{r.model}** (seed {r.seed})  \n![{r.model}]({g.relative_to(folder.path)})\n" for r, g in grids]
    return "\n".join(lines) + "\n"


def _feature_net(space: dict) -> str:
    if "test_accuracy" in space:
        where = {"shipped": "shipped with genzoo", "file": f"from {space.get('file')}",
                 "trained here": "trained on this machine"}.get(space.get("source", ""), "")
        sha = f", sha256 {space['sha256'][:16]}" if space.get("sha256") else ""
        weak = (f" (below {WEAK_NET}: FID, precision and recall in this space mean little)"
                if space["test_accuracy"] < WEAK_NET else "")
        return (f"{space.get('name')}, trained on {space.get('task')}, test accuracy {space['test_accuracy']:.3f}{weak}"
                + (f", {where}" if where else "") + sha)
    return str(space.get("name", "?"))


def write_tables(folder: RunFolder, run: dict, records: list[Record]) -> None:
    """results.csv (one line per record) and results.md (the aggregated table), each replaced atomically."""
    keys = ["model", "seed", *(name for name, *_ in COLUMNS), "error"]
    flat = [{k: getattr(r, k) for k in keys} for r in records]
    # object columns write each value as recorded: a column with a blank keeps its integers integers
    atomic_write(folder.path / "results.csv", pd.DataFrame(flat, columns=keys, dtype=object).to_csv(index=False))
    atomic_write(folder.path / "results.md", markdown(run, records, folder))


def write_reports(folder: RunFolder, run: dict, records: list[Record]) -> Path:
    """The run's reports, from its records: results.csv, results.md and index.html (the same handout as
    one web page, `benchmarks.html_report`); returns the page's path. The one writer of all three, so
    they never disagree: `render` calls it, and through it run, report, score and explore."""
    from benchmarks import html_report

    write_tables(folder, run, records)
    return html_report.write(folder, run, records)


def render(path: str | Path, draw: bool = True) -> list[Path]:
    """Redraw every figure (unless `draw` is False: explore, whose figures are not these) and rewrite the
    reports of a run folder from its records; returns the figures drawn, then the page."""
    from benchmarks import plots

    folder = RunFolder(path)
    with folder.lock("report"):  # runners sharing a folder take turns; the last one draws every record
        run, records = folder.read()
        records = flag(records)
        figures: dict[str, Callable[[Path], Path | None]] = {
            "comparison.png": lambda p: plots.comparison(records, folder, p),
            "plots/quality_vs_cost.png": lambda p: plots.quality_vs_cost(records, p),
            "plots/bits_per_dim.png": lambda p: plots.bits_per_dim(records, p),
            "plots/sampler_tradeoff.png": lambda p: plots.sampler_tradeoff(records, p),
            "plots/guidance_tradeoff.png": lambda p: plots.guidance_tradeoff(records, p),
            "plots/quality_vs_training_compute.png": lambda p: plots.quality_vs_training_compute(records, p),
            "plots/loss_curves.png": lambda p: plots.loss_curves(records, p),
        }
        made = []
        for name, draw_figure in figures.items() if draw else ():
            if (drawn := draw_figure(folder.path / name)) is not None:
                made.append(drawn)
            else:  # nothing of it in these records: an older run's figure would pass for this one's
                (folder.path / name).unlink(missing_ok=True)
        page = write_reports(folder, run, records)
    return [*made, page]


def main(argv: list[str] | None = None) -> int:
    import sys

    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        return _main(argv, console)
    except GenzooError as e:
        console.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2


def _main(argv: list[str] | None, console: Any) -> int:
    p = Parser(prog="python -m benchmarks.report", description="Regenerate a run's tables, plots and web page.")
    p.add_path("folder", help="a run folder holding results.json")
    p.add_argument("--html", action="store_true", help="print the address of the run's page, RUN/index.html, to open "
                   "in a browser (every report writes it, beside results.md)")
    args = p.parse_args(argv)
    folder = RunFolder(args.folder)
    if not folder.results.is_file() and not folder.records_dir.is_dir():
        raise GenzooError(f"no results.json in {args.folder}; pass a run folder written by benchmarks.run")
    check_writable(folder.path, "the report rewrites its tables, figures and page there; copy the run folder somewhere writable")
    folder.check_subfolders("the run folder")
    if folder.results.is_file() and not folder.run_info() and not folder.load_records():
        raise GenzooError(f"{folder.results} holds no run (it does not parse, or is not a run's results) and there is "
                          "no records/ folder to rebuild it from")
    folder.run_info(warn=True)  # a results.json that does not parse: said before the tables made without it
    if sync_results(folder):
        console.print(f"[yellow]warning: {folder.results} disagreed with {folder.records_dir}/; rewritten from it[/]",
                      highlight=False, soft_wrap=True)
    made = render(args.folder)
    run, records = folder.read()
    records = flag(records, warn=lambda line: None)  # render said it once
    console.print(rich_table(records, title=f"genzoo · {run.get('dataset', '?')} · {run.get('preset', '?')}",
                             caption=footnote(run, records)))
    console.print("wrote " + ", ".join(str(m) for m in made), highlight=False)
    if args.html:
        console.print(f"page: {made[-1].resolve().as_uri()}", highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
