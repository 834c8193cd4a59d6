"""A sampler's network call replayed as a CUDA graph.

A diffusion sampler calls its UNet hundreds of times on tensors of one shape; on a GPU each call is
hundreds of small kernels launched from Python, and the launches set the pace. `replayed(fn)` wraps
such a call: the first call with given input shapes runs `fn` once on a side stream (lazy work such
as cuDNN's choices done), then records it as a CUDA graph (torch.cuda.graphs' recipe); later calls
copy their inputs into the graph's static buffers and replay it.

It is off unless turned on (`sampling_graphs("auto")` or "on": the runner does, with its `--graphs`),
and only on CUDA. A call that cannot be captured (it waits for the device, or the capture fails)
runs eagerly from then on, and the reason is said once. `fn` must be a pure function of its tensor
arguments that returns one tensor; it is called under no_grad, as samplers are.
"""
from __future__ import annotations

import contextvars
import functools
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from zoo import graphs
from zoo.base import one_line
from zoo.files import say

_MODE = contextvars.ContextVar("genzoo_sampling_graphs", default="off")
_SAID: set[str] = set()  # reasons already said, once per process
_KEPT: weakref.WeakKeyDictionary[Any, dict[tuple, Callable[..., Tensor]]] = weakref.WeakKeyDictionary()


def sampling_graphs(mode: str) -> None:
    """Replay samplers' network calls as CUDA graphs from now on in this context: "auto" or "on" (on
    CUDA), or "off"."""
    _MODE.set(mode)


def replayed(fn: Callable[..., Tensor], device: torch.device) -> Callable[..., Tensor]:
    """`fn` itself, or `fn` replayed as a CUDA graph per input shape when sampling graphs are on and
    `device` is CUDA."""
    if _MODE.get() == "off" or device.type != "cuda":
        return fn
    return ReplayedCall(fn, device)


def kept(owner: nn.Module, method: Callable[..., Tensor], device: torch.device) -> Callable[..., Tensor]:
    """`replayed(owner.method)`, kept for `owner` across calls (per method, mode, device and where the
    owner's weights live), so that a sampler called batch after batch replays what its first call
    captured. Everything the call computes from the owner's weights must happen inside `method`: a
    graph keeps the addresses of what it read, and only the owner's parameters and buffers stay where
    they are between calls (moved to new storage, by `.to()` or a reload, they get a new graph). The
    kept call holds the owner weakly: it goes when the owner does."""
    storage = tuple(t.data_ptr() for t in (*owner.parameters(), *owner.buffers()))
    key = (method, _MODE.get(), device, storage)
    calls = _KEPT.setdefault(owner, {})
    if key not in calls:
        for old in [k for k in calls if k[:3] == key[:3]]:  # the graph of weights that have moved
            del calls[old]
        calls[key] = replayed(functools.partial(method, weakref.proxy(owner)), device)
    return calls[key]


class ReplayedCall:
    """`fn(*tensors) -> tensor`, captured once per input shapes and replayed (see the module docstring)."""

    def __init__(self, fn: Callable[..., Tensor], device: torch.device):
        self.fn = fn
        self.device = device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
        self.side = torch.cuda.Stream(self.device)
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[Tensor], Tensor]] = {}
        self.eager = False

    def __call__(self, *args: Tensor) -> Tensor:
        if self.eager:
            return self.fn(*args)
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(args)
            except Exception as e:  # the warm-up's result is lost with it; this call runs eagerly
                self.eager = True
                _say_once(f"sampling runs eagerly: capturing the network call failed ({one_line(e)})")
                return self.fn(*args)
        graph, inputs, output = self.graphs[key]
        for buffer, a in zip(inputs, args):
            buffer.copy_(a)
        graph.replay()
        return output.clone()  # the next replay overwrites `output`

    def _capture(self, args: tuple[Tensor, ...]) -> tuple[torch.cuda.CUDAGraph, list[Tensor], Tensor]:
        inputs = [a.clone() for a in args]
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            self._warm_up(inputs)
        current.wait_stream(self.side)
        graph = torch.cuda.CUDAGraph()
        with graphs.capturing(graph, self.side):
            output = self.fn(*inputs)
        return graph, inputs, output

    def _warm_up(self, inputs: list[Tensor]) -> None:
        """One eager call; one that waits for the device cannot be captured, and says so."""
        with graphs.syncs_recorded(True) as syncs:  # other warnings (a missing deterministic kernel) go on
            self.fn(*inputs)
        if syncs:
            raise RuntimeError(f"it waits for the GPU at {syncs[0].filename}:{syncs[0].lineno}")


def _say_once(text: str) -> None:
    if text not in _SAID:
        _SAID.add(text)
        say(text)
