"""Sampling speed, network evaluations, peak memory and size.

Memory is what the device can tell honestly: on CUDA the peak of allocated tensor memory
(`torch.cuda.max_memory_allocated`); on CPU the peak resident set size of the whole process
(Linux VmHWM, reset before measuring where the kernel allows), which includes Python and torch.
"""
from __future__ import annotations

import resource
import time
from pathlib import Path

import torch

from zoo.base import Generator


def sampling_speed(model: Generator, *, batch: int = 64, repeats: int = 10, min_seconds: float = 2.0,
                   seed: int = 0) -> dict[str, float]:
    """Generated images per second at a fixed batch, after a small warm-up batch.

    Full batches are timed until `min_seconds` have passed (at least one, at most `repeats`), so a
    1000-step sampler costs one timed batch and a one-pass decoder is averaged over several."""
    gen = torch.Generator().manual_seed(seed)
    model.sample(min(batch, 2), generator=gen)  # warm-up: allocations, kernels, caches
    _sync(model)
    start, done = time.perf_counter(), 0
    while done < max(1, repeats):
        model.sample(batch, generator=gen)
        _sync(model)
        done += 1
        if time.perf_counter() - start >= min_seconds:
            break
    latency = (time.perf_counter() - start) / done
    return {"sample_images_per_s": batch / latency, "sample_batch_seconds": latency, "sample_batch": batch}


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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
