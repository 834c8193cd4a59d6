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


def cache_name(reference_name: str, space: FeatureSpace) -> str:
    """torch-fidelity's cache entry for a reference set's features in `space`."""
    return f"genzoo-{reference_name}-{space.fingerprint}".replace(":", "_").replace("/", "_")


def _kwargs(samples: Tensor, reference: Tensor | None, space: FeatureSpace, reference_name: str | None, cuda: bool,
            **metrics: Any) -> dict[str, Any]:
    return dict(
        input1=ImageDataset(samples),
        input2=None if reference is None else ImageDataset(reference),
        input2_cache_name=None if reference_name is None else cache_name(reference_name, space),
        cache_root=str(cache_dir() / "fidelity"),
        feature_extractor=space.extractor,  # named explicitly: FID and PRC in one call need it
        feature_extractor_weights_path=space.weights_path,
        cuda=cuda, save_cpu_ram=True, verbose=False, batch_size=250, **metrics,
    )


def calculate(samples: Tensor, reference: Tensor, space: FeatureSpace, *, reference_name: str,
              cuda: bool = False, **metrics: Any) -> dict[str, Any]:
    """torch-fidelity's `calculate_metrics` of `samples` against `reference` in `space`: the metrics
    and their settings (fid=True, kid=True, ...) as keywords; the reference's features are cached
    under `reference_name` and the space's fingerprint. Returns torch-fidelity's dict."""
    return torch_fidelity.calculate_metrics(**_kwargs(samples, reference, space, reference_name, cuda, **metrics))


def calculate_with_features(samples: Tensor, reference: Tensor, space: FeatureSpace, *, reference_name: str,
                            cuda: bool = False, **metrics: Any) -> tuple[dict[str, Any], Tensor, Tensor]:
    """`calculate`, step by step as torch-fidelity's `calculate_metrics` takes them (the same functions,
    settings and order, so the same numbers), keeping the features it extracts: returns its dict and the
    samples' and the reference's features (N,D), (M,D) on the CPU, in the layer precision/recall read.
    Density, coverage and the copy rate read these, so no image goes through the feature net twice."""
    from torch_fidelity import metric_fid, metric_isc, metric_kid, metric_prc, utils

    kwargs = _kwargs(samples, reference, space, reference_name, cuda, **metrics)
    asked = {m for m in ("isc", "fid", "kid", "prc") if kwargs.get(m)}
    layers = {m: utils.resolve_feature_layer_for_metric(m, **kwargs) for m in asked | {"prc"}}  # prc's: the features kept
    extractor = utils.create_feature_extractor(utils.resolve_feature_extractor(**kwargs), list(set(layers.values())), **kwargs)
    f1 = utils.extract_featuresdict_from_input_id_cached(1, extractor, **kwargs)
    f2 = utils.extract_featuresdict_from_input_id_cached(2, extractor, **kwargs)
    out: dict[str, Any] = {}
    if "isc" in asked:
        out.update(metric_isc.isc_featuresdict_to_metric(f1, layers["isc"], **kwargs))
    if "fid" in asked:
        stats = [metric_fid.fid_featuresdict_to_statistics_cached(f, utils.get_cacheable_input_name(i, **kwargs), extractor,
                                                                  layers["fid"], **kwargs) for i, f in ((1, f1), (2, f2))]
        out.update(metric_fid.fid_statistics_to_metric(*stats, False))
    if "kid" in asked:
        out.update(metric_kid.kid_featuresdict_to_metric(f1, f2, layers["kid"], **kwargs))
    if "prc" in asked:
        out.update(metric_prc.prc_featuresdict_to_metric(f1, f2, layers["prc"], **kwargs))
    return out, f1[layers["prc"]], f2[layers["prc"]]


def features(images: Tensor, space: FeatureSpace, *, cache_as: str | None = None, cuda: bool = False) -> Tensor:
    """Features (N,D) of `images` in `space`, in the layer precision/recall read, on the CPU: the same
    extraction as `calculate`'s. With `cache_as` (a `cache_name`), cached like a reference set's, so
    the training split's are the ones `quality` cached."""
    from torch_fidelity import utils

    kwargs = _kwargs(images, None, space, None, cuda, input1_cache_name=cache_as)
    layer = utils.resolve_feature_layer_for_metric("prc", **kwargs)
    extractor = utils.create_feature_extractor(space.extractor, [layer], **kwargs)
    return utils.extract_featuresdict_from_input_id_cached(1, extractor, **kwargs)[layer]


def fid(samples: Tensor, reference: Tensor, space: FeatureSpace, *, reference_name: str,
        cuda: bool = False) -> float | None:
    """FID alone (None where it is not finite): `quality`'s FID, without the cost of the others."""
    value = float(calculate(samples, reference, space, reference_name=reference_name, cuda=cuda,
                            fid=True)["frechet_inception_distance"])
    return value if math.isfinite(value) else None


def quality_and_features(samples: Tensor, reference: Tensor, space: FeatureSpace, *, reference_name: str,
                         cuda: bool = False, isc: bool = False) -> tuple[dict[str, float | None], Tensor, Tensor]:
    """FID, KID (mean and std), precision and recall of `samples` against `reference`, and the
    features they were computed from (samples', reference's), as `calculate_with_features` gives them."""
    m, f_samples, f_reference = calculate_with_features(
        samples, reference, space, reference_name=reference_name, cuda=cuda,
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
    return {k: float(v) if v is not None and math.isfinite(v) else None for k, v in out.items()}, f_samples, f_reference


def quality(samples: Tensor, reference: Tensor, space: FeatureSpace, *, reference_name: str,
            cuda: bool = False, isc: bool = False) -> dict[str, float | None]:
    """FID, KID (mean and std), precision and recall of `samples` against `reference`."""
    return quality_and_features(samples, reference, space, reference_name=reference_name, cuda=cuda, isc=isc)[0]
