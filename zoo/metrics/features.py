"""Feature spaces for FID/KID/precision-recall, registered with torch-fidelity.

Offline and by default, the feature space is `classifier`: a small CNN trained on a dataset's
labels (on 4 image rotations when a dataset has none, a self-supervised task). For the default
dataset the net ships inside the package (`SHIPPED`, with its hash and the command that made it),
so every machine measures with the same ruler; for other data it is trained once per dataset and
image size and cached; `--feature-net PATH` uses a given one, shared between machines. It is
registered with torch-fidelity as the feature extractor "genzoo-classifier"; its penultimate
layer gives FID/KID/PRC features and its logits classify samples (mode coverage).
`inception` is torch-fidelity's Inception-v3, whose weights are downloaded or given as a local file.
Numbers from different feature spaces are not comparable: the results name the one used.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from safetensors.torch import load_file, save
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from zoo.base import GenzooError, of_type, one_line
from zoo.data import Splits, to_float
from zoo.files import atomic_write, say, write_error

CLASSIFIER_EXTRACTOR = "genzoo-classifier"
SHIPPED = Path(__file__).parent / "nets"  # feature nets that ship with genzoo: <name>.safetensors + <name>.json
WEAK_NET = 0.8  # below this test accuracy on its own task, the metrics in a net's space mean little
# A net trained here: 8 epochs, and at least this many steps of 128 images, so that a small folder's
# net is trained too (docs/experiments/2026-12-06-feature-net-steps.md). In the cache file's name: a
# net cached under another recipe is not reused.
EPOCHS, MIN_STEPS, BATCH = 8, 500, 128


def cache_dir() -> Path:
    """Where trained feature nets and reference statistics live ($GENZOO_CACHE, else ~/.cache/genzoo)."""
    given = os.environ.get("GENZOO_CACHE")
    if given is not None and not given.strip():  # an empty value would mean the current folder
        raise GenzooError("GENZOO_CACHE is set but empty; give a folder for genzoo's cache, or unset it (default ~/.cache/genzoo)")
    return Path(given).expanduser() if given is not None else Path.home() / ".cache" / "genzoo"


def check_cache() -> None:
    """One line, before any work, where the cache cannot be made or written (a file, a read-only place)."""
    path = cache_dir()
    named = f"GENZOO_CACHE {path}" if "GENZOO_CACHE" in os.environ else f"the cache {path}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenzooError(f"{named} cannot be made ({one_line(e)}); set GENZOO_CACHE to a writable folder") from None
    if (error := write_error(path)) is not None:
        raise GenzooError(f"{named} takes no files ({one_line(error)}); set GENZOO_CACHE to a writable folder")


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


def training_epochs(images: int) -> int:
    """EPOCHS over `images` training images (a rotation task's four per image), or more to make MIN_STEPS."""
    return max(EPOCHS, math.ceil(MIN_STEPS / math.ceil(images / BATCH)))


def train_feature_net(x: Tensor, y: Tensor | None, *, num_classes: int | None = None, epochs: int | None = None,
                      seed: int = 0, device: torch.device | str = "cpu") -> tuple[FeatureNet, str]:
    """Train on labels (`num_classes` of them; default: the largest label + 1) or, without labels, on
    rotations; returns the net and what it was trained on. `epochs`: by default `training_epochs`."""
    task = "labels"
    if y is None:
        x, y = _rotations(x)
        task, num_classes = "rotations", 4
    epochs = training_epochs(len(x)) if epochs is None else epochs
    torch.manual_seed(seed)
    net = FeatureNet(x.shape[1], num_classes or int(y.max()) + 1).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    order = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=order).split(BATCH):
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


def classifier_space(splits: Splits, device: torch.device | str = "cpu", net_path: str | Path | None = None) -> FeatureSpace:
    """Our own feature space for a dataset: the net at `net_path` if given, else the one shipped for
    this dataset (matched by the content hash of its images), else one trained on first use and then
    loaded from the cache. The cache is keyed by the data's content hash, so changed images never
    reuse a stale net. Runners starting together on new data train it once: the others wait on a
    lock, then load it. The space's name carries the image size and the net's hash: numbers measured
    with different nets are not comparable."""
    if net_path is not None:
        path, source = given_net(Path(net_path), splits), "file"
    elif (shipped := shipped_net(splits)) is not None:
        path, source = shipped, "shipped"
    else:
        path, source = cached_net(splits.content_hash), "trained here"
        meta_path = path.with_suffix(".json")
        if not (path.is_file() and meta_path.is_file()):
            check_cache()  # explore and serve come here too: one line, not an OSError from mkdir
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".lock"), "w") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    say(f"waiting for another process training the feature net of {splits.name} ({path.parent})")
                    fcntl.flock(lock, fcntl.LOCK_EX)
                if not (path.is_file() and meta_path.is_file()):
                    say(f"training a feature net for {splits.name}, the ruler its samples are measured with: once, "
                        f"then kept in {path.parent}")
                    _train_into_cache(splits, path, device)
    net, meta = load_given_net(path) if source == "file" else load_feature_net(path)
    digest = file_sha256(path)
    probs = (lambda x: probabilities(net, x)) if meta["task"] == "labels" else None
    name = f"classifier:{meta['dataset']}@{splits.spec.height}px#{digest[:8]}"
    info = {**meta, "source": source, "sha256": digest, "file": str(path) if source == "file" else None}
    return FeatureSpace(name, CLASSIFIER_EXTRACTOR, str(path), digest[:10], probs, info)


