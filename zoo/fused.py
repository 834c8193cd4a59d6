"""Seeds trained together: several seeds of one model as one batched ensemble.

On a GPU one small model's step leaves the card mostly idle, and three seeds batched into one step
cost little more than one. `fit_seeds` trains the seeds of an `Objective` model this way:

1. Each seed's model is built as for a training of its own (its own initial weights). Their
   parameters and buffers are stacked along a new first dimension (`torch.func.stack_module_state`),
   and each seed's model is left holding views of its slice, so it always shows that seed's current
   weights: what hooks look at, and what a checkpoint saves.
2. A step gives each seed the batch of its own data order and the noise of its own generator, seeded
   as `zoo.train.fit` seeds the RNG of a training alone: a seed sees the batches and draws it would
   see alone.
3. One `torch.func.vmap` over the model's `training_loss` (`functional_call`) computes every seed's
   losses; one backward of their sum gives each seed its own gradients, since no weight is shared.
4. One optimizer of the model's own kind and settings steps all the stacked weights. Adam's update is
   elementwise, so this is each seed's own Adam; a clipped gradient norm is clipped per seed.

Each seed ends as a training of its own would: the weight average applied, `after_training` run,
and saved in its own checkpoint folder, in the files `fit` writes, so a later run reuses it whichever
way it was trained. A stop signal, and every save interval, saves each seed's resumable checkpoint,
which `fit` resumes alone. A seed whose loss turns NaN or infinite is not saved (trained alone, it
reaches the same step and reports it); the others go on.

On CUDA the whole fused step (noise, losses, backward, clipping, the update and the weight average)
is replayed as one CUDA graph, by `zoo.graphs`' recipe, with each seed's generator registered with
the graph so that every replay draws that seed's next noise.
"""
from __future__ import annotations

import copy
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.flop_counter import FlopCounterMode

from zoo import graphs, registry
from zoo.base import Generator, GenzooError, Objective, one_line
from zoo.batches import Batches
from zoo.budget import Budget
from zoo.checkpoint import Checkpoint, TrainResult, save_interval
from zoo.files import say
from zoo.parallel import Processes
from zoo.seeds import derive_seed, rng_state
from zoo.train import (
    Diverged,
    Hook,
    Interrupted,
    Training,
    UnreadLosses,
    WeightAverage,
    autocast_for,
    check_precision,
    check_training_data,
    lr_schedule,
    on_device,
    progress_bar,
    progress_text,
    read_every,
    run_hooks,
    set_learning_rates,
    signals_caught,
)

FUSE_MODES = ("auto", "on", "off")


def why_not_fused(model: type[Generator], budget: Budget, precision: str) -> str:
    """Why this model's seeds cannot train as one ensemble under this budget, in a few words; "" if they can."""
    if not issubclass(model, Objective):
        return f"the training step of {model.name} is not an `Objective` (one loss, one optimizer)"
    if budget.unit == "seconds":
        return "a wall-clock budget is one training's time"
    if precision == "fp16":
        return "fp16's loss scaling is kept per training"
    return ""


def fusing_models() -> list[str]:
    """The registered models whose seeds can train together (their step is an `Objective`), one name
    per training: ddpm's serves ddim too."""
    families: dict[str, str] = {}
    for name in sorted(registry.available(), reverse=True):  # ddpm before ddim
        cls = registry.parse(name)[0]
        if issubclass(cls, Objective):
            families.setdefault(cls.training_family(), name)
    return sorted(families.values())


def fuses(mode: str, device: torch.device, seeds: int) -> bool:
    """Whether `--fused-seeds mode` trains several seeds together: `auto` on CUDA, where it pays."""
    if mode not in FUSE_MODES:
        raise GenzooError(f"unknown --fused-seeds {mode!r}; accepted: {', '.join(FUSE_MODES)}")
    return seeds > 1 and (mode == "on" or (mode == "auto" and device.type == "cuda"))


