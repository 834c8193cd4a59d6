"""GPU throughput of every model, and what deterministic kernels cost: issue 31's tables.

    python -m benchmarks.gpu_bench OUT [--models ae,ddpm] [--batch 32] [--seconds 170] [--precision bf16]

Per model at preset quick, on mnist5k: training FLOPs of one step (torch.utils.flop_counter, as the
training loop counts them), steps/s eagerly and replayed as CUDA graphs (`zoo.graphs`), the TFLOP/s
that makes and its share of the card's dense peak, peak memory, and sampling images/s (eagerly,
and with the samplers' network calls replayed as CUDA graphs). Then, in a child process started
with CUBLAS_WORKSPACE_CONFIG=:4096:8 (cuBLAS reads it when it starts), the same steps under
`torch.use_deterministic_algorithms(True, warn_only=True)`, and the ops that warned (those without a
deterministic kernel).

Writes throughput.md, determinism.md and gpu_bench.json into OUT after every model, so a run cut
short still leaves its tables. A benchmark, not a test: it checks nothing, it measures.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

import zoo
from benchmarks.cli import comma_list
from zoo import data as zdata
from zoo.base import Generator
from zoo.graphs import GraphedStep, Step, training_step
from zoo.metrics import speed
from zoo.nets import replay
from zoo.registry import parse
from zoo.train import WeightAverage, autocast_for

# Dense TFLOP/s of the tensor cores by the vendors' datasheets (which print twice these, "with
# sparsity"), keyed by a part of torch.cuda.get_device_name(); the first key found in the name wins.
# Leads, not ceilings: a large dense matmul reaches somewhat less.
PEAK_TFLOPS = {
    "H200 NVL": {"tf32": 417.5, "bf16": 835.5},
    "H200": {"tf32": 494.7, "bf16": 989.4},  # SXM, named plainly "NVIDIA H200": the H100 SXM's rates
    "H100 NVL": {"tf32": 417.5, "bf16": 835.5},
    "H100 PCIe": {"tf32": 378.0, "bf16": 756.5},
    "H100": {"tf32": 494.7, "bf16": 989.4},  # SXM: "NVIDIA H100 80GB HBM3"
    "A100": {"tf32": 156.0, "bf16": 312.0},
}
PEAK_COLUMN = {"fp32": "tf32", "bf16": "bf16"}  # --precision -> its column of PEAK_TFLOPS
DETERMINISM_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
_NO_DETERMINISTIC_KERNEL = re.compile(r"^(.+?) does not have a deterministic implementation")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_bench", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for throughput.md, determinism.md and gpu_bench.json")
    p.add_argument("--models", help="comma-separated model names (default: every registered model)")
    p.add_argument("--batch", type=int, default=32, help="training batch (default: 32, the quick preset's)")
    p.add_argument("--sample-batch", type=int, default=64, help="sampling batch (default: 64, the quick preset's speed batch)")
    p.add_argument("--time-per-run", type=float, default=1.0, help="seconds each timing aims at (default: 1)")
    p.add_argument("--seconds", type=float, default=170.0, help="the whole benchmark's budget: models left when it runs out are skipped")
    p.add_argument("--precision", default="fp32", choices=list(PEAK_COLUMN), help="fp32 (TF32 matmuls, as the runner) or bf16 autocast")
    p.add_argument("--part", default="all", choices=("all", "throughput", "determinism"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for option, value, least in (("--batch", args.batch, 1), ("--sample-batch", args.sample_batch, 1)):
        if value < least:
            p.error(f"{option} must be a whole number >= {least}, got {value}")
    for option, value in (("--time-per-run", args.time_per_run), ("--seconds", args.seconds)):
        if not 0 < value < math.inf:  # nan fails this too
            p.error(f"{option} must be a number of seconds > 0, got {value}")
    try:
        args.names = comma_list("--models", args.models, "ae,ddpm") if args.models is not None else zoo.available()
        for name in args.names:
            parse(name)  # the name and a variant's text; a variant's range is checked when the model is built
    except zoo.GenzooError as error:
        p.error(str(error))
    return args


# -- timing --------------------------------------------------------------------------------------

class Trainer:
    """A model's steps through `training_step`, on batches that cycle through the data."""

    def __init__(self, model: Generator, mode: str, data: tuple[Tensor, Tensor], batch: int, autocast: Callable[[], AbstractContextManager]):
        self.model, self.x, self.y, self.batch = model, data[0], data[1], batch
        average = WeightAverage(model, model.config.ema) if model.config.ema else None  # inside the step, as the loop has it
        self.step: Step = training_step(model, mode, torch.device("cuda"), autocast(), inside=average.update if average else None)
        self.index = 0

    def __call__(self, n: int) -> None:
        for _ in range(n):
            at = (self.index * self.batch) % (len(self.x) - self.batch)
            self.step(self.x[at:at + self.batch], self.y[at:at + self.batch], self.index)
            self.index += 1


