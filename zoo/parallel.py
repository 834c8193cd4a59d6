"""Data-parallel training: the processes that `accelerate launch` (or torchrun) starts, and the few
things the training loop needs of them.

    accelerate launch --num_processes 2 -m benchmarks.run --models ddpm --preset full

Every process builds the same model from the same seed and trains it on its own slice of each
global batch. Models own their optimizers and call `loss.backward()` themselves, so the gradients
are averaged here, once for every model, rather than by wrapping each network in DDP: a hook on
each parameter notes that backward reached it, and at the end of that backward pass one all-reduce
averages every gradient it produced. Clipping and `opt.step()` inside `train_step` then see the
gradient of the whole global batch, as on one process, and this works for two optimizers (GANs)
and for a gradient penalty's double backward (WGAN-GP), which torch's DDP wrapper does not support.

One process (`main`) evaluates and writes files; the others wait. Process setup, rank, device and
the collectives on Python objects come from accelerate's `PartialState`.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from zoo.base import GenzooError

# The other processes wait while the main one evaluates, which at the full preset can take hours:
# a collective must not give up before that.
WAIT_LIMIT = timedelta(hours=12)
# Runs a function when the current backward pass ends. Public as torch.autograd.graph.queue_callback only
# in recent torch; older versions (2.14 included) have just the engine's method, which DDP itself calls.
_queue_callback = getattr(torch.autograd.graph, "queue_callback", None) or torch.autograd.Variable._execution_engine.queue_callback


class Processes:
    """This process's place among the data-parallel processes; one process when none were launched."""

    def __init__(self, state: Any = None):
        self.state = state  # accelerate's PartialState, or None for a single process
        self.rank = state.process_index if state is not None else 0
        self.world = state.num_processes if state is not None else 1

    @classmethod
    def start(cls, cpu: bool) -> Processes:
        """The processes torchrun or `accelerate launch` started (their environment says how many),
        joined through accelerate: gloo on CPU, NCCL on CUDA. A plain `python -m` run is one process."""
        world = os.environ.get("WORLD_SIZE", "1")
        if not world.strip().isdecimal():
            raise GenzooError(f"WORLD_SIZE {world!r} is not a whole number; torchrun and accelerate launch set it: "
                              "unset it for a run in one process")
        if int(world) <= 1:
            return cls()
        if missing := [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]:
            # a WORLD_SIZE left over from another job: joining would wait for processes that never come
            raise GenzooError(f"WORLD_SIZE is {world} but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                              "not set; start the processes with torchrun or accelerate launch, or unset WORLD_SIZE")
        # A value torch or accelerate would read with int() (a traceback), or a rank no process of the world
        # has (every process then waits for it, up to WAIT_LIMIT)
        rank, port, local = os.environ["RANK"], os.environ["MASTER_PORT"], os.environ.get("LOCAL_RANK", "0")
        if not (rank.strip().isdecimal() and int(rank) < int(world)) or not local.strip().isdecimal() \
                or not (port.strip().isdecimal() and 1 <= int(port) <= 65535):
            raise GenzooError(f"WORLD_SIZE is {world} with RANK {rank!r}, LOCAL_RANK {local!r} and MASTER_PORT {port!r}; "
                              f"accepted: RANK and LOCAL_RANK whole numbers, RANK below WORLD_SIZE, MASTER_PORT from 1 to "
                              "65535. Start the processes with torchrun or accelerate launch, or unset WORLD_SIZE")
        from accelerate import PartialState

        return cls(PartialState(cpu=cpu, timeout=WAIT_LIMIT))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device | None:
        """The device accelerate gave this process (cuda:LOCAL_RANK on GPUs), or None for one process."""
        return self.state.device if self.state is not None else None

    def wait(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    def mean(self, values: list[float], device: torch.device) -> list[float]:
        """The average over processes of each value (every process passes as many)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def from_main(self, obj: Any) -> Any:
        """The main process's `obj`, on every process: decisions that must be the same everywhere."""
        if self.world == 1:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj])[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order, on every process."""
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def copy_from_main(self, module: nn.Module, buffers_only: bool = False) -> None:
        """Overwrite this process's parameters (and buffers) with the main process's."""
        if self.world == 1:
            return
        tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)

    @contextmanager
    def averaged_gradients(self, module: nn.Module) -> Iterator[None]:
        """Inside: every backward pass ends with the gradients it produced averaged over processes."""
        if self.world == 1:
            yield
            return
        params = [p for p in module.parameters() if p.requires_grad]
        reached: set[int] = set()

        def average() -> None:
            # One flat all-reduce: each parameter's gradient (zeros where backward did not reach it
            # on this process) and a flag saying it did, so that processes whose graphs differ agree.
            here = [i in reached and p.grad is not None for i, p in enumerate(params)]
            reached.clear()
            flat = torch.cat([*(p.grad.reshape(-1).float() if h and p.grad is not None else p.new_zeros(p.numel(), dtype=torch.float32)
                                for p, h in zip(params, here)),
                              torch.tensor(here, dtype=torch.float32, device=params[0].device)])
            dist.all_reduce(flat)
            flags = flat[-len(params):].tolist()
            offset = 0
            for p, flag in zip(params, flags):
                if flag > 0:
                    p.grad = (flat[offset:offset + p.numel()] / self.world).view_as(p).to(p.dtype)
                offset += p.numel()

        def on_grad(i: int) -> None:
            if not reached:  # the first parameter of this backward pass: average when it ends
                _queue_callback(average)
            reached.add(i)

        handles = [p.register_post_accumulate_grad_hook(lambda p, i=i: on_grad(i)) for i, p in enumerate(params)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def close(self) -> None:
        if self.world > 1:
            self.state.destroy_process_group()
