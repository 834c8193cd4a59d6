"""The benchmark runner: train every asked-for model under one budget, evaluate, report.

    python -m benchmarks.run --models vae,ddim --preset quick --seeds 0,1,2
    python -m benchmarks.run --list

Every input is checked before any training. Each (model, seed) record is written the moment it is
done; a crash or a NaN in one model becomes its `status` and the run goes on; a rerun of the same
command reuses finished records and resumes an interrupted training. The runner only
orchestrates: training is `zoo.train.fit`, evaluation `benchmarks.evaluate`, files `benchmarks.records`.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import hashlib
import importlib
import importlib.metadata
import io
import json
import multiprocessing
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape
from rich.table import Table
from torch import Tensor
from torchvision.utils import save_image

import zoo
from benchmarks import curves, evaluate, html_report, report, tensorboard_log
from benchmarks.cli import Parser, comma_list, cpu_count, set_threads
from benchmarks.presets import PRESETS, Preset
from benchmarks.records import DATA_ROW, MAX_NAME, Record, RunFolder
from zoo import data as zdata
from zoo import fused, graphs
from zoo.base import Conditional, Generator, GenzooError, Likelihood, capabilities, one_line
from zoo.budget import Budget
from zoo.checkpoint import Checkpoint, save_interval, training_key
from zoo.files import SafeConsole, atomic_write, write_error
from zoo.metrics import features, fidelity, speed
from zoo.nets import replay
from zoo.parallel import Processes
from zoo.registry import describe_hparams, parse, parse_overrides, preset_entry, split_variant
from zoo.seeds import derive_seed, seed_everything
from zoo.train import STOP_SIGNALS, Diverged, Hook, Interrupted, fit, progress_bar, resolve_device, use_deterministic

console = SafeConsole(width=None if sys.stdout.isatty() else 200)  # wide tables in logs and CI
VERSIONS = ("torch", "torchvision", "diffusers", "normflows", "torch-fidelity", "genzoo")
MAX_IMAGE_SIZE = 256  # beyond this the small CPU-first networks make no sense; the full preset goes to 64


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m benchmarks.run", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--models", help="comma-separated model names, variants as name@K (default: every registered model)")
    p.add_argument("--sweep", action="append", default=[], metavar="MODEL@K1,K2,...",
                   help="variants of one model, e.g. ddim@10,20,50: one row each, sharing one training")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="MODEL.FIELD=VALUE",
                   help="override a hyper-parameter, e.g. vae.latent_dim=2 (repeatable)")
    p.add_argument("--dataset", default="mnist5k", help=f"one of {', '.join(zdata.NAMES)} (default: mnist5k)")
    p.add_argument("--preset", default="quick", choices=list(PRESETS),
                   help="budget preset (default: quick). " + " ".join(f"{name}: {preset.about}." for name, preset in PRESETS.items()))
    p.add_argument("--budget", help="replace the preset's budget: 60s, 2000steps, 10epochs or 3e12flops")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    seeds = p.add_mutually_exclusive_group()  # `--seeds 0 --seed 1` would quietly mean seed 1
    seeds.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2: mean and 95%% interval per metric (default: 0)")
    seeds.add_argument("--seed", dest="seeds", help="the same as --seeds")
    p.add_argument("--precision", default="fp32", choices=list(zoo.train.PRECISIONS),
                   help="training precision: fp32 (default; TF32 matmuls on CUDA), bf16 or fp16 autocast (for GPUs)")
    p.add_argument("--graphs", default="auto", choices=graphs.GRAPH_MODES,
                   help="replay each training step as one CUDA graph: auto (on CUDA, where a model allows it), on, off")
    p.add_argument("--fused-seeds", default="auto", choices=fused.FUSE_MODES,
                   help="train a model's seeds as one batched ensemble, where its step allows it: auto (on CUDA), on, off")
    p.add_argument("--deterministic", default=True, action=argparse.BooleanOptionalAction,
                   help="deterministic kernels on CUDA, so the same command gives the same table (default: on; "
                        "the CPU is deterministic either way)")
    p.add_argument("--curves", metavar="K|off",
                   help="quality against training compute: evaluate each training at K points, 1/2^(K-1) ... 1 of its "
                        f"budget (default: the preset's, 6 for quick; 2..{curves.MAX_POINTS}), or off")
    p.add_argument("--log", default="none", choices=("none", "tensorboard"),
                   help="tensorboard: losses, curve metrics, snapshots and hyper-parameters to RUN/tensorboard/ "
                        "(needs the tensorboard extra)")
    p.add_argument("--threads", type=int,
                   help="CPU threads for torch (default: torch's choice; with --jobs N, the CPUs / N, N at most the trainings)")
    p.add_argument("--jobs", type=jobs_in_flight, default=1, metavar="N",
                   help="trainings in flight at once: N worker processes, each training one (model, seed) at a time (default: 1)")
    p.add_path("--out", help="a run folder, created if missing (default: results/<dataset>-<preset>, with -<budget> after it when --budget is "
                                     "given and -<precision> for bf16 or fp16)")
    p.add_path("--data-root", default="data", help="a folder where torchvision datasets live or are downloaded (default: data)")
    p.add_argument("--labels", default="auto", choices=zdata.LABELS,
                   help="auto (default): a dataset's labels where it has them, a folder's from its class subfolders; "
                        "none: read the data unlabeled (conditional models skipped, the feature net learns rotations)")
    p.add_argument("--image-size", type=int, help=f"resize and centre-crop images to this side (4..{MAX_IMAGE_SIZE}; "
                                                  f"a folder's default is {zdata.FOLDER_IMAGE_SIZE})")
    p.add_argument("--feature-space", default="classifier", choices=features.FEATURE_SPACES,
                   help="classifier (offline: shipped for mnist5k, else trained once per dataset and cached) "
                        "or inception (torch-fidelity's Inception-v3)")
    p.add_path("--feature-net", metavar="PATH",
                   help="a classifier feature net (.safetensors with its .json) to measure with, e.g. one shared between "
                        "machines (default: the one shipped for mnist5k, else one trained here and cached)")
    p.add_path("--inception-weights", help="a local Inception-v3 weights file for --feature-space inception")
    p.add_argument("--list", nargs="?", const=True, metavar="MODEL",  # True: no model named
                   help="list the models in the zoo, their hyper-parameters (defaults, what each accepts) and exit; "
                        "--list MODEL for one model")
    args = p.parse_args(argv)
    args.seeds = "0" if args.seeds is None else args.seeds  # not argparse's default: the group compares with it
    return args


def jobs_in_flight(text: str) -> int:
    """--jobs N: a whole number of trainings in flight, 1 or more."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number of trainings in flight, 1 or more (default 1); got {text!r}")
    return n


# -- the plan: everything checked before any training ------------------------------------------

