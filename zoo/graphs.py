"""Whole training steps as CUDA graphs: one launch a step instead of a few hundred.

A small model's training step is hundreds of tiny kernels, each launched by Python; on a GPU the
launches, not the arithmetic, set the pace. PyTorch's "whole network capture" recipe
(torch.cuda.graphs) records the whole step once, forward, backward and every optimizer's update,
and then replays it with a single launch:

    1. static input buffers: every step copies its batch into the same tensors;
    2. warm-up: a few eager steps on a side stream, so that lazy work (optimizer states, cuDNN and
       cuBLAS handles, tensors moved to the device on first use) is done before the capture;
    3. capture: `train_step` runs once under stream capture, which records its kernels;
    4. replay: `graph.replay()` runs them again, on whatever the static buffers hold.

What a replayed step needs from the model, and how this module checks it:

- No host-device synchronisation (`.item()`, `float(t)`, `if t:`): a capture cannot wait. The last
  warm-up step of each phase runs with torch's sync debug mode on, and a step that synchronised runs
  eagerly from then on, naming the line.
- Losses returned as 0-d tensors: a replay updates tensors, never Python numbers.
- Optimizers that can run inside a graph: each param group gets `capturable=True` (Adam keeps its
  step count on the device) and its learning rate as a 0-d device tensor, which a schedule changes in
  place (`set_learning_rate`); the resume file still holds the optimizer as it was built (a float
  rate, capturable off), so a training resumes eagerly or on another device.
- Host-side state that changes between steps (a stage switch, a step count, a first-step
  initialisation): replays run no Python, so the model declares it through
  `Generator.capture_phase(step)`. Each phase gets its own graph; a step whose phase is None runs
  eagerly. A model that can never be captured says why in `Generator.not_capturable`.

One graph is captured per (phase, batch shape, labels or not). Warm-up steps and captured steps are
real training steps: the capture is replayed at once, nothing is thrown away, and a graphed training
gives the losses and weights of an eager one to rounding.
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from zoo.base import Generator, GenzooError, one_line

GRAPH_MODES = ("auto", "on", "off")
WARMUP_STEPS = 3  # eager steps of each phase before its capture, as in PyTorch's recipe
Losses = Mapping[str, Tensor | float]
Key = tuple[Any, ...]  # (phase, batch shape, batch dtype, labels' shape and dtype or None): one graph each

# What torch says when a capturable optimizer steps outside a capture: expected here, during warm-up.
_CAPTURABLE_WARNING = "This instance was constructed with capturable=True"
_SYNC_WARNING = "called a synchronizing CUDA operation"
_REGISTER_WARNING = "CUDAGraph.register_generator_state"  # later torch (2.14) deprecates it: a no-op there


def check_graphs(mode: str, device: torch.device) -> None:
    """Refuse, in one line, a mode that is not one of GRAPH_MODES, or "on" without CUDA."""
    if mode not in GRAPH_MODES:
        raise GenzooError(f"unknown graphs mode {mode!r}; accepted: {', '.join(GRAPH_MODES)}")
    if mode == "on" and device.type != "cuda":
        raise GenzooError(f"--graphs on needs a CUDA device, and this training runs on {device.type}; "
                          "use --graphs auto (graphs where CUDA is) or off")


def training_step(model: Generator, mode: str, device: torch.device, autocast: AbstractContextManager,
                  inside: Callable[[], None] | None = None, loss_scaled: bool = False) -> Step:
    """The training loop's step: `step(xb, yb, step_index)` runs `model.train_step(xb, yb)` under
    `autocast`, then `inside()` (the weight average, say), and returns the losses.

    Eager when `mode` is off, when `device` is not CUDA (auto), or when the model cannot be
    captured (then `step.why_eager` says why, in one line: print it once; it may be set at a later
    step, when a warm-up finds the reason). Otherwise each phase's steps are replayed as a CUDA
    graph. Build it after any resume state is loaded into the model and its optimizers.
    `loss_scaled`: the loop scales the losses (fp16), which checks every step for overflow on the host."""
    check_graphs(mode, device)
    if mode == "off" or device.type != "cuda":
        return Step(model, autocast, inside)
    step = GraphedStep(model, autocast, inside, device)
    if loss_scaled and step.why_eager is None:
        step.why_eager = (f"{model.name}: steps run eagerly: fp16 loss scaling checks every step for overflow on "
                          "the host (bf16 needs no scaling)")
    return step


class Step:
    """One training step, eagerly: what every step is without CUDA graphs."""

    def __init__(self, model: Generator, autocast: AbstractContextManager, inside: Callable[[], None] | None = None):
        self.model, self.autocast, self.inside = model, autocast, inside
        self.why_eager: str | None = None  # why a step that could be graphed runs eagerly (None: it need not)
        self.counts: Counter[str] = Counter()  # steps run, by how: eager, warm-up, replayed

    def __call__(self, xb: Tensor, yb: Tensor | None, step_index: int) -> Losses:
        self.model.capture_phase(step_index)  # the model's host-side state follows the loop's count
        return self._eager(xb, yb)

    def _eager(self, xb: Tensor, yb: Tensor | None) -> Losses:
        self.counts["eager"] += 1
        return self._run(xb, yb)

    def _run(self, xb: Tensor, yb: Tensor | None) -> Losses:
        with self.autocast:
            losses = self.model.train_step(xb, yb)
        check_losses(self.model.name, losses)
        if self.inside is not None:
            self.inside()
        return losses


def check_losses(model: str, losses: Any) -> None:
    """What `train_step` returned, as the loop reads it: a non-empty dict of single numbers (0-d
    tensors, or floats); otherwise one line, not a torch error three calls later."""
    def what(v: Any) -> str:
        return f"a tensor of shape {tuple(v.shape)}" if isinstance(v, Tensor) else f"a {type(v).__name__}"

    def scalar(v: Any) -> bool:
        return isinstance(v, Tensor) and v.numel() == 1 or isinstance(v, (int, float)) and not isinstance(v, bool)

    if not isinstance(losses, Mapping):
        bad: str | None = what(losses)
    elif not losses:
        bad = "an empty dict"
    else:
        bad = next((f"{k!r}: {what(v)}" for k, v in losses.items() if not isinstance(k, str) or not scalar(v)), None)
        if bad is None and "loss" not in losses:  # the one the records' loss curve and the progress bar show
            bad = f"no 'loss' among {', '.join(map(repr, losses))}"
    if bad:
        raise GenzooError(f"{model}: train_step must return a dict of single-number losses with 'loss' among them, e.g. "
                          f"{{'loss': loss.detach()}}; got {bad}")


class GraphedStep(Step):
    """One training step on CUDA: warmed up, captured and replayed per phase (see the module docstring)."""

    def __init__(self, model: Generator, autocast: AbstractContextManager, inside: Callable[[], None] | None,
                 device: torch.device):
        super().__init__(model, autocast, inside)
        # with its index, so that it equals a tensor's device ("cuda" alone does not equal "cuda:0")
        self.device = device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
        self.side = torch.cuda.Stream(device)  # warm-ups and captures run here, replays on the current stream
        self.graphs: dict[Key, CapturedStep] = {}
        self.warmed: Counter[Key] = Counter()
        self.inputs: dict[Key, tuple[Tensor, Tensor | None]] = {}  # the static buffers, per key
        self.prepared = False
        self.why_eager = never_captured(model)

    def __call__(self, xb: Tensor, yb: Tensor | None, step_index: int) -> Losses:
        phase = self.model.capture_phase(step_index)
        if self.why_eager is not None or phase is None:
            return self._eager(xb, yb)
        key: Key = (phase, tuple(xb.shape), xb.dtype, None if yb is None else (tuple(yb.shape), yb.dtype))
        if key in self.graphs:
            self.counts["replayed"] += 1
            return self.graphs[key].replay(xb, yb)
        if not self.prepared:
            for opt in self.model.optimizers().values():
                make_capturable(opt)
            self.prepared = True
        if self.warmed[key] < WARMUP_STEPS:
            self.warmed[key] += 1
            return self._warm_up(key, xb, yb, check=self.warmed[key] == WARMUP_STEPS)
        return self._capture(key, xb, yb)

    def _eager(self, xb: Tensor, yb: Tensor | None) -> Losses:
        with quiet_capturable():  # the optimizers may have been made capturable already
            return super()._eager(xb, yb)

    # -- the recipe's steps ----------------------------------------------------------------------
    def _static_inputs(self, key: Key, xb: Tensor, yb: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The key's input buffers, holding this batch (copied on the current stream, where it was made)."""
        if key not in self.inputs:
            self.inputs[key] = (torch.empty_like(xb), None if yb is None else torch.empty_like(yb))
        sx, sy = self.inputs[key]
        sx.copy_(xb)
        if sy is not None and yb is not None:
            sy.copy_(yb)
        return sx, sy

    def _warm_up(self, key: Key, xb: Tensor, yb: Tensor | None, check: bool) -> Losses:
        """A real step, eagerly on the side stream; the last warm-up of a phase also checks that the
        step never waits for the device and returns tensors (else every later step runs eagerly)."""
        self.counts["warm-up"] += 1
        sx, sy = self._static_inputs(key, xb, yb)
        self.side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.side), quiet_capturable(), syncs_recorded(check) as syncs:
            losses = self._run(sx, sy)
        torch.cuda.current_stream(self.device).wait_stream(self.side)
        for value in losses.values():  # made on the side stream, used on the current one
            if isinstance(value, Tensor):
                value.record_stream(torch.cuda.current_stream(self.device))
        if check:
            self.why_eager = _sync_reason(self.model, syncs) or _losses_reason(self.model, losses, self.device)
        return losses

    def _capture(self, key: Key, xb: Tensor, yb: Tensor | None) -> Losses:
        """Record the step as a graph and replay it once: that replay is this step's training."""
        sx, sy = self._static_inputs(key, xb, yb)
        try:
            graph, packed, names = record(lambda: self._run(sx, sy), self.side)
        except Exception as e:  # a capture that fails has run nothing: the step runs eagerly instead
            self.why_eager = f"{self.model.name}: steps run eagerly: capturing the step failed ({one_line(e)})"
            self.graphs.clear()
            return self._eager(xb, yb)
        self.graphs[key] = CapturedStep(graph, sx, sy, names, packed)
        self.counts["replayed"] += 1
        return self.graphs[key].replay(xb, yb)