class _Loss(nn.Module):
    """The model's `training_loss` as a module's forward, which `functional_call` calls."""

    def __init__(self, model: Generator):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor | None, noise: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return cast(Objective, self.model).training_loss(x, y, noise)


class Ensemble:
    """The seeds' models as stacked weights, with one optimizer over them."""

    def __init__(self, models: Sequence[Generator]):
        self.models, self.seeds = list(models), len(models)
        self.params, self.buffers = stack_module_state(list(models))  # type: ignore[arg-type]
        for s, model in enumerate(models):
            _hold_views(model, self.params, self.buffers, s)
        self.loss = _Loss(models[0])  # the template `functional_call` runs with each seed's weights
        (self.name, own), = models[0].optimizers().items()
        names = {id(p): n for n, p in models[0].named_parameters()}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [self.params[names[id(p)]] for p in g["params"]]}
                  for g in own.param_groups]
        self.optimizer: torch.optim.Optimizer = cast(Any, type(own))(groups)  # the model's kind and settings
        self.clip = cast(Objective, models[0]).gradient_clip()

    def step(self, batches: Sequence[tuple[Tensor, Tensor | None]], generators: Sequence[torch.Generator],
             autocast: Any) -> dict[str, Tensor]:
        """One step of every seed; returns each named loss as (seeds,), detached."""
        noise = [cast(Objective, m).training_noise(x, y, g) for m, (x, y), g in zip(self.models, batches, generators)]
        x = torch.stack([x for x, _ in batches])
        y = None if batches[0][1] is None else torch.stack([y for _, y in batches])  # type: ignore[misc]
        stacked_noise = {k: torch.stack([n[k] for n in noise]) for k in noise[0]}
        params = {f"model.{k}": v for k, v in self.params.items()}
        buffers = {f"model.{k}": v for k, v in self.buffers.items()}

        def losses(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor, y: Tensor | None, n: dict[str, Tensor]) -> dict[str, Tensor]:
            return functional_call(self.loss, (p, b), (x, y, n))

        with autocast:
            out = vmap(losses, in_dims=(0, 0, 0, None if y is None else 0, 0))(params, buffers, x, y, stacked_noise)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].sum().backward()  # the seeds share no weight: each gets its own gradient
        if self.clip:
            self._clip_per_seed(self.clip)
        self.optimizer.step()
        return {k: v.detach() for k, v in out.items()}

    @torch.no_grad()
    def _clip_per_seed(self, max_norm: float) -> None:
        """`nn.utils.clip_grad_norm_`, for each seed's own gradients."""
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms = torch.stack([g.reshape(len(g), -1).norm(dim=1) for g in grads]).norm(dim=0)  # (seeds,)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))

    def optimizer_state(self, s: int) -> dict[str, Any]:
        """Seed s's optimizer state, as its own optimizer's `state_dict` would hold it."""
        state = self.optimizer.state_dict()
        per_seed = {i: {k: v[s].clone() if isinstance(v, Tensor) and v.dim() > 0 else v for k, v in st.items()}
                    for i, st in state["state"].items()}
        return {"state": per_seed, "param_groups": state["param_groups"]}

    def set_apart(self) -> None:
        """Give every seed's model weights of its own again (a saved file must not share storage)."""
        for model in self.models:
            for module in model.modules():
                for p in module.parameters(recurse=False):
                    p.data = p.data.clone()
                for name, b in module.named_buffers(recurse=False):
                    setattr(module, name, b.clone())


def _hold_views(model: Generator, params: dict[str, Tensor], buffers: dict[str, Tensor], s: int) -> None:
    for name, p in model.named_parameters():
        p.data = params[name][s]
    for name, _ in list(model.named_buffers()):
        owner, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(owner) if owner else model, leaf, buffers[name][s])