@dataclass
class Job:
    """One model of the plan: its name, hyper-parameter overrides, and the reason it is skipped, if any."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None


MAX_SEED = 2**63 - 1


def parse_seeds(text: str) -> list[int]:
    """--seeds 0,1,2 -> [0, 1, 2]; duplicates collapsed with a note."""
    items = comma_list("--seeds", str(text), "0,1,2")
    # ASCII digits only: Python's int() would read 1_0 as 10. A seed names its records' files
    # (NAME--seedS.json), so it is kept to an int64: 300 digits failed at the first file, after the header.
    seeds = [int(s) for s in items] if all(re.fullmatch(r"[+-]?0*[0-9]{1,19}", s) for s in items) else []
    if not seeds or any(not 0 <= s <= MAX_SEED for s in seeds):
        raise GenzooError(f"--seeds takes non-negative integers (at most 2**63 - 1), e.g. 0 or 0,1,2; got {text!r}")
    unique = list(dict.fromkeys(seeds))
    if len(unique) < len(seeds):
        console.print(f"note: duplicate seeds collapsed: {', '.join(str(s) for s in unique if seeds.count(s) > 1)}")
    return unique


def model_names(args: argparse.Namespace) -> list[str]:
    """--models and --sweep -> names in order, duplicates collapsed with a note: the same name twice,
    or one variant written two ways (ddim@10 and ddim@010)."""
    if args.models is not None and not args.models.strip(","+" "):
        raise GenzooError("--models is empty; name models (see --list), or leave --models out for the whole zoo")
    names = comma_list("--models", args.models, "vae,ddim") if args.models else []
    for sweep in args.sweep:
        base, values = split_variant(sweep)
        ks = [k.strip() for k in (values or "").split(",")]
        if not base or "" in ks:
            raise GenzooError(f"--sweep takes MODEL@K1,K2,... with no empty K, e.g. ddim@10,20,50; got {sweep!r}")
        names += [f"{base}@{k}" for k in ks]
    if not names:
        names = zoo.available()
    if long := next((name for name in names if len(name) > MAX_NAME), None):
        raise GenzooError(f"the model name {long[:20]}... is {len(long)} characters long; at most {MAX_NAME} (it names the row's files)")
    first: dict[Any, str] = {}  # what a name means -> the first name written for it
    again: set[str] = set()
    for name in names:
        key = meaning(name)
        if key in first:
            again.add(name if name == first[key] else f"{name} (as {first[key]})")
        else:
            first[key] = name
    if again:
        console.print(f"note: duplicate model names collapsed: {', '.join(sorted(again))}")
    return list(first.values())


def meaning(name: str) -> Any:
    """What a model name asks for: ddim@10 and ddim@010 are one variant; an unknown name is itself
    (refused by `plan`, in its own words)."""
    if split_variant(name)[1] is None:
        return name
    try:
        cls, variant = parse(name)
    except GenzooError:
        return name
    return cls.name, tuple(sorted(variant.items()))


def plan(args: argparse.Namespace, spec: zoo.DataSpec) -> list[Job]:
    """Every model built once on the data's shape: unknown names, bad variants, bad --set values and
    image sizes a model cannot take are refused here, in one line, before anything trains."""
    names = model_names(args)
    overrides = parse_overrides(args.overrides)
    for model in overrides:
        if not any(split_variant(n)[0] == model for n in names):
            raise GenzooError(f"--set names {model}, which is not among the models of this run ({', '.join(names)})")
    jobs = []
    for name in names:
        cls, variant = parse(name)
        job = Job(name, overrides.get(cls.name, {}))
        both = sorted(set(variant) & set(job.overrides))
        if both:
            raise GenzooError(f"--set {cls.name}.{both[0]} and the variant {name} both set {both[0]}; use one of them")
        if issubclass(cls, Conditional) and spec.num_classes is None:
            job.skip = "class-conditional, and " + ("--labels none reads the data without its labels" if args.labels == "none"
                                                    else zdata.why_unlabeled(args.dataset))
        else:
            try:  # small on CPU; refuses what cannot be built, before anything trains
                zoo.create(name, spec, preset=args.preset, **job.overrides)
            except GenzooError:
                raise
            except Exception as e:  # a plugin's constructor, or torch, refusing a value its Config let through
                given = (", ".join(f"{k}={v}" for k, v in job.overrides.items())
                         or (f"its {args.preset} hyper-parameters" if preset_entry(cls.presets, args.preset) else "its defaults"))
                raise GenzooError(f"{name} could not be built ({given}): {one_line(e)}") from None
        jobs.append(job)
    if all(job.skip for job in jobs) and (args.models or args.sweep):  # nothing would train: a run of no use
        raise GenzooError("every model asked for would be skipped (" + "; ".join(f"{j.name}: {j.skip}" for j in jobs)
                          + "); give a model that trains on this data")
    return jobs


def every_model_takes(jobs: list[Job], spec: zoo.DataSpec, preset: str) -> Callable[[int], bool]:
    """Whether each model of the run (as `plan` built it) can also be built at another square side."""
    def takes(side: int) -> bool:
        at = dataclasses.replace(spec, height=side, width=side)
        try:
            for job in jobs:
                if not job.skip:
                    zoo.create(job.name, at, preset=preset, **job.overrides)
        except Exception:  # noqa: BLE001 - a model refusing the side, by GenzooError or its constructor's own
            return False
        return True
    return takes


def plugin_modules(jobs: list[Job]) -> tuple[str, ...]:
    """The modules a `--jobs` worker imports for the models registered by an import in this process
    (a script's `import my_model`); one line for a model the workers cannot import, before any work."""
    modules = {job.name: parse(job.name)[0].__module__ for job in jobs if not job.skip}
    if main := next((name for name, module in modules.items() if module == "__main__"), None):
        raise GenzooError(f"--jobs: {main} is registered in the script that started the run, which the workers cannot "
                          "import; register it in a module of its own (or an entry point), or use --jobs 1")
    return tuple(sorted({m for m in modules.values() if not m.startswith("zoo.models")}))


def note_unfused(jobs: list[Job], seeds: list[int], budget: Budget, precision: str, processes: int = 1) -> None:
    """--fused-seeds on: one note line naming what will train its seeds one at a time, and why."""
    if len(seeds) < 2:
        console.print("note: --fused-seeds on with one seed: there are no seeds to train together", highlight=False)
        return
    if processes > 1:
        console.print(f"note: --fused-seeds on under data parallelism ({processes} processes): each seed trains alone",
                      highlight=False)
        return
    alone: dict[str, list[str]] = {}  # why -> the models it keeps apart
    for job in jobs:
        if not job.skip and (why := fused.why_not_fused(parse(job.name)[0], budget, precision)):
            alone.setdefault(why, []).append(job.name)
    if alone:
        said = "; ".join(f"{', '.join(names)} ({why})" for why, names in alone.items())
        console.print(f"note: --fused-seeds on: these train their seeds one at a time: {said}", highlight=False, soft_wrap=True)


def check_out_folder(out: Path, dataset: str) -> None:
    """Refuse a run folder that cannot be made or written, one whose report files are someone else's,
    and one inside the image folder it would read, and leave nothing behind: the folder itself is
    made once every input has passed (`make_out_folder`)."""
    if out.exists() and not out.is_dir():
        raise GenzooError(f"--out {out} is a file; give a folder (it is created if missing)")
    folder = RunFolder(out)
    folder.check_subfolders("--out")
    made_by_a_run = (folder.results, folder.records_dir, out / "checkpoints", out / "set-aside", out / "results.json.corrupt")
    if out.is_dir() and not any(p.exists() for p in made_by_a_run):
        theirs = [name for name in ("results.md", "results.csv", html_report.PAGE, "plots", "samples") if (out / name).exists()]
        if theirs:
            raise GenzooError(f"--out {out} is not a run folder (no results.json or records/) and holds {', '.join(theirs)}, "
                              "which a run would overwrite; give a new or empty folder, or a run folder")
    if dataset.startswith("folder:"):
        images = zdata.folder_root(dataset).resolve()
        if out.resolve() == images or images in out.resolve().parents:
            raise GenzooError(f"--out {out} is inside the image folder {images}: the run's images would join the data; "
                              "give an --out outside it")
        written = next((w for w in ((out / name).resolve() for name in RunFolder.SUBFOLDERS) if w in (images, *images.parents)),
                       None)
        if written is not None:
            raise GenzooError(f"the image folder {images} is inside {written}, which the run writes: the data would change "
                              f"under it; copy the images out of --out {out}")
    there = next(p for p in [out, *out.absolute().parents] if p.exists())  # the folder it would be made in
    if (e := write_error(there)) is not None:
        raise GenzooError(f"cannot write to --out {out} ({e.strerror or type(e).__name__}); give a writable folder")


def make_out_folder(out: Path) -> None:
    """Create the run folder once every input has passed, and check that it takes files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise GenzooError(f"cannot write to --out {out} ({e.strerror or type(e).__name__}); give a writable folder") from None


def note_folder(headers: zdata.Headers, size: int, size_by_default: bool, takes: Callable[[int], bool]) -> None:
    """What reading a folder's images changes of them, where a user may not expect it; `takes(side)`
    says whether every model of the run can be built at that side (advice they refuse is none)."""
    side = headers.largest_short_side
    if size_by_default and 4 <= side < size:  # the default size may enlarge small images
        fit = next((s for s in range(side, 3, -1) if takes(s)), None)
        advice = ("" if fit is None else f"; --image-size {fit} enlarges none of them, at less cost"
                  + ("" if fit == side else f" (the largest side up to {side} that every model of this run takes)"))
        console.print(f"note: the folder's images are at most {side} pixels on their short side, enlarged to "
                      f"{size}{advice}", highlight=False)
    for note in headers.notes():
        console.print(note, highlight=False, soft_wrap=True)


def feature_space(args: argparse.Namespace, splits: zdata.Splits, device: torch.device) -> features.FeatureSpace:
    if args.feature_space == "classifier":
        return features.classifier_space(splits, device=device, net_path=args.feature_net)
    return features.inception_space(args.inception_weights)


CHECKOUT = Path(__file__).resolve().parent.parent  # the folder holding zoo/ and benchmarks/


def code_commit(here: Path = CHECKOUT) -> str | None:
    """The commit of the genzoo checkout at `here` (this code's), "+edits" where its code differs from
    it (a new file too); None where `here` is not the top of a git work tree (an installed copy, even
    one inside someone's repository)."""
    own = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # not a hook's repository or index

    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=here, capture_output=True, text=True,
                              timeout=30, check=True, env=own).stdout.strip()
    try:
        if not Path(git("rev-parse", "--show-toplevel")).samefile(here):
            return None
        head, edits = git("rev-parse", "--short=12", "HEAD"), git("status", "--porcelain", "--", "zoo", "benchmarks")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+edits" if edits else "")


def run_info(args: argparse.Namespace, argv: list[str], preset: Preset, budget: Budget, device: torch.device,
             space: features.FeatureSpace, splits: zdata.Splits, seeds: list[int]) -> dict[str, Any]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in VERSIONS:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "dataset": args.dataset, "data_hash": splits.content_hash, "preset": preset.name, "seeds": seeds,
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": code_commit(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "deterministic": args.deterministic,
        "graphs": args.graphs,
        "versions": versions,
        "command": " ".join(["python -m benchmarks.run", *map(shlex.quote, argv)]),
        "budget": str(budget),
        "split": zdata.describe_split(args.dataset),
        "data_options": {"image_size": args.image_size, "labels": args.labels, "data_root": args.data_root},
        "reference": {"split": f"{args.dataset}:train", "images": len(splits.x_train)},
        "bpd_split": "test",
        "feature_space": {"name": space.name, **space.info},
    }


# -- one model, one seed ------------------------------------------------------------------------

def eval_key(model: Generator, train_key: str, preset: Preset, space: features.FeatureSpace, seed: int) -> str:
    """What an evaluation depends on: the training, every hparam (sampler ones too), the settings, the space."""
    what = [train_key, model.name, dataclasses.asdict(model.config), dataclasses.asdict(preset.eval), preset.name,
            space.fingerprint, seed]
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]