def cached_net(content_hash: str) -> Path:
    """Where the net trained here for the images of this content hash is cached, named by its recipe:
    a net trained under another is not reused."""
    return cache_dir() / "features" / f"{content_hash}-{EPOCHS}e{MIN_STEPS}s.safetensors"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_net(splits: Splits) -> Path | None:
    """The shipped net made from exactly these images, checked against its recorded hash."""
    for meta_path in sorted(SHIPPED.glob("*.json")):
        meta = json.loads(meta_path.read_text())
        if meta.get("data_hash") != splits.content_hash:
            continue
        path = meta_path.with_suffix(".safetensors")
        if not path.is_file() or file_sha256(path) != meta.get("sha256"):
            raise GenzooError(f"the shipped feature net {path} is missing or damaged (its hash differs from {meta_path.name}); "
                              "reinstall genzoo, or pass --feature-net PATH")
        return path
    return None


NET_FILES = "a .safetensors file with its .json beside it, as written in the feature-net cache or by python -m zoo.metrics.features"
NET_KEYS = {"channels": int, "num_classes": int, "task": str, "dataset": str}  # what loading and naming a net read from its .json


def given_net(path: Path, splits: Splits) -> Path:
    """A feature net file from `--feature-net`: refused in one line unless it fits these images."""
    # the suffix first: `.`, `/` or '' have no name to put .json on
    if path.suffix != ".safetensors" or not path.is_file() or not (meta_path := path.with_suffix(".json")).is_file():
        raise GenzooError(f"--feature-net {path}: expected {NET_FILES}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise GenzooError(f"--feature-net {path}: {meta_path.name} does not parse ({one_line(e)}); expected {NET_FILES}") from None
    bad = [k for k, kind in NET_KEYS.items() if not isinstance(meta, dict) or not isinstance(meta.get(k), kind)]
    if bad:
        raise GenzooError(f"--feature-net {path}: {meta_path.name} is not a feature net's description ({', '.join(bad)} "
                          "missing or of another type: it gives channels and num_classes as integers, task and "
                          f"dataset as text); expected {NET_FILES}")
    channels, size = meta["channels"], meta.get("image_size")
    if not isinstance(size, (int, type(None))):
        raise GenzooError(f"--feature-net {path}: {meta_path.name} gives image_size {size!r}; it is an integer or absent")
    # the run's header prints them as numbers
    if odd := [f"{k} {meta[k]!r}" for k in ("test_accuracy", "chance") if k in meta and not of_type(meta[k], float, finite=False)]:
        raise GenzooError(f"--feature-net {path}: {meta_path.name} gives {' and '.join(odd)}; each is a number or absent")
    if channels != splits.spec.channels or (size is not None and size != splits.spec.height):
        raise GenzooError(f"--feature-net {path} was made for {channels}-channel {size or '?'}-pixel images; "
                          f"{splits.name} has {splits.spec.channels}-channel {splits.spec.height}-pixel ones")
    # its classes name the data's in the class scores (recognisable, modes, label accuracy): another count cannot be them
    read = ("which the recognisable share, modes and label accuracy read through its classes; give a net trained on "
            "these classes, or --labels none")
    if meta["task"] == "labels" and splits.y_train is not None and meta["num_classes"] != splits.spec.num_classes:
        raise GenzooError(f"--feature-net {path} classifies {meta['num_classes']} classes ({meta['dataset']}'s); "
                          f"{splits.name} has {splits.spec.num_classes}, {read}")
    # as many classes, other ones (or in another order): its class k is not the data's; a net's .json
    # written before it named its classes says only their count
    named = meta.get("classes")
    if meta["task"] == "labels" and splits.classes is not None and isinstance(named, list) and named != list(splits.classes):
        raise GenzooError(f"--feature-net {path} classifies {meta['dataset']}'s {_listed(named)}; {splits.name} has "
                          f"{_listed(splits.classes)}, {read}")
    return path


def _listed(names: Sequence[object]) -> str:
    """Class names for a one-line refusal: the first few, and how many."""
    shown = ", ".join(map(str, names[:5]))
    return f"{len(names)} classes ({shown}{', ...' if len(names) > 5 else ''})"


def load_given_net(path: Path) -> tuple[FeatureNet, dict]:
    """`load_feature_net` for a file from `--feature-net`: weights that do not fit the net its .json
    describes (damaged, empty, another net's) are refused in one line."""
    try:
        return load_feature_net(path)
    except Exception as e:  # a file from elsewhere fails in safetensors' or torch's own ways
        raise GenzooError(f"--feature-net {path}: its weights do not load into the feature net "
                          f"{path.with_suffix('.json').name} describes ({one_line(e)}); expected {NET_FILES}") from None


def _train_into_cache(splits: Splits, path: Path, device: torch.device | str) -> None:
    """Train the feature net, measure it on the test split's own task, and write the weights and their
    metadata (the weights last, each under a temporary name: a reader sees both whole, or neither)."""
    net, meta = make_feature_net(splits, device)
    atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=2))
    atomic_write(path, save({k: v.cpu() for k, v in net.state_dict().items()}))