class CapturedStep:
    """A recorded step: its graph, its input buffers, and its losses packed into one tensor."""

    def __init__(self, graph: torch.cuda.CUDAGraph, x: Tensor, y: Tensor | None, names: tuple[str, ...], packed: Tensor):
        self.graph, self.x, self.y, self.names, self.packed = graph, x, y, names, packed

    def replay(self, xb: Tensor, yb: Tensor | None) -> dict[str, Tensor]:
        self.x.copy_(xb)
        if self.y is not None and yb is not None:
            self.y.copy_(yb)
        self.graph.replay()
        # The next replay overwrites `packed`: the loop keeps these, so they get a copy (one kernel).
        return dict(zip(self.names, self.packed.clone().unbind()))


def record(run: Callable[[], Losses], stream: torch.cuda.Stream, generators: Sequence[torch.Generator] = (),
           loss_shape: tuple[int, ...] = ()) -> tuple[torch.cuda.CUDAGraph, Tensor, tuple[str, ...]]:
    """Capture `run` on `stream` into a new graph with its own memory pool; its losses are stacked
    inside the graph into one float32 tensor. `run` may draw from the default CUDA generator and from
    `generators`: every replay advances them. Each loss has `loss_shape` (0-d for one training; one
    per seed for seeds trained together)."""
    graph = torch.cuda.CUDAGraph()
    with capturing(graph, stream, generators):
        losses = run()
        packed = torch.stack([v.detach().float().reshape(loss_shape) for v in losses.values()])  # type: ignore[union-attr]
    return graph, packed, tuple(losses)