def fresh(name: str, spec: zoo.DataSpec) -> Generator:
    """The model at preset quick on the GPU, from the same seed each time: each timing starts from step 0."""
    torch.manual_seed(0)
    return zoo.create(name, spec, preset="quick").cuda()


def steps_per_second(run: Trainer, aim: float, warm: int = 8) -> float:
    """Steps/s after `warm` untimed steps (a graphed step's warm-ups and captures among them), over
    enough steps to take about `aim` seconds."""
    run(warm)
    torch.cuda.synchronize()
    start = time.perf_counter()
    run(5)
    torch.cuda.synchronize()
    n = int(min(500, max(10, aim / max(time.perf_counter() - start, 1e-6) * 5)))
    start = time.perf_counter()
    run(n)
    torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def flops_per_step(run: Trainer) -> float:
    """Matmul and convolution FLOPs of one real step, forward and backward, as the loop counts them."""
    with FlopCounterMode(display=False) as counter:
        run(1)
    return float(counter.get_total_flops())


def how_stepped(step: Step) -> str:
    if step.why_eager:
        return "eager: " + step.why_eager.split(": ", 2)[-1]
    return f"graphed ({len(step.graphs)} graph{'s' * (len(step.graphs) != 1)})" if isinstance(step, GraphedStep) else "eager"


# -- the two parts -----------------------------------------------------------------------------------

def throughput(name: str, args: argparse.Namespace, data: tuple[Tensor, Tensor], spec: zoo.DataSpec) -> dict[str, Any]:
    """One model's row: FLOPs, eager and graphed steps/s, TFLOP/s, share of peak, memory, sampling."""
    column = PEAK_COLUMN[args.precision]
    autocast = partial(autocast_for, torch.device("cuda"), args.precision)  # as the loop runs train_step
    torch.cuda.reset_peak_memory_stats()
    eager = Trainer(fresh(name, spec), "off", data, args.batch, autocast)
    flops = flops_per_step(eager)
    eager_rate = steps_per_second(eager, args.time_per_run)
    graphed = Trainer(fresh(name, spec), "on", data, args.batch, autocast)
    graphed_rate = steps_per_second(graphed, args.time_per_run)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20
    sampled = {}
    for mode in ("off", "on"):  # the sampler's network calls eagerly, then replayed as CUDA graphs
        replay.sampling_graphs(mode)
        sampled[mode] = speed.timed_sampling(graphed.model, 2 * args.sample_batch, batch=args.sample_batch)[1]
    peak = peak_tflops(column)
    achieved = flops * graphed_rate / 1e12
    return {
        "model": name, "gflop_per_step": flops / 1e9, "eager_steps_per_s": eager_rate, "graphed_steps_per_s": graphed_rate,
        "speedup": graphed_rate / eager_rate, "train_images_per_s": graphed_rate * args.batch, "tflops": achieved,
        "peak_share": achieved / peak if peak else None, "peak_mb": peak_mb,
        "sample_images_per_s": sampled["off"]["sample_images_per_s"],
        "replayed_sample_images_per_s": sampled["on"]["sample_images_per_s"], "step": how_stepped(graphed.step),
    }


