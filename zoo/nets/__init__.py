"""Building blocks shared by several models."""
from zoo.nets.conv import ConvDecoder, ConvEncoder, down_levels, norm_layer

__all__ = ["ConvDecoder", "ConvEncoder", "down_levels", "norm_layer"]
