"""uint8 storage and the streaming loader: the same images, the same batches, the same training."""
import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo import data
from zoo.batches import Batches
from zoo.budget import Budget
from zoo.parallel import Processes
from zoo.seeds import derive_seed, seed_everything
from zoo.train import fit


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(23):  # mixed sizes, one grayscale: resized, cropped and converted like the rest
        shape = (20, 30, 3) if i % 3 else (16, 16, 3)
        img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        (img.convert("L") if i == 5 else img).save(tmp_path / f"{i:02d}.png")
    return tmp_path


def test_the_streaming_loader_yields_the_images_of_the_in_memory_path(folder):
    _, x8, _ = data.load(f"folder:{folder}", image_size=16, uint8=True)
    _, x, _ = data.load(f"folder:{folder}", image_size=16)
    stream = data.ImageFolder(folder, size=16)
    assert x8.dtype == torch.uint8 and x8.shape == (21, 3, 16, 16) and len(stream) == 21
    assert torch.equal(torch.stack([stream[i][0] for i in range(len(stream))]), x8)
    assert torch.equal(data.quantize(x), x8)
    assert data.content_hash(x8) == data.content_hash(x)  # the same pixels, the same training keys


def test_mnist5k_as_uint8_is_the_float_set_exactly():
    _, x, y = data.load("mnist5k")
    _, x8, y8 = data.load("mnist5k", uint8=True)
    assert x8.dtype == torch.uint8 and torch.equal(data.to_float(x8), x) and torch.equal(y, y8)


def as_processes(rank, world):
    procs = Processes()
    procs.rank, procs.world = rank, world
    return procs


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: worker processes
def test_every_path_gives_the_same_batches_and_processes_share_them(folder, workers):
    _, x8, _ = data.load(f"folder:{folder}", image_size=16, uint8=True)
    stream = data.ImageFolder(folder, size=16)
    cpu = torch.device("cpu")
    one = Batches(data.to_float(x8), None, 8, 3, Processes(), cpu)
    expected = [one(s)[0] for s in range(6)]  # 2 steps an epoch: three epochs
    assert torch.equal(Batches(x8, None, 8, 3, Processes(), cpu)(4)[0], expected[4])
    for world in (1, 2):
        for rank in range(world):
            streamed = Batches(stream, None, 8, 3, as_processes(rank, world), cpu, workers)
            steps = [0, 1, 2, 3, 5] if rank else range(6)  # a jump: a resume in the middle of an epoch
            for s in steps:
                xb, yb = streamed(s)
                assert yb is None and torch.equal(xb, expected[s][rank::world]), (world, rank, s)


def test_training_on_uint8_is_training_on_floats():
    spec, x, y = data.load("mnist5k")
    x8 = data.quantize(x)
    weights = []
    for images in (x[:512], x8[:512]):
        seed_everything(derive_seed(0, "init", "ae"))
        model = zoo.create("ae", spec, preset="smoke")
        fit(model, images, y[:512], Budget(3, "steps", batch_size=32), progress=False)
        weights.append(model.state_dict())
    for k, v in weights[0].items():
        assert torch.equal(weights[1][k], v), k
