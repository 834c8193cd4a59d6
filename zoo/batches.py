"""Which images each training step sees: an order per epoch from the seed alone, so a resumed
training sees the same batches, dealt over the processes of a data-parallel training."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from zoo.data import to_float
from zoo.parallel import Processes
from zoo.seeds import derive_seed


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


def whole_dataset(data: Dataset, workers: int) -> Tensor:
    """Every image of a Dataset, as one uint8 tensor (for a model's `after_training`)."""
    return torch.cat([x for x, _ in DataLoader(data, batch_size=256, num_workers=workers)])