def reusable(folder: RunFolder, name: str, seed: int, key: str) -> Record | None:
    """An earlier record this run may keep: same evaluation key, and its checkpoint still intact."""
    old = folder.load_records().get((name, seed))
    if old is None or old.eval_key != key or old.status not in ("ok", "diverged"):
        return None
    where = folder.checkpoint_of(old)
    ckpt = Checkpoint(where) if where is not None else None
    if old.status == "ok" and (ckpt is None or ckpt.weights_hash() != old.weights_hash):
        if ckpt is None or not ckpt.result_file.exists():  # a damaged one is named by `fit` as it sets it aside
            console.print(f"[yellow]{name} seed {seed}: its record's checkpoint is missing; training again[/]")
        return None
    return old


def benchmark(job: Job, seed: int, args: argparse.Namespace, preset: Preset, budget: Budget, device: torch.device,
              splits: zdata.Splits, space: features.FeatureSpace | None, folder: RunFolder,
              procs: Processes | None = None) -> Record | None:
    """Train (or reuse, or resume) one model with one seed, evaluate it, and return its record.

    Data-parallel: every process trains; the main one alone evaluates and returns the record (the
    others return None), and it alone decides reuse, so that all processes take the same path."""
    procs = procs or Processes()
    model = build(job, seed, splits.spec, preset, device)
    key = training_key(model, splits.content_hash, budget, seed, procs.world, args.precision)
    old = None
    if procs.main:
        assert space is not None
        ekey = eval_key(model, key, preset, space, seed)
        old = reusable(folder, job.name, seed, ekey)
    if procs.from_main(old is not None):
        console.print(f"[dim]{job.name} seed {seed}: finished in an earlier run, reused[/]")
        if old is not None and old.status == "ok":  # the main process; a diverged record has no curve to keep
            note_other_curve(job.name, seed, old.quality_curve or [], old.train_steps or 0, preset, budget,
                             folder.checkpoint(key))
        return old
    ckpt = folder.checkpoint(key)
    waiting = lambda: console.print(f"{job.name} seed {seed}: another runner is training it; waiting for it to finish")
    # Two runners asking for one training: the second waits, then reuses it. Only the main process
    # locks (the others follow it in every collective, so they would wait for it forever).
    lock = folder.lock(f"train-{key}", on_wait=waiting) if procs.main else contextlib.nullcontext()
    seeds = parse_seeds(args.seeds)
    together: set[str] = set()
    with speed.PeakMemory(device) as mem:
        if procs.world == 1 and fused.fuses(args.fused_seeds, device, len(seeds)) \
                and not fused.why_not_fused(type(model), budget, args.precision):
            together = train_together(job, seeds, args, preset, budget, device, splits, space, folder)
        trains = procs.main and key not in together  # else `fit` below loads what was just trained
        hooks = training_hooks(job, seed, model, key, args, preset, splits, space, folder) if trains else []
        with lock:
            tr = fit(model, splits.x_train, splits.y_train, budget, seed=seed, checkpoint=ckpt,
                     progress=console.is_terminal and procs.main, processes=procs, precision=args.precision,
                     graphs_mode=args.graphs, hooks=hooks)
        if key in together:  # trained just now, in this job, with the other seeds
            tr = dataclasses.replace(tr, reused=False)
        if not procs.main:
            return None
        if not tr.reused and key not in together:
            # Evaluate it as saved, as a reuse, `score` and the lecture page do: a training then scores
            # the same whether it ran now or earlier (a plugin's state outside its weights is not saved).
            del model  # its weights and optimizer states go before the new one is built
            model = build(job, seed, splits.spec, preset, device)
            try:
                model.load_weights(ckpt)  # written and hashed a moment ago
            except Exception as e:  # a plugin that saves what its freshly built model cannot take
                why = " ".join(str(e).split())[:300]  # torch names the weight on the lines after its first
                raise GenzooError(f"{job.name}'s checkpoint does not load into a freshly built {job.name}: {why}; "
                                  "what it saves must fit the model its Config builds (a buffer whose shape training "
                                  "changes?)") from None
        assert space is not None
        record = Record(job.name, seed, status="running", budget=str(budget), hparams=dataclasses.asdict(model.config),
                        overrides=job.overrides, train_key=key, eval_key=ekey, params=model.num_parameters(),
                        checkpoint=str(Path("checkpoints") / key), train_processes=procs.world,
                        deterministic=args.deterministic, train_precision=args.precision)
        if tr.reused:
            console.print(f"[dim]{job.name} seed {seed}: reusing the finished training {key}[/]")
            note_other_curve(job.name, seed, tr.curve, tr.steps, preset, budget, ckpt)
        elif len(tr.curve) < preset.curve.points:  # points are measured after steps, at most one a step
            console.print(f"note: {job.name} seed {seed}: the quality curve has {len(tr.curve)} of the {preset.curve.points} "
                          f"points of --curves: the shares of training that fall within one of its {tr.steps} steps are "
                          "measured once", highlight=False, soft_wrap=True)
        with progress_bar(f"{job.name} seed {seed}", console.is_terminal) as bar:
            task = bar.add_task("evaluate", total=None, info="")
            metrics, samples = evaluate.evaluate(model, splits, space, preset.eval, preset=preset.name, seed=seed,
                                                 progress=lambda phase: bar.update(task, info=f"evaluating: {phase}"))
    every = max(1, len(tr.history) // 200)
    record = dataclasses.replace(
        record, **{"status": "ok", **metrics}, train_steps=tr.steps, train_seconds=tr.seconds,
        train_images_per_s=tr.images_per_s, flops_per_step=tr.flops_per_step, train_flops=tr.train_flops,
        train_reused=tr.reused, events=tr.events, peak_memory_mb=mem.mb, memory_kind=mem.kind,
        weights_hash=Checkpoint(ckpt).weights_hash(),
        loss_curve=[[i + 1, h["loss"]] for i, h in enumerate(tr.history) if i % every == 0],
        quality_curve=tr.curve,
    )
    save_grid(samples, folder.samples(record))
    return record


def build(job: Job, seed: int, spec: zoo.DataSpec, preset: Preset, device: torch.device) -> Generator:
    """A job's model with its initial weights, which depend on (seed, model) only."""
    cls, _ = parse(job.name)
    seed_everything(derive_seed(seed, "init", cls.training_family()))
    return zoo.create(job.name, spec, preset=preset.name, **job.overrides).to(device)


def note_other_curve(name: str, seed: int, curve: list[dict[str, Any]], steps: int, preset: Preset, budget: Budget,
                     checkpoint: Path) -> None:
    """A reused training keeps the quality curve measured while it trained: where --curves asks for
    points it did not measure, say so (the record's evaluation does not depend on them, so it is
    reused as it is). A wall-clock budget's points depend on the clock: nothing to compare."""
    if not preset.curve.points or budget.unit == "seconds":
        return
    if [p["fraction"] for p in curve] != curves.measured_fractions(preset.curve.points, steps):
        console.print(f"note: {name} seed {seed}: the quality curve is the {len(curve)} points measured in that training, "
                      f"not the {preset.curve.points} of --curves; for those delete {checkpoint} and rerun",
                      highlight=False, soft_wrap=True)


def training_hooks(job: Job, seed: int, model: Generator, key: str, args: argparse.Namespace, preset: Preset,
                   splits: zdata.Splits, space: features.FeatureSpace | None, folder: RunFolder) -> list[Hook]:
    """What watches a training: the quality curve, and TensorBoard when asked for."""
    hooks: list[Hook] = []
    if space is not None and preset.curve.points:
        hooks.append(curves.QualityCurve(splits, space, preset.curve, seed=derive_seed(seed, "curve", model.training_family()),
                                         snapshots=folder.snapshots(key)))
    if args.log == "tensorboard":
        hooks.append(tensorboard_log.TensorBoardLog(folder.path / "tensorboard" / f"{job.name}-seed{seed}",
                                                     dataclasses.asdict(model.config),
                                                     snapshots=folder.snapshots(key) if preset.curve.points else None))
    return hooks


# Trainings that an ensemble could not finish in this process (it failed, or the seed diverged in it):
# they train alone, in their own job, and are never tried together again.
alone: set[str] = set()


def train_together(job: Job, seeds: list[int], args: argparse.Namespace, preset: Preset, budget: Budget,
                   device: torch.device, splits: zdata.Splits, space: features.FeatureSpace | None,
                   folder: RunFolder) -> set[str]:
    """This model's seeds that no finished or interrupted training covers yet, trained as one batched
    ensemble (`zoo.fused`) into their own checkpoints, which each seed's job then finds finished.
    Returns the training keys it trained; none when fewer than two seeds need training. An ensemble
    that fails (out of memory, say) says so in one line, and its seeds then train alone."""
    todo: list[tuple[int, Generator, str]] = []
    for seed in seeds:
        model = build(job, seed, splits.spec, preset, device)
        todo.append((seed, model, training_key(model, splits.content_hash, budget, seed, 1, args.precision)))

    def untrained(key: str) -> bool:
        ckpt = Checkpoint(folder.checkpoint(key))
        return key not in alone and ckpt.finished() is None and not ckpt.resume_file.exists()

    todo = [t for t in todo if untrained(t[2])]
    if len(todo) < 2:
        return set()
    with contextlib.ExitStack() as locks:
        for _, _, key in sorted(todo, key=lambda t: t[2]):  # one order for every runner: no deadlock
            locks.enter_context(folder.lock(f"train-{key}", on_wait=lambda: console.print(
                f"{job.name}: another runner is training one of its seeds; waiting for it to finish")))
        todo = [t for t in todo if untrained(t[2])]  # another runner may have trained one meanwhile
        if len(todo) < 2:
            return set()
        console.print(f"{job.name}: seeds {', '.join(str(s) for s, _, _ in todo)} train together as one batched ensemble",
                      highlight=False)
        keys = [k for _, _, k in todo]
        try:
            results: list[Any] = fused.fit_seeds(
                [m for _, m, _ in todo], [s for s, _, _ in todo], splits.x_train, splits.y_train, budget,
                checkpoints=[folder.checkpoint(k) for k in keys],
                hooks=[training_hooks(job, s, m, k, args, preset, splits, space, folder) for s, m, k in todo],
                progress=console.is_terminal, precision=args.precision, graphs_mode=args.graphs)
        except Exception as e:  # Interrupted is not an Exception: a stop still stops the run
            console.print(f"[yellow]{job.name}: training its seeds together failed ({escape(one_line(e))}); "
                          "each seed trains alone[/]")
            results = [None] * len(keys)
    del todo, model  # the ensemble's models: their memory goes before a seed trains alone
    if device.type == "cuda" and None in results:
        torch.cuda.empty_cache()
    trained = {k for k, r in zip(keys, results) if r is not None}
    alone.update(k for k in keys if k not in trained)  # failed or diverged together: they train alone from now on
    return trained


def data_record(seed: int, preset: Preset, splits: zdata.Splits, space: features.FeatureSpace,
                folder: RunFolder) -> Record:
    """The held-out test split scored like a model, and its grid of real images."""
    if len(splits.x_test) < preset.eval.samples:  # a small folder, or the full preset's count
        console.print(f"note: the test split holds {len(splits.x_test)} images, fewer than the {preset.eval.samples} samples "
                      "a model is scored with: the data row's FID and KID (and the curves' target) read higher than "
                      "at that count, and its copy rate is measured on few images; compare the models with each other", highlight=False)
    metrics, images = evaluate.score_data(splits, space, preset.eval)
    floor = curves.floor(splits, space, preset.curve) if preset.curve.points else []
    record = Record(DATA_ROW, seed, status="ok", **metrics, quality_curve=floor)
    save_grid(images, folder.samples(record))
    return record


def save_grid(images: Tensor, path: Path) -> None:
    """The first 64 images as an 8x8 grid, written whole: another runner drawing the comparison
    figure never reads half a file. Fewer than 8 images (a small test split) are followed by grey
    cells to a full row, as comparison.png cuts every grid's top row into 8 cells."""
    images = images[:64]
    if len(images) < 8:
        images = torch.cat([images, images.new_full((8 - len(images), *images.shape[1:]), 0.5)])
    atomic_write(path, lambda tmp: save_image(images, tmp, nrow=8, padding=2, format="PNG"))


def failed(job: Job, seed: int, e: Exception, folder: RunFolder) -> Record:
    status = "diverged" if isinstance(e, Diverged) else "error"
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    # whole or not at all (and its folder made): a disk that takes no more files is one line naming it, exit 2,
    # no empty log left
    atomic_write(folder.path / "logs" / f"{job.name}--seed{seed}.txt", "".join(traceback.format_exception(e)))
    return Record(job.name, seed, status=status, error=message if status == "diverged" else f"{type(e).__name__}: {message}",
                  diverged_step=getattr(e, "step", None))


# -- --jobs N: trainings side by side -----------------------------------------------------------
#
# Each (model, seed) is `benchmark` in a worker process, started fresh (spawn: no forked torch
# threads or CUDA state). The runner keeps the rest: the data row, writing each record as it comes
# back (`finish`), the history entry and the report. A training does not depend on what ran before
# it in its process (`benchmark` seeds it from (seed, model)), so the records are those of --jobs 1
# with the same threads. Locks, checkpoints and reuse work as between runners on one folder.

@dataclass
class Worker:
    """What a worker process holds for every job it runs: the runner's settings and data, and a
    feature space of its own (one holds a function, which does not travel between processes)."""

    args: argparse.Namespace
    preset: Preset
    budget: Budget
    device: torch.device
    splits: zdata.Splits
    space: features.FeatureSpace
    folder: RunFolder


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
worker: Worker | None = None  # in a worker process, once `start_worker` has run
busy = False  # a worker is running a job
stops: list[int] = []  # the stop signals a worker has seen


def start_worker(args: argparse.Namespace, preset: Preset, budget: Budget, device: torch.device,
                 splits: zdata.Splits, out: Path, plugins: tuple[str, ...] = ()) -> None:
    """A worker's start: the runner's settings, threads and data (sent once, in shared memory), the
    same feature space (the runner has cached its net), the modules of plugins registered by import
    rather than an entry point, and the console without progress bars, which N of them would garble."""
    global worker, console
    for s in STOP_SIGNALS:
        signal.signal(s, _stop_worker)
    stop_with_runner()
    with contextlib.redirect_stdout(io.StringIO()):  # the runner has said which plugins failed to load
        zoo.available()
    for module in plugins:  # a fresh process has the zoo and the entry points, not what the runner's caller imported
        importlib.import_module(module)
    console = SafeConsole(width=console.width, force_terminal=False)
    set_threads(args.threads)
    use_deterministic(args.deterministic and device.type != "cpu")
    replay.sampling_graphs(args.graphs)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    worker = Worker(args, preset, budget, device, splits, feature_space(args, splits, device), RunFolder(out))


def stop_with_runner() -> None:
    """A runner killed outright (SIGKILL, the out-of-memory killer) passes no stop on: on Linux the
    kernel then sends its workers SIGTERM, and each saves the training in hand and exits (`runner_gone`),
    rather than training on unseen, holding its locks, for a record nobody will write."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no such call
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if runner_gone():  # it died before the call above
        os.kill(os.getpid(), signal.SIGTERM)


def runner_gone() -> bool:
    """In a worker: its runner has died (the worker was handed to another parent). Holds for the
    `spawn` context `side_by_side` uses, whose workers the runner starts itself (not a fork server's)."""
    parent = multiprocessing.parent_process()
    return parent is not None and os.getppid() != parent.pid


def _stop_worker(signum: int, frame: Any) -> None:
    """The first stop signal ends the job in hand as it ends the runner's (within a training, `fit`'s
    own handler saves a checkpoint first). A repeat does not cut that ending short: Ctrl-C reaches a
    worker from the terminal and again from the runner. An idle worker starts no more jobs."""
    first = not stops
    stops.append(signum)
    if not busy and runner_gone():  # nothing in hand, and no runner to take a record: its pool would wait forever
        os._exit(Interrupted(signum).exit_code)
    if first and busy:
        raise Interrupted(signum)


def worker_ready() -> None:
    """A job that does nothing: its result says a worker has started (`side_by_side`)."""


def run_job(job: Job, seed: int) -> Record | tuple[int, int | None, list[int] | None] | None:
    """One (model, seed) in a worker: its record (a failure becomes one, as in the runner); or, when a
    stop signal ended it, (signal, step in training or None, the seeds trained together or None); or
    None for a job not started, the worker having been stopped already."""
    global busy
    assert worker is not None, "start_worker runs first"
    w = worker
    if stops:
        return None
    busy = True
    try:
        record = benchmark(job, seed, w.args, w.preset, w.budget, w.device, w.splits, w.space, w.folder)
        assert record is not None  # one process: it evaluates
        return record
    except Exception as e:
        return failed(job, seed, e, w.folder)
    except Interrupted as e:
        if runner_gone():  # the training is saved; nobody is left to send the record to
            os._exit(e.exit_code)
        stops.append(e.signum)
        return e.signum, e.step, e.together
    finally:
        busy = False


def followers_last(todo: list[tuple[Job, int]], together: Callable[[type[Generator]], bool] = lambda cls: False
                   ) -> list[tuple[Job, int]]:
    """The jobs of one training (ddpm and ddim, a --sweep's variants) after every other job: in flight
    together, the second would wait for the first's training while a core could train another model.
    Where a model's seeds train `together` (as one ensemble), its other seeds' jobs follow too."""
    seen: set[tuple[str, int | None]] = set()
    leaders: list[tuple[Job, int]] = []
    followers: list[tuple[Job, int]] = []
    for job, seed in todo:
        training = training_of(job, seed, together)
        (followers if training in seen else leaders).append((job, seed))
        seen.add(training)
    return leaders + followers


def training_of(job: Job, seed: int, together: Callable[[type[Generator]], bool]) -> tuple[str, int | None]:
    """Which training a job waits on: its model's training family, and its seed unless the model's
    seeds train `together` as one ensemble."""
    cls = parse(job.name)[0]
    return cls.training_family(), None if together(cls) else seed


def in_flight(asked: int, jobs: list[Job], seeds: list[int],
              together: Callable[[type[Generator]], bool] = lambda cls: False) -> int:
    """--jobs N: N trainings at once, or as many as the run has when that is fewer (their workers then
    share the cores among them, not N ways). The jobs of one training (ddpm and ddim, a --sweep's
    variants, seeds trained `together`) count once: the others wait on it (`followers_last`)."""
    trainings = {training_of(job, seed, together) for job in jobs if not job.skip for seed in seeds}
    return max(1, min(asked, len(trainings)))


def side_by_side(todo: list[tuple[Job, int]], n: int, start: tuple[Any, ...], folder: RunFolder,
                 finish: Callable[[Record], None]) -> tuple[list[str], Interrupted] | None:
    """Run `todo` with n jobs in flight, calling `finish` with each record as it comes back.

    A stop signal to the runner, or to one worker, stops them all: the runner passes it on, starts
    no more jobs, and waits until every job in flight has saved its training and come back (one line
    each, as the runner's), finishing the records that did. Returns the line said of each training it
    stopped and the first stop, for the history entry; None when every job ran.

    A worker that dies without a word (killed for memory, a crash in a library) breaks the pool, and
    every job not finished fails with it, whichever killed it. Those jobs run again, from their last
    checkpoints, in a fresh pool of one worker, which runs them in turn: one that kills that worker
    too is recorded as an error, and the jobs after it go on in another such pool."""
    stop: Interrupted | None = None
    first: Interrupted | None = None  # the first stop a worker reported
    said: list[str] = []  # each training a stop ended, as its line said it
    runners_handlers: dict[int, Any] = {}  # swapped, after a stop, for one that waits (`saving`)

    def saving(signum: int, frame: Any) -> None:  # a repeat raised anywhere (in the pool's callbacks) is a traceback
        with contextlib.suppress(OSError):  # os.write: print could land inside a print it interrupted (reentrant call)
            os.write(2, f"{signal.Signals(signum).name}: the trainings in flight are saving and come back in a moment "
                        "(kill -9 ends the runner at once; a rerun resumes from their last checkpoints)\n".encode())

    def stop_all(e: BaseException) -> None:
        nonlocal stop
        if stop is not None:
            return  # a repeat while the workers save: they have had the first
        stop = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
        if threading.current_thread() is threading.main_thread():
            runners_handlers.update((s, signal.signal(s, saving)) for s in STOP_SIGNALS)
        # The jobs not started are cancelled here, not left to the pool's shutdown: a future cancelled
        # there is never marked done for `as_completed`, which then waits for it forever.
        for future in [f for f in running if f.cancel()]:
            del running[future]
        for child in multiprocessing.active_children():  # the pool's workers: the runner starts no others
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, stop.signum)
        pool.shutdown(wait=False, cancel_futures=True)

    while todo and stop is None:
        pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker,
                                   initargs=start)
        running: dict[Future, tuple[Job, int]] = {}
        broken: list[tuple[Job, int]] = []  # what a worker's death took down
        with pool:
            try:
                # Every worker started before the first job. Python's pool watches for a dead worker
                # among those it knew when it last woke, and `submit` wakes it before starting a worker:
                # the last one's death went unseen until another job ended.
                wait([pool.submit(worker_ready) for _ in range(n)])
                for job, seed in todo:
                    try:
                        running[pool.submit(run_job, job, seed)] = (job, seed)
                    except BrokenProcessPool as e:  # a worker died starting: its jobs wait for the next pool
                        death = e
                        broken.append((job, seed))
            except (Interrupted, KeyboardInterrupt) as e:
                stop_all(e)
            while running:
                try:
                    for future in as_completed(list(running)):
                        job, seed = running.pop(future)
                        try:
                            result = future.result()
                        except BrokenProcessPool as e:
                            death, result = e, None
                            if stop is None:
                                broken.append((job, seed))
                        except Exception as e:  # cancelled in a stop
                            result = None if stop else failed(job, seed, e, folder)
                        if isinstance(result, Record):
                            finish(result)
                        elif result is not None:  # a stop ended it; its training is saved
                            ended = Interrupted(result[0], result[1], together=result[2])
                            said.append(f"{job.name} seed {seed}: {ended}")
                            console.print(f"[yellow]{said[-1]}[/]", highlight=False)
                            first = first or ended
                            stop_all(ended)  # a worker stopped on its own stops the run
                            break  # `running` is now the jobs started: wait for those alone
                except (Interrupted, KeyboardInterrupt) as e:
                    stop_all(e)
        broken.sort(key=todo.index)  # in the order asked for: as_completed gives them in any order
        if n == 1 and broken and stop is None:  # one worker runs them in turn: the first not back killed it
            job, seed = broken.pop(0)
            finish(failed(job, seed, death, folder))
        todo, n = broken, 1
        if todo and stop is None:
            console.print(f"[yellow]a worker ended without a word (killed for memory?); {len(todo)} job(s) it took down "
                          f"run again from their checkpoints, one at a time: {', '.join(f'{j.name} seed {s}' for j, s in todo)}[/]",
                          highlight=False)
    if stop is None:
        return None
    for s, handler in runners_handlers.items():  # the report after the stop can be stopped again
        signal.signal(s, handler)
    if first is None:
        said = [f"the runner: {stop}"]
        console.print(f"[yellow]{said[0]}[/]", highlight=False)
    return said, first or stop


