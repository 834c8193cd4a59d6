import os

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
import zoo.data

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """Feature nets and reference statistics go to a fresh cache for the test session."""
    os.environ["GENZOO_CACHE"] = str(tmp_path_factory.mktemp("genzoo-cache"))


@pytest.fixture(autouse=True)
def _brief_feature_nets(monkeypatch):
    """The tests measure the pipeline, not the ruler: a feature net trained here (on a test's small
    folder) takes its 8 epochs without the floor of 500 steps, which tests/test_ruler.py checks. Not in
    session-scoped fixtures (set up first), subprocesses or --jobs workers, which use the floor: a test
    on a folder there trains the real recipe."""
    from zoo.metrics import features

    monkeypatch.setattr(features, "MIN_STEPS", 0)


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


@pytest.fixture
def exact_cuda():
    """No TF32, deterministic cuDNN: two CUDA trainings (eager and graphed, fused and alone) then
    differ only by the rounding of their kernels."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


@pytest.fixture(scope="session")
def read_png():
    """A PNG read back as its pixels, (H, W, C) uint8: a figure or a sample grid is checked for what it
    shows (its size, its colours, its images), not for being a file of some size."""

    def read(path) -> np.ndarray:
        with Image.open(path) as img:
            return np.asarray(img)

    return read


@pytest.fixture(scope="session")
def read_grid(read_png):
    """A sample grid as the runner writes it (torchvision's save_image: 8 images a row, 2 px of black
    padding) cut back into its images: (N, C, side, side) uint8, N a multiple of 8."""

    def read(path) -> torch.Tensor:
        grid = torch.from_numpy(read_png(path).copy()).permute(2, 0, 1)  # (C, H, W)
        cell = (grid.shape[2] - 2) // 8
        rows = (grid.shape[1] - 2) // cell
        assert grid.shape[1:] == (rows * cell + 2, 8 * cell + 2), f"{path}: {tuple(grid.shape)} is not a grid of 8 a row"
        padding = torch.ones(grid.shape[1:], dtype=torch.bool)
        padding[2:, 2:].view(rows, cell, 8, cell)[:, :-2, :, :-2] = False
        assert (grid[:, padding] == 0).all(), f"{path}: the padding between images is not black"
        return grid[:, 2:, 2:].reshape(-1, rows, cell, 8, cell).permute(1, 3, 0, 2, 4)[..., :-2, :-2].reshape(rows * 8, -1, cell - 2, cell - 2)

    return read


@pytest.fixture
def runner_handler():
    """SIGTERM handled as the runner handles it outside training: by raising where the program is.
    A save that a stop cuts short then fails its test, rather than pytest's process being ended."""
    import signal

    from zoo.train import Interrupted

    def stop(signum, frame):
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, stop)
    yield
    signal.signal(signal.SIGTERM, old)