def one_seed_flops(model: Generator, x: Tensor, y: Tensor | None, generator: torch.Generator, autocast: Any) -> float:
    """The FLOPs `fit` counts for one step of this model alone (forward and backward; the optimizer's
    update has no matmul): counted on a copy, with a copy of the seed's generator, so nothing changes.
    (Counted through vmap, the batched convolutions would count otherwise.)"""
    alone = copy.deepcopy(model)
    draws = torch.Generator(generator.device)
    draws.set_state(generator.get_state())
    with FlopCounterMode(display=False) as counter, autocast:
        objective = cast(Objective, alone)
        objective.training_loss(x, y, objective.training_noise(x, y, draws))["loss"].backward()
    return float(counter.get_total_flops())


class StackedAverage:
    """Every seed's `WeightAverage`, as one average of the stacked weights; each seed's holds views."""

    def __init__(self, ensemble: Ensemble, decay: float):
        self.ensemble, self.decay = ensemble, decay
        self.average: list[Tensor] | None = None
        self.per_seed = [WeightAverage(m, decay) for m in ensemble.models]

    @torch.no_grad()
    def update(self) -> None:
        weights = [p.detach() for p in self.ensemble.params.values()]
        if self.average is None:
            self.average = [w.clone() for w in weights]
            for s, avg in enumerate(self.per_seed):
                avg.average = [a[s] for a in self.average]
        else:
            torch._foreach_lerp_(self.average, weights, 1 - self.decay)


Batch = Sequence[tuple[Tensor, Tensor | None]]  # each seed's (x, y)


class EnsembleStep:
    """One step of every seed, eagerly, then the weight average."""

    def __init__(self, ensemble: Ensemble, generators: Sequence[torch.Generator], autocast: Any,
                 average: StackedAverage | None):
        self.ensemble, self.generators, self.autocast, self.average = ensemble, generators, autocast, average
        self.why_eager: str | None = None  # why a step that could be graphed runs eagerly

    def __call__(self, batch: Batch) -> dict[str, Tensor]:
        return self.run(batch)

    def run(self, batch: Batch) -> dict[str, Tensor]:
        losses = self.ensemble.step(batch, self.generators, self.autocast)
        if self.average is not None:
            self.average.update()
        return losses


class GraphedEnsembleStep(EnsembleStep):
    """The same step on CUDA: `graphs.WARMUP_STEPS` real steps on a side stream, then captured once
    and replayed, with every seed's generator registered with the graph. A capture that fails runs
    every later step eagerly and says why once."""

    def __init__(self, ensemble: Ensemble, generators: Sequence[torch.Generator], autocast: Any,
                 average: StackedAverage | None, device: torch.device):
        super().__init__(ensemble, generators, autocast, average)
        self.device = device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
        self.side = torch.cuda.Stream(self.device)
        self.static: list[tuple[Tensor, Tensor | None]] = []
        self.warmed = 0
        self.captured: tuple[torch.cuda.CUDAGraph, Tensor, tuple[str, ...]] | None = None
        self.why_eager = graphs.never_captured(ensemble.models[0], "fused steps")
        if self.why_eager is not None:
            say(self.why_eager)
        else:
            graphs.make_capturable(ensemble.optimizer)

    def __call__(self, batch: Batch) -> dict[str, Tensor]:
        if self.why_eager is not None or (self.static and batch[0][0].shape != self.static[0][0].shape):
            with graphs.quiet_capturable():
                return self.run(batch)
        self._fill(batch)
        if self.captured is None and self.warmed < graphs.WARMUP_STEPS:
            self.warmed += 1
            return self._warm_up()
        if self.captured is None:
            try:
                self.captured = graphs.record(lambda: self.run(self.static), self.side, self.generators,
                                              (self.ensemble.seeds,))
            except Exception as e:  # a capture that fails has run nothing: this step runs eagerly
                name = self.ensemble.models[0].name
                self.why_eager = f"{name}: fused steps run eagerly: capturing the step failed ({one_line(e)})"
                say(self.why_eager)
                with graphs.quiet_capturable():
                    return self.run(batch)
        graph, packed, names = self.captured
        graph.replay()
        return dict(zip(names, packed.clone()))  # `packed` is overwritten by the next replay

    def _fill(self, batch: Batch) -> None:
        """Copy the batch into the static input buffers the graph reads."""
        if not self.static:
            self.static = [(torch.empty_like(x), None if y is None else torch.empty_like(y)) for x, y in batch]
        for (sx, sy), (x, y) in zip(self.static, batch):
            sx.copy_(x)
            if sy is not None and y is not None:
                sy.copy_(y)

    def _warm_up(self) -> dict[str, Tensor]:
        """A real step on the side stream; the last one also checks that the step never waits for the
        device (else every later step runs eagerly, naming the line), as `zoo.graphs` does."""
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)
        check = self.warmed == graphs.WARMUP_STEPS
        with torch.cuda.stream(self.side), graphs.quiet_capturable(), graphs.syncs_recorded(check) as syncs:
            losses = self.run(self.static)
        current.wait_stream(self.side)
        for value in losses.values():  # made on the side stream, used on the current one
            value.record_stream(current)
        if syncs:
            self.why_eager = (f"{self.ensemble.models[0].name}: fused steps run eagerly: the step waits for the GPU "
                              f"at {syncs[0].filename}:{syncs[0].lineno}")
            say(self.why_eager)
        return losses