def determinism(name: str, args: argparse.Namespace, data: tuple[Tensor, Tensor], spec: zoo.DataSpec) -> dict[str, Any]:
    """One model's steps/s under deterministic algorithms, eager and graphed (with and without the
    NaN fill of new memory that deterministic mode adds), and the ops that have no deterministic kernel."""
    autocast = partial(autocast_for, torch.device("cuda"), args.precision)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eager = Trainer(fresh(name, spec), "off", data, args.batch, autocast)
        eager_rate = steps_per_second(eager, args.time_per_run)
        graphed = Trainer(fresh(name, spec), "on", data, args.batch, autocast)
        graphed_rate = steps_per_second(graphed, args.time_per_run)
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        try:  # a model that fails here must not leave the fill off for the next ones
            unfilled = Trainer(fresh(name, spec), "on", data, args.batch, autocast)
            unfilled_rate = steps_per_second(unfilled, args.time_per_run)
        finally:
            torch.utils.deterministic.fill_uninitialized_memory = True  # type: ignore[attr-defined]
    ops = sorted({m.group(1) for w in caught if (m := _NO_DETERMINISTIC_KERNEL.match(str(w.message)))})
    return {"model": name, "det_eager_steps_per_s": eager_rate, "det_graphed_steps_per_s": graphed_rate,
            "det_graphed_unfilled_steps_per_s": unfilled_rate, "det_step": how_stepped(graphed.step), "nondeterministic_ops": ops}


def peak_tflops(column: str) -> float | None:
    name = torch.cuda.get_device_name()
    return next((rates[column] for key, rates in PEAK_TFLOPS.items() if key in name), None)


# -- tables ----------------------------------------------------------------------------------------------

