"""Gated PixelCNN (van den Oord et al. 2016): an image as a sequence of sub-pixels in raster order.

The chain rule writes any distribution over images exactly as a product of conditionals,
    p(x) = prod_i p(x_i | x_<i),
where i runs over rows, then columns, then channels (R -> G -> B within a pixel). A PixelCNN
predicts every conditional at once with convolutions that are *masked* so that the output at
sub-pixel i never sees input i or anything after it. Each conditional is a 256-way softmax over
the 8-bit value, so the model is discrete and its likelihood is exact: bits/dim is just the
mean cross-entropy over sub-pixels divided by ln 2 (no dequantization, no "+8").

Masks. A single k x k masked conv stacked many times has a "blind spot": pixels up-right of the
current one are never seen. The gated PixelCNN splits the network in two stacks:
  * the vertical stack sees only the rows strictly above (a (k//2) x k or (k//2+1) x k kernel
    sitting above the pixel) — any column within reach, so no blind spot;
  * the horizontal stack sees the current row to the left, (1, k//2+1) kernel; it also gets the
    vertical stack's features at the same position (those only know rows above, so this is safe).
The first layer uses "mask A": the centre tap may not see the sub-pixel being predicted. Later
layers use "mask B": the centre tap may see the same position's features, which by induction only
know the past. With C > 1 channels, each hidden channel belongs to a colour group g = index % C;
at the centre tap output group g sees input groups < g (A) or <= g (B): R sees nothing of its own
pixel, G sees R, B sees R and G. Every layer is gated, tanh(a) * sigmoid(b), the horizontal stack
is residual, and every layer's skip output is summed into a 1x1 head (ELU, 1x1, ELU, 1x1) that
gives C x 256 logits.
The first layer's gates also get a learned bias per row and per column: the network sees only a few
rows up, and in a blank region that alone does not say whether the digit should start here (the
bias depends on the position, not on pixel values, so the order is untouched).
Class conditioning (`pixelcnn-cond`) adds a learned per-class bias to every gate, and learns one
row and column bias per class: where the ink of a 1 goes is not where the ink of a 0 goes.

Sampling is sequential: one network evaluation per sub-pixel, nfe = H*W*C. The "naive" sampler
reruns the whole network on the whole image at each of the H*W*C steps. The "fast" sampler
computes the same conditionals with caches: the vertical stack of a row depends only on rows
above, so it is computed once per row (one output row per layer); the horizontal stack and the
head are then evaluated at the single new position only, as small matrix products on (B, features)
vectors. Both draw u ~ U[0,1) from the seeded generator for every sub-pixel and invert the CDF of
the softmax, so they draw the same image whenever their logits agree; the two compute the same sums
in a different order, and a rounding difference flips a drawn value only if u
falls that close to a CDF boundary (the tests check identical draws in float32 and float64).
Either can be watched (`sample(n, callback=fn)`): one step per sub-pixel, the canvas so far.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.base import Conditional, Generator, GenzooError, Likelihood, ModelConfig, Objective, SamplingStep, Stepwise, hparam, learning_rate, width
from zoo.nets import to_signed
from zoo.nets.replay import kept
from zoo.registry import register

LEVELS = 256


def _groups(n: int, channels: int) -> Tensor:
    """Colour group of each of n feature channels: channel k belongs to group k % C."""
    return torch.arange(n) % channels


class CentreMaskedConv(nn.Conv2d):
    """A (1, p+1) conv over the current row, columns j-p..j (callers pad p on the left).

    Left taps see everything; the centre tap (column j) connects output group g to input groups
    < g ("A", strict) or <= g ("B"). p = 0 gives a masked 1x1 conv.
    """

    mask: Tensor

    def __init__(self, cin: int, cout: int, p: int, in_groups: Tensor, out_groups: Tensor, strict: bool):
        super().__init__(cin, cout, (1, p + 1))
        allowed = in_groups[None, :] < out_groups[:, None] if strict else in_groups[None, :] <= out_groups[:, None]
        mask = torch.ones(cout, cin, 1, p + 1)
        mask[:, :, 0, p] = allowed.float()
        self.register_buffer("mask", mask, persistent=False)  # rebuilt from the config, not saved
        self.frozen: Tensor | None = None  # weight * mask, computed once while sampling

    def masked_weight(self) -> Tensor:
        return self.weight * self.mask if self.frozen is None else self.frozen

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias)

    def as_linear(self) -> tuple[Tensor, Tensor | None]:
        """The conv at one position as F.linear on its window (..., p+1, cin) flattened, tap-major."""
        w = self.masked_weight()
        return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1), self.bias  # (cout, (p+1)*cin)


@contextmanager
def _frozen_masks(model: nn.Module):
    """While sampling (no gradients), multiply each mask into its weight once, not at every call."""
    convs = [m for m in model.modules() if isinstance(m, CentreMaskedConv)]
    for m in convs:
        m.frozen = m.weight * m.mask
    try:
        yield
    finally:
        for m in convs:
            m.frozen = None


def draw(logits: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF sampling: logits (B,K), u (B,) in [0,1) -> indices (B,) (levels, or vqvae's tokens).
    A logit change of size e moves the CDF by ~e, so it changes the draw only if u lies that close to a
    boundary."""
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)
    return (cdf < u.double()[:, None]).sum(-1).clamp(max=logits.shape[-1] - 1)


