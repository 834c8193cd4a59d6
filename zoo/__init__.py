"""genzoo: a zoo of generative image models behind one `Generator` interface."""
from zoo.base import Conditional, DataSpec, Generator, GenzooError, Latent, Likelihood, ModelConfig
from zoo.registry import available, create, load, register

__version__ = "0.1.0"
__all__ = [
    "Conditional", "DataSpec", "Generator", "GenzooError", "Latent", "Likelihood", "ModelConfig",
    "available", "create", "load", "register", "__version__",
]
