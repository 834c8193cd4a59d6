import os

import pytest
import torch

import zoo
import zoo.data

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """Feature nets and reference statistics go to a fresh cache for the test session."""
    os.environ["GENZOO_CACHE"] = str(tmp_path_factory.mktemp("genzoo-cache"))


@pytest.fixture(scope="session")
def mnist():
    spec, x, y = zoo.data.load("mnist5k", split="train")
    _, xt, yt = zoo.data.load("mnist5k", split="test")
    return spec, x, y, xt, yt


@pytest.fixture(scope="session")
def splits():
    return zoo.data.load_splits("mnist5k")


@pytest.fixture(scope="session")
def space(splits, _cache):
    from zoo.metrics import features

    return features.classifier_space(splits)
