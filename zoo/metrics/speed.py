"""Sampling speed and peak memory.

Memory is what the device can tell honestly: on CUDA the peak of allocated tensor memory
(`torch.cuda.max_memory_allocated`); on CPU the peak resident set size of the whole process
(Linux VmHWM, reset before measuring where the kernel allows), which includes Python and torch.
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from zoo.base import Generator


def timed_sampling(model: Generator, n: int, *, batch: int = 64, seed: int = 0) -> tuple[Tensor, dict[str, float]]:
    """Draw n samples in batches from one seeded generator, and time them: the evaluation samples
    are the speed test. The first batch is the warm-up (allocations, kernels, caches); the full
    batches after it are timed, and if there are none, one more batch is drawn to time."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [min(batch, n - i) for i in range(0, n, batch)]
    out, seconds, timed = [], 0.0, 0
    for i, size in enumerate(sizes):
        start = time.perf_counter()
        out.append(model.sample(size, generator=gen).cpu())
        _sync(model)
        if i > 0 and size == batch:
            seconds += time.perf_counter() - start
            timed += 1
    if timed == 0:
        start = time.perf_counter()
        model.sample(batch, generator=gen)
        _sync(model)
        seconds, timed = time.perf_counter() - start, 1
    latency = seconds / timed
    return torch.cat(out), {"sample_images_per_s": batch / latency, "sample_batch_seconds": latency,
                            "sample_batch": batch}


def _sync(model: Generator) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """`with PeakMemory(device) as m: ...` then `m.mb` and `m.kind`."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.mb: float | None = None
        self.kind = "cuda_peak_allocated" if self.device.type == "cuda" else "cpu_process_peak_rss"

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif not _reset_rss_peak():
            self.kind = "cpu_process_peak_rss_since_start"  # could not reset: the peak may predate this model
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.mb = _rss_peak_mb()
        return False


def _reset_rss_peak() -> bool:
    try:  # Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # where /proc is missing: macOS counts bytes, the BSDs KiB
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
