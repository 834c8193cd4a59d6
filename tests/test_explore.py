"""The lecture figures' computations (zoo.explore) and the command that draws them (benchmarks.explore)."""
import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import zoo
import zoo.explore as ex
from benchmarks import explore
from benchmarks.records import Record, RunFolder
from zoo.base import Generator, Latent, ModelConfig
from zoo.metrics import features


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These tests run small tensors through many small steps (samplers, inversions): one thread
    is faster than two there, and leaves the other core free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    from zoo.data import load_splits

    return load_splits("mnist5k")


def smoke(name, spec, **hparams):
    torch.manual_seed(0)
    return zoo.create(name, spec, preset="smoke", **hparams).eval()


# -- interpolation ----------------------------------------------------------------------------------

def test_flow_interpolation_ends_reproduce_the_images(data):
    flow = smoke("realnvp", data.spec)
    flow.log_prob(data.x_train[:64])  # what the first training step does: ActNorm set from data
    xa, xb = data.x_test[:3], data.x_test[3:6]
    assert torch.allclose(ex.decode(flow, ex.codes(flow, xa)), xa, atol=1e-4)  # the flow is a bijection
    frames, kind = ex.interpolate(flow, xa, xb, steps=5)
    assert kind == "slerp" and frames.shape == (3, 5, *data.spec.shape)
    assert torch.allclose(frames[:, 0], xa, atol=1e-4) and torch.allclose(frames[:, -1], xb, atol=1e-4)
    assert (frames[:, 2] - xa).abs().max() > 0.1  # the middle is somewhere else


@pytest.mark.parametrize("name, kind", [("ae", "linear"), ("vae", "slerp")])
def test_ae_vae_interpolation_ends_are_the_reconstructions(data, name, kind):
    m = smoke(name, data.spec)
    m.after_training(data.x_train[:256], None)
    xa, xb = data.x_test[:2], data.x_test[10:12]
    frames, used = ex.interpolate(m, xa, xb, steps=6)
    assert used == kind
    assert torch.allclose(frames[:, 0], m.decode(m.encode(xa)).clamp(0, 1), atol=1e-6)
    assert torch.allclose(frames[:, -1], m.decode(m.encode(xb)).clamp(0, 1), atol=1e-6)


def test_slerp_keeps_ends_and_norm():
    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    t = torch.linspace(0, 1, 5)
    p = ex.slerp(a, b, t)  # (5,1,2)
    assert torch.equal(p[0], a) and torch.equal(p[-1], b)
    assert torch.allclose(p.norm(dim=-1), torch.full((5, 1), 3.0))  # a great circle, not a chord
    assert torch.allclose(ex.lerp(a, b, t)[2], torch.tensor([[1.5, 1.5]]))


