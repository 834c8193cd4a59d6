"""Sample quality through torch-fidelity: FID, KID, precision and recall (and IS with a classifier head).

Generated and reference images are handed over as Datasets of uint8 (3,H,W) tensors, grey
channels repeated, as torch-fidelity expects. The reference split's features are cached once per
dataset and feature space.
"""
from __future__ import annotations

import math
from typing import Any

import torch_fidelity
from torch import Tensor
from torch.utils.data import Dataset

from zoo.data import quantize
from zoo.metrics.features import FeatureSpace, cache_dir

PRC_NEIGHBOURS = 3  # precision/recall: an image's manifold ball reaches its k-th nearest neighbour (torch-fidelity's default)
MIN_IMAGES = PRC_NEIGHBOURS + 1  # the fewest images a set can have: k neighbours besides itself
# KID averages the MMD over random subsets of the reference images (all of a model's samples in each).
# Most of the fidelity phase's time is those subsets; 20 keep the subset noise of the mean well
# below the spread between training seeds (README, "Reference run").
KID_SUBSETS = 20


class ImageDataset(Dataset):
    """Images (N,C,H,W) in [0,1] or uint8 -> uint8 (3,H,W) items."""

    def __init__(self, images: Tensor):
        x = quantize(images.detach().cpu())
        self.x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def calculate(samples: Tensor, reference: Tensor, space: FeatureSpace, *, reference_name: str,
              cuda: bool = False, **metrics: Any) -> dict[str, Any]:
    """torch-fidelity's `calculate_metrics` of `samples` against `reference` in `space`: the metrics
    and their settings (fid=True, kid=True, ...) as keywords; the reference's features are cached
    under `reference_name` and the space's fingerprint. Returns torch-fidelity's dict."""
    return torch_fidelity.calculate_metrics(
        input1=ImageDataset(samples),
        input2=ImageDataset(reference),
        input2_cache_name=f"genzoo-{reference_name}-{space.fingerprint}".replace(":", "_").replace("/", "_"),
        cache_root=str(cache_dir() / "fidelity"),
        feature_extractor=space.extractor,  # named explicitly: FID and PRC in one call need it
        feature_extractor_weights_path=space.weights_path,
        cuda=cuda, save_cpu_ram=True, verbose=False, batch_size=250, **metrics,
    )


def fid(samples: Tensor, reference: Tensor, space: FeatureSpace, *, reference_name: str,
        cuda: bool = False) -> float | None:
    """FID alone (None where it is not finite): `quality`'s FID, without the cost of the others."""
    value = float(calculate(samples, reference, space, reference_name=reference_name, cuda=cuda,
                            fid=True)["frechet_inception_distance"])
    return value if math.isfinite(value) else None


def quality(samples: Tensor, reference: Tensor, space: FeatureSpace, *, reference_name: str,
            cuda: bool = False, isc: bool = False) -> dict[str, float | None]:
    """FID, KID (mean and std), precision and recall of `samples` against `reference`."""
    m = calculate(samples, reference, space, reference_name=reference_name, cuda=cuda,
                  fid=True, kid=True, prc=True, isc=isc, prc_neighborhood=PRC_NEIGHBOURS,
                  kid_subset_size=min(1000, len(samples), len(reference)), kid_subsets=KID_SUBSETS)
    out = {
        "fid": m["frechet_inception_distance"],
        "kid": m["kernel_inception_distance_mean"],
        "kid_std": m["kernel_inception_distance_std"],
        "precision": m["precision"],
        "recall": m["recall"],
    }
    if isc:
        out["inception_score"] = m["inception_score_mean"]
    return {k: float(v) if v is not None and math.isfinite(v) else None for k, v in out.items()}
