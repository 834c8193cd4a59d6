"""Building blocks shared by several models."""
from zoo.nets.conv import ConvDecoder, ConvEncoder, down_levels

__all__ = ["ConvDecoder", "ConvEncoder", "down_levels"]