@contextmanager
def capturing(graph: torch.cuda.CUDAGraph, stream: torch.cuda.Stream,
              generators: Sequence[torch.Generator] = ()) -> Iterator[None]:
    """Record into `graph` what runs inside, on `stream`, once the device has finished what came
    before. (torch.cuda.graph does the same, but a capture that fails there can leave the capture
    stream current; here the stream is always restored.) A capture that fails raises its own error,
    not capture_end's echo of it, and leaves the random generators usable: torch before the
    per-capture random state (the GPU image's 2.11 among them) keeps every generator of a failed
    capture in capture mode, and each random draw after it fails, until a capture ends well; one
    small capture that does sets them free (on later torch there is nothing to free). That torch's
    caching allocator may also keep the failed capture's pool open; benchmarks/gpu_check.sh measures it."""
    _register(graph, generators)
    torch.cuda.synchronize(stream.device)
    with torch.cuda.stream(stream), quiet_capturable():
        try:
            # thread_local: a DataLoader's pin-memory thread may call into CUDA while we capture
            graph.capture_begin(capture_error_mode="thread_local")  # it may fail after marking the generators
            yield
        except BaseException:
            with suppress(RuntimeError):  # "a previous error during capture": the one being raised
                graph.capture_end()
            _free_generators(stream, generators)
            raise
        try:
            graph.capture_end()
        except BaseException:
            _free_generators(stream, generators)
            raise


def _free_generators(stream: torch.cuda.Stream, generators: Sequence[torch.Generator]) -> None:
    """After a failed capture: one capture of a single kernel, with the same generators, that ends
    well (see `capturing`). Best effort: the caller raises the capture's own error either way."""
    with suppress(RuntimeError):
        torch.cuda.synchronize(stream.device)
        graph, scratch = torch.cuda.CUDAGraph(), torch.zeros(1, device=stream.device)
        scratch.add_(1)  # once eagerly: its kernel is loaded before the capture
        _register(graph, generators)
        with torch.cuda.stream(stream):
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                scratch.add_(1)  # one node: an empty capture warns
            finally:  # a stream left capturing would break every later call
                graph.capture_end()


