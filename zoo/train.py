"""The one training loop for every model: seeding, progress, divergence, signals, hooks.

The loop knows nothing of paradigms: it hands batches to `model.train_step`, which owns its
optimizers. It counts the training FLOPs of one step on the first real step, keeps the moving
average of the weights when the model's `config.ema` asks for it, scales the optimizers' learning
rates when its `config.lr_schedule` does, saves a resumable checkpoint every few minutes and on
SIGTERM, SIGHUP or SIGINT, and resumes from it exactly.

A step never waits for the device: `train_step` returns its losses as tensors (floats are accepted
too), which stay where they are and are read every few steps (`READ_EVERY`) to check them, to draw
the progress bar and to decide whether to stop or save. On CUDA a step can be replayed as one CUDA
graph (`zoo.graphs`). Beside it: `zoo.budget` (how long), `zoo.batches` (which images),
`zoo.checkpoint` (what is saved, and when a training is done) and `zoo.seeds`.
"""
from __future__ import annotations

import copy
import math
import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.flop_counter import FlopCounterMode

from zoo import graphs
from zoo.base import LR_SCHEDULES, Generator, GenzooError, check_class_indices, check_images, one_line
from zoo.batches import Batches, whole_dataset
from zoo.budget import Budget
from zoo.checkpoint import Checkpoint, TrainResult, save_interval
from zoo.files import quiet_if_terminal_closed, say
from zoo.parallel import Processes
from zoo.seeds import derive_seed, rng_state, seed_everything, set_rng_state

DEVICES = ("auto", "cpu", "cuda", "mps")
# autocast dtype of train_step (None: none); fp16 also scales losses (see Generator.optimize)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# What stops a training after its step, with a checkpoint: a kill, a closed terminal or SSH session, Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
# Steps between reading the losses back, per device type. Reading waits for the device, so an
# accelerator reads every few steps; on the CPU a read costs nothing and happens after every step.
READ_EVERY = {"cpu": 1, "default": 32}


def read_every(device: torch.device) -> int:
    """Steps between reading the losses back on this device (`READ_EVERY`)."""
    return READ_EVERY.get(device.type, READ_EVERY["default"])


class Diverged(RuntimeError):
    """A loss became NaN or infinite; the message names the first step where it did."""

    def __init__(self, step: int, losses: dict[str, float]):
        super().__init__(f"diverged at step {step}: {losses}")
        self.step = step


class Interrupted(BaseException):
    """One of the STOP_SIGNALS arrived: during training (`step`), after a resumable checkpoint was
    saved where there is a checkpoint folder, or outside training (`step` None). A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows the stop. `together`: the
    seeds of a batched ensemble (`zoo.fused`) the stop ended, each saved to resume alone."""

    def __init__(self, signum: int, step: int | None = None, saved: bool = True, cut_short: Exception | None = None,
                 together: list[int] | None = None):
        name = signal.Signals(signum).name
        if together is not None and step is not None:  # the runner's line names the first seed's job alone
            what = (f"at step {step} of seeds {', '.join(map(str, together))}, trained together: "
                    + ("each seed's checkpoint saved, a rerun resumes each" if saved else "no checkpoint folders, nothing saved"))
        elif cut_short is not None:  # the stop came, then an error ended the training before it could save
            what = (f"in training, then {one_line(cut_short)}; "
                    "the last checkpoint is kept, a rerun resumes from it")
        elif step is None:
            what = "outside training: finished work is kept, a rerun goes on from there"
        else:
            what = f"at step {step}: " + ("checkpoint saved, a rerun resumes here" if saved else "no checkpoint folder, nothing saved")
        super().__init__(f"{name} {what}")
        self.signum, self.step, self.together = signum, step, together
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


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise GenzooError(f"unknown precision {precision!r}; accepted: {', '.join(PRECISIONS)}")


