"""The one training loop for every model: a budget, seeding, progress, divergence, checkpoints.

The loop knows nothing of paradigms: it hands batches to `model.train_step`, which owns its
optimizers. It counts the training FLOPs of one step on the first real step, keeps the moving
average of the weights when the model's `config.ema` asks for it, scales the optimizers' learning
rates when its `config.lr_schedule` does, saves a resumable checkpoint
every few minutes and on SIGTERM, SIGHUP or SIGINT, and resumes from it exactly. `Checkpoint` is the one
place that decides whether a training is done, can be resumed, or must start over.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import random
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.flop_counter import FlopCounterMode

from zoo.base import LR_SCHEDULES, Generator, GenzooError
from zoo.data import to_float
from zoo.files import atomic_write, quiet_if_terminal_closed, say, set_aside, stale_temporaries, unwritable
from zoo.parallel import Processes

DEVICES = ("auto", "cpu", "cuda", "mps")
# autocast dtype of train_step (None: none); fp16 also scales losses (see Generator.optimize)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
BUDGET_UNITS = {"s": "seconds", "steps": "steps", "epochs": "epochs", "flops": "flops"}
SAVE_EVERY = 300.0  # seconds between resumable checkpoints; $GENZOO_SAVE_EVERY overrides it (0: after every step)
# What stops a training after its step, with a checkpoint: a kill, a closed terminal or SSH session, Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


@dataclass(frozen=True)
class Budget:
    """How long a model trains: `amount` of `unit` (seconds, steps, epochs or training FLOPs).

    Seconds are a wall-clock race (the table then depends on how busy the machine was); steps,
    epochs and FLOPs give the same training on any machine. A FLOP budget spends the same compute
    on every model: the loop runs floor(flops / flops_per_step) steps."""

    amount: float
    unit: str = "steps"
    batch_size: int = 64

    def __post_init__(self):
        if self.unit not in BUDGET_UNITS.values():
            raise GenzooError(f"unknown budget unit {self.unit!r}; accepted: {', '.join(BUDGET_UNITS.values())}")
        if not (math.isfinite(self.amount) and self.amount > 0):
            raise GenzooError(f"a budget must be a positive number of {self.unit}, got {self.amount}")
        if self.unit == "steps" and self.amount != int(self.amount):
            raise GenzooError(f"a step budget must be a whole number, got {self.amount}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise GenzooError(f"batch size must be a positive int, got {self.batch_size!r}")

    @classmethod
    def parse(cls, text: str, batch_size: int = 64) -> Budget:
        """"60s", "2000steps", "10epochs", "3e12flops" -> Budget."""
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(s|steps|epochs|flops)\s*", str(text))
        try:
            amount = float(m.group(1)) if m else math.nan
        except ValueError:
            amount = math.nan
        if math.isinf(amount):
            raise GenzooError(f"budget {text!r} overflows: {m.group(1) if m else text} is beyond the largest float "
                              "(about 1.8e308); give a smaller one")
        if m is None or not math.isfinite(amount):
            raise GenzooError(f"bad budget {text!r}; accepted: a number and a unit, e.g. 60s, 2000steps, 10epochs, 3e12flops")
        return cls(amount, BUDGET_UNITS[m.group(2)], batch_size)

    def __str__(self) -> str:
        amount = f"{self.amount:.3g}" if self.unit == "flops" else f"{self.amount:g}"
        return f"{amount} {self.unit}, batch {self.batch_size}"

    def max_steps(self, steps_per_epoch: int, flops_per_step: float | None) -> float:
        """Steps this budget allows (inf for a wall-clock budget, which the loop stops by time)."""
        if self.unit == "steps":
            return int(self.amount)
        if self.unit == "epochs":
            return max(1, math.ceil(self.amount * steps_per_epoch))
        if self.unit == "flops":
            return max(1, math.floor(self.amount / flops_per_step)) if flops_per_step else math.inf
        return math.inf


@dataclass
class TrainResult:
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    flops_per_step: float | None = None  # matmul/conv FLOPs of one train_step, forward and backward
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per step
    events: list[str] = field(default_factory=list)  # resumes and interruptions, in order
    reused: bool = False

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def train_flops(self) -> float | None:
        return None if self.flops_per_step is None else self.flops_per_step * self.steps


class Diverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step."""

    def __init__(self, step: int, losses: dict[str, float]):
        super().__init__(f"diverged at step {step}: {losses}")
        self.step = step