# -- the command --------------------------------------------------------------------------------

def list_models(args: argparse.Namespace) -> None:
    """The zoo (or the one model --list names), with what each model can do, whether it takes this
    dataset's image size, and its hyper-parameters: default, the preset's value, what each accepts."""
    names = zoo.available() if args.list is True else [parse(args.list)[0].name]
    spec = zdata.load(args.dataset, image_size=args.image_size, data_root=args.data_root, labels=args.labels)[0]
    table = Table(title=f"genzoo models (NFE and sizes for {args.dataset}, {'x'.join(map(str, spec.shape))})")
    for column in ("name", "capabilities", "NFE", f"takes {spec.height}x{spec.width}", "what it is"):
        table.add_column(column)
    hparams = Table(title=f"hyper-parameters (--set MODEL.FIELD=VALUE; preset {args.preset})")
    for column in ("model", "field", "default", args.preset, "accepts"):
        hparams.add_column(column)
    for name in names:
        cls, _ = parse(name)
        preset = preset_entry(cls.presets, args.preset) or {}
        fields = describe_hparams(cls)
        together = (cls.validate.__doc__ or "").strip().split("\n")[0] if cls.validate is not Generator.validate else ""
        if together:  # the model's checks of several fields, or of the data
            fields.append(("(together)", "", together))
        for i, (f, default, accepted) in enumerate(fields):
            hparams.add_row(name if i == 0 else "", f, repr(default) if f in cls.Config.__dataclass_fields__ else "",
                            repr(preset[f]) if f in preset else "", accepted,
                            end_section=i == len(fields) - 1)
        caps = capabilities(cls)
        if issubclass(cls, Likelihood):
            caps[caps.index("Likelihood")] += f" ({cls.bpd_kind})"
        try:
            nfe, takes = str(zoo.create(name, spec, preset=args.preset).nfe), "yes"
        except GenzooError as e:
            nfe, takes = "–", str(e)
        except Exception as e:  # noqa: BLE001 - a plugin's constructor failing: its row says so, the others list
            nfe, takes = "–", f"could not be built: {one_line(e)}"
        table.add_row(name, ", ".join(caps) or "–", nfe, takes, (cls.__doc__ or "").strip().split("\n")[0])
    console.print(table)
    console.print(hparams)


