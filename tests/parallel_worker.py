"""Started by tests/test_parallel.py under torchrun (or called in-process for one process): train
models a few steps on a slice of mnist5k and save what each process ends with.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/parallel_worker.py OUT ae,wgan 2 32
"""
import sys
from pathlib import Path

import torch

import zoo
from zoo import data
from zoo.budget import Budget
from zoo.parallel import Processes
from zoo.seeds import derive_seed, seed_everything
from zoo.train import fit


def train(out: str, models: str, steps: int, batch: int) -> None:
    procs = Processes.start(cpu=True)
    spec, x, y = data.load("mnist5k")
    x, y = x[:256], y[:256]
    for name in models.split(","):
        seed_everything(derive_seed(0, "init", name))  # as the runner does: the same weights on every process
        model = zoo.create(name, spec, preset="smoke")
        r = fit(model, x, y, Budget(steps, "steps", batch_size=batch), progress=False, processes=procs)
        torch.save({"history": r.history, "state": model.state_dict(), "flops_per_step": r.flops_per_step,
                    "images": r.images, "steps": r.steps}, Path(out) / f"{name}-rank{procs.rank}.pt")
    procs.close()


if __name__ == "__main__":
    torch.set_num_threads(1)
    train(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
