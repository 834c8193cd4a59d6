"""A strided-conv encoder (image -> vector) and its mirror decoder (vector -> image).

Used by the AE, the VAE, the AAE and the VAE-GAN; the GANs' networks (zoo/models/gan.py) take
their levels from `down_levels` too. Each level halves the side with a 4x4 stride-2 conv, the
first to `hidden` channels and each later one doubling them, until the side is odd or at most 4,
four levels at most: 28 -> 14 -> 7, 32 -> 16 -> 8 -> 4, 128 -> ... -> 8. The decoder mirrors it,
so its widest level comes first and its last hidden level has `hidden` channels.
"""
from __future__ import annotations

from torch import Tensor, nn

from zoo.base import OTHER_IMAGE_SIZE, DataSpec, GenzooError


def down_levels(spec: DataSpec, model: str) -> int:
    """How many stride-2 levels fit the image; a clear error for sizes these nets cannot take."""
    side = spec.height
    if spec.height != spec.width or side % 4 or side < 8:
        raise GenzooError(
            f"{model} needs square images with a side divisible by 4 and at least 8, got {spec.height}x{spec.width}; "
            f"{OTHER_IMAGE_SIZE}, e.g. 28, 32 or 64"
        )
    levels = 0
    while side % 2 == 0 and side > 4 and levels < 4:
        side //= 2
        levels += 1
    return levels


def norm_layer(kind: str | None, ch: int) -> nn.Module:
    """batch norm, layer norm over (C,H,W) (one group: per sample, as a WGAN-GP critic needs), or none."""
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "layer":
        return nn.GroupNorm(1, ch)
    if kind is None:
        return nn.Identity()
    raise GenzooError(f"unknown norm {kind!r}; accepted: 'batch', 'layer' or None")


class ConvEncoder(nn.Module):
    """(B,C,H,W) -> (B,out_dim)."""

    def __init__(self, spec: DataSpec, hidden: int, out_dim: int, *, norm: str | None = None,
                 act: type[nn.Module] = nn.SiLU, model: str = "encoder"):
        super().__init__()
        levels = down_levels(spec, model)
        layers, ch = [], spec.channels
        for i in range(levels):
            nxt = hidden * 2**i
            layers += [nn.Conv2d(ch, nxt, 4, 2, 1), norm_layer(norm if i else None, nxt), act()]
            ch = nxt
        side = spec.height // 2**levels
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch * side * side, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """(B,in_dim) -> (B,C,H,W) logits (no output activation: the model picks one)."""

    def __init__(self, spec: DataSpec, hidden: int, in_dim: int, *, norm: str | None = None,
                 act: type[nn.Module] = nn.SiLU, model: str = "decoder"):
        super().__init__()
        levels = down_levels(spec, model)
        ch = hidden * 2 ** (levels - 1)
        self.side = spec.height // 2**levels
        self.ch = ch
        self.fc = nn.Sequential(nn.Linear(in_dim, ch * self.side**2), act())
        layers: list[nn.Module] = []
        for i in reversed(range(levels)):
            nxt = hidden * 2 ** (i - 1) if i else spec.channels
            layers.append(nn.ConvTranspose2d(ch, nxt, 4, 2, 1))
            if i:
                layers += [norm_layer(norm, nxt), act()]
            ch = nxt
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).view(-1, self.ch, self.side, self.side))
