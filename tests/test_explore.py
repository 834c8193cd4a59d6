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
from zoo.base import Generator, GenzooError, Latent, ModelConfig
from zoo.data import to_float
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
    angle = t * torch.pi / 2  # at even speed: equal angles for equal steps of t
    assert torch.allclose(p[:, 0], 3 * torch.stack([angle.cos(), angle.sin()], 1), atol=1e-6)
    c = ex.slerp(torch.tensor([[2.0, 0.0]]), torch.tensor([[2.0, 2.0]]), 0.5)  # 45 degrees apart, one 1.41 times longer
    w = np.sin(np.pi / 8) / np.sin(np.pi / 4)  # Shoemake's weights at t = 1/2: sin(omega / 2) / sin(omega) for both
    assert torch.allclose(c, torch.tensor([[2 * w + 2 * w, 2 * w]], dtype=torch.float32), atol=1e-6)
    line = ex.path(a, b, 5, "linear")
    assert torch.equal(line[0], a) and torch.equal(line[-1], b) and torch.allclose(line[2], torch.tensor([[1.5, 1.5]]))


def test_ddim_inversion_then_sampling_returns_the_image(data):
    """A tiny randomly initialised UNet (the quick preset's v-prediction and cosine schedule): DDIM
    inversion at 50 steps (diffusers' DDIMInverseScheduler), then DDIM sampling at 50 steps from that
    noise lands back near the image; sampling from other noise lands far away."""
    m = smoke("ddim", data.spec, prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2")
    x = data.x_test[:4]
    noise = ex.invert(m, x)
    back = ex.generate(m, noise)
    err = (back - x).abs()
    assert err.mean() < 0.04 and err.max() < 0.15, (err.mean().item(), err.max().item())
    other = ex.generate(m, torch.randn(noise.shape, generator=torch.Generator().manual_seed(1)))
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


# -- watching a sampler: snapshots and trajectories ----------------------------------------------------

def raster(t):  # images (B,C,H,W) -> (B, H*W*C) in PixelCNN's drawing order
    return t.permute(0, 2, 3, 1).flatten(1)


def test_pixelcnn_snapshots_agree_with_the_final_image(data):
    m = smoke("pixelcnn", data.spec)
    with torch.no_grad():  # random biases, so that the drawn digits are not all one level
        m.row_bias.normal_(0, 2)
        m.col_bias.normal_(0, 2)
    out = ex.snapshots(m, 2, parts=8, generator=torch.Generator().manual_seed(3))
    shots, done = out["images"], out["steps"]
    assert shots.shape == (8, 2, *data.spec.shape) and done[-1] == data.spec.dims
    final = shots[-1]
    assert torch.equal(final, m.sample(2, generator=torch.Generator().manual_seed(3)))  # the same draws as sample
    assert raster(final).std() > 0
    for shot, k, drawn in zip(shots, done.tolist(), out["drawn"]):
        assert torch.equal(raster(shot)[:, :k], raster(final)[:, :k])  # drawn so far: as in the final image
        assert (raster(shot)[:, k:] == 0).all()  # not drawn yet: empty canvas
        assert torch.equal(raster(drawn[None])[0], torch.arange(data.spec.dims) < k)  # and the step says which


def test_snapshots_of_a_conditional_model_draw_the_asked_for_labels(data):
    """The labels go through `check_labels` (once a missing method: AttributeError) and are drawn."""
    m = smoke("pixelcnn-cond", data.spec)
    with torch.no_grad():  # a strong class bias, so that the label shows in the drawn images
        for e in m.cond:
            e.weight.normal_(0, 3)
    labels = torch.tensor([3, 7])
    out = ex.snapshots(m, 2, parts=4, generator=torch.Generator().manual_seed(0), labels=labels)
    assert torch.equal(out["images"][-1], m.sample(2, generator=torch.Generator().manual_seed(0), labels=labels))
    other = m.sample(2, generator=torch.Generator().manual_seed(0), labels=torch.tensor([0, 1]))
    assert not torch.equal(out["images"][-1], other)
    for bad in (torch.tensor([0, 10]), torch.tensor([1])):
        with pytest.raises(zoo.GenzooError, match="labels") as e:
            ex.snapshots(m, 2, parts=4, labels=bad)
        assert "\n" not in str(e.value)


def test_diffusion_trajectory_watches_the_sampler_it_does_not_copy(data):
    """x_t at the first kept step is the sampler's x_T; the last image is what `sample` draws with
    the same seed; the predicted x0 comes with every kept step."""
    m = smoke("ddpm", data.spec, train_timesteps=40)
    tr = ex.trajectory(m, 2, points=5, generator=torch.Generator().manual_seed(4))
    assert tr["total_steps"] == 40 and tr["steps"] == [0, 10, 20, 29, 39] and tr["timesteps"][0] == 39
    assert tr["x_t"].shape == tr["x0"].shape == (5, 2, *data.spec.shape)
    noise = m.randn(2, *data.spec.shape, generator=torch.Generator().manual_seed(4))
    assert torch.equal(tr["x_t"][0], ((noise + 1) / 2).clamp(0, 1))
    every: list = []
    assert torch.equal(tr["final"], m.sample(2, generator=torch.Generator().manual_seed(4), callback=every.append))
    kept = [every[i] for i in (0, 10, 20, 29, 39)]  # the sampler's own steps, watched by a callback here
    assert tr["timesteps"] == [s.timestep for s in kept]
    assert all(torch.equal(a, s.images.clamp(0, 1)) for a, s in zip(tr["x_t"], kept))
    assert all(torch.equal(a, s.prediction.clamp(0, 1)) for a, s in zip(tr["x0"], kept))
    assert not torch.equal(tr["x0"][1], tr["x0"][3])  # the predictions change along the way


@pytest.mark.parametrize("points", [1, 8])
def test_a_one_step_sampler_has_a_one_frame_trajectory(data, points):
    """ddim@1 (serve asks for min(frames, steps) = 1 point; once a ZeroDivisionError): its one step."""
    m = smoke("ddim", data.spec, train_timesteps=40, steps=1)
    tr = ex.trajectory(m, 1, points=points, generator=torch.Generator().manual_seed(2))
    assert tr["total_steps"] == 1 and tr["steps"] == [0] and tr["x_t"].shape == tr["x0"].shape == (1, 1, *data.spec.shape)
    assert torch.equal(tr["final"], m.sample(1, generator=torch.Generator().manual_seed(2)))


# -- the command on a run folder ----------------------------------------------------------------------

SMALL = explore.Settings(samples=16, pairs=1, steps=4, perturb_images=1, directions=1, grid=4, draw_images=1, points=4,
                         copy_samples=12, copies_shown=2)


@pytest.fixture(scope="module")
def explore_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("explore-cache")


def run_explore(folder: RunFolder, cache) -> dict:
    """`benchmarks.explore` on a run folder, at small settings, with a feature net trained briefly on
    a subset in a cache of its own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENZOO_CACHE", str(cache))
        orig = features.train_feature_net
        mp.setattr(features, "train_feature_net", lambda x, y, **kw: orig(x[:400], y[:400], **{**kw, "epochs": 1}))
        return explore.explore(folder.path, settings=SMALL, log=lambda s: None)


@pytest.fixture(scope="module")
def run_folder(data, tmp_path_factory, explore_cache):
    """A run folder like the runner writes, with untrained smoke models (explore trains nothing, so
    what the weights are does not matter here)."""
    folder = RunFolder(tmp_path_factory.mktemp("run"))
    models = {"ae": {"latent_dim": 2}, "vae": {"latent_dim": 2}, "realnvp": {}, "dcgan": {}, "pixelcnn": {},
              "ddpm": {"train_timesteps": 50}, "ddim": {"train_timesteps": 50, "steps": 5}, "aae": {}, "vae-gan": {},
              "ldm": {"steps": 5}}
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
    return folder.path, run_explore(folder, explore_cache)


@pytest.mark.slow
def test_explore_writes_every_figure(run_folder, read_png):
    path, _ = run_folder
    written = {p.name for p in (path / "explore").iterdir()}
    expected = {"latent_statistics.png", "holes.png", "interpolation.png", "perturbation.png", "latent_2d.png",
                "drawing-ddim.png", "drawing-ddpm.png", "drawing-pixelcnn.png", "drawing-realnvp.png",
                "drawing-vae.png", "drawing-aae.png", "drawing-vae-gan.png", "drawing-ldm.png", "copies.png", "explore.json",
                "explore.md"}
    assert expected <= written
    assert all(read_png(path / "explore" / n).std() > 0 for n in expected if n.endswith(".png"))  # each decodes, not blank
    assert not any(n.endswith(".error.txt") for n in written)
    saved = json.loads((path / "explore" / "explore.json").read_text())
    assert set(saved["figures"]) == set(explore.FIGURES)
    assert not any(m == "(figure)" for skips in saved["skipped"].values() for m, _ in skips)
    assert set(saved["figures"]["latent_statistics"]["ours"]) == {"ae", "vae", "realnvp", "aae", "vae-gan"}
    # the AE's holes beside the same off-density draw from the VAE's codes: the lecture's head-to-head
    assert {"ae: fitted Gaussian", "ae: uniform in the codes' box", "vae: its prior N(0, I)",
            "vae: uniform in the codes' box"} <= set(saved["figures"]["holes"]["rows"])
    assert {"pixel blend", "ae", "vae", "realnvp", "ddim", "dcgan"} <= set(saved["figures"]["interpolation"])
    assert saved["figures"]["interpolation"]["ddim"]["kind"] == "DDIM inversion (5 steps), slerp of the noises"
    drawing = saved["figures"]["drawing"]
    assert drawing["ddpm"]["total_steps"] == 50 and drawing["ldm"]["total_steps"] == 5  # trajectories
    assert drawing["pixelcnn"]["sub_pixels_drawn"][-1] == 784  # a canvas
    assert "forward process" in drawing["ddpm"]["what"] and "forward process" not in drawing["ldm"]["what"]
    # ldm's sampler works on codes: its rows are their decodings, not noisy images (they were labelled x_t)
    assert drawing["ddpm"]["what"].startswith("x_t and the predicted clean image at ")
    assert drawing["ldm"]["what"].startswith("the latent z_t and its predicted clean z0, each decoded, at 4 of 5 sampler steps")
    assert drawing["realnvp"]["round_trip_max_error"] < 1e-3 and "round_trip_max_error" not in drawing["vae"]  # a bijection
    copies = saved["figures"]["copies"]  # every model samples: every model is in it, after the test images
    assert next(iter(copies["rows"])) == "data (test images)"
    assert set(copies["rows"]) == {"data (test images)", "ae", "vae", "realnvp", "dcgan", "pixelcnn", "ddpm", "ddim", "aae",
                                   "vae-gan", "ldm"}
    for row in copies["rows"].values():
        assert row["samples"] == 12 and len(row["shown"]) == 2 and 0 <= row["copy_rate"] <= 1
        assert row["shown"][0]["feature_distance_ratio"] <= row["shown"][1]["feature_distance_ratio"]  # the nearest first
    md = (path / "explore" / "explore.md").read_text()
    assert "## Lecture figures" in md and "](holes.png)" in md
    assert "nearest training image in the feature space" in md and "nearest training image in pixel space" in md
    assert "](explore/holes.png)" in explore.section(path)  # for embedding in the run folder's results.md


@pytest.mark.slow
def test_a_model_without_an_encoder_is_skipped_with_one_line(run_folder):
    _, out = run_folder
    for fig in ("latent_statistics", "perturbation", "holes"):
        reasons = dict(out["skipped"][fig])
        assert "not `Latent`" in reasons["dcgan"] and "\n" not in reasons["dcgan"]
        assert "pixelcnn" in reasons
    assert "pixelcnn" in dict(out["skipped"]["interpolation"])
    assert "the same network as ddim" in dict(out["skipped"]["interpolation"])["ddpm"]  # drawn once
    assert dict(out["skipped"]["drawing"])["wgan"].startswith("status error")
    # decoders that give one image per code: drawn at temperatures, without the VAE's mean-vs-draw panel
    assert "no distribution p(x|z)" in dict(out["skipped"]["drawing"])["vae-gan (mean vs draw)"]
    # no 2-D code: the model's declared `code_size_hparam` says how to get one, or that the model fixes it
    grid = dict(out["skipped"]["latent_2d"])
    assert grid["aae"].endswith("a run with --set aae.latent_dim=2 draws this") and grid["realnvp"].endswith("fixed by the model")
    assert "\n" not in "".join(r for skips in out["skipped"].values() for _, r in skips)


def test_explore_refuses_a_missing_folder_in_one_line(tmp_path, capsys):
    assert explore.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "run" / "explore").mkdir(parents=True)  # a run's explore/ given for the run
    assert explore.main([str(tmp_path / "run" / "explore")]) == 2
    assert capsys.readouterr().err == (f"error: no results.json in {tmp_path / 'run' / 'explore'}; pass a run folder "
                                       "written by benchmarks.run\n")


@pytest.mark.parametrize("option, value", [("--models", "ae,,vae"), ("--figures", "holes,"), ("--models", ""), ("--figures", "")])
def test_an_empty_list_entry_is_one_line(tmp_path, capsys, option, value):
    assert explore.main([str(tmp_path), option, value]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {option} {value!r} has an empty entry; separate the items with "
                                               f"single commas, e.g. {'vae,ddim' if option == '--models' else 'holes,interpolation'}")


@pytest.mark.parametrize("option, value, said", [
    ("--samples", "100000000", "--samples must be an int in [2, 10000] (images per row of the holes figure; the full "
                               "preset's FID takes 10000), got 100000000"),
    ("--samples", "1", "--samples must be an int in [2, 10000]"),
    ("--pairs", "100000", "--pairs must be an int in [1, 10] (each is a row per model of the interpolation figure), "
                          "got 100000"),
    ("--pairs", "0", "--pairs must be an int in [1, 10]"),
    ("--seed", "-1", "--seed must be an int in [0, 2147483647], got -1"),  # as the page's
])
def test_a_count_out_of_bounds_is_one_line(tmp_path, capsys, option, value, said):
    """Checked before the folder is read: a huge count would run for minutes."""
    assert explore.main([str(tmp_path), option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {said}") and err.count("\n") == 1


@pytest.fixture
def one_vae(data, tmp_path):
    """A run folder with one loadable model, an untrained smoke VAE."""
    folder = RunFolder(tmp_path / "run")
    m = smoke("vae", data.spec)
    m.save(folder.path / "checkpoints" / "vae")
    folder.write_record(Record("vae", 0, status="ok", hparams=dataclasses.asdict(m.config), checkpoint="checkpoints/vae"))
    folder.merge({"dataset": "mnist5k", "preset": "smoke", "seeds": [0]}, ["vae"])
    return folder.path


@pytest.mark.parametrize("device, said", [
    ("mps", "error: device 'mps' asked for but MPS is not available; use --device cpu or auto"),
    ("cuda", "error: device 'cuda' asked for but CUDA is not available; use --device cpu or auto"),
    ("gpu", "error: unknown device 'gpu'; accepted: auto, cpu, cuda, mps or cuda:N"),
])
def test_a_device_that_is_not_here_is_one_line_before_any_figure(one_vae, capsys, device, said):
    if device == "cuda" and torch.cuda.is_available() or device == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"{device} is here")
    assert explore.main([str(one_vae), "--figures", "latent_statistics", "--device", device]) == 2
    assert capsys.readouterr().err == said + "\n"
    assert not (one_vae / "explore").exists()


def test_device_auto_is_accepted(one_vae, capsys):
    assert explore.main([str(one_vae), "--figures", "latent_statistics", "--device", "auto"]) == 0
    assert (one_vae / "explore" / "latent_statistics.png").is_file()


@pytest.mark.parametrize("cache, said", [
    ("a-file", "cannot be made (FileExistsError"),
    (" ", "GENZOO_CACHE is set but empty"),
])
def test_a_cache_that_takes_no_files_is_one_line_before_any_figure(one_vae, tmp_path, monkeypatch, capsys, cache, said):
    """The holes and copies figures keep features in the cache: refused up front, not two failed figures."""
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / cache) if cache == "a-file" else cache)
    assert explore.main([str(one_vae), "--figures", "holes,copies"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and err.count("\n") == 1
    assert not (one_vae / "explore").exists()


def test_explore_without_a_loadable_model_says_which_file_and_exits_2(tmp_path, capsys):
    from benchmarks.records import Record, RunFolder

    folder = RunFolder(tmp_path / "run")
    ckpt = folder.path / "checkpoints" / "k"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps({"spec": {"channels": 1, "height": 28, "width": 28, "num_classes": 10}}))
    (ckpt / "model.safetensors").write_bytes(b"")  # emptied, as by a full disk
    folder.write_record(Record("vae", 0, status="ok", checkpoint="checkpoints/k"))
    folder.merge({"dataset": "mnist5k", "preset": "smoke", "seeds": [0]}, ["vae"])
    assert explore.main([str(folder.path), "--figures", "drawing"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"error: no model of {folder.path} could be loaded: vae: could not "
                                                 f"load {ckpt}: "), said


def test_a_folder_without_checkpoints_is_one_line_and_its_figures_stay(tmp_path, capsys):
    """A committed reference folder: its figures are not redrawn with the data row alone."""
    folder = RunFolder(tmp_path / "run")
    folder.write_record(Record("vae", 0, status="ok", checkpoint="checkpoints/vae"))
    folder.merge({"dataset": "mnist5k", "preset": "smoke", "seeds": [0]}, ["vae"])
    (folder.path / "explore").mkdir()
    (folder.path / "explore" / "copies.png").write_bytes(b"drawn before")
    assert explore.main([str(folder.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {folder.path} has no checkpoints to draw from")
    assert (folder.path / "explore" / "copies.png").read_bytes() == b"drawn before"


def models_folder(path, data, models: dict[str, tuple[str, dict]]) -> RunFolder:
    """A run folder of untrained smoke models: record name -> (checkpoint key, hparams)."""
    folder = RunFolder(path)
    for name, (key, hp) in models.items():
        m = smoke(name, data.spec, **hp)
        if name == "realnvp":
            m.log_prob(data.x_train[:64])
        m.save(folder.path / "checkpoints" / key)
        folder.write_record(Record(name, 0, status="ok", hparams=dataclasses.asdict(m.config), checkpoint=f"checkpoints/{key}"))
    folder.merge({"dataset": "mnist5k", "preset": "smoke", "seeds": [0]}, list(models))
    return folder


def test_a_redraw_replaces_a_figure_only_where_it_drew_it(data, tmp_path, explore_cache, monkeypatch):
    """--models ae draws no drawing (the AE has no sampler to watch): the drawings before stay, with
    their numbers. --models vae redraws the figure with the VAE alone: the flow's drawing goes with
    its numbers, so the page shows no image explore.json does not describe."""
    monkeypatch.setenv("GENZOO_CACHE", str(explore_cache))
    folder = models_folder(tmp_path / "run", data, {"ae": ("ae", {}), "vae": ("vae", {}), "realnvp": ("realnvp", {})})
    out = folder.path / "explore"
    draw = lambda **kw: explore.explore(folder.path, figures=["drawing"], settings=SMALL, log=lambda s: None, **kw)  # noqa: E731
    first = draw()
    assert first["images"]["drawing"] == ["drawing-realnvp.png", "drawing-vae.png"]
    again = draw(models=["ae"])
    assert again["images"]["drawing"] == first["images"]["drawing"] and set(again["figures"]["drawing"]) == {"vae", "realnvp"}
    assert (out / "drawing-realnvp.png").is_file()
    said: list[str] = []
    alone = explore.explore(folder.path, figures=["drawing"], settings=SMALL, log=said.append, models=["vae"])
    assert alone["images"]["drawing"] == ["drawing-vae.png"] and set(alone["figures"]["drawing"]) == {"vae"}
    assert not (out / "drawing-realnvp.png").exists()
    assert said[-1] == "removed drawing-realnvp.png: this redraw did not draw its model (left out of --models, or skipped above)"
    assert "drawing-realnvp" not in (folder.path / "index.html").read_text()


def test_a_model_that_fails_in_a_figure_is_left_out_by_name_and_the_others_drawn(data, tmp_path, explore_cache, monkeypatch):
    """The vae's sampler fails while the drawing figure works on it: the flow is drawn, the vae is
    skipped with the error, and its drawing from before goes with it."""
    monkeypatch.setenv("GENZOO_CACHE", str(explore_cache))
    folder = models_folder(tmp_path / "run", data, {"vae": ("vae", {}), "realnvp": ("realnvp", {})})
    draw = lambda figures: explore.explore(folder.path, figures=figures, settings=SMALL, log=lambda s: None)  # noqa: E731
    assert draw(["drawing"])["images"]["drawing"] == ["drawing-realnvp.png", "drawing-vae.png"]
    original = ex.temperature_samples

    def vae_fails(model, *args, **kwargs):
        if model.name == "vae":
            raise RuntimeError("boom\nmore")
        return original(model, *args, **kwargs)

    monkeypatch.setattr(ex, "temperature_samples", vae_fails)
    again = draw(["drawing"])
    assert again["images"]["drawing"] == ["drawing-realnvp.png"] and set(again["figures"]["drawing"]) == {"realnvp"}
    assert dict(again["skipped"]["drawing"])["vae"] == "failed: RuntimeError: boom"
    assert not (folder.path / "explore" / "drawing-vae.png").exists()
    assert not (folder.path / "explore" / "drawing.error.txt").exists()


def test_codes_that_are_not_finite_leave_their_model_out_not_the_figure(data, tmp_path, explore_cache, monkeypatch):
    """A plugin's encoder gave NaN codes: the statistics' PCA, once every model is measured, failed the
    whole figure with a linalg error, taking the other models' panels with it."""
    from zoo.models.vae import VAE

    monkeypatch.setenv("GENZOO_CACHE", str(explore_cache))
    folder = models_folder(tmp_path / "run", data, {"vae": ("vae", {}), "realnvp": ("realnvp", {})})
    encode = VAE.encode
    monkeypatch.setattr(VAE, "encode", lambda self, x: encode(self, x) * float("nan"))
    drawn = explore.explore(folder.path, figures=["latent_statistics"], settings=SMALL, log=lambda s: None)
    assert drawn["images"]["latent_statistics"] == ["latent_statistics.png"]
    assert set(drawn["figures"]["latent_statistics"]["ours"]) == {"realnvp"}
    assert dict(drawn["skipped"]["latent_statistics"])["vae"] == \
        "failed: GenzooError: vae: encode gave codes that are not finite (NaN or inf)"


def test_a_decoder_that_returns_flat_images_is_one_line_naming_it(data):
    """A plugin's MLP decoder without its .view: a figure failed with 'Expected 3D (unbatched) or 4D
    (batched) input to conv2d', from the feature net, or an unpack error, never naming decode."""
    vae = smoke("vae", data.spec)
    vae.decode = lambda z: torch.zeros(len(z), data.spec.dims)
    with pytest.raises(GenzooError, match=r"^vae: decode returned torch.float32 of shape \(3, 784\); expected floats "
                                          r"of shape \(3, 1, 28, 28\) in \[0, 1\]$"):
        ex.decode(vae, torch.zeros(3, vae.config.latent_dim))


def test_a_prior_over_codes_of_another_size_than_encode_gives_is_one_line_naming_both(data):
    """A plugin's latent_prior() over 8 dimensions where encode gave 16: every drawing figure failed in
    torch's words ('mat1 and mat2 shapes cannot be multiplied'), never naming the prior."""
    vae = smoke("vae", data.spec)
    d = vae.config.latent_dim
    assert ex.code_prior(vae).dim == d  # the built-in agrees with itself
    vae.latent_prior = lambda: zoo.GaussianPrior.standard(d // 2)
    with pytest.raises(GenzooError, match=rf"^vae: latent_prior\(\) is a Gaussian over {d // 2} dimensions, but encode "
                                          rf"gives codes of {d}; give the prior over the codes encode gives$"):
        ex.code_prior(vae)


def test_a_figure_that_fails_outside_any_model_keeps_what_it_had(data, tmp_path, explore_cache, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE", str(explore_cache))
    folder = models_folder(tmp_path / "run", data, {"vae": ("vae", {}), "realnvp": ("realnvp", {})})
    draw = lambda: explore.explore(folder.path, figures=["latent_statistics"], settings=SMALL, log=lambda s: None)  # noqa: E731
    first = draw()
    monkeypatch.setattr(ex, "principal_directions", lambda *a: 1 / 0)  # the plots, made once every model is measured
    again = draw()
    assert again["images"]["latent_statistics"] == first["images"]["latent_statistics"] == ["latent_statistics.png"]
    assert again["figures"]["latent_statistics"] == json.loads(json.dumps(first["figures"]["latent_statistics"]))
    assert (folder.path / "explore" / "latent_statistics.error.txt").is_file()
    monkeypatch.undo()
    monkeypatch.setenv("GENZOO_CACHE", str(explore_cache))
    draw()
    assert not (folder.path / "explore" / "latent_statistics.error.txt").exists()  # drawn whole since


@pytest.mark.parametrize("earlier", ["[]", '{"images": [], "figures": {}}', '{"images": {"holes": [3]}}'])
def test_an_explore_record_edited_out_of_shape_is_set_aside_in_one_line(one_vae, explore_cache, monkeypatch, capsys, earlier):
    monkeypatch.setenv("GENZOO_CACHE", str(explore_cache))
    (one_vae / "explore").mkdir()
    (one_vae / "explore" / "explore.json").write_text(earlier)
    out = explore.explore(one_vae, settings=SMALL, figures=["latent_statistics"], log=lambda s: None)
    assert out["images"]["latent_statistics"] == ["latent_statistics.png"]
    assert (one_vae / "explore" / "explore.json.corrupt").read_text() == earlier
    said = capsys.readouterr().out.splitlines()
    assert [line for line in said if "explore.json" in line] == [
        f"warning: {one_vae / 'explore' / 'explore.json'} did not parse; set aside as explore.json.corrupt, the figures "
        f"not redrawn now are left out of explore.md; python -m benchmarks.explore {one_vae} draws and records them all"]


def test_a_variant_is_drawn_under_its_own_name(data, tmp_path, explore_cache, monkeypatch):
    """ddim and ddim@2 share a network: each drawing is its own file, named and numbered for its record."""
    monkeypatch.setenv("GENZOO_CACHE", str(explore_cache))
    hp = {"train_timesteps": 20}
    folder = models_folder(tmp_path / "run", data, {"ddim": ("diffusion", {**hp, "steps": 5}),
                                                    "ddim@2": ("diffusion", {**hp, "steps": 2})})
    out = explore.explore(folder.path, figures=["drawing", "interpolation"], settings=SMALL, log=lambda s: None)
    assert out["images"]["drawing"] == ["drawing-ddim.png", "drawing-ddim@2.png"]
    assert out["figures"]["drawing"]["ddim"]["total_steps"] == 5 and out["figures"]["drawing"]["ddim@2"]["total_steps"] == 2
    assert dict(out["skipped"]["interpolation"])["ddim@2"].startswith("the same network as ddim")


# -- a plugin gets every figure its capabilities allow -------------------------------------------------

@pytest.fixture
def plugins(monkeypatch):
    """Three plugin models written from docs/add-a-model.md alone (its "Capabilities" section),
    registered for this test only."""
    monkeypatch.setattr(zoo.registry, "_REGISTRY", dict(zoo.registry._REGISTRY))

    @zoo.register
    class TwoNumbers(zoo.Generator, zoo.Latent, zoo.ProbabilisticDecoder):
        """A 2-d code: an image's projections on two fixed patterns; decoded as their blend."""

        name = "test-plugin-latent"

        def __init__(self, spec, **hparams):
            super().__init__(spec, **hparams)
            self.patterns = torch.nn.Parameter(torch.randn(2, spec.dims, generator=torch.Generator().manual_seed(0)))

        def encode(self, x):
            return x.flatten(1) @ self.patterns.T / self.spec.dims**0.5

        def decode(self, z):
            return torch.sigmoid(z @ self.patterns).view(len(z), *self.spec.shape)

        def latent_prior(self):
            return zoo.GaussianPrior(torch.zeros(2), torch.ones(2), "prior")

        def sample_likelihood(self, z, generator=None):
            return (self.rand(len(z), *self.spec.shape, generator=generator) < self.decode(z)).float()

        def train_step(self, x, y=None):
            return {"loss": 0.0}

        def _sample(self, n, generator, labels):
            return self.decode(self.randn(n, 2, generator=generator))

    @zoo.register
    class Fade(zoo.Generator, zoo.Stepwise, zoo.Invertible):
        """Images squash their noise, sigmoid(w noise), and fade in from black over four steps."""

        name = "test-plugin-fade"
        inversion_name = "logit of the image"
        steps = 4

        def __init__(self, spec, **hparams):
            super().__init__(spec, **hparams)
            self.w = torch.nn.Parameter(torch.ones(1))

        def generate(self, noise):
            return torch.sigmoid(self.w * noise.to(self.device))

        def invert(self, x):
            return torch.logit(x.to(self.device).clamp(1e-3, 1 - 1e-3)) / self.w

        def train_step(self, x, y=None):
            return {"loss": 0.0}

        def _sample(self, n, generator, labels, callback=None):
            target = self.generate(self.randn(n, *self.spec.shape, generator=generator))
            x = torch.zeros_like(target)
            for i in range(self.steps):
                if callback is not None:
                    callback(zoo.SamplingStep(i, self.steps, x, prediction=target, timestep=self.steps - i))
                x = x + (target - x) / (self.steps - i)
            return x

    @zoo.register
    class RowPainter(zoo.Generator, zoo.CodeSampler, zoo.Stepwise):
        """G(z) from a 3-d code, painted onto the canvas one row a step."""

        name = "test-plugin-rows"

        def __init__(self, spec, **hparams):
            super().__init__(spec, **hparams)
            self.map = torch.nn.Linear(3, spec.dims)

        def latent_prior(self):
            return zoo.GaussianPrior(torch.zeros(3), torch.ones(3), "prior")

        def decode(self, z, labels=None):
            return torch.sigmoid(self.map(z.to(self.device))).view(len(z), *self.spec.shape)

        def train_step(self, x, y=None):
            return {"loss": 0.0}

        def _sample(self, n, generator, labels, callback=None):
            image = self.decode(self.latent_prior().sample(n, generator))
            canvas = torch.zeros_like(image)
            for row in range(self.spec.height):
                if callback is not None:
                    drawn = torch.zeros(self.spec.shape, dtype=torch.bool)
                    drawn[:, :row] = True
                    callback(zoo.SamplingStep(row, self.spec.height, canvas.clone(), drawn=drawn))
                canvas[:, :, row] = image[:, :, row]
            return canvas

    return [TwoNumbers.name, Fade.name, RowPainter.name]


@pytest.mark.slow
def test_a_plugin_appears_in_every_figure_its_capabilities_allow(data, plugins, tmp_path, explore_cache):
    latent, fade, rows = plugins
    folder = RunFolder(tmp_path / "run")
    for name in plugins:
        torch.manual_seed(0)
        zoo.create(name, data.spec).save(folder.path / "checkpoints" / name)
        folder.write_record(Record(name, 0, status="ok", hparams={}, checkpoint=f"checkpoints/{name}"))
    folder.merge({"dataset": "mnist5k"}, plugins)
    out = run_explore(folder, explore_cache)
    figures, skipped = out["figures"], {k: dict(v) for k, v in out["skipped"].items()}
    assert not any("(figure)" in s for s in skipped.values())  # no figure failed
    # `Latent` with a Gaussian prior and a 2-d code, whose decoder is a distribution: every latent figure
    assert set(figures["latent_statistics"]["ours"]) == {latent}
    assert list(figures["holes"]["rows"]) == [f"{latent}: its prior N(0, I)", f"{latent}: uniform in the codes' box"]
    assert set(figures["perturbation"]) == {latent} and set(figures["latent_2d"]) == {latent}
    assert "mean_vs_draw" in figures["drawing"][latent]
    # `Invertible`: interpolated through its noise; `CodeSampler`: between two random codes
    interpolation = figures["interpolation"]
    assert interpolation[latent]["kind"] == "slerp between the codes"
    assert interpolation[fade]["kind"] == "logit of the image, slerp of the noises"
    assert interpolation[rows]["kind"] == "slerp between two random codes (no encoder)"
    # `Stepwise`: a trajectory (its steps predict the finished image), a canvas (its steps say what is drawn)
    assert figures["drawing"][fade]["total_steps"] == 4 and figures["drawing"][fade]["timesteps"] == [4, 3, 2, 1]
    assert figures["drawing"][rows]["sub_pixels_drawn"] == [196, 392, 588, 784]  # 7, 14, 21, 28 rows of 28
    for fig in ("latent_statistics", "holes", "perturbation", "latent_2d"):
        assert set(skipped[fig]) == {fade, rows}
    written = {p.name for p in (folder.path / "explore").iterdir()}
    assert {f"drawing-{name}.png" for name in plugins} <= written


def test_a_folder_whose_images_changed_since_the_run_is_refused_in_one_line(one_vae, capsys):
    """Found by a probe: explore drew a folder run's figures against the folder's new images without a word."""
    folder = RunFolder(one_vae)
    results = json.loads(folder.results.read_text())
    results["run"]["data_hash"] = "0123456789abcdef"  # what the run read; mnist5k reads otherwise now
    folder.results.write_text(json.dumps(results))
    assert explore.main([str(one_vae), "--figures", "latent_statistics"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {one_vae} was run on other data (hash 0123456789abcdef) than mnist5k as read now")
    assert err.endswith("its images, or how genzoo reads them, changed since the run; explore draws against the run's own data\n")
    assert err.count("\n") == 1
    assert not (one_vae / "explore").exists()


def test_a_run_whose_folder_has_gone_says_which_run_and_data(one_vae, tmp_path, capsys):
    folder = RunFolder(one_vae)
    results = json.loads(folder.results.read_text())
    results["run"]["dataset"] = f"folder:{tmp_path / 'gone'}"  # moved or deleted since the run
    folder.results.write_text(json.dumps(results))
    assert explore.main([str(one_vae), "--figures", "latent_statistics"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {one_vae} was run on folder:{tmp_path / 'gone'}, which cannot be read now: image folder ")
    assert err.count("\n") == 1


def test_a_records_checkpoint_is_found_in_its_run_folder_also_from_a_set_aside_one_and_nowhere_else(tmp_path, monkeypatch):
    # found by a probe: explore and serve on set-aside/N-.../ looked for checkpoints it never holds, and a
    # record edited to name another folder's checkpoint was drawn from there
    from benchmarks.records import SCORED
    from zoo.checkpoint import file_hash

    run = RunFolder(tmp_path / "run")
    model = zoo.create("ae", zoo.DataSpec(1, 28, 28), preset="smoke")
    model.save(run.checkpoint("ae-1"))
    rec = Record("ae", 0, status="ok", checkpoint="checkpoints/ae-1", hparams=dataclasses.asdict(model.config),
                 weights_hash=file_hash(run.checkpoint("ae-1") / "model.safetensors"))
    aside = RunFolder(run.path / "set-aside" / "1-smoke-abcd")
    assert run.checkpoint_of(rec) == aside.checkpoint_of(rec) == run.path / "checkpoints" / "ae-1"
    assert explore.weights_problem(aside, rec) is None and isinstance(explore.load_model(aside, rec), Generator)
    aside.path.mkdir(parents=True)
    monkeypatch.chdir(aside.path)  # named from inside it
    assert RunFolder(".").checkpoint_of(rec).resolve() == run.path.resolve() / "checkpoints" / "ae-1"
    kept = RunFolder(tmp_path / "old-runs" / "set-aside" / "run")  # a user's own folder of that name, with its trainings
    (kept.path / "checkpoints").mkdir(parents=True)
    assert kept.checkpoint_of(rec) == kept.path / "checkpoints" / "ae-1"
    for elsewhere in (str(run.path / "checkpoints" / "ae-1"), "../run/checkpoints/ae-1"):
        moved = dataclasses.replace(rec, checkpoint=elsewhere)
        assert run.checkpoint_of(moved) is None
        assert explore.weights_problem(run, moved) == f"its record names a checkpoint outside {run.path} ({elsewhere}; edited by hand?)"
    scored = Record("my-gan", 0, status="ok", events=[f"{SCORED}samples.npz"])
    assert explore.weights_problem(run, scored) == ("its samples were scored from a file (benchmarks.score): "
                                                    "there is no model to draw from")


def test_only_a_model_whose_decoder_inverts_its_encoder_gets_the_round_trip(data, tmp_path):
    """Found by a review: a VAE whose code has as many numbers as the image (latent_dim=784) was
    drawn as 'invertible', with a round-trip error of half the pixel range."""
    folder = RunFolder(tmp_path / "run")
    for name, hp in {"realnvp": {}, "vae": {"latent_dim": data.spec.dims}}.items():
        m = smoke(name, data.spec, **hp)
        if name == "realnvp":
            m.log_prob(to_float(data.x_train[:64]))  # its data-dependent initialisation
        m.save(folder.path / "checkpoints" / name)
        folder.write_record(Record(name, 0, status="ok", hparams=dataclasses.asdict(m.config), checkpoint=f"checkpoints/{name}"))
    folder.merge({"dataset": "mnist5k", "preset": "smoke", "seeds": [0]}, ["realnvp", "vae"])
    drawing = explore.explore(folder.path, figures=["drawing"], settings=SMALL, log=lambda s: None)["figures"]["drawing"]
    assert drawing["realnvp"]["round_trip_max_error"] < explore.INVERTIBLE and "f⁻¹(z)" in drawing["realnvp"]["what"]
    assert "round_trip_max_error" not in drawing["vae"] and "f⁻¹(z)" not in drawing["vae"]["what"]


def test_a_conditional_model_s_drawing_names_each_row_s_class_and_ends_with_the_sample(data, tmp_path):
    """Found by a probe: ddpm-cond's rows drew classes no label named, and the trajectory stopped a
    step before the sample."""
    folder = RunFolder(tmp_path / "run")
    m = smoke("ddpm-cond", data.spec, steps=5)
    m.save(folder.path / "checkpoints" / "ddpm-cond")
    folder.write_record(Record("ddpm-cond", 0, status="ok", hparams=dataclasses.asdict(m.config),
                               checkpoint="checkpoints/ddpm-cond"))
    folder.merge({"dataset": "mnist5k", "preset": "smoke", "seeds": [0]}, ["ddpm-cond"])
    settings = dataclasses.replace(SMALL, draw_images=3)
    drawn = explore.explore(folder.path, figures=["drawing"], settings=settings, log=lambda s: None)["figures"]["drawing"]
    classes = drawn["ddpm-cond"]["classes"]
    assert len(classes) == len(set(classes)) == 3 and all(0 <= c < 10 for c in classes)
    assert drawn["ddpm-cond"]["what"].startswith("x_t and the predicted clean image at 4 of 5 sampler steps, then the sample")