def fit_seeds(models: Sequence[Generator], seeds: Sequence[int], x: Tensor, y: Tensor | None, budget: Budget, *,
              checkpoints: Sequence[str | Path] | None = None, hooks: Sequence[Sequence[Hook]] | None = None,
              progress: bool = True, precision: str = "fp32", graphs_mode: str = "auto") -> list[TrainResult | None]:
    """Train `models` (one per seed in `seeds`, each built with that seed's initial weights, none of them
    trained yet) as one ensemble, as `zoo.train.fit` would train each alone on images x, and save each
    finished training in its folder of `checkpoints`. `hooks[s]` watch seed s. Returns each seed's
    TrainResult, or None for a seed that diverged. Raises `Interrupted` on a stop signal, each seed's
    progress saved. `graphs_mode` as for `fit`: on CUDA the fused step is replayed as a CUDA graph."""
    check_precision(precision)
    check_training_data(models[0], x, y, budget)
    why = why_not_fused(type(models[0]), budget, precision)
    if why or len(models) != len(seeds) or len(models) < 2:
        raise GenzooError(f"fit_seeds: {why or 'one model per seed, two or more'}")
    device, family = models[0].device, models[0].training_family()
    graphs.check_graphs(graphs_mode, device)
    ckpts = [Checkpoint(c) for c in checkpoints] if checkpoints is not None else None
    save_every = save_interval()
    x, y = cast(tuple[Tensor, Tensor | None], on_device(x, y, device))
    bs = min(budget.batch_size, len(x))
    one = Processes()
    batches = [Batches(x, y, bs, seed, one, device) for seed in seeds]
    # the generator `fit` would leave as the global RNG: a fused seed draws what it would draw alone
    generators = [torch.Generator(device).manual_seed(derive_seed(seed, "train", family)) for seed in seeds]
    autocast = autocast_for(device, precision)
    config = models[0].config
    schedule = lr_schedule(models[0])
    for m in models:
        m.train()
    ensemble = Ensemble(models)
    average = StackedAverage(ensemble, config.ema) if config.ema else None
    step = (GraphedEnsembleStep(ensemble, generators, autocast, average, device)
            if device.type == "cuda" and graphs_mode != "off" else EnsembleStep(ensemble, generators, autocast, average))
    results = [TrainResult(events=[f"trained with seeds {', '.join(map(str, seeds))} as one batched ensemble"]) for _ in seeds]
    alive = [True] * len(seeds)
    unread = [UnreadLosses(device) for _ in seeds]

    def finish(done: Generator) -> None:
        if done.fits_after_training:
            done.after_training(x.to(device), None if y is None else y.to(device))

    watched = [Training(m, r, None if average is None else average.per_seed[s], finish) for s, (m, r) in enumerate(zip(models, results))]

    def snapshot(s: int) -> dict[str, Any]:
        rng = rng_state(device)
        rng["cuda" if device.type == "cuda" else "torch"] = generators[s].get_state()
        avg = average.per_seed[s].average if average is not None else None
        return {"model": {k: v.clone() for k, v in models[s].state_dict().items()},
                "optimizers": {ensemble.name: ensemble.optimizer_state(s)}, "scaler": None,
                "average": None if avg is None else [a.cpu().clone() for a in avg],
                "result": {**asdict(results[s]), "reused": False}, "rng": rng, "rng_ranks": [rng]}

    read_interval = read_every(device)
    with progress_bar(f"{models[0].name} seeds {','.join(map(str, seeds))}", progress) as bar, signals_caught() as caught:
        task = bar.add_task("train", total=None, info="")
        start, last_save, steps = time.perf_counter(), 0.0, 0
        flops: float | None = None
        max_steps = budget.max_steps(batches[0].steps_per_epoch, None)
        while steps < max_steps and any(alive):
            batch = [b(steps) for b in batches]
            if schedule is not None:
                set_learning_rates([ensemble.optimizer], schedule(steps / max_steps))
            if flops is None:
                flops = one_seed_flops(models[0], *batch[0], generators[0], autocast)
                max_steps = budget.max_steps(batches[0].steps_per_epoch, flops)
                if note := budget.below_one_step(flops):
                    for seed, r in zip(seeds, results):
                        r.events.append(note)
                        say(f"{models[0].name} seed {seed}: {note}")
            losses = step(batch)
            steps += 1
            for s, r in enumerate(results):
                r.steps, r.images, r.flops_per_step = steps, r.images + bs, flops
                if alive[s]:
                    unread[s].add(steps, {k: v[s] for k, v in losses.items()})
            elapsed = time.perf_counter() - start
            if hooks:
                for s, w in enumerate(watched):
                    w.seconds, w.fraction = elapsed, min(1.0, steps / max_steps)
                    start += run_hooks(hooks[s] if alive[s] else (), w, device)
            save_due = ckpts is not None and elapsed - last_save >= save_every
            if caught or save_due or steps % read_interval == 0 or steps >= max_steps:
                for s in range(len(seeds)):
                    if not alive[s]:
                        continue
                    try:
                        unread[s].read(results[s].history, one, [elapsed, 0.0])
                    except Diverged as e:
                        alive[s] = False
                        say(f"{models[0].name} seed {seeds[s]}: {e}; not saved (trained alone, it reports this)")
                    results[s].seconds = elapsed
                if ckpts is not None and (caught or save_due):
                    for s in range(len(seeds)):
                        if alive[s]:
                            if caught:
                                results[s].events.append(f"{signal.Signals(caught[0]).name} at step {steps}")
                            ckpts[s].save_progress(snapshot(s))
                    last_save = elapsed
                if caught:
                    raise Interrupted(caught[0], steps, saved=ckpts is not None, together=list(seeds))
                if progress and results[0].history:
                    bar.update(task, info=f"{progress_text(steps, max_steps, results[0].history)}  (seed {seeds[0]})")
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        ensemble.set_apart()
        done: list[TrainResult | None] = []
        for s, model in enumerate(models):  # with the signals still caught, so a stop cannot cut a save short
            if not alive[s]:
                done.append(None)
                continue
            if average is not None:
                average.per_seed[s].copy_to(model)
            finish(model)
            results[s].seconds = seconds
            if ckpts is not None:
                ckpts[s].save_finished(model, results[s])
            done.append(results[s])
    if caught:  # arrived after the last step: the finished seeds are saved, the caller still stops
        raise Interrupted(caught[0], steps, saved=ckpts is not None, together=list(seeds))
    return done
