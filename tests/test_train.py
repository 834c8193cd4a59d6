"""The training loop's weight averaging and learning-rate schedule, against values computed by hand;
mixed precision; the contracts between the loop and a model (optimizers, loss scaling,
after_training); resume files that hold more than tensors and numbers."""
import os
import signal
from dataclasses import dataclass

import pytest
import torch

import zoo
from zoo import data
from zoo.base import DataSpec, Generator, GenzooError, ModelConfig
from zoo.budget import Budget
from zoo.checkpoint import training_key
from zoo.seeds import seed_everything
from zoo.train import Interrupted, fit


class Counter(Generator):
    """A toy model whose one weight is set to the step number by each train_step."""

    name = "counter"

    @dataclass
    class Config(ModelConfig):
        pass

    def __init__(self, spec, **hp):
        super().__init__(spec, **hp)
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.steps = 0

    def train_step(self, x, y=None):
        self.steps += 1
        with torch.no_grad():
            self.w.fill_(self.steps)
        return {"loss": 0.0}

    def _sample(self, n, generator, labels):
        return torch.zeros(n, *self.spec.shape)


def test_ema_leaves_the_moving_average_of_the_weights():
    x = torch.zeros(8, 1, 2, 2)
    model = Counter(DataSpec(1, 2, 2), ema=0.5)
    fit(model, x, None, Budget(3, "steps", batch_size=4), progress=False)
    # weights after steps 1, 2, 3: 1, 2, 3 -> average 1, then 0.5*1 + 0.5*2 = 1.5, then 0.5*1.5 + 0.5*3
    assert model.w.item() == 2.25
    plain = Counter(DataSpec(1, 2, 2))
    fit(plain, x, None, Budget(3, "steps", batch_size=4), progress=False)
    assert plain.w.item() == 3.0  # ema 0: the last weights


def test_ema_outside_0_1_is_a_one_line_error():
    with pytest.raises(GenzooError, match=r"ema must be in \[0, 1\)"):
        Counter(DataSpec(1, 2, 2), ema=1.0)


class LrRecorder(Counter):
    """Records its optimizer's learning rate at every train_step."""

    name = "lr-recorder"

    def __init__(self, spec, **hp):
        super().__init__(spec, **hp)
        self.opt = torch.optim.SGD([self.w], lr=0.1)
        self.lrs = []

    def train_step(self, x, y=None):
        self.lrs.append(self.opt.param_groups[0]["lr"])
        return super().train_step(x, y)


def test_cosine_schedule_scales_every_step_from_the_rate_to_zero():
    x = torch.zeros(8, 1, 2, 2)
    model = LrRecorder(DataSpec(1, 2, 2), lr_schedule="cosine")
    fit(model, x, None, Budget(4, "steps", batch_size=4), progress=False)
    # 0.1 * (1 + cos(pi * k / 4)) / 2 for k = 0..3, by hand
    assert model.lrs == pytest.approx([0.1, 0.1 * (1 + 2**-0.5) / 2, 0.05, 0.1 * (1 - 2**-0.5) / 2])
    plain = LrRecorder(DataSpec(1, 2, 2))
    fit(plain, x, None, Budget(4, "steps", batch_size=4), progress=False)
    assert plain.lrs == [0.1] * 4


def test_a_schedule_that_would_reach_no_optimizer_is_one_line_before_training():
    """Counter steps its weight by hand: the loop finds no optimizer, so cosine would change nothing."""
    with pytest.raises(GenzooError, match="counter: lr_schedule cosine would reach no optimizer: the loop finds"):
        fit(Counter(DataSpec(1, 2, 2), lr_schedule="cosine"), torch.zeros(8, 1, 2, 2), None, Budget(2, "steps", batch_size=4),
            progress=False)


def test_an_unknown_lr_schedule_is_a_one_line_error():
    with pytest.raises(GenzooError, match=r"lr_schedule must be one of 'constant', 'cosine', got 'linear'"):
        Counter(DataSpec(1, 2, 2), lr_schedule="linear")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_every_kind_of_step(precision):
    """Autocast around train_step; fp16 scales through Generator.optimize: a GAN's two optimizers
    and WGAN-GP's double backward, the PixelCNN's clipping (unscaled first). Weights stay fp32."""
    spec, x, y = data.load("mnist5k")
    for name in ("wgan", "pixelcnn"):
        seed_everything(0)
        model = zoo.create(name, spec, preset="smoke")
        before = [p.detach().clone() for p in model.parameters()]
        r = fit(model, x[:64], y[:64], Budget(2, "steps", batch_size=32), progress=False, precision=precision)
        assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in r.history), name
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), f"{name} did not learn"
        key = training_key(model, "data", Budget(2, "steps"), 0)
        assert training_key(model, "data", Budget(2, "steps"), 0, precision=precision) != key