class Interrupted(BaseException):
    """One of the STOP_SIGNALS arrived: during training (`step`), after a resumable checkpoint was
    saved where there is a checkpoint folder, or outside training (`step` None). A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows the stop."""

    def __init__(self, signum: int, step: int | None = None, saved: bool = True):
        name = signal.Signals(signum).name
        if step is None:
            what = "outside training: finished work is kept, a rerun goes on from there"
        else:
            what = f"at step {step}: " + ("checkpoint saved, a rerun resumes here" if saved else "no checkpoint folder, nothing saved")
        super().__init__(f"{name} {what}")
        self.signum, self.step = signum, step
        self.exit_code = 128 + signum  # 143 for SIGTERM, 129 for SIGHUP, 130 for SIGINT


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a device that is not there is one clear line."""
    if device not in DEVICES and not re.fullmatch(r"cuda:\d+", device):
        raise GenzooError(f"unknown device {device!r}; accepted: {', '.join(DEVICES)} or cuda:N")
    mps = getattr(torch.backends, "mps", None)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenzooError(f"device {device!r} asked for but CUDA is not available; use --device cpu or auto")
    if device == "mps" and not (mps is not None and mps.is_available()):
        raise GenzooError("device 'mps' asked for but MPS is not available; use --device cpu or auto")
    return torch.device(device)


def save_interval() -> float:
    """Seconds between resumable checkpoints: $GENZOO_SAVE_EVERY if set, else SAVE_EVERY."""
    text = os.environ.get("GENZOO_SAVE_EVERY")
    if text is None:
        return SAVE_EVERY
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:
        raise GenzooError(f"GENZOO_SAVE_EVERY must be seconds between checkpoints, >= 0 (0: after every step); got {text!r}")
    return seconds


def derive_seed(seed: int, *names: object) -> int:
    """A seed for one purpose, from the run's seed and names: stable across processes and orders."""
    text = json.dumps([seed, *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") % 2**63


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise GenzooError(f"unknown precision {precision!r}; accepted: {', '.join(PRECISIONS)}")


def training_key(model: Generator, data_hash: str, budget: Budget, seed: int, processes: int = 1,
                 precision: str = "fp32") -> str:
    """Same key = same training: sampler variants (ddpm/ddim) of one model share it. The data enters
    by the hash of its content, never its path, so changed images never reuse an old training.
    A data-parallel training draws other noise than one process does, so its process count is part
    of the key (left out for one process, so that single-process keys stay as they were)."""
    what: dict[str, Any] = {
        "family": model.train_family or model.name,
        "config": model.training_config(),
        "spec": asdict(model.spec),
        "data": data_hash,
        "budget": asdict(budget),
        "seed": seed,
    }
    if processes > 1:
        what["processes"] = processes
    if precision != "fp32":  # the same for mixed precision
        what["precision"] = precision
    digest = hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{what['family']}-{digest}"


class WeightAverage:
    """Exponential moving average of a model's parameters (Polyak averaging, which Glow and PixelCNN++
    evaluate): avg <- decay * avg + (1 - decay) * weights after every step, starting from the weights
    after the first step. A late loss spike then barely moves the weights that are evaluated.
    (torch's AveragedModel would deep-copy the whole model, optimizers included; this keeps the
    parameters only.)"""

    def __init__(self, model: Generator, decay: float):
        self.model, self.decay = model, decay
        self.average: list[Tensor] | None = None

    @torch.no_grad()
    def update(self) -> None:
        weights = [p.detach() for p in self.model.parameters()]
        if self.average is None:
            self.average = [w.clone() for w in weights]
        else:
            for a, w in zip(self.average, weights):
                a.lerp_(w, 1 - self.decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for p, a in zip(self.model.parameters(), self.average or []):
            p.copy_(a)


def file_hash(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class Checkpoint:
    """A training's folder, the one owner of "is this training done, resumable, or to start over".

    Done: `model.safetensors` + `config.json` (the `Generator.save` format) and `train.json`, which
    holds the TrainResult and the hash of the weights file. In progress: `resume.pt`, the whole
    training state (weights, optimizers, weight average, RNG states, step, history) as tensors,
    numbers, strings, lists and dicts only, read with `torch.load(weights_only=True)`: a run folder
    from someone else cannot run code here. A done training whose weights do not match their hash,
    or a resume file that does not load that way, is set aside with one line and started over."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.result_file = self.folder / "train.json"
        self.resume_file = self.folder / "resume.pt"

    def finished(self) -> dict | None:
        """The saved TrainResult of a finished training whose weights are intact, else None."""
        try:
            saved = json.loads(self.result_file.read_text())
            if saved.pop("weights_hash") != file_hash(self.folder / "model.safetensors"):
                return None
            return saved
        except (OSError, ValueError, KeyError):
            return None

    def weights_hash(self) -> str | None:
        saved = self.finished()
        return None if saved is None else json.loads(self.result_file.read_text())["weights_hash"]

    def load_finished(self, model: Generator) -> TrainResult | None:
        saved = self.finished()
        if saved is None:
            if self.result_file.exists():
                self._set_aside(self.result_file, "weights that do not match their hash")
            return None
        try:
            model.load_weights(self.folder)
        except Exception as e:  # a damaged weights file that still hashes right cannot happen; a changed model can
            self._set_aside(self.result_file, f"weights that do not load ({type(e).__name__})")
            return None
        return TrainResult(**{**saved, "reused": True})

    def save_finished(self, model: Generator, result: TrainResult) -> None:
        try:
            model.save(self.folder)
        except OSError as e:
            raise unwritable(e.filename or self.folder, e) from None
        saved = {k: v for k, v in asdict(result).items() if k != "reused"}
        saved["weights_hash"] = file_hash(self.folder / "model.safetensors")
        atomic_write(self.result_file, json.dumps(saved))
        self.resume_file.unlink(missing_ok=True)

    def save_progress(self, state: dict[str, Any]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file torch writes through Python: a failure is an OSError
                torch.save(state, f)

        atomic_write(self.resume_file, write)

    def load_progress(self) -> dict[str, Any] | None:
        for stale in stale_temporaries(self.resume_file):  # a killed saver's; one process trains a key at a time
            stale.unlink(missing_ok=True)
        if not self.resume_file.is_file():
            return None
        try:
            return torch.load(self.resume_file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # what weights_only refuses: a class, a function, anything that runs code
            self._set_aside(self.resume_file, "a resume file that holds pickled objects (refused: loading it could run code)")
        except Exception as e:
            self._set_aside(self.resume_file, f"a resume file that does not load ({type(e).__name__})")
        return None

    def _set_aside(self, path: Path, why: str) -> None:
        set_aside(path, f"checkpoint {self.folder} has {why}", "training from the start")


@contextmanager
def _signals_caught() -> Iterator[list[int]]:
    """The STOP_SIGNALS set a flag the loop reads after each step (main thread only)."""
    caught: list[int] = []
    try:
        old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals stay as they are
        yield caught
        return
    try:
        yield caught
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Every random state the loop restores on resume, as tensors, numbers and lists (numpy's key and
    Python's state would otherwise pickle as objects)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, np.asarray(key).tolist(), int(pos), int(has_gauss), float(gauss)],
             "python": [version, list(internal), gauss_next]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """Epoch `epoch`'s order of n images: from (seed, epoch) alone, so a resume sees the same batches."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, "order", epoch)))


class EpochSampler(DistributedSampler):
    """A DistributedSampler that deals the loop's order: positions [start, stop) of `epoch_order`,
    every `world`-th one to this process, so that the processes' batches together are the global one."""

    def __init__(self, data: Dataset, seed: int, epoch: int, start: int, stop: int, procs: Processes):
        super().__init__(data, num_replicas=procs.world, rank=procs.rank, shuffle=False)
        self.order = epoch_order(len(data), seed, epoch)[start:stop]  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return len(self.order) // self.num_replicas


class Batches:
    """Step s's batch for this process: the global batch is positions [i bs, (i+1) bs) of epoch e's
    order (s = e * steps_per_epoch + i), and each process takes every `world`-th image of it.

    Images in memory (float in [0,1], or uint8: a quarter of the memory) are indexed directly; a
    Dataset of (uint8 image, label or -1) is read through a DataLoader with `workers` processes."""

    def __init__(self, x: Tensor | Dataset, y: Tensor | None, bs: int, seed: int, procs: Processes,
                 device: torch.device, workers: int = 0):
        self.x, self.y, self.bs, self.seed, self.procs, self.device, self.workers = x, y, bs, seed, procs, device, workers
        self.n = len(x)  # type: ignore[arg-type]
        self.steps_per_epoch = max(1, self.n // bs)
        self.perm_epoch, self.perm = -1, torch.empty(0, dtype=torch.long)
        self.stream: Iterator | None = None
        self.next_step = -1

    def __call__(self, step: int) -> tuple[Tensor, Tensor | None]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if isinstance(self.x, Tensor):
            if epoch != self.perm_epoch:
                self.perm, self.perm_epoch = epoch_order(self.n, self.seed, epoch), epoch
            idx = self.perm[i * self.bs:(i + 1) * self.bs][self.procs.rank::self.procs.world]
            # index on the CPU, then move the batch: the data stay where they are
            x, y = self.x[idx].to(self.device), None if self.y is None else self.y[idx].to(self.device)
        else:
            if step != self.next_step or self.stream is None:  # a new epoch, or a resume mid-epoch
                sampler = EpochSampler(self.x, self.seed, epoch, i * self.bs, self.steps_per_epoch * self.bs, self.procs)
                self.stream = iter(DataLoader(self.x, batch_size=self.bs // self.procs.world, sampler=sampler,
                                              num_workers=self.workers, pin_memory=self.device.type == "cuda"))
            x, labels = next(self.stream)
            self.next_step = step + 1 if i + 1 < self.steps_per_epoch else -1
            x = x.to(self.device, non_blocking=True)
            y = None if bool((labels < 0).all()) else labels.to(self.device)
        return to_float(x), y


def fit(model: Generator, x: Tensor | Dataset, y: Tensor | None, budget: Budget, *, seed: int = 0,
        checkpoint: str | Path | None = None, progress: bool = True, save_every: float | None = None,
        processes: Processes | None = None, workers: int = 0, precision: str = "fp32") -> TrainResult:
    """Train `model` on images x (N,C,H,W) in [0,1] (or uint8 0..255) within `budget`; x may also be a
    Dataset of (uint8 image, label or -1), such as `zoo.data.ImageFolder`, read with `workers` processes.

    With `checkpoint` (a folder): a finished training there is loaded instead of trained, an
    interrupted one is resumed (saying so in one line), and the training is saved there every
    `save_every` seconds (default: `save_interval()`), on the STOP_SIGNALS and when done. A stop signal
    ends the training with `Interrupted` after the step in progress, checkpoint or not; the checkpoint
    is saved before anything is printed, and a terminal that has closed loses nothing. Raises
    `Diverged` on a NaN/inf loss.
    Under a step, epoch or FLOP budget on CPU, a resumed training ends with the same weights as an
    uninterrupted one.

    With `processes` (data-parallel, see `zoo.parallel`), every process calls `fit` with the same
    arguments: each trains on its slice of every global batch, gradients are averaged, the losses,
    FLOPs and stopping decisions are the whole group's, and only the main process writes files.
    `precision` "bf16" or "fp16" runs each train_step under autocast (weights and optimizer states
    stay fp32); fp16 also scales the losses with a GradScaler, handed to the model through
    `Generator.loss_scaling` for the training, with which `Generator.optimize` steps."""
    check_precision(precision)
    procs = processes or Processes()
    ckpt = Checkpoint(checkpoint) if checkpoint is not None else None
    save_every = save_interval() if save_every is None else save_every
    if ckpt is not None:
        # The main process checks (and sets aside a damaged training); the others load what it verified,
        # while the train lock the main process holds keeps the files still.
        done = ckpt.load_finished(model) if procs.main else None
        if procs.from_main(done is not None):
            done = done if done is not None else ckpt.load_finished(model)
            if done is None:  # the main process verified these files a moment ago
                raise GenzooError(f"checkpoint {ckpt.folder} changed while process {procs.rank} was loading it")
            return done

    device = model.device
    if isinstance(x, Tensor) and device.type != "cpu" and x.numel() * x.element_size() < 2**30:
        x, y = x.to(device), None if y is None else y.to(device)  # small sets live on the accelerator
    bs = min(budget.batch_size, len(x))  # type: ignore[arg-type]
    if bs % procs.world:
        raise GenzooError(f"a global batch of {bs} does not split evenly over {procs.world} processes; "
                          f"use a batch size divisible by {procs.world}")
    batches = Batches(x, y, bs, seed, procs, device, workers)
    dtype = PRECISIONS[precision]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    steps_per_epoch = batches.steps_per_epoch
    result = TrainResult()
    average = WeightAverage(model, model.config.ema) if model.config.ema else None
    # Set from the step count before every step (saved with the optimizers, so a resume continues it);
    # torch's schedulers would need the step count up front, which a FLOP budget knows only after step 1.
    schedule = LR_SCHEDULES[model.config.lr_schedule] if model.config.lr_schedule != "constant" else None
    spent = 0.0  # seconds of training before this process (a resumed run)

    state = ckpt.load_progress() if ckpt is not None and procs.main else None
    if ckpt is not None and procs.from_main(state is not None) and not procs.main:
        state = ckpt.load_progress()
    if state is not None:
        model.load_state_dict(state["model"])
        for name, opt in model.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if average is not None and state["average"] is not None:
            average.average = [a.to(device) for a in state["average"]]
        result = TrainResult(**state["result"])
        result.events.append(f"resumed at step {result.steps}")
        if procs.main:
            say(f"{model.name} seed {seed}: resumed at step {result.steps}")
        spent = result.seconds
        rngs = state.get("rng_ranks") or [state["rng"]]
        if len(rngs) == procs.world:
            _set_rng_state(rngs[procs.rank], device)
        else:  # another process count: each process's random draws start afresh
            result.events.append(f"resumed on {procs.world} process(es), saved from {len(rngs)}: random draws differ")
            seed_everything(derive_seed(seed, "train", model.train_family or model.name, "resume", result.steps, procs.rank))
    else:
        # The main process draws what one process would; the others get their own streams (noise, timesteps).
        seed_everything(derive_seed(seed, "train", model.train_family or model.name, *([f"rank{procs.rank}"] if procs.rank else [])))

    def snapshot() -> dict[str, Any]:
        rngs = procs.gather(_rng_state(device))  # a collective: every process takes the snapshot
        return {
            "model": model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in model.optimizers().items()},
            "scaler": None if scaler is None else scaler.state_dict(),
            "average": None if average is None or average.average is None else [a.cpu() for a in average.average],
            "result": {**asdict(result), "reused": False},
            "rng": rngs[0],
            "rng_ranks": rngs,
        }

    model.train()
    procs.copy_from_main(model)
    with (_progress_bar(model.name, progress) as bar, _signals_caught() as caught,
          procs.averaged_gradients(model), model.loss_scaling(scaler)):
        task = bar.add_task("train", total=None, info="")
        start = time.perf_counter()
        last_save = 0.0
        max_steps = budget.max_steps(steps_per_epoch, result.flops_per_step)
        while result.steps < max_steps:
            xb, yb = batches(result.steps)
            if schedule is not None:
                fraction = result.seconds / budget.amount if budget.unit == "seconds" else result.steps / max_steps
                for opt in model.optimizers().values():
                    for group in opt.param_groups:
                        group.setdefault("initial_lr", group["lr"])  # torch's schedulers keep it there too
                        group["lr"] = group["initial_lr"] * schedule(fraction)
            if result.flops_per_step is None:  # count once, on a real step (no extra step, no RNG drawn)
                with FlopCounterMode(display=False) as counter, autocast:
                    losses = model.train_step(xb, yb)
                # every process's FLOPs: a FLOP budget is the group's compute
                result.flops_per_step = procs.mean([float(counter.get_total_flops())], device)[0] * procs.world
                max_steps = budget.max_steps(steps_per_epoch, result.flops_per_step)
            else:
                with autocast:
                    losses = model.train_step(xb, yb)
            if result.steps == 0:  # data-dependent initialisation (a flow's ActNorm) saw one slice: keep the main one's
                procs.copy_from_main(model)
            elif procs.world > 1:  # batch-norm statistics: the main process's, as torch's DDP does
                procs.copy_from_main(model, buffers_only=True)
            # One exchange per step: the group's mean losses, its clock, and whether a signal came.
            now = time.perf_counter()
            synced = procs.mean([*losses.values(), now - start, float(bool(caught))], device)
            losses, elapsed, signalled = dict(zip(losses, synced)), synced[-2], synced[-1] > 0
            result.steps += 1
            result.images += len(xb) * procs.world
            if not all(math.isfinite(v) for v in losses.values()):
                raise Diverged(result.steps, losses)
            result.history.append(losses)
            if average is not None:
                average.update()
            result.seconds = spent + elapsed
            if budget.unit == "seconds" and result.seconds >= budget.amount:
                break
            signum = caught[0] if caught else signal.SIGTERM  # another process may have caught it
            if ckpt is not None and (signalled or elapsed - last_save >= save_every):
                if signalled:
                    result.events.append(f"{signal.Signals(signum).name} at step {result.steps}")
                snap = snapshot()
                if procs.main:
                    ckpt.save_progress(snap)
                last_save = elapsed
            if signalled:
                raise Interrupted(signum, result.steps, saved=ckpt is not None)
            if progress:
                info = " ".join(f"{k} {v:.4g}" for k, v in list(losses.items())[:3])
                total = f"/{max_steps}" if math.isfinite(max_steps) else ""
                bar.update(task, info=f"step {result.steps}{total}  {info}  {result.images / result.seconds:.0f} img/s")
        if average is not None:
            average.copy_to_model()
        if model.fits_after_training:
            whole = x if isinstance(x, Tensor) else _whole(x, workers)
            model.after_training(whole.to(device), None if y is None else y.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        result.seconds = spent + time.perf_counter() - start

    if ckpt is not None and procs.main:
        ckpt.save_finished(model, result)
    if caught:  # arrived after the last step: the finished training is saved, the caller still stops
        raise Interrupted(caught[0], result.steps, saved=ckpt is not None)
    return result


@contextmanager
def _progress_bar(name: str, shown: bool) -> Iterator[Progress]:
    """A transient progress bar; a terminal that closes under it (SIGHUP) stops the drawing only."""
    columns = [TextColumn(f"[bold]{name}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
    bar = Progress(*columns, disable=not shown, transient=True)
    with quiet_if_terminal_closed():
        bar.start()
    try:
        yield bar
    finally:
        with quiet_if_terminal_closed():
            bar.stop()


def _whole(data: Dataset, workers: int) -> Tensor:
    """Every image of a Dataset, as one uint8 tensor (for a model's `after_training`)."""
    return torch.cat([x for x, _ in DataLoader(data, batch_size=256, num_workers=workers)])
