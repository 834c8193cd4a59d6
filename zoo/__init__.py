"""genzoo: a zoo of generative image models behind one `Generator` interface."""
from zoo.base import (
    CodeSampler,
    Conditional,
    DataSpec,
    GaussianPrior,
    Generator,
    GenzooError,
    Guided,
    Invertible,
    Latent,
    Likelihood,
    ModelConfig,
    Noising,
    Objective,
    ProbabilisticDecoder,
    SamplingStep,
    Stepwise,
    Tokenized,
    hparam,
    learning_rate,
    width,
)
from zoo.registry import available, create, load, register

__version__ = "0.1.0"
__all__ = [
    "CodeSampler", "Conditional", "DataSpec", "GaussianPrior", "Generator", "GenzooError", "Guided", "Invertible", "Latent",
    "Likelihood", "ModelConfig", "Noising", "Objective", "ProbabilisticDecoder", "SamplingStep", "Stepwise", "Tokenized",
    "available", "create", "hparam", "learning_rate", "load", "register", "width", "__version__",
]