def test_an_unknown_precision_is_a_one_line_error():
    with pytest.raises(GenzooError, match="accepted: fp32, bf16, fp16"):
        fit(Counter(DataSpec(1, 2, 2)), torch.zeros(4, 1, 2, 2), None, Budget(1, "steps", batch_size=2), precision="fp8")


@pytest.mark.parametrize("x, y, budget, said", [
    (torch.zeros(8, 2, 2), None, None, r"counter takes images \(N,1,2,2\) with N >= 1 \(its DataSpec\), got \(8, 2, 2\)"),
    (torch.zeros(8, 3, 2, 2), None, None, r"got \(8, 3, 2, 2\)"),
    (torch.zeros(0, 1, 2, 2), None, None, r"got \(0, 1, 2, 2\)"),
    (torch.full((8, 1, 2, 2), 255.0), None, None, r"floats in \[0, 1\] or uint8 0..255, got values in \[255, 255\]: divide by 255"),
    (torch.full((8, 1, 2, 2), float("nan")), None, None, r"got values in \[nan, nan\]"),
    (torch.zeros(8, 1, 2, 2, dtype=torch.int64), None, None, "floats in \\[0, 1\\] or uint8 0..255, got torch.int64"),
    (torch.zeros(8, 1, 2, 2).numpy(), None, None, "as a torch tensor .*got ndarray"),
    (torch.zeros(8, 1, 2, 2), torch.zeros(3, dtype=torch.long), None, r"labels must have shape \(8,\), got \(3,\)$"),
    (torch.zeros(8, 1, 2, 2), torch.zeros(8), None, r"labels must be integer class indices, got torch.float32$"),
    (torch.zeros(8, 1, 2, 2), [0] * 8, None, r"y must be integer class labels \(8,\) as a torch tensor, or None; got list$"),
    (torch.zeros(8, 1, 2, 2), torch.full((8,), 3), None, r"labels must be class indices in \[0, 3\), got range \[3, 3\]$"),
    (torch.zeros(8, 1, 2, 2), None, "2steps", r"budget must be a zoo.budget.Budget, .*Budget.parse\('2000steps'\); got str"),
])
def test_what_fit_is_handed_is_checked_in_one_line_before_any_step(x, y, budget, said):
    """A wrong shape failed inside the model's first layer, labels of another length or class in an
    IndexError, a budget as text in an AttributeError; images in 0..255 as floats trained silently."""
    model = Counter(DataSpec(1, 2, 2, num_classes=3))
    with pytest.raises(GenzooError, match=f"^fit: .*{said}") as e:
        fit(model, x, y, budget or Budget(2, "steps", batch_size=4), progress=False)
    assert "\n" not in str(e.value) and model.steps == 0
    fit(model, torch.rand(8, 1, 2, 2), torch.arange(8) % 3, Budget(2, "steps", batch_size=4), progress=False)  # the same, right
    fit(Counter(DataSpec(1, 2, 2)), torch.full((8, 1, 2, 2), 255, dtype=torch.uint8), None, Budget(1, "steps"), progress=False)


class BareImages(torch.utils.data.Dataset):
    """Images without labels: a bare uint8 tensor per item."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.zeros(1, 2, 2, dtype=torch.uint8)


@pytest.mark.parametrize("dataset, got", [
    (BareImages(), r"a bare tensor \(1, 2, 2\)"),
    (torch.utils.data.TensorDataset(torch.zeros(8, 1, 2, 2)), "a tuple of 1"),
    (torch.utils.data.TensorDataset(torch.zeros(0, 1, 2, 2)), None),
])
def test_a_dataset_that_does_not_yield_image_label_pairs_is_one_line_before_any_step(dataset, got):
    """Found by a probe of the Python API: a Dataset of bare images failed at the first step with the
    loader's "too many values to unpack"; an empty one divided by zero."""
    model = Counter(DataSpec(1, 2, 2))
    said = f"a Dataset must yield \\(image, label\\) pairs, .*; its first item is {got}$" if got else "the Dataset is empty"
    with pytest.raises(GenzooError, match=f"^fit: {said}"):
        fit(model, dataset, None, Budget(2, "steps", batch_size=4), progress=False)
    assert model.steps == 0
    labeled = torch.utils.data.TensorDataset(torch.zeros(8, 1, 2, 2, dtype=torch.uint8), torch.full((8,), -1))
    assert fit(model, labeled, None, Budget(2, "steps", batch_size=4), progress=False).steps == 2  # pairs train


