"""The benchmark runner: train every asked-for model under one budget, evaluate, report.

    python -m benchmarks.run --models vae,ddim --preset quick
    python -m benchmarks.run --list

Each model's record is written the moment it is done; a crash or a NaN in one model becomes its
`status` and the run goes on; a rerun of the same command reuses the finished models.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import platform
import shlex
import sys
import time
import traceback
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torchvision.utils import save_image

import zoo
from zoo import data as zdata
from zoo.base import Conditional, GenzooError, Latent, Likelihood
from zoo.metrics import coverage, features, fidelity, likelihood, speed
from zoo.registry import parse
from zoo.train import Diverged, fit, resolve_device, training_key

from benchmarks import report
from benchmarks.presets import PRESETS, Preset

console = Console(width=None if sys.stdout.isatty() else 200)  # wide tables in logs and CI
VERSIONS = ("torch", "torchvision", "diffusers", "normflows", "torch-fidelity", "genzoo")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", help="comma-separated model names (default: every registered model)")
    p.add_argument("--dataset", default="mnist5k", help=f"one of {', '.join(zdata.NAMES)} (default: mnist5k)")
    p.add_argument("--preset", default="quick", choices=list(PRESETS), help="budget preset (default: quick)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, mps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default: results/<dataset>-<preset>-seed<seed>)")
    p.add_argument("--data-root", default="data", help="where torchvision datasets live or are downloaded")
    p.add_argument("--image-size", type=int, help="resize and centre-crop images to this side")
    p.add_argument("--feature-space", default="classifier", choices=features.FEATURE_SPACES,
                   help="classifier (offline, trained once per dataset) or inception (torch-fidelity's Inception-v3)")
    p.add_argument("--inception-weights", help="a local Inception-v3 weights file for --feature-space inception")
    p.add_argument("--list", action="store_true", help="list the models in the zoo and exit")
    p.add_argument("--ddim-steps", help="comma-separated DDIM step counts, e.g. 10,20,50,100: one ddim@K row each, "
                   "sampled from the same trained network, and plots/diffusion_steps.png")
    return p.parse_args(argv)


def list_models() -> None:
    table = Table(title="genzoo models")
    for col in ("name", "capabilities", "NFE (typ.)", "what it is"):
        table.add_column(col)
    spec = zoo.DataSpec(1, 28, 28, 10)
    for name in zoo.available():
        cls, _ = parse(name)
        caps = [c.__name__ for c in (Likelihood, Latent, Conditional) if issubclass(cls, c)]
        if issubclass(cls, Likelihood):
            caps[0] += f" ({cls.bpd_kind})"
        try:
            nfe = str(zoo.create(name, spec, preset="smoke").nfe)
        except Exception:  # a plugin that cannot take 28x28 still gets listed
            nfe = "?"
        table.add_row(name, ", ".join(caps) or "–", nfe, (cls.__doc__ or "").strip().split("\n")[0])
    console.print(table)


def run_info(args: argparse.Namespace, argv: list[str], device: torch.device, space: features.FeatureSpace,
             n_ref: int) -> dict:
    versions = {"python": platform.python_version()}
    for pkg in VERSIONS:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    preset = PRESETS[args.preset]
    return {
        "dataset": args.dataset, "preset": args.preset, "seed": args.seed, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "versions": versions,
        "command": " ".join(["python -m benchmarks.run", *map(shlex.quote, argv)]),
        "budget": dataclasses.asdict(preset.budget),
        "split": zdata.describe_split(args.dataset),
        "reference": {"split": f"{args.dataset}:train", "images": n_ref},
        "bpd_split": "test",
        "feature_space": {"name": space.name, **space.info},
    }


def benchmark_model(name: str, model: zoo.Generator, key: str, args, preset: Preset, device, data, space,
                    out: Path) -> dict:
    """Train (or reuse the training `key` of) one model, evaluate it, and return its record."""
    spec, x_train, y_train, x_test = data
    model.to(device)
    ckpt = out / "checkpoints" / key
    if (ckpt / "train.json").is_file():
        console.print(f"[dim]{name}: reusing the finished training {key} (no retraining)[/]")
    record = {k: None for k in report.RECORD_KEYS}
    record.update(model=name, hparams=dataclasses.asdict(model.config), train_key=key)
    with speed.PeakMemory(device) as mem:
        tr = fit(model, x_train, y_train, preset.budget, seed=args.seed, checkpoint=ckpt, progress=console.is_terminal)
        n_eval = model.eval_samples.get(preset.name, preset.eval_samples)
        samples, sampling = speed.timed_sampling(model, n_eval, batch=preset.speed_batch, seed=args.seed)
        if not torch.isfinite(samples).all():
            raise Diverged(tr.steps, {"samples": float("nan")})
        q = fidelity.quality(samples, x_train, space, reference_name=f"{args.dataset}-train", cuda=device.type == "cuda",
                             isc=space.classify is not None)
        if isinstance(model, Likelihood):
            x_bpd = x_test if preset.bpd_images is None else x_test[: preset.bpd_images]
            extras = {}  # other named figures, e.g. the VAE's bpd_elbo next to its IW bound
            record.update(bits_per_dim=likelihood.bits_per_dim(model, x_bpd, seed=args.seed, extras=extras),
                          bpd_kind=model.bpd_kind, bpd_images=len(x_bpd), **extras)
        if space.classify is not None:
            record.update(coverage.mode_coverage(space.classify(samples), y_train, spec.num_classes))
            if isinstance(model, Conditional):
                asked = torch.arange(min(n_eval, 500)) % spec.num_classes
                drawn = model.sample(len(asked), generator=torch.Generator().manual_seed(args.seed), labels=asked)
                record["label_accuracy"] = coverage.label_accuracy(space.classify(drawn.cpu()), asked)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    save_image(samples[:64], out / "samples" / f"{name}.png", nrow=8, padding=2)
    curve_every = max(1, len(tr.history) // 200)
    record.update(
        status="ok", **q,
        feature_space=space.name, fid_samples=len(samples), fid_reference=f"{args.dataset}:train ({len(x_train)})",
        nfe=model.nfe, **sampling, train_seconds=tr.seconds, train_images_per_s=tr.images_per_s, train_steps=tr.steps,
        train_reused=tr.reused, peak_memory_mb=mem.mb, memory_kind=mem.kind, params=model.num_parameters(),
        loss_curve=[[i + 1, h["loss"]] for i, h in enumerate(tr.history) if i % curve_every == 0],
    )
    return record


def finished(record: dict | None, hparams: dict, key: str) -> bool:
    """A record of an earlier run that this one may reuse: same hyper-parameters and training."""
    return (record is not None and record.get("status") in ("ok", "diverged")
            and record.get("hparams") == hparams and record.get("train_key") == key)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.list:
            list_models()
            return 0
        names = [n.strip() for n in (args.models.split(",") if args.models else zoo.available()) if n.strip()]
        names += ddim_variants(args.ddim_steps, names, args.preset) if args.ddim_steps else []
        for n in names:
            parse(n)  # unknown names fail here, before any training
        device = resolve_device(args.device)
        preset = PRESETS[args.preset]
        spec, x_train, y_train = zdata.load(args.dataset, image_size=args.image_size, data_root=args.data_root)
        _, x_test, y_test = zdata.load(args.dataset, split="test", image_size=args.image_size, data_root=args.data_root)
        if args.feature_space == "classifier":
            space = features.classifier_space(args.dataset, x_train, y_train, x_test, y_test, device=device)
        else:
            space = features.inception_space(args.inception_weights)
    except GenzooError as e:
        console.print(f"[red]error:[/] {e}", highlight=False)
        return 2

    out = Path(args.out or f"results/{args.dataset.replace('/', '_').replace(':', '_')}-{args.preset}-seed{args.seed}")
    run = run_info(args, sys.argv[1:] if argv is None else argv, device, space, len(x_train))
    earlier_run, earlier = report.read(out) if (out / "results.json").is_file() else ({}, [])
    previous = {r["model"]: r for r in earlier}
    # Every command that wrote into this folder, in order, with its wall-clock: `command` alone is only the last.
    run["history"] = earlier_run.get("history", [])
    records: dict[str, dict] = {}
    console.print(f"genzoo: {len(names)} model(s) on {args.dataset} {tuple(x_train.shape)}, preset {args.preset} "
                  f"({preset.about}), device {device}, features {space.name} -> {out}", highlight=False)
    started = time.perf_counter()
    for name in names:
        try:
            model = zoo.create(name, spec, preset=preset.name)
            key = training_key(model, args.dataset, preset.budget, args.seed)
            if finished(previous.get(name), dataclasses.asdict(model.config), key):
                console.print(f"[dim]{name}: finished in an earlier run, reused[/]")
                records[name] = previous[name]
                continue
            data = (spec, x_train, y_train, x_test)
            records[name] = benchmark_model(name, model, key, args, preset, device, data, space, out)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted during {name}; finished models are saved in {out}[/]")
            report.write(out, run, _merge(previous, records))
            return 130
        except Exception as e:
            status = "diverged" if isinstance(e, Diverged) else "error"
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            records[name] = {**{k: None for k in report.RECORD_KEYS}, "model": name, "status": status,
                             "error": f"{type(e).__name__}: {message}" if status == "error" else message,
                             "diverged_step": getattr(e, "step", None)}
            (out / "logs").mkdir(parents=True, exist_ok=True)
            (out / "logs" / f"{name}.txt").write_text(traceback.format_exc())
        report.write(out, run, _merge(previous, records))
        console.print(report.rich_table([records[name]]))
    run["history"].append({"command": run["command"], "wall_seconds": round(time.perf_counter() - started, 1),
                           "models": names})
    all_records = _merge(previous, records)
    report.write(out, run, all_records)
    figures = report.render(out)  # tables again, with the comparison figure and plots embedded
    shown = [records[n] for n in names]
    console.print(report.rich_table(shown, title=f"genzoo · {args.dataset} · {args.preset}",
                                    caption=report.footnote(run, shown)))
    console.print(f"results in {out}/: results.md, results.csv, results.json, samples/, "
                  + ", ".join(str(f.relative_to(out)) for f in figures), highlight=False)
    return 0 if all(r["status"] == "ok" for r in shown) else 1


def ddim_variants(steps: str, names: list[str], preset: str) -> list[str]:
    """`--ddim-steps 10,20,50` -> ddim@10, ddim@20, ddim@50, leaving out what `names` already covers."""
    try:
        ks = [int(k) for k in steps.split(",") if k.strip()]
    except ValueError:
        raise GenzooError(f"--ddim-steps takes comma-separated step counts, e.g. 10,20,50,100; got {steps!r}") from None
    cls, _ = parse("ddim")
    default = cls.presets.get(preset, {}).get("steps", cls.Config.steps)  # what the plain `ddim` row uses
    new = [f"ddim@{k}" for k in dict.fromkeys(ks) if not ("ddim" in names and k == default)]
    return [n for n in new if n not in names]


def _merge(previous: dict[str, dict], records: dict[str, dict]) -> list[dict]:
    """Models of earlier runs in this folder keep their place; new ones follow."""
    merged = {**previous, **records}
    return list(merged.values())


if __name__ == "__main__":
    sys.exit(main())