def make_feature_net(splits: Splits, device: torch.device | str = "cpu") -> tuple[FeatureNet, dict]:
    """Train a feature net on a dataset's train split and describe it, measured on the test split's own task."""
    classes = splits.spec.num_classes if splits.y_train is not None else None  # a class may have no training image
    images = len(splits.x_train) * (1 if splits.y_train is not None else 4)  # rotations: four of each
    epochs = training_epochs(images)
    net, task = train_feature_net(splits.x_train, splits.y_train, num_classes=classes, epochs=epochs, device=device)
    net = net.cpu()
    if splits.y_test is not None:
        acc = (predict(net, splits.x_test) == splits.y_test).float().mean().item()
        chance = 1 / net.head.out_features
    else:
        xr, yr = _rotations(splits.x_test)
        acc = (predict(net, xr) == yr).float().mean().item()
        chance = 0.25
    meta = {"dataset": splits.name, "task": task, "channels": splits.spec.channels, "image_size": splits.spec.height,
            "num_classes": net.head.out_features, "test_accuracy": round(acc, 4), "chance": chance,
            "data_hash": splits.content_hash, "epochs": epochs, "steps": epochs * math.ceil(images / BATCH)}
    if task == "labels" and splits.classes is not None:  # what --feature-net checks a labeled dataset's classes against
        meta["classes"] = list(splits.classes)
    return net, meta


def inception_space(weights_path: str | None = None) -> FeatureSpace:
    """torch-fidelity's Inception-v3 (FID's standard space): its weights are downloaded once into
    torch's hub cache, or read from a local file. Loaded here so that a failure is one clear line."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

    if weights_path is not None and not Path(weights_path).is_file():
        why = "is not a file" if Path(weights_path).exists() else "does not exist"
        raise GenzooError(f"--inception-weights {weights_path} {why}; give the file {URL_INCEPTION_V3}")
    try:
        FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights_path)
    except Exception as e:
        if weights_path is not None:
            raise GenzooError(f"--inception-weights {weights_path} does not load as Inception-v3's weights "
                              f"({type(e).__name__}); give the file {URL_INCEPTION_V3}") from None
        raise GenzooError(
            f"could not load Inception-v3 weights ({type(e).__name__}); offline, fetch {URL_INCEPTION_V3} "
            "elsewhere and pass it with --inception-weights FILE, or use --feature-space classifier"
        ) from None
    info = {"weights": weights_path or "torch-fidelity's download"}
    return FeatureSpace("inception-v3", "inception-v3-compat", weights_path, "inception", None, info)


FEATURE_SPACES = ("classifier", "inception")


def check_space_files(space: str, feature_net: str | None, inception_weights: str | None) -> None:
    """A file given for the other feature space would be ignored: refused in one line instead."""
    if feature_net is not None and space != "classifier":
        raise GenzooError("--feature-net gives a classifier feature net; it does not go with --feature-space inception")
    if inception_weights is not None and space != "inception":
        raise GenzooError("--inception-weights gives Inception-v3's weights; it goes with --feature-space inception, "
                          f"not {space}")


def ship(dataset: str, out: Path = SHIPPED) -> Path:
    """Train the feature net for `dataset` and write it where the package ships it, with its hash,
    the data's hash, its epochs and steps and the command that made it. A shipped net is the ruler of
    every number measured with it: it is not replaced (a later recipe trains another net)."""
    import platform

    from zoo.data import load_splits

    if (out / f"classifier-{dataset}.safetensors").exists():
        raise GenzooError(f"{out / f'classifier-{dataset}.safetensors'} ships already and is the ruler of every number "
                          "measured with it; a net trained now is another ruler. Move it away by hand to ship another")

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), None) if Path("/proc/cpuinfo").is_file() else None

    splits = load_splits(dataset, uint8=True)
    net, meta = make_feature_net(splits)
    path = out / f"classifier-{dataset}.safetensors"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(path, save({k: v.contiguous() for k, v in net.state_dict().items()}))
    meta.update(sha256=file_sha256(path), command=f"python -m zoo.metrics.features {dataset}",
                torch=torch.__version__, processor=cpu or platform.processor() or platform.machine())
    atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="train a dataset's feature net and write it into the package")
    parser.add_argument("dataset", help="e.g. mnist5k")
    try:
        print(ship(parser.parse_args().dataset))
    except GenzooError as e:
        raise SystemExit(f"error: {e}") from None