def test_every_trainable_weight_of_every_model_is_in_exactly_one_of_its_declared_optimizers():
    """What the loop saves, restores and schedules is `optimizers()`: a weight outside it would resume
    with a fresh optimizer state (ldm's DDIM holds its own optimizer, which it declares)."""
    spec = data.load("mnist5k")[0]
    for name in zoo.available():
        model = zoo.create(name, spec, preset="smoke")
        stepped = [p for opt in model.optimizers().values() for group in opt.param_groups for p in group["params"]]
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert len(stepped) == len({id(p) for p in stepped}) == len(trainable), name
        assert {id(p) for p in stepped} == {id(p) for p in trainable}, name
        assert all(isinstance(k, str) for k in model.optimizers()), name


class SpyScaler(torch.amp.GradScaler):
    """A GradScaler on the CPU that records every loss it scales and every optimizer it steps."""

    made: list["SpyScaler"] = []

    def __init__(self, device="cpu", **kwargs):
        super().__init__("cpu", **kwargs)
        self.scaled, self.stepped = 0, []
        SpyScaler.made.append(self)

    def scale(self, outputs):
        self.scaled += 1
        return super().scale(outputs)

    def step(self, optimizer, *args, **kwargs):
        self.stepped.append(optimizer)
        return super().step(optimizer, *args, **kwargs)


def test_vae_gan_scales_all_three_of_its_losses_under_fp16_and_only_during_the_training(monkeypatch):
    """Its discriminator, encoder and decoder each step through `optimize`, so the loop's GradScaler
    scales each loss; afterwards the model steps unscaled again."""
    monkeypatch.setattr(SpyScaler, "made", [])
    monkeypatch.setattr(torch.amp, "GradScaler", SpyScaler)
    spec, x, y = data.load("mnist5k")
    seed_everything(0)
    model = zoo.create("vae-gan", spec, preset="smoke")
    r = fit(model, x[:64], y[:64], Budget(2, "steps", batch_size=32), progress=False, precision="fp16")
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in r.history)
    [scaler] = SpyScaler.made
    assert scaler.scaled == 2 * 3  # two steps, three losses each
    optimizers = model.optimizers()
    assert len(optimizers) == 3
    assert [id(o) for o in scaler.stepped] == 2 * [id(optimizers[k]) for k in ("opt_d", "opt_enc", "opt_dec")]
    assert scaler.get_scale() > 0
    model.train_step(x[:32].float() / 255)  # outside the loop: no scaler
    assert scaler.scaled == 6


def test_optimize_under_loss_scaling_scales_the_gradient_it_backpropagates():
    w = torch.nn.Parameter(torch.ones(()))
    model = Counter(DataSpec(1, 2, 2))
    grads = []
    w.register_hook(lambda g: grads.append(g.item()))
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    with model.loss_scaling(scaler):
        model.optimize(torch.optim.SGD([w], lr=0.5), 3 * w)
    model.optimize(torch.optim.SGD([w], lr=0.5), 3 * w)
    assert grads == [24.0, 3.0]  # scaled by 8 inside, as is outside
    assert w.item() == 1 - 0.5 * 3 - 0.5 * 3  # the step itself saw the true gradient both times


class Images(torch.utils.data.Dataset):
    """Eight blank images that count how often they are read."""

    def __init__(self):
        self.reads = 0

    def __len__(self):
        return 8

    def __getitem__(self, i):
        self.reads += 1
        return torch.zeros(1, 2, 2, dtype=torch.uint8), -1


class FitsAfter(Counter):
    name = "fits-after"
    fits_after_training = True

    def after_training(self, x, y):
        self.fitted = (len(x), x.dtype, y)


def test_after_training_gets_the_whole_set_only_where_the_model_declares_it_fits_to_it():
    plain, images = Counter(DataSpec(1, 2, 2)), Images()
    fit(plain, images, None, Budget(1, "steps", batch_size=4), progress=False)
    # the first item, read once to check its form; one batch: the set is not read again for a model that does not ask
    assert images.reads == 1 + 4
    fitted, images = FitsAfter(DataSpec(1, 2, 2)), Images()
    fit(fitted, images, None, Budget(1, "steps", batch_size=4), progress=False)
    assert images.reads == 1 + 4 + 8 and fitted.fitted == (8, torch.uint8, None)