def gate(z: Tensor) -> Tensor:
    a, b = z.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One layer of both stacks. `first`: mask A, the layer that sees the input itself (the image's
    channels, or for vqvae's prior the token embeddings)."""

    def __init__(self, cin: int, hidden: int, channels: int, kernel: int, first: bool):
        super().__init__()
        self.p, self.first = kernel // 2, first
        p, h = self.p, hidden
        g_in = _groups(cin, channels)
        g_h, g_2h = _groups(h, channels), _groups(h, channels).repeat(2)  # gated convs: [value | gate] halves
        # Vertical: rows i-p..i-1 of the image (first layer) or rows i-p..i of the vertical features below.
        self.v_conv = nn.Conv2d(cin, 2 * h, (p, kernel) if first else (p + 1, kernel))
        self.h_conv = CentreMaskedConv(cin, 2 * h, p, g_in, g_2h, strict=first)
        self.v_to_h = nn.Conv2d(2 * h, 2 * h, 1)  # vertical features into the horizontal stack
        self.res_skip = CentreMaskedConv(h, 2 * h, 0, g_h, g_2h, strict=False)  # [residual | skip]

    def v_window(self, v: Tensor) -> Tensor:
        """Pad (B,c,H,W) so that the vertical conv's output row i sees only the rows it may."""
        p = self.p
        v = F.pad(v, (p, p, p, 0))
        return v[:, :, :-1] if self.first else v

    def h_step(self, h_win: Tensor, vh: Tensor, h_prev: Tensor | None) -> tuple[Tensor, Tensor]:
        """h_win: the row window (B,c,r,w+p); vh: vertical features for the same positions (B,2h,r,w)."""
        res, skip = self.res_skip(gate(self.h_conv(h_win) + vh)).chunk(2, dim=1)
        return (res if h_prev is None else h_prev + res), skip


def gated_stacks(layers: Sequence[GatedLayer], x: Tensor, first_bias: Tensor,
                 gate_bias: Sequence[tuple[Tensor | int, Tensor | int]] | None = None) -> Tensor:
    """Both stacks over the network's input x (B,c,H,W) -> the sum of every layer's skip output
    (B,hidden,H,W). first_bias: added to the first layer's vertical gates (where the pixel is);
    gate_bias: per layer, what the vertical and the horizontal gates add (a class bias), or none."""
    v = h = x
    skip: Tensor | int = 0
    for depth, layer in enumerate(layers):
        bias_v, bias_h = gate_bias[depth] if gate_bias else (0, 0)
        v_pre = layer.v_conv(layer.v_window(v)) + bias_v  # (B,2h,H,W): rows above only
        if depth == 0:
            v_pre = v_pre + first_bias
        h, s = layer.h_step(F.pad(h, (layer.p, 0, 0, 0)), layer.v_to_h(v_pre) + bias_h, None if layer.first else h)
        v, skip = gate(v_pre), skip + s
    assert isinstance(skip, Tensor)
    return skip


@register
class PixelCNN(Generator["PixelCNN.Config"], Likelihood, Stepwise, Objective):
    """Gated PixelCNN: 256-way softmax per sub-pixel in raster order; exact bits/dim, NFE = H*W*C."""

    name = "pixelcnn"
    bpd_kind = "exact"
    sampler_params = ("sampler",)

    @dataclass
    class Config(ModelConfig):
        hidden: int = width(16)  # feature channels of each stack (at least the image's channels)
        layers: int = hparam(6, ge=1, le=64)  # gated layers (the first one has mask A)
        first_kernel: int = hparam(7, ge=3, le=31, odd=True)  # the first layer's kernel: it reaches first_kernel//2 rows up
        kernel: int = hparam(3, ge=3, le=31, odd=True)  # later layers' kernel: each reaches kernel//2 more rows/columns
        head: int = width(32)  # width of the 1x1 output head
        lr: float = learning_rate(5e-3)
        grad_clip: float = hparam(1.0, ge=0)  # max gradient norm (0: no clipping)
        sampler: str = hparam("fast", choices=("fast", "naive"))  # "fast" (cached, exact) or "naive" (full recompute per sub-pixel)

    # quick: narrow stacks, so that a FLOP budget buys more steps (a wider network gets fewer and
    # draws worse: docs/experiments/2026-11-24-narrow-networks.md), at a high lr. The last weights of such a short
    # training can draw mostly empty images; their moving average (ema) draws strokes.
    presets = {
        "smoke": dict(hidden=8, layers=2, first_kernel=3, kernel=3, head=16),
        "quick": dict(hidden=8, layers=6, first_kernel=7, kernel=3, head=16, lr=2e-2, ema=0.98),
        "full": dict(hidden=128, layers=15, first_kernel=7, kernel=3, head=512, lr=1e-3),
    }
    # The fast sampler is quick enough that FID keeps the preset's sample count.

    def validate(self) -> None:
        """hidden and head at least the image's channels (each feature channel belongs to one colour
        channel: a colour without one would not see the colours drawn before it at its pixel)."""
        for field in ("hidden", "head"):
            if getattr(self.config, field) < self.spec.channels:
                raise GenzooError(f"{self.name}: {field} must be at least the image's {self.spec.channels} channels, "
                                  f"got {getattr(self.config, field)}")

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c, C = self.config, spec.channels
        self.label_classes = spec.num_classes if isinstance(self, Conditional) else None  # None: unconditional
        self.layers = nn.ModuleList(
            GatedLayer(C if i == 0 else c.hidden, c.hidden, C, c.first_kernel if i == 0 else c.kernel, first=i == 0)
            for i in range(c.layers))
        if self.label_classes:  # a per-class bias on every gate of both stacks
            self.cond = nn.ModuleList(nn.Embedding(self.label_classes, 4 * c.hidden) for _ in range(c.layers))
        # Where the pixel is (module docstring): a bias per row and per column (and class) on the first
        # layer's vertical gates, which feed both stacks.
        K = self.label_classes or 1
        self.row_bias = nn.Parameter(torch.zeros(K, 2 * c.hidden, spec.height, 1))
        self.col_bias = nn.Parameter(torch.zeros(K, 2 * c.hidden, 1, spec.width))
        # The 1x1 output head, applied as matrix products on position-major features (..., hidden):
        # its C*256 logits come out channel-major, (..., C, 256), so the softmax runs over contiguous memory.
        g_head = _groups(c.head, C)
        self.head = nn.ModuleList([
            CentreMaskedConv(c.hidden, c.head, 0, _groups(c.hidden, C), g_head, strict=False),
            CentreMaskedConv(c.head, LEVELS * C, 0, g_head, torch.arange(LEVELS * C) // LEVELS, strict=False)])
        self.opt = torch.optim.Adam(self.parameters(), lr=c.lr)

    @property
    def nfe(self) -> int:
        return self.spec.dims  # one network evaluation per sub-pixel

    # -- the network ---------------------------------------------------------------------
    # `layers` and `head` as what they hold (an nn.ModuleList types its items as bare Modules).
    @property
    def _gated_layers(self) -> Sequence[GatedLayer]:
        return cast("Sequence[GatedLayer]", self.layers)

    @property
    def _head_convs(self) -> Sequence[CentreMaskedConv]:
        return cast("Sequence[CentreMaskedConv]", self.head)

    def _cond(self, labels: Tensor | None) -> list[tuple[Tensor, Tensor]] | list[tuple[int, int]]:
        """Per layer, the class bias for the vertical and the horizontal gates, (B,2h,1,1) each."""
        if not self.label_classes:
            return [(0, 0)] * len(self.layers)
        if labels is None:
            raise GenzooError(f"{self.name} is class-conditional: pass labels (B,) with the images")
        return [tuple(e(labels)[:, :, None, None].chunk(2, dim=1)) for e in self.cond]

    @property
    def _dtype(self) -> torch.dtype:
        return self._head_convs[-1].weight.dtype

    @staticmethod
    def _inputs(levels: Tensor) -> Tensor:
        return to_signed(levels / (LEVELS - 1))  # integer levels -> [-1, 1]

    def _position_bias(self, rows: slice, labels: Tensor | None) -> Tensor:
        """The first layer's position bias for these rows, (B or 1, 2h, rows, W)."""
        k = labels if self.label_classes else slice(None)
        return self.row_bias[k][:, :, rows] + self.col_bias[k]

    def _head(self, skip: Tensor) -> Tensor:
        """Summed skip features (..., hidden) -> logits (..., C, 256)."""
        first, second = self._head_convs
        h = F.linear(F.elu(skip), *first.as_linear())
        return F.linear(F.elu(h), *second.as_linear()).unflatten(-1, (self.spec.channels, LEVELS))

    def forward(self, levels: Tensor, labels: Tensor | None = None) -> Tensor:
        """levels (B,C,H,W) in {0..255} -> logits (B,H,W,C,256) of p(x_i | x_<i) at every sub-pixel;
        flattened to (B, H*W*C, 256) they are in raster order."""
        skip = gated_stacks(self._gated_layers, self._inputs(levels).to(self._dtype),
                            self._position_bias(slice(None), labels), self._cond(labels))
        return self._head(skip.permute(0, 2, 3, 1))

    def _nll(self, levels: Tensor, labels: Tensor | None) -> Tensor:
        """-log p(levels) in nats per image (B,): the summed cross-entropy of every sub-pixel."""
        logits = self(levels, labels)
        target = levels.permute(0, 2, 3, 1)  # (B,H,W,C), the logits' layout
        return F.cross_entropy(logits.flatten(0, -2), target.flatten(), reduction="none").view(len(levels), -1).sum(1)

    # -- training and likelihood ---------------------------------------------------------
    @staticmethod
    def to_levels(x: Tensor) -> Tensor:
        """Images in [0,1] -> integer levels round(255 x) (B,C,H,W), long."""
        return torch.round(x.clamp(0, 1) * (LEVELS - 1)).long()

    def training_loss(self, x: Tensor, y: Tensor | None, noise: Mapping[str, Tensor]) -> dict[str, Tensor]:
        loss = self._nll(self.to_levels(x), y if self.label_classes else None).mean() / self.spec.dims  # nats per sub-pixel
        return {"loss": loss, "bpd": loss / math.log(2)}

    def gradient_clip(self) -> float | None:
        return self.config.grad_clip or None

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        return self.minimise(x, y)

    @torch.no_grad()
    def nll_bits_per_dim(self, x: Tensor, generator: torch.Generator | None = None,
                         labels: Tensor | None = None) -> Tensor:
        """Exact -log2 p(x) / D per image. Conditional models without labels give the exact marginal
        p(x) = mean_y p(x | y) over the K classes (uniform prior), at K network evaluations."""
        levels = self.to_levels(x)
        if not self.label_classes or labels is not None:
            nll = self._nll(levels, labels)
        else:
            K, B = self.label_classes, len(x)
            log_px_y = torch.stack([-self._nll(levels, torch.full((B,), k, device=x.device)) for k in range(K)],
                                   dim=1)  # (B,K) log p(x|y=k)
            nll = -(torch.logsumexp(log_px_y, dim=1) - math.log(K))
        return self.discrete_bits_per_dim(nll, self.spec.dims)

    # -- sampling ------------------------------------------------------------------------
    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None,
                callback: Callable[[SamplingStep], None] | None = None) -> Tensor:
        u = self.rand(n, *self.spec.shape, generator=generator)  # one uniform per sub-pixel, drawn up front
        watch = None if callback is None else self._canvas_watcher(callback)
        if self.config.sampler == "naive":
            with _frozen_masks(self):
                return self._sample_naive(u, labels, watch).float() / (LEVELS - 1)
        if watch is not None:
            with _frozen_masks(self):
                return self._sample_fast(u, labels, watch).float() / (LEVELS - 1)
        # unwatched: the whole raster loop, replayed as one CUDA graph where sampling graphs are on
        levels_of = kept(self, PixelCNN._unwatched_levels, self.device)
        return (levels_of(u) if labels is None else levels_of(u, labels)).float() / (LEVELS - 1)

    def _unwatched_levels(self, u: Tensor, labels: Tensor | None = None) -> Tensor:
        """`_sample_fast` with its masks frozen inside the call (a replayed graph recomputes them)."""
        with _frozen_masks(self):
            return self._sample_fast(u, labels)

    def _canvas_watcher(self, callback: Callable[[SamplingStep], None]) -> Callable[[int, Tensor], None]:
        """The samplers' hook (sub-pixels drawn so far, canvas of levels) as `sample`'s callback: one
        step per sub-pixel, the canvas before it is drawn, with the sub-pixels already drawn."""
        C, H, W = self.spec.shape
        order = torch.arange(C * H * W, device=self.device).view(H, W, C).permute(2, 0, 1)  # raster index (C,H,W)

        def watch(index: int, levels: Tensor) -> None:
            callback(SamplingStep(index, C * H * W, levels.float() / (LEVELS - 1), drawn=order < index))
        return watch

    def _sample_naive(self, u: Tensor, labels: Tensor | None, watch: Callable[[int, Tensor], None] | None = None
                      ) -> Tensor:
        """The textbook sampler: the whole network on the whole image, once per sub-pixel. `watch`
        as in `_sample_fast`."""
        B, C, H, W = u.shape
        levels = torch.zeros(B, C, H, W, device=self.device)
        for i in range(H):
            for j in range(W):
                for c in range(C):
                    if watch is not None:
                        watch((i * W + j) * C + c, levels)
                    levels[:, c, i, j] = draw(self(levels, labels)[:, i, j, c], u[:, c, i, j])
        return levels

    def _sample_fast(self, u: Tensor, labels: Tensor | None, watch: Callable[[int, Tensor], None] | None = None
                     ) -> Tensor:
        """The same conditionals, computed only where they change.

        `watch`, if given, is called before every sub-pixel is drawn with the number drawn so far and
        the canvas of levels (B,C,H,W) (undrawn sub-pixels 0); it only watches, the draws are the same.

        Per row: the vertical stack's features of that row (they depend on the rows above only), one
        output row per layer, read from a cache of the rows above. Per sub-pixel: the horizontal
        stack and the head at that single position, read from a cache of the row's horizontal
        features to the left. At one position a (1, p+1) conv is a matrix product with the window of
        the last p+1 columns, so each sub-pixel costs a few small matmuls on (B, features) vectors.
        """
        B, C, H, W = u.shape
        hidden, dev, dtype = self.config.hidden, self.device, self._dtype
        layers = self._gated_layers
        first_reach, reach = layers[0].p, layers[-1].p  # how far the first and later layers see
        later_layers = len(layers) - 1
        levels = torch.zeros(B, C, H, W, device=dev)
        # Zero-padded caches, laid out like the padding the full forward pass applies:
        #   image_cache     (B,C,first_reach+H,W+2*first_reach): the image drawn so far, as network inputs
        #   vertical_cache  per later layer's input, (B,hidden,reach+H,W+2*reach): gated vertical features
        pad = (first_reach, first_reach, first_reach, 0)
        image_cache = F.pad(self._inputs(torch.zeros(B, C, H, W, device=dev, dtype=dtype)), pad)
        vertical_cache = [torch.zeros(B, hidden, H + reach, W + 2 * reach, device=dev, dtype=dtype)
                          for _ in range(later_layers)]
        h_conv_matrices = [layer.h_conv.as_linear() for layer in layers]
        res_skip_matrices = [layer.res_skip.as_linear() for layer in layers]
        class_bias = self._cond(labels)
        for row in range(H):
            # Per layer: what the vertical stack adds to this row of the horizontal stack, (B,W,2h).
            vertical_into_row = []
            for depth, (layer, (bias_v, bias_h)) in enumerate(zip(layers, class_bias)):
                if depth == 0:
                    window = image_cache[:, :, row:row + first_reach]  # the rows above: (B,C,first_reach,W+..)
                else:
                    window = vertical_cache[depth - 1][:, :, row:row + reach + 1]  # (B,h,reach+1,W+..)
                v_pre = layer.v_conv(window) + bias_v  # (B,2h,1,W)
                if depth == 0:
                    v_pre = v_pre + self._position_bias(slice(row, row + 1), labels)
                if depth < later_layers:
                    vertical_cache[depth][:, :, row + reach, reach:reach + W] = gate(v_pre)[:, :, 0]
                vertical_into_row.append((layer.v_to_h(v_pre) + bias_h)[:, :, 0].transpose(1, 2).contiguous())
            # This row so far, left-padded and position-major: the image (B,first_reach+W,C) and each
            # later layer's input from the horizontal stack (B,reach+W,h). Undrawn entries are 0 (masked).
            image_row = torch.zeros(B, first_reach + W, C, device=dev, dtype=dtype)
            horizontal_rows = [torch.zeros(B, reach + W, hidden, device=dev, dtype=dtype)
                               for _ in range(later_layers)]
            for col in range(W):
                for channel in range(C):
                    if watch is not None:
                        watch((row * W + col) * C + channel, levels)
                    window, h = image_row[:, col:col + first_reach + 1], None
                    skip: Tensor | int = 0
                    for depth in range(len(layers)):
                        z = F.linear(window.reshape(B, -1), *h_conv_matrices[depth]) + vertical_into_row[depth][:, col]
                        res, s = F.linear(gate(z), *res_skip_matrices[depth]).chunk(2, dim=1)  # (B,h) each
                        h = res if h is None else h + res  # the horizontal stack is residual after layer 0
                        skip = skip + s
                        if depth < later_layers:
                            horizontal_rows[depth][:, reach + col] = h
                            window = horizontal_rows[depth][:, col:col + reach + 1]
                    assert isinstance(skip, Tensor)
                    logits = self._head(skip)[:, channel]  # (B,256)
                    drawn = draw(logits, u[:, channel, row, col])
                    levels[:, channel, row, col] = drawn
                    value = self._inputs(drawn).to(dtype)
                    image_row[:, first_reach + col, channel] = value
                    image_cache[:, channel, row + first_reach, col + first_reach] = value
        return levels


@register
class ConditionalPixelCNN(PixelCNN, Conditional):
    """Class-conditional Gated PixelCNN: a learned class bias on every gate; exact bits/dim of p(x)."""

    name = "pixelcnn-cond"