def _register(graph: torch.cuda.CUDAGraph, generators: Sequence[torch.Generator]) -> None:
    """Let `graph` draw from `generators` (2.11 needs it; later torch registers by itself and warns)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_REGISTER_WARNING)
        for generator in generators:
            graph.register_generator_state(generator)


# -- what keeps a model eager ------------------------------------------------------------------

def never_captured(model: Generator, steps: str = "steps") -> str | None:
    """Why none of this model's steps can be captured, known before any step (None: they may be),
    as "NAME: `steps` run eagerly: REASON"."""
    eager = f"{model.name}: {steps} run eagerly"
    if model.not_capturable:
        return f"{eager}: {model.not_capturable}"
    if dist.is_available() and dist.is_initialized():
        return f"{eager}: data-parallel training exchanges gradients between processes at every step"
    for name, opt in model.optimizers().items():
        if not all("capturable" in group for group in opt.param_groups):
            return f"{eager}: its optimizer {name} ({type(opt).__name__}) has no capturable mode (torch's Adam and AdamW have one)"
    return None


def _sync_reason(model: Generator, syncs: list[warnings.WarningMessage]) -> str | None:
    if not syncs:
        return None
    where = f"{_short_path(syncs[0].filename)}:{syncs[0].lineno}"
    return (f"{model.name}: steps run eagerly: train_step waits for the GPU at {where} "
            "(.item(), float(), int() or bool() of a device tensor, or a copy to the host)")


def _losses_reason(model: Generator, losses: Losses, device: torch.device) -> str | None:
    for name, value in losses.items():
        if not isinstance(value, Tensor):
            return (f"{model.name}: steps run eagerly: train_step returns {name} as a Python number, which a replayed step "
                    "cannot update; return it as a 0-d tensor (loss.detach())")
        if value.numel() != 1 or (value.device.type, value.device.index or 0) != (device.type, device.index or 0):
            return (f"{model.name}: steps run eagerly: train_step returns {name} as a {tuple(value.shape)} tensor "
                    f"on {value.device}, not 0-d on {device}")
    return None


def _short_path(filename: str) -> str:
    """A file in this project relative to it (zoo/models/ldm.py), any other as it is."""
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename


@contextmanager
def syncs_recorded(on: bool) -> Iterator[list[warnings.WarningMessage]]:
    """With `on`, torch warns at every host-device synchronisation inside; the warnings are collected."""
    found: list[warnings.WarningMessage] = []
    if not on:
        yield found
        return
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode(before)
    found += [w for w in caught if _SYNC_WARNING in str(w.message)]
    for w in caught:  # anything else goes on to whoever listens
        if _SYNC_WARNING not in str(w.message) and _CAPTURABLE_WARNING not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


@contextmanager
def quiet_capturable() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CAPTURABLE_WARNING)
        yield


# -- optimizers that a graph can replay ------------------------------------------------------------

def make_capturable(opt: torch.optim.Optimizer) -> None:
    """Let `opt` step inside a CUDA graph: `capturable=True` in every param group (its step count
    lives on the device), and the learning rate as a 0-d device tensor that the graph reads, so a
    schedule changes it in place (`set_learning_rate`). Its state_dict still gives the optimizer as
    built (a float rate, capturable as it was), so that a resume file loads anywhere."""
    if getattr(opt, "_genzoo_built_as", None) is None:
        opt._genzoo_built_as = [group["capturable"] for group in opt.param_groups]  # type: ignore[attr-defined]
        opt.register_state_dict_post_hook(_as_built)
    for group in opt.param_groups:
        lr, device = group["lr"], group["params"][0].device
        if "initial_lr" not in group:  # as torch's schedulers keep it: the rate the schedule scales
            group["initial_lr"] = float(lr)  # not again once lr is a device tensor: that would wait for it
        if not isinstance(lr, Tensor):
            group["lr"] = torch.tensor(float(lr), device=device)
        group["capturable"] = True
    for param, state in opt.state.items():  # a resumed optimizer's step counts come from the file, on the CPU
        if isinstance(state.get("step"), Tensor):
            state["step"] = state["step"].to(device=param.device, dtype=torch.float32)


def _as_built(opt: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """state_dict post-hook: the param groups as the model built them (the groups are copies)."""
    for group, capturable in zip(state["param_groups"], opt._genzoo_built_as):  # type: ignore[attr-defined]
        if isinstance(group["lr"], Tensor):
            group["lr"] = group["lr"].item()  # reads the device: a checkpoint is rare
        group["capturable"] = capturable
    return state


def set_learning_rate(group: dict[str, Any], value: float) -> None:
    """Set a param group's learning rate: in place when it is a tensor, which a captured step reads
    (assigning a new one would leave the graph on the old rate). Never waits for the device."""
    if isinstance(group["lr"], Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value