def test_ddim_inversion_then_sampling_returns_the_image(data):
    """A tiny randomly initialised UNet (the quick preset's v-prediction and cosine schedule): DDIM
    inversion at 50 steps, then DDIM sampling at 50 steps from that noise. Measured here: mean
    absolute error about 0.02 and largest 0.07 on a [0,1] scale; asserted below 0.04 and 0.15.
    Sampling from other noise lands far away (mean error above 0.2)."""
    m = smoke("ddim", data.spec, prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2")
    x = data.x_test[:4]
    noise = ex.ddim_invert(m, x, steps=50)
    back = ex.ddim_sample(m, noise, steps=50)
    err = (back - x).abs()
    assert err.mean() < 0.04 and err.max() < 0.15, (err.mean().item(), err.max().item())
    other = ex.ddim_sample(m, torch.randn(noise.shape, generator=torch.Generator().manual_seed(1)), steps=50)
    assert (other - x).abs().mean() > 0.2


# -- latent statistics -------------------------------------------------------------------------------

class ToyLatent(Generator, Latent):
    """Test model: the code is three fixed pixels, scaled; the decoder paints them back."""

    name = "test-toy-latent"

    @dataclass
    class Config(ModelConfig):
        scale: float = 10.0

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.pixels = [100, 400, 600]

    def encode(self, x):
        return x.flatten(1)[:, self.pixels] * self.config.scale

    def decode(self, z):
        out = torch.zeros(len(z), self.spec.dims)
        out[:, self.pixels] = z / self.config.scale
        return out.view(len(z), *self.spec.shape)

    def train_step(self, x, y=None):
        return {"loss": 0.0}

    def _sample(self, n, generator, labels):
        return self.decode(torch.rand(n, 3, generator=generator))


def test_latent_statistics_equal_a_numpy_computation(data):
    toy = ToyLatent(data.spec)
    x, y = data.x_test[:300], data.y_test[:300]
    s = ex.latent_statistics(toy, x, y)
    z = (x.flatten(1)[:, toy.pixels] * 10).double().numpy()  # the codes, float32 as the toy makes them
    yy = y.numpy()
    d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
    i, j = np.triu_indices(len(z), 1)
    same = yy[i] == yy[j]
    np.fill_diagonal(d, np.inf)
    expect = {"per_dim_std": z.std(0).mean(), "code_length": np.linalg.norm(z, axis=1).mean(),
              "same_class": d[i, j][same].mean(), "different_class": d[i, j][~same].mean(),
              "nearest_neighbour": d.min(1).mean(), "mean_distance": d[i, j].mean()}
    for k, v in expect.items():
        assert s[k] == pytest.approx(v, rel=1e-9), k
    assert s["class_ratio"] == pytest.approx(expect["different_class"] / expect["same_class"])


# -- the 2-D grid ----------------------------------------------------------------------------------

def test_2d_grid_uses_the_prior_quantiles(data):
    n = 7
    q = torch.distributions.Normal(0.0, 1.0).icdf((torch.arange(n) + 0.5) / n)
    vae = smoke("vae", data.spec, latent_dim=2)
    z, images = ex.latent_grid_2d(vae, n)
    assert z.shape == (n * n, 2) and images.shape == (n * n, *data.spec.shape)
    assert torch.allclose(z[:n, 0], q, atol=1e-6)  # first row: the first coordinate walks the quantiles
    assert torch.allclose(z[::n, 1], q.flip(0), atol=1e-6)  # first column: the second, top = largest
    assert torch.allclose(images, vae.decode(z).clamp(0, 1))
    ae = smoke("ae", data.spec, latent_dim=2)
    ae.after_training(data.x_train[:256], None)
    z_ae, _ = ex.latent_grid_2d(ae, n)  # the AE's grid: the quantiles through its fitted Gaussian
    eps = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), -1).reshape(-1, 2)
    assert torch.allclose(z_ae, ae.code_mean + eps @ ae.code_scale.T, atol=1e-5)


# -- PixelCNN snapshots ------------------------------------------------------------------------------

def test_pixelcnn_snapshots_agree_with_the_final_image(data):
    m = smoke("pixelcnn", data.spec)
    with torch.no_grad():  # random biases, so that the drawn digits are not all one level
        m.row_bias.normal_(0, 2)
        m.col_bias.normal_(0, 2)
    shots, drawn = ex.pixelcnn_snapshots(m, 2, parts=8, generator=torch.Generator().manual_seed(3))
    assert shots.shape == (8, 2, *data.spec.shape) and drawn[-1] == data.spec.dims
    final = shots[-1]
    assert torch.equal(final, m.sample(2, generator=torch.Generator().manual_seed(3)))  # the same draws as sample

    def raster(t):  # (B, H*W*C) in drawing order
        return t.permute(0, 2, 3, 1).flatten(1)

    assert raster(final).std() > 0
    for shot, k in zip(shots, drawn.tolist()):
        assert torch.equal(raster(shot)[:, :k], raster(final)[:, :k])  # drawn so far: as in the final image
        assert (raster(shot)[:, k:] == 0).all()  # not drawn yet: empty canvas