def check_training_data(model: Generator, x: Any, y: Any, budget: Any) -> None:
    """What `fit` (or `fit_seeds`) is handed, before anything trains: a `Budget`, images of the model's
    DataSpec shape as uint8 or floats in [0,1] (or a Dataset), and labels (N,) as class indices; else one
    GenzooError line. Without it a wrong shape fails inside a layer, and floats in 0..255 train silently."""
    if not isinstance(budget, Budget):
        raise GenzooError(f"fit: budget must be a zoo.budget.Budget, e.g. Budget(2000, 'steps', batch_size=64) or "
                          f"Budget.parse('2000steps'); got {type(budget).__name__}")
    if isinstance(x, Dataset) and not isinstance(x, Tensor):
        check_dataset_item(x)  # the form of its items; the images themselves are read step by step
        return
    if not isinstance(x, Tensor):
        raise GenzooError(f"fit: x must be images as a torch tensor (or a torch Dataset), got {type(x).__name__}")
    check_images(x, model.spec, f"fit: {model.name}")
    if y is None:
        return
    if not isinstance(y, Tensor):
        raise GenzooError(f"fit: y must be integer class labels ({len(x)},) as a torch tensor, or None; got {type(y).__name__}")
    try:
        check_class_indices(y, len(x), model.spec.num_classes)
    except GenzooError as e:
        raise GenzooError(f"fit: {e}") from None


def use_deterministic(on: bool) -> None:
    """The same numbers twice on CUDA: torch's deterministic kernels where it has them (an op without
    one warns and runs as it is), cuDNN without autotuning, and cuBLAS with a fixed workspace, which
    it reads when it starts: call this before the first CUDA work. The CPU needs none of it: its
    kernels repeat exactly for a given thread count, and this mode would only slow them."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


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
            torch._foreach_lerp_(self.average, weights, 1 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: Generator) -> None:
        for p, a in zip(model.parameters(), self.average or []):
            p.copy_(a)


@dataclass
class Training:
    """What a hook sees of a training in progress, between two steps."""

    model: Generator
    result: TrainResult  # steps, images, FLOPs so far; `history` holds the losses read so far
    average: WeightAverage | None
    finish: Callable[[Generator], None]  # what the loop does to a model when training ends
    fraction: float = 0.0  # share of the budget spent: of its steps, or of its seconds under a wall-clock budget
    seconds: float = 0.0  # training time so far (`result.seconds` is brought up to date only when losses are read)

    def finished_copy(self) -> Generator:
        """The model as it would be if training stopped now: a copy with the weight average applied
        and `after_training` run. The training itself goes on untouched."""
        done = copy.deepcopy(self.model)
        if self.average is not None:
            self.average.copy_to(done)
        self.finish(done)
        return done.eval()


class Hook(Protocol):
    """Something that watches a training: quality curves, logs. It runs after every step (after the
    last one with `fraction` 1), before the checkpoint of that step, may wait for the device, and
    draws random numbers only inside the loop's `fork_rng`, so a training with hooks ends with the
    same weights as one without. Its time is neither training time nor spent from a wall-clock budget."""

    def after_step(self, training: Training) -> None: ...


def check_dataset_item(data: Dataset) -> None:
    """A Dataset yields (image, label) pairs, the label -1 for none: checked once, on its first item
    (not per step, where it would cost the loop), so that bare images are one line here rather than
    the loader's unpacking error at the first step."""
    if len(data) == 0:  # type: ignore[arg-type]
        raise GenzooError("fit: the Dataset is empty; give one of at least one (image, label) item")
    first = data[0]
    if isinstance(first, (tuple, list)) and len(first) == 2:
        return
    got = (f"a bare tensor {tuple(first.shape)}" if isinstance(first, Tensor)
           else f"a {type(first).__name__} of {len(first)}" if isinstance(first, (tuple, list)) else f"a {type(first).__name__}")
    raise GenzooError(f"fit: a Dataset must yield (image, label) pairs, a uint8 (C,H,W) image and its class index "
                      f"or -1 for none, as zoo.data.ImageFolder does; its first item is {got}")