class Stopping(Counter):
    """Sends itself SIGTERM after step 2, like a runner stopped mid-training."""

    name = "stopping"

    def train_step(self, x, y=None):
        out = super().train_step(x, y)
        if self.steps == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return out


RAN: list[bool] = []


def _ran():
    RAN.append(True)


class Payload:
    """What a hostile resume file could carry: an object whose unpickling calls a function."""

    def __reduce__(self):
        return (_ran, ())


def test_a_resume_file_carrying_a_pickled_object_is_refused_unread_set_aside_and_training_starts_over(tmp_path, capsys):
    budget = Budget(5, "steps", batch_size=4)
    x = torch.zeros(8, 1, 2, 2)
    with pytest.raises(Interrupted):
        fit(Stopping(DataSpec(1, 2, 2)), x, None, budget, checkpoint=tmp_path, progress=False)
    resume = tmp_path / "resume.pt"
    state = torch.load(resume, weights_only=True)  # what genzoo writes loads as plain data
    assert state["result"]["steps"] == 2
    state["result"]["events"].append(Payload())
    torch.save(state, resume)
    capsys.readouterr()

    r = fit(Counter(DataSpec(1, 2, 2)), x, None, budget, checkpoint=tmp_path, progress=False)
    assert RAN == []  # never unpickled
    assert r.steps == 5 and r.events == []  # from the start, not resumed
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "holds pickled objects" in printed[0] and "set aside as resume.pt.corrupt" in printed[0]
    assert (tmp_path / "resume.pt.corrupt").is_file() and not resume.exists()


class Widened(Counter):
    """Counter after a code change: one more weight."""

    def __init__(self, spec, **hp):
        super().__init__(spec, **hp)
        self.b = torch.nn.Parameter(torch.zeros(2))


def test_a_resume_file_that_no_longer_fits_the_model_is_set_aside_and_training_starts_over(tmp_path, capsys):
    budget = Budget(5, "steps", batch_size=4)
    x = torch.zeros(8, 1, 2, 2)
    with pytest.raises(Interrupted):
        fit(Stopping(DataSpec(1, 2, 2)), x, None, budget, checkpoint=tmp_path, progress=False)
    capsys.readouterr()

    r = fit(Widened(DataSpec(1, 2, 2)), x, None, budget, checkpoint=tmp_path, progress=False)
    assert r.steps == 5 and r.events == []  # from the start, not resumed
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [f"warning: checkpoint {tmp_path} has a resume file that does not fit counter "
                       "(weight b is in one of them only); set aside as resume.pt.corrupt, training from the start"]


def test_a_resumed_training_says_so_once(tmp_path, capsys):
    budget = Budget(5, "steps", batch_size=4)
    x = torch.zeros(8, 1, 2, 2)
    with pytest.raises(Interrupted):
        fit(Stopping(DataSpec(1, 2, 2)), x, None, budget, seed=3, checkpoint=tmp_path, progress=False)
    capsys.readouterr()
    r = fit(Counter(DataSpec(1, 2, 2)), x, None, budget, seed=3, checkpoint=tmp_path, progress=False)
    assert r.events == ["SIGTERM at step 2", "resumed at step 2"]
    assert capsys.readouterr().out.splitlines() == ["counter seed 3: resumed at step 2"]


class TwoUpdates(Counter):
    """Two optimizer steps inside one train_step, as a GAN's discriminator and generator updates."""

    def __init__(self, spec, **hp):
        super().__init__(spec, **hp)
        self.lin = torch.nn.Linear(spec.dims, 1)
        self.opt = torch.optim.SGD(self.lin.parameters(), lr=0.5)
        self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (weight, bias, loss) per forward

    def train_step(self, x, y=None):
        for _ in range(2):
            weight, bias = self.lin.weight.detach().clone(), self.lin.bias.detach().clone()
            loss = self.lin(x.flatten(1)).float().pow(2).mean()
            self.seen.append((weight, bias, loss.detach()))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return {"loss": loss.detach()}


def test_under_bf16_a_second_update_in_one_step_sees_the_weights_the_first_one_made():
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    model = TwoUpdates(DataSpec(1, 2, 2))
    fit(model, x, None, Budget(1, "steps", batch_size=4), progress=False, precision="bf16")
    weight, bias, loss = model.seen[1]
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        expected = torch.nn.functional.linear(x.flatten(1), weight, bias).float().pow(2).mean()
    assert not torch.equal(weight, model.seen[0][0])  # the first update moved the weights
    assert torch.equal(loss, expected)  # autocast's weight cache would have served the old ones