# -- the command on a run folder ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_folder(data, tmp_path_factory):
    """A run folder like the runner writes, with untrained smoke models (explore trains nothing, so
    what the weights are does not matter here), and a feature net trained briefly on a subset in a
    cache of its own."""
    folder = RunFolder(tmp_path_factory.mktemp("run"))
    models = {"ae": {"latent_dim": 2}, "vae": {"latent_dim": 2}, "realnvp": {}, "dcgan": {}, "pixelcnn": {},
              "ddpm": {"train_timesteps": 50}, "ddim": {"train_timesteps": 50, "steps": 5}, "aae": {}, "vae-gan": {}}
    for name, hp in models.items():
        m = smoke(name, data.spec, **hp)
        if name == "ae":
            m.after_training(data.x_train[:256], None)
        if name == "realnvp":
            m.log_prob(data.x_train[:64])
        key = "diffusion" if name in ("ddpm", "ddim") else name
        m.save(folder.path / "checkpoints" / key)
        folder.write_record(Record(name, 0, status="ok", hparams=dataclasses.asdict(m.config),
                                   checkpoint=f"checkpoints/{key}"))
    folder.write_record(Record("wgan", 0, status="error", error="RuntimeError: boom"))
    folder.merge({"dataset": "mnist5k"}, list(models))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENZOO_CACHE", str(tmp_path_factory.mktemp("explore-cache")))
        orig = features.train_feature_net
        mp.setattr(features, "train_feature_net", lambda x, y, **kw: orig(x[:400], y[:400], **{**kw, "epochs": 1}))
        settings = explore.Settings(samples=16, pairs=1, steps=4, perturb_images=1, directions=1, grid=4,
                                    draw_images=1, points=4)
        data_out = explore.explore(folder.path, settings=settings, log=lambda s: None)
    return folder.path, data_out


def test_explore_writes_every_figure(run_folder):
    path, _ = run_folder
    written = {p.name for p in (path / "explore").iterdir()}
    expected = {"latent_statistics.png", "holes.png", "interpolation.png", "perturbation.png", "latent_2d.png",
                "drawing-ddim.png", "drawing-ddpm.png", "drawing-pixelcnn.png", "drawing-realnvp.png",
                "drawing-vae.png", "drawing-aae.png", "drawing-vae-gan.png", "explore.json", "explore.md"}
    assert expected <= written
    assert not any(n.endswith(".error.txt") for n in written)
    saved = json.loads((path / "explore" / "explore.json").read_text())
    assert set(saved["figures"]) == set(explore.FIGURES)
    assert not any(m == "(figure)" for skips in saved["skipped"].values() for m, _ in skips)
    assert set(saved["figures"]["latent_statistics"]["ours"]) == {"ae", "vae", "realnvp", "aae", "vae-gan"}
    assert {"ae: fitted Gaussian", "ae: uniform in the codes' box", "vae: its prior N(0, I)"} <= set(
        saved["figures"]["holes"]["rows"])
    assert {"pixel blend", "ae", "vae", "realnvp", "ddim", "dcgan"} <= set(saved["figures"]["interpolation"])
    md = (path / "explore" / "explore.md").read_text()
    assert "## Lecture figures" in md and "](holes.png)" in md
    assert "](explore/holes.png)" in explore.section(path)  # for embedding in the run folder's results.md


def test_a_model_without_an_encoder_is_skipped_with_one_line(run_folder):
    _, out = run_folder
    for fig in ("latent_statistics", "perturbation", "holes"):
        reasons = dict(out["skipped"][fig])
        assert "encoder" in reasons["dcgan"] and "\n" not in reasons["dcgan"]
        assert "pixelcnn" in reasons
    assert "pixelcnn" in dict(out["skipped"]["interpolation"])
    assert "ddpm" in dict(out["skipped"]["interpolation"])  # ddim's network, drawn once
    assert dict(out["skipped"]["drawing"])["wgan"].startswith("status error")
    # decoders that give one image per code: drawn at temperatures, without the VAE's mean-vs-draw panel
    assert "no distribution p(x|z)" in dict(out["skipped"]["drawing"])["vae-gan (mean vs draw)"]
    assert "\n" not in "".join(r for skips in out["skipped"].values() for _, r in skips)


def test_explore_refuses_a_missing_folder_in_one_line(tmp_path, capsys):
    assert explore.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