def _stop(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """The command. A stop signal (SIGTERM, SIGHUP, SIGINT) stops it, in training or outside: one line,
    a history entry, exit 128 + its number (143, 129, 130); a file it cannot write is one line, exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        previous = {s: signal.signal(s, _stop) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals stay as they are
        return _refusing_unwritable(argv)
    try:
        return _refusing_unwritable(argv)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def _refusing_unwritable(argv: list[str]) -> int:
    try:
        return _main(argv)
    except GenzooError as e:  # a file that cannot be written once the run is under way (zoo.files.atomic_write)
        console.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return 2
    except (Interrupted, KeyboardInterrupt) as e:  # a stop between the steps _main catches it in: between the folder's claim and the first work
        stop = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
        console.print(f"[yellow]{stop}[/]", highlight=False)
        return stop.exit_code


def _main(argv: list[str]) -> int:
    procs = Processes()
    error: str | None = None
    held = contextlib.ExitStack()  # the run folder's claim (`RunFolder.claim`), held to the run's end
    try:
        args = parse_args(argv)
        set_threads(args.threads)
        if args.image_size is not None and not 4 <= args.image_size <= MAX_IMAGE_SIZE:
            raise GenzooError(f"--image-size must be between 4 and {MAX_IMAGE_SIZE}, got {args.image_size}")
        if args.list is not None:
            list_models(args)
            return 0
        seeds = parse_seeds(args.seeds)
        args.seeds = ",".join(map(str, seeds))  # as parsed: each job reads them again
        features.check_space_files(args.feature_space, args.feature_net, args.inception_weights)
        features.check_cache()
        preset = PRESETS[args.preset]
        if args.curves is not None:
            preset = dataclasses.replace(preset, curve=dataclasses.replace(preset.curve, points=curves.parse_points(args.curves)))
        if args.log == "tensorboard":
            tensorboard_log.check_available()
        budget = Budget.parse(args.budget, preset.budget.batch_size) if args.budget is not None else preset.budget  # "" is refused
        device = resolve_device(args.device)
        # Before any CUDA work: cuBLAS reads its workspace setting once. The CPU's kernels repeat
        # exactly already, and torch's deterministic mode would only slow them.
        use_deterministic(args.deterministic and device.type != "cpu")
        args.deterministic = args.deterministic or device.type == "cpu"  # what the records say
        graphs.check_graphs(args.graphs, device)
        replay.sampling_graphs(args.graphs)  # the samplers' network calls, as the training steps
        if device.type == "cuda":  # TF32 matmuls (cuDNN convolutions use it already), as GPU users expect
            torch.set_float32_matmul_precision("high")
        procs = Processes.start(cpu=device.type == "cpu")  # one process unless torchrun/accelerate started several
        if procs.world > 1:
            device = procs.device or device  # accelerate's: cuda:LOCAL_RANK on GPUs
            console.quiet = not procs.main  # one process speaks
            if args.jobs > 1:
                raise GenzooError(f"--jobs {args.jobs} does not go with data parallelism ({procs.world} processes); "
                                  "under torchrun or accelerate launch use --jobs 1")
            if budget.batch_size % procs.world:
                raise GenzooError(f"the batch of {budget.batch_size} does not split evenly over {procs.world} processes; "
                                  f"use a preset or --budget whose batch is divisible by {procs.world}")
        save_interval()  # a bad $GENZOO_SAVE_EVERY is refused now, not in the first training
        # A budget or precision of one's own gets a folder of its own: its records must not replace the preset's.
        name = f"{args.dataset.replace('/', '_').replace(':', '_')}-{args.preset}"
        out = Path(args.out or f"results/{name}" + (f"-{budget.tag}" if args.budget is not None else "")
                   + (f"-{args.precision}" if args.precision != "fp32" else ""))
        check_out_folder(out, args.dataset)
        splits = zdata.load_splits(args.dataset, image_size=args.image_size, data_root=args.data_root, uint8=True,
                                   min_test=fidelity.MIN_IMAGES, labels=args.labels)
        jobs = plan(args, splits.spec)
        if args.dataset.startswith("folder:"):
            note_folder(zdata.folder_headers(zdata.folder_layout(zdata.folder_root(args.dataset), args.labels)[0]),
                        splits.spec.height, args.image_size is None, every_model_takes(jobs, splits.spec, args.preset))
            root = zdata.folder_root(args.dataset)
            for note in (zdata.left_out_note(root), zdata.empty_classes_note(root, splits.classes),
                         zdata.untrained_classes_note(splits)):
                if note:
                    console.print(note, highlight=False, soft_wrap=True)
        plugins = plugin_modules(jobs) if args.jobs > 1 else ()
        if args.fused_seeds == "on":  # asked for by name: say where it does not apply
            note_unfused(jobs, seeds, budget, args.precision, procs.world)
        fusing = procs.world == 1 and fused.fuses(args.fused_seeds, device, len(seeds))
        together = lambda cls: fusing and not fused.why_not_fused(cls, budget, args.precision)  # noqa: E731
        if args.jobs > 1 and args.threads is None:  # the trainings side by side share the cores
            args.threads = max(1, cpu_count() // in_flight(args.jobs, jobs, seeds, together))
            set_threads(args.threads)
        space = feature_space(args, splits, device) if procs.main else None  # only the main process evaluates
        make_out_folder(out)
        if space is not None:  # the main process: the folder's records and settings are its to write
            folder = RunFolder(out)
            run = run_info(args, argv, preset, budget, device, space, splits, seeds)
            run["processes"] = procs.world
            run["precision"] = args.precision
            run["tf32_matmuls"] = device.type == "cuda"
            order = [j.name for j in jobs]
            held.enter_context(folder.claim(run, order))  # last: nothing after it can fail and leave it held
    except GenzooError as e:
        error = str(e)
    except (Interrupted, KeyboardInterrupt) as e:  # nothing trained yet, nothing to keep
        held.close()
        stop = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
        console.print(f"[yellow]{stop}[/]", highlight=False)
        return stop.exit_code
    error = procs.from_main(error)  # the main process alone builds the feature space: all stop if it failed
    if error is not None:
        console.print(f"[red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)  # one line, however long
        procs.close()
        return 2
    if not procs.main:
        return train_only(jobs, seeds, args, preset, budget, device, splits, out, procs)

    assert space is not None
    with held:  # released when the run ends, however it ends
        acc = space.info.get("test_accuracy")
        console.print(f"genzoo: {len(jobs)} model(s) x {len(seeds)} seed(s) on {args.dataset} {tuple(splits.x_train.shape)}, "
                      f"preset {preset.name}, budget {budget}, device {device}, features {space.name}"
                      + (f" (test accuracy {acc:.3f} on {space.info.get('task')})" if acc is not None else "") + f" -> {out}",
                      highlight=False)
        if acc is not None and acc < features.WEAK_NET:
            console.print(f"[yellow]warning: the feature net reaches only {acc:.3f} on its own task (chance "
                          f"{space.info.get('chance', 0):.2f}); FID, precision and recall in this space mean little[/]")
        started = time.perf_counter()
        interrupted: Interrupted | None = None
        said: list[str] = []  # what the stop ended, one line each, for the history entry
        shown: list[Record] = []
        doing = "the data row"

        target: float | None = None  # the FID of the "FLOPs to reach" column, set by the data row's curve

        def finish(record: Record) -> None:
            nonlocal target
            if record.model == DATA_ROW:
                target = curves.target_fid(record.quality_curve)
            elif record.quality_curve and target is not None:
                record.flops_to_target = curves.flops_to_reach(record.quality_curve, target) or "not reached"
            else:  # no curve, or a reused one with no target this run (--curves off): not measured, as the footnote says
                record.flops_to_target = None
            folder.write_record(record)  # first: a stop between the two keeps it
            if record.model != DATA_ROW:
                folder.set_aside_unlike(record)
            folder.merge(run, order)
            shown.append(record)
            console.print(report.rich_table([record]))
            if record.error:
                console.print(f"[red]{record.model} seed {record.seed}: {record.status}: {record.error}[/]", highlight=False)

        try:
            if args.jobs > 1:  # the data row here, the trainings in worker processes, the records written here
                finish(data_record(seeds[0], preset, splits, space, folder))
                todo = []
                for seed in seeds:
                    for job in jobs:
                        if job.skip:
                            finish(Record(job.name, seed, status="skipped", error=job.skip))
                        else:
                            todo.append((job, seed))
                doing = "the trainings in flight"
                stopped = side_by_side(followers_last(todo, together), in_flight(args.jobs, jobs, seeds, together),
                                       (args, preset, budget, device, splits, out, plugins), folder, finish)
                if stopped is not None:
                    said, interrupted = stopped
            else:
                for seed in seeds:
                    if seed == seeds[0]:  # the test split is the same images whatever the seed: scored once
                        doing = "the data row"
                        finish(data_record(seed, preset, splits, space, folder))
                    for job in jobs:
                        doing = f"{job.name} seed {seed}"
                        if job.skip:
                            finish(Record(job.name, seed, status="skipped", error=job.skip))
                            continue
                        record: Record | None
                        try:
                            record = benchmark(job, seed, args, preset, budget, device, splits, space, folder, procs)
                        except Exception as e:  # Interrupted and KeyboardInterrupt are not Exceptions: they stop the run
                            record = failed(job, seed, e, folder)
                        if record is not None:
                            finish(record)
        except (Interrupted, KeyboardInterrupt) as e:
            interrupted = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
            said = [f"{doing}: {interrupted}"]
            console.print(f"[yellow]{said[0]}[/]", highlight=False)

        entry: dict[str, Any] = {"command": run["command"], "wall_seconds": round(time.perf_counter() - started, 1),
                                 "models": order, "seeds": seeds}
        if interrupted:
            entry["interrupted"] = "; ".join(said)
        try:
            folder.merge({**run, "new_history": [entry]}, order)
            figures = report.render(out)
        except (Interrupted, KeyboardInterrupt) as e:
            stop = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
            console.print(f"[yellow]{stop}; the records are in {out}, python -m benchmarks.report {out} redraws the tables[/]",
                          highlight=False)
            return stop.exit_code
        # flagged as the files are (the report has said why, so silently here)
        rows = report.flag([r for r in shown if r.model in order or r.model == DATA_ROW], warn=lambda line: None)
        if args.jobs > 1:  # the plan's order, not the order the trainings finished in
            rows.sort(key=lambda r: -1 if r.model == DATA_ROW else order.index(r.model))
        console.print(report.rich_table(rows, title=f"genzoo · {args.dataset} · {preset.name}",
                                        caption=report.footnote(folder.run_info(), rows)))
        console.print(f"results in {out}/: results.md, results.csv, results.json, samples/, "
                      + ", ".join(str(f.relative_to(out)) for f in figures), highlight=False)
        code = interrupted.exit_code if interrupted else 0 if all(r.status in ("ok", "skipped") for r in shown) else 1
        procs.wait()
        procs.close()
        return code


def train_only(jobs: list[Job], seeds: list[int], args: argparse.Namespace, preset: Preset, budget: Budget,
               device: torch.device, splits: zdata.Splits, out: Path, procs: Processes) -> int:
    """A data-parallel process other than the main one: the same trainings, in the same order, and
    nothing written; then wait for the main process to finish evaluating and reporting."""
    code = 0
    for seed in seeds:
        for job in jobs:
            if job.skip:
                continue
            try:
                benchmark(job, seed, args, preset, budget, device, splits, None, RunFolder(out), procs)
            except Interrupted as e:
                code = e.exit_code
                break
            except Exception:  # the main process records it (an error here is the same error there)
                pass
        if code:
            break
    procs.wait()
    procs.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