def fit(model: Generator, x: Tensor | Dataset, y: Tensor | None, budget: Budget, *, seed: int = 0,
        checkpoint: str | Path | None = None, progress: bool = True,
        processes: Processes | None = None, workers: int = 0, precision: str = "fp32", graphs_mode: str = "auto",
        hooks: Sequence[Hook] = ()) -> TrainResult:
    """Train `model` on images x (N,C,H,W) in [0,1] (or uint8 0..255) within `budget`; x may also be a
    Dataset of (uint8 image, label or -1), such as `zoo.data.ImageFolder`, read with `workers` processes.

    With `checkpoint` (a folder): a finished training there is loaded instead of trained, an
    interrupted one is resumed (saying so in one line), and the training is saved there every
    `save_interval()` seconds ($GENZOO_SAVE_EVERY), on the STOP_SIGNALS and when done. A stop signal
    ends the training with `Interrupted` after the step in progress (on an accelerator, within
    `READ_EVERY` steps when several processes train), checkpoint or not; the checkpoint is saved
    before anything is printed, and a terminal that has closed loses nothing. Raises `Diverged` on a
    NaN/inf loss, naming the first step that had one.
    Under a step, epoch or FLOP budget on CPU, a resumed training ends with the same weights as an
    uninterrupted one.

    With `processes` (data-parallel, see `zoo.parallel`), every process calls `fit` with the same
    arguments: each trains on its slice of every global batch, gradients are averaged, the losses,
    FLOPs and stopping decisions are the whole group's, and only the main process writes files.
    `precision` "bf16" or "fp16" runs each train_step under autocast (weights and optimizer states
    stay fp32); fp16 also scales the losses with a GradScaler, handed to the model through
    `Generator.loss_scaling` for the training, with which `Generator.optimize` steps.
    `graphs_mode` (auto, on, off) replays each step as a CUDA graph where the model allows it (see
    `zoo.graphs`). `hooks` are called after every step (see `Hook`)."""
    check_precision(precision)
    check_training_data(model, x, y, budget)
    procs = processes or Processes()
    device = model.device
    graphs.check_graphs(graphs_mode, device)
    ckpt = Checkpoint(checkpoint) if checkpoint is not None else None
    save_every = save_interval()
    if ckpt is not None:
        # The main process checks (and sets aside a damaged training); the others load what it verified,
        # while the train lock the main process holds keeps the files still.
        done = ckpt.load_finished(model) if procs.main else None
        if procs.from_main(done is not None):
            done = done if done is not None else ckpt.load_finished(model)
            if done is None:  # the main process verified these files a moment ago
                raise GenzooError(f"checkpoint {ckpt.folder} changed while process {procs.rank} was loading it")
            return done

    x, y = on_device(x, y, device)
    bs = min(budget.batch_size, len(x))  # type: ignore[arg-type]
    if bs % procs.world:
        raise GenzooError(f"a global batch of {bs} does not split evenly over {procs.world} processes; "
                          f"use a batch size divisible by {procs.world}")
    batches = Batches(x, y, bs, seed, procs, device, workers)
    autocast = autocast_for(device, precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    steps_per_epoch = batches.steps_per_epoch
    result = TrainResult()
    average = WeightAverage(model, model.config.ema) if model.config.ema else None
    # Set from the step count before every step (saved with the optimizers, so a resume continues it);
    # torch's schedulers would need the step count up front, which a FLOP budget knows only after step 1.
    schedule = lr_schedule(model)
    if schedule is not None and not model.optimizers():
        raise GenzooError(f"{model.name}: lr_schedule {model.config.lr_schedule} would reach no optimizer: the loop finds "
                          "those held as attributes of the model, or in a list, tuple or dict attribute, or returned "
                          "by its optimizers()")
    spent = 0.0  # seconds of training before this process (a resumed run)

    state = ckpt.load_progress(model) if ckpt is not None and procs.main else None
    if ckpt is not None and procs.from_main(state is not None) and not procs.main:
        state = ckpt.load_progress(model)
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
            set_rng_state(rngs[procs.rank], device)
        else:  # another process count: each process's random draws start afresh
            result.events.append(f"resumed on {procs.world} process(es), saved from {len(rngs)}: random draws differ")
            seed_everything(derive_seed(seed, "train", model.training_family(), "resume", result.steps, procs.rank))
    else:
        # The main process draws what one process would; the others get their own streams (noise, timesteps).
        seed_everything(derive_seed(seed, "train", model.training_family(), *([f"rank{procs.rank}"] if procs.rank else [])))

    def finish(done: Generator) -> None:
        if done.fits_after_training:
            whole = x if isinstance(x, Tensor) else whole_dataset(x, workers)
            done.after_training(whole.to(device), None if y is None else y.to(device))

    def snapshot() -> dict[str, Any]:
        rngs = procs.gather(rng_state(device))  # a collective: every process takes the snapshot
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
    read_interval = read_every(device)
    pending = UnreadLosses(device)
    watched = Training(model, result, average, finish)
    with (progress_bar(model.name, progress) as bar, signals_caught(stop_wins=procs.world == 1) as caught,
          procs.averaged_gradients(model), model.loss_scaling(scaler)):
        step = graphs.training_step(model, graphs_mode, device, autocast, inside=average.update if average else None,
                                    loss_scaled=scaler is not None)
        told_why_eager = False
        task = bar.add_task("train", total=None, info="")
        start = time.perf_counter()
        last_save = 0.0
        max_steps = budget.max_steps(steps_per_epoch, result.flops_per_step)
        while result.steps < max_steps:
            xb, yb = batches(result.steps)
            if schedule is not None:
                fraction = result.seconds / budget.amount if budget.unit == "seconds" else result.steps / max_steps
                set_learning_rates(model.optimizers().values(), schedule(fraction))
            if result.flops_per_step is None:  # count once, on a real step (no extra step, no RNG drawn)
                with FlopCounterMode(display=False) as counter:
                    losses = step(xb, yb, result.steps)
                # every process's FLOPs: a FLOP budget is the group's compute
                result.flops_per_step = procs.mean([float(counter.get_total_flops())], device)[0] * procs.world
                max_steps = budget.max_steps(steps_per_epoch, result.flops_per_step)
                if note := budget.below_one_step(result.flops_per_step):
                    result.events.append(note)
                    if procs.main:
                        say(f"{model.name} seed {seed}: {note}")
            else:
                losses = step(xb, yb, result.steps)
            if result.steps == 0 and procs.world > 1:
                # data-dependent initialisation (a flow's ActNorm) saw one slice: keep the main one's
                procs.copy_from_main(model)
                if average is not None:  # and start the average from those weights
                    average.average = None
                    average.update()
            elif procs.world > 1:  # batch-norm statistics: the main process's, as torch's DDP does
                procs.copy_from_main(model, buffers_only=True)
            if step.why_eager and not told_why_eager and procs.main:
                say(step.why_eager)  # known at the start or found by a warm-up step
                told_why_eager = True
            result.steps += 1
            result.images += len(xb) * procs.world
            pending.add(result.steps, losses)
            elapsed = time.perf_counter() - start
            if hooks:  # before this step's checkpoint below, which then holds what they measured
                watched.seconds = spent + elapsed
                watched.fraction = min(1.0, watched.seconds / budget.amount if budget.unit == "seconds"
                                       else result.steps / max_steps)
                start += run_hooks(hooks, watched, device)
            # One process decides on its own clock and signals at once; a group agrees every few steps.
            urgent = procs.world == 1 and bool(
                caught or (ckpt is not None and elapsed - last_save >= save_every)
                or (budget.unit == "seconds" and spent + elapsed >= budget.amount))
            if urgent or result.steps % read_interval == 0 or result.steps >= max_steps:
                # One exchange per read: the group's mean losses, its clock, and whether a signal came.
                elapsed, signalled = pending.read(result.history, procs, [elapsed, float(bool(caught))])
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
                if progress and result.history:
                    speed = f"{result.images / result.seconds:.0f} img/s"
                    bar.update(task, info=f"{progress_text(result.steps, max_steps, result.history)}  {speed}")
        if average is not None:
            average.copy_to(model)
        finish(model)
        if device.type == "cuda":
            torch.cuda.synchronize()
        result.seconds = spent + time.perf_counter() - start
        if ckpt is not None and procs.main:  # with the signals still caught, so a stop cannot cut the save short
            ckpt.save_finished(model, result)

    if caught:  # arrived after the last step: the finished training is saved, the caller still stops
        raise Interrupted(caught[0], result.steps, saved=ckpt is not None)
    return result


def on_device(x: Tensor | Dataset, y: Tensor | None, device: torch.device) -> tuple[Tensor | Dataset, Tensor | None]:
    """The training images where the steps run: a small set moves to the accelerator once, a large
    one (or a Dataset) stays where it is and goes batch by batch."""
    if isinstance(x, Tensor) and device.type != "cpu" and x.numel() * x.element_size() < 2**30:
        return x.to(device), None if y is None else y.to(device)
    return x, y


def autocast_for(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The context every train_step runs in: autocast at `precision`, or nothing for fp32."""
    dtype = PRECISIONS[precision]
    # No weight cache: a model that steps an optimizer inside one train_step (a GAN's two updates,
    # WGAN's critic steps) would otherwise get the old low-precision weights in its next forward.
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False) if dtype is not None else nullcontext()


def lr_schedule(model: Generator) -> Callable[[float], float] | None:
    """The learning-rate factor against the fraction of the budget spent, or None for a constant rate."""
    return LR_SCHEDULES[model.config.lr_schedule] if model.config.lr_schedule != "constant" else None


def run_hooks(hooks: Iterable[Hook], training: Training, device: torch.device) -> float:
    """Call each hook after a step, with the RNG as it was (a hook's draws change no training);
    return the seconds they took, which the budget does not count."""
    start = time.perf_counter()
    for hook in hooks:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            hook.after_step(training)
    return time.perf_counter() - start


def progress_text(steps: int, max_steps: float, history: list[dict[str, float]]) -> str:
    """The progress bar's text: the step, of how many, and the first losses last read."""
    losses = " ".join(f"{k} {v:.4g}" for k, v in list(history[-1].items())[:3])
    total = f"/{max_steps}" if math.isfinite(max_steps) else ""
    return f"step {steps}{total}  {losses}"


class UnreadLosses:
    """The losses of the steps since the last read, still on the device: one sync reads them all."""

    def __init__(self, device: torch.device):
        self.device = device
        self.steps: list[tuple[int, tuple[str, ...], Tensor]] = []

    def add(self, step: int, losses: Mapping[str, Tensor | float]) -> None:
        values = [v.detach().float().reshape(()) if isinstance(v, Tensor) else torch.tensor(float(v)) for v in losses.values()]
        self.steps.append((step, tuple(losses), torch.stack([v.to(self.device) for v in values])))

    def read(self, history: list[dict[str, float]], procs: Processes, extra: list[float]) -> tuple[float, bool]:
        """Append the group's mean losses of each unread step to `history`, raise `Diverged` at the
        first step with a NaN or infinite one, and return the group's mean of `extra` (clock, signal)."""
        flat = torch.cat([v for _, _, v in self.steps]).tolist() if self.steps else []
        synced = procs.mean([*flat, *extra], self.device)
        at = 0
        for step, names, _ in self.steps:
            losses = dict(zip(names, synced[at:at + len(names)]))
            at += len(names)
            if not all(math.isfinite(v) for v in losses.values()):
                raise Diverged(step, losses)
            history.append(losses)
        self.steps.clear()
        elapsed, signalled = synced[-2:]
        return elapsed, signalled > 0


def set_learning_rates(optimizers: Iterable[torch.optim.Optimizer], factor: float) -> None:
    """Each optimizer's learning rates at `factor` times their first value (in place where a CUDA
    graph reads them); never waits for the device."""
    for opt in optimizers:
        for group in opt.param_groups:
            if "initial_lr" not in group:  # torch's schedulers keep it there too
                group["initial_lr"] = float(group["lr"])
            graphs.set_learning_rate(group, group["initial_lr"] * factor)


@contextmanager
def signals_caught(stop_wins: bool = True) -> Iterator[list[int]]:
    """The STOP_SIGNALS set a flag the loop reads after each step (main thread only). With `stop_wins`,
    an error raised after a stop came (a divergence found at the next read) becomes the stop, so the
    run still stops. Not in a data-parallel group, where a process that caught no signal would go on
    with the error and the next job's collectives would wait for the one that stopped."""
    caught: list[int] = []
    try:
        old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals stay as they are
        yield caught
        return
    try:
        yield caught
    except Exception as error:
        if caught and stop_wins:
            raise Interrupted(caught[0], cut_short=error) from error
        raise
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def progress_bar(name: str, shown: bool) -> Iterator[Progress]:
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
