"""Feature spaces for FID/KID/precision-recall, registered with torch-fidelity.

Offline and by default, the feature space is `classifier`: a small CNN trained once per dataset
on its labels (on 4 image rotations when a dataset has none, a self-supervised task) and cached.
It is registered with torch-fidelity as the feature extractor "genzoo-classifier"; its
penultimate layer gives FID/KID/PRC features and its logits classify samples (mode coverage).
`inception` is torch-fidelity's Inception-v3, whose weights are downloaded or given as a local file.
Numbers from different feature spaces are not comparable: the results name the one used.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from safetensors.torch import load_file, save
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from zoo.base import GenzooError
from zoo.data import Splits, to_float
from zoo.files import atomic_write

CLASSIFIER_EXTRACTOR = "genzoo-classifier"


def cache_dir() -> Path:
    """Where trained feature nets and reference statistics live ($GENZOO_CACHE, else ~/.cache/genzoo)."""
    return Path(os.environ.get("GENZOO_CACHE", Path.home() / ".cache" / "genzoo"))


class FeatureNet(nn.Module):
    """(B,C,H,W) in [0,1] -> 128 features -> class logits. Small enough to train in seconds on a CPU."""

    def __init__(self, channels: int, num_classes: int, width: int = 32):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, 1, 1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, 1, 1), nn.BatchNorm2d(4 * w), nn.ReLU(), nn.AdaptiveMaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * w, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.body(x)
        return f, self.head(f)


def load_feature_net(weights_path: str | Path) -> tuple[FeatureNet, dict]:
    """A saved FeatureNet, in eval mode, and its metadata: the JSON beside the weights (channels,
    num_classes, the task it was trained on, its test accuracy)."""
    path = Path(weights_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    net = FeatureNet(meta["channels"], meta["num_classes"])
    net.load_state_dict(load_file(str(path)))
    return net.eval(), meta


def _rotations(x: Tensor) -> tuple[Tensor, Tensor]:
    """The self-supervised task for unlabeled data: which of 4 rotations was applied."""
    xs = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    return xs, torch.arange(4).repeat_interleave(len(x))


def train_feature_net(x: Tensor, y: Tensor | None, *, epochs: int = 8, seed: int = 0,
                      device: torch.device | str = "cpu") -> tuple[FeatureNet, str]:
    """Train on labels (or rotations); returns the net and what it was trained on."""
    task = "labels"
    if y is None:
        x, y = _rotations(x)
        task = "rotations"
    torch.manual_seed(seed)
    net = FeatureNet(x.shape[1], int(y.max()) + 1).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    order = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=order).split(128):
            loss = F.cross_entropy(net(to_float(x[idx].to(device)))[1], y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval(), task


@torch.no_grad()
def probabilities(net: FeatureNet, x: Tensor, batch: int = 500) -> Tensor:
    """Class probabilities (N,K) of images (N,C,H,W) in [0,1] (or uint8)."""
    dev = next(net.parameters()).device
    return torch.cat([net(to_float(b.to(dev)))[1].softmax(1).cpu() for b in x.split(batch)])


def predict(net: FeatureNet, x: Tensor, batch: int = 500) -> Tensor:
    return probabilities(net, x, batch).argmax(1)


class ClassifierExtractor(FeatureExtractorBase):
    """torch-fidelity's view of a cached FeatureNet: uint8 (B,3,H,W) in, ("features", "logits") out."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise GenzooError("the genzoo-classifier feature extractor needs feature_extractor_weights_path")
        self.net, meta = load_feature_net(feature_extractor_weights_path)
        self.channels = meta["channels"]

    @staticmethod
    def get_provided_features_list():
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 28, 28, dtype=torch.uint8)

    def forward(self, x: Tensor):
        x = x.float() / 255
        if self.channels == 1:  # torch-fidelity wants 3 channels; ours were repeated grey
            x = x[:, :1]
        features, logits = self.net(x)
        return tuple({"features": features, "logits": logits}[k] for k in self.features_list)


torch_fidelity.register_feature_extractor(CLASSIFIER_EXTRACTOR, ClassifierExtractor)


@dataclass
class FeatureSpace:
    """What the fidelity metrics need to know about a feature space."""

    name: str  # shown in every table, e.g. "classifier:mnist5k"
    extractor: str  # torch-fidelity's registered name
    weights_path: str | None
    fingerprint: str  # changes when the weights do: part of the reference-statistics cache key
    probabilities: Callable[[Tensor], Tensor] | None  # images in [0,1] -> (N,K) class probabilities, if classes
    info: dict

    def classify(self, x: Tensor) -> Tensor:
        assert self.probabilities is not None
        return self.probabilities(x).argmax(1)


def classifier_space(splits: Splits, device: torch.device | str = "cpu") -> FeatureSpace:
    """Our own feature space for a dataset: trained on first use, then loaded from the cache. The
    cache is keyed by the data's content hash, so changed images never reuse a stale net. Runners
    starting together on new data train it once: the others wait on a lock, then load it."""
    path = cache_dir() / "features" / f"{splits.content_hash}.safetensors"
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (path.is_file() and meta_path.is_file()):
                _train_into_cache(splits, path, device)
    net, meta = load_feature_net(path)
    fingerprint = hashlib.sha1(path.read_bytes()).hexdigest()[:10]
    probs = (lambda x: probabilities(net, x)) if meta["task"] == "labels" else None
    return FeatureSpace(f"classifier:{splits.name}", CLASSIFIER_EXTRACTOR, str(path), fingerprint, probs, meta)


def _train_into_cache(splits: Splits, path: Path, device: torch.device | str) -> None:
    """Train the feature net, measure it on the test split's own task, and write the weights and their
    metadata (the weights last, each under a temporary name: a reader sees both whole, or neither)."""
    net, task = train_feature_net(splits.x_train, splits.y_train, device=device)
    net = net.cpu()
    if splits.y_test is not None:
        acc = (predict(net, splits.x_test) == splits.y_test).float().mean().item()
        chance = 1 / net.head.out_features
    else:
        xr, yr = _rotations(splits.x_test)
        acc = (predict(net, xr) == yr).float().mean().item()
        chance = 0.25
    meta = {"dataset": splits.name, "task": task, "channels": splits.spec.channels,
            "num_classes": net.head.out_features, "test_accuracy": round(acc, 4), "chance": chance}
    atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=2))
    atomic_write(path, save({k: v.cpu() for k, v in net.state_dict().items()}))


def inception_space(weights_path: str | None = None) -> FeatureSpace:
    """torch-fidelity's Inception-v3 (FID's standard space): its weights are downloaded once into
    torch's hub cache, or read from a local file. Loaded here so that a failure is one clear line."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

    if weights_path is not None and not Path(weights_path).is_file():
        raise GenzooError(f"Inception-v3 weights file {weights_path} does not exist")
    try:
        FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights_path)
    except Exception as e:
        raise GenzooError(
            f"could not load Inception-v3 weights ({type(e).__name__}); offline, fetch {URL_INCEPTION_V3} "
            "elsewhere and pass it with --inception-weights FILE, or use --feature-space classifier"
        ) from None
    info = {"weights": weights_path or "torch-fidelity's download"}
    return FeatureSpace("inception-v3", "inception-v3-compat", weights_path, "inception", None, info)


FEATURE_SPACES = ("classifier", "inception")
