"""Building blocks shared by several models."""
from zoo.nets.conv import ConvDecoder, ConvEncoder, down_levels, norm_layer
from zoo.nets.pixels import to_signed, to_unit
from zoo.nets.posterior import gaussian_kl, reparameterize

__all__ = ["ConvDecoder", "ConvEncoder", "down_levels", "gaussian_kl", "norm_layer", "reparameterize", "to_signed",
           "to_unit"]