def throughput_table(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    peak = info["peak_tflops"]
    peak_text = f"{peak:g} TFLOP/s dense {info['peak_column']}" if peak else "unknown for this card"
    head = [f"# GPU throughput: {info['device']}, preset quick, batch {info['batch']}, {info['precision']}", "",
            f"torch {info['torch']}. Peak: {peak_text}. "
            "Steps/s of the whole train_step (every optimizer, the weight average when the preset has one); "
            "TFLOP/s from the graphed rate. Sampling: eagerly, and with the sampler's network calls replayed as CUDA "
            "graphs (zoo.nets.replay: the diffusion samplers, flow matching and the PixelCNNs; the others' are unchanged).", "",
            "| model | GFLOP/step | eager steps/s | graphed steps/s | speed-up | train img/s | TFLOP/s | % of peak | peak MB "
            "| sample img/s | replayed sample img/s | step |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    share = lambda r: "-" if r["peak_share"] is None else f"{100 * r['peak_share']:.2f}"
    lines = [f"| {r['model']} | {r['gflop_per_step']:.2f} | {r['eager_steps_per_s']:.0f} | {r['graphed_steps_per_s']:.0f} | "
             f"{r['speedup']:.1f}x | {r['train_images_per_s']:.0f} | {r['tflops']:.2f} | {share(r)} | {r['peak_mb']:.0f} | "
             f"{r['sample_images_per_s']:.1f} | {r['replayed_sample_images_per_s']:.1f} | {r['step']} |" for r in rows]
    return "\n".join(head + lines) + "\n"


def determinism_table(rows: list[dict[str, Any]], base: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    head = [f"# Deterministic algorithms: {info['device']}, preset quick, batch {info['batch']}", "",
            "torch.use_deterministic_algorithms(True, warn_only=True), cudnn.deterministic, CUBLAS_WORKSPACE_CONFIG=:4096:8; "
            "cost = steps/s lost against the default kernels (throughput.md). 'no NaN fill': graphed, with "
            "torch.utils.deterministic.fill_uninitialized_memory off.", "",
            "| model | eager det steps/s | eager cost | graphed det steps/s | graphed cost | graphed, no NaN fill | cost "
            "| ops without a deterministic kernel | step |",
            "|---|---|---|---|---|---|---|---|---|"]

    def cost(det: float, key: str, name: str) -> str:
        ref = base.get(name, {}).get(key)
        return f"{100 * (1 - det / ref):+.0f}%" if ref else "-"

    lines = [f"| {r['model']} | {r['det_eager_steps_per_s']:.0f} | {cost(r['det_eager_steps_per_s'], 'eager_steps_per_s', r['model'])} | "
             f"{r['det_graphed_steps_per_s']:.0f} | {cost(r['det_graphed_steps_per_s'], 'graphed_steps_per_s', r['model'])} | "
             f"{r['det_graphed_unfilled_steps_per_s']:.0f} | {cost(r['det_graphed_unfilled_steps_per_s'], 'graphed_steps_per_s', r['model'])} | "
             f"{', '.join(r['nondeterministic_ops']) or 'none'} | {r['det_step']} |" for r in rows]
    return "\n".join(head + lines) + "\n"


# -- the run -----------------------------------------------------------------------------------------------

def run_part(part: str, args: argparse.Namespace, deadline: float) -> None:
    """Every model through `throughput` or `determinism`, saving the tables after each one."""
    torch.set_float32_matmul_precision("high")  # TF32, as the runner trains on CUDA
    if part == "determinism":
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    spec, x, y = zdata.load("mnist5k", split="train")
    assert y is not None  # mnist5k is labeled: the conditional models train on its labels
    data = (x.cuda(), y.cuda())
    saved = args.out / "gpu_bench.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    column = PEAK_COLUMN[args.precision]
    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "batch": args.batch,
            "precision": args.precision, "peak_column": column, "peak_tflops": peak_tflops(column)}
    results["info"], results[part] = info, []
    measure = throughput if part == "throughput" else determinism
    for name in args.names:
        if time.monotonic() > deadline:
            print(f"{part}: out of time, skipped from {name} on", flush=True)
            break
        start = time.monotonic()
        try:
            row = measure(name, args, data, spec)
        except Exception as e:  # one model's failure is its row, the others go on
            print(f"{part}: {name} failed: {type(e).__name__}: {e}", flush=True)
            continue
        finally:
            torch.cuda.empty_cache()
        results[part].append(row)
        print(f"{part}: {name} in {time.monotonic() - start:.1f}s: {json.dumps(row, default=str)}", flush=True)
        saved.write_text(json.dumps(results, indent=1, default=str))
        if part == "throughput":
            (args.out / "throughput.md").write_text(throughput_table(results[part], info))
        else:
            base = {r["model"]: r for r in results.get("throughput", [])}
            (args.out / "determinism.md").write_text(determinism_table(results[part], base, info))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        sys.exit("gpu_bench needs a CUDA device")
    start = time.monotonic()
    if args.part in ("throughput", "determinism"):
        run_part(args.part, args, start + args.seconds)
        return
    # Throughput here, with the default kernels; determinism in a child that starts cuBLAS with a fixed workspace.
    run_part("throughput", args, start + 0.6 * args.seconds)
    left = args.seconds - (time.monotonic() - start)
    child = [sys.executable, "-m", "benchmarks.gpu_bench", str(args.out), "--part", "determinism", "--seconds", f"{max(left - 15, 1):.0f}",
             "--batch", str(args.batch), "--precision", args.precision, "--time-per-run", str(args.time_per_run)]
    if args.models:
        child += ["--models", args.models]
    try:
        subprocess.run(child, env={**os.environ, **DETERMINISM_ENV}, timeout=max(left, 1), check=False)
    except subprocess.TimeoutExpired:
        print("determinism: out of time", flush=True)


if __name__ == "__main__":
    main()
