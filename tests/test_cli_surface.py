"""A property of the whole command-line surface: for every registered model and every field of its
Config, values generated from what the field declares it accepts (just outside each bound, the wrong
type, nan, inf, empty, an unknown choice, a list too long or too short) are refused in one line with
exit 2, before anything is trained or written."""
import functools
import math
import typing

import pytest

import zoo
from benchmarks import run
from zoo.base import Accepts, DataSpec, GenzooError, accepts, config_types
from zoo.registry import get

MODELS = sorted(zoo.available())


def _number(x: float, kind: type) -> str:
    return str(int(x)) if kind is int and float(x).is_integer() else repr(float(x))


def _outside(ok: Accepts, kind: type, config: object) -> list[str]:
    """Numbers just outside each bound, and an even one where only odd ones are accepted."""
    step = 1 if kind is int else 1e-3
    bound = lambda b: getattr(config, b) if isinstance(b, str) else b
    out = []
    if ok.ge is not None:
        out.append(_number(bound(ok.ge) - step, kind))
    if ok.gt is not None:
        out.append(_number(bound(ok.gt), kind))
    if ok.le is not None:
        out.append(_number(bound(ok.le) + step, kind))
    if ok.lt is not None:
        out.append(_number(bound(ok.lt), kind))
    if ok.odd:
        low = bound(ok.ge) if ok.ge is not None else 0
        out.append(str(int(low) + 1 if int(low) % 2 else int(low)))
    return out


@functools.cache
def smoke_config(name: str) -> object:
    return zoo.create(name, DataSpec(1, 28, 28, 10), preset="smoke").config


def bad_values(name: str, field: str) -> list[str]:
    """--set values that `field` of model `name` must refuse, generated from its declaration."""
    cls = get(name)
    kind = config_types(cls.Config)[field]
    ok = accepts(cls.Config, field)
    config = smoke_config(name)
    values = [""]  # empty
    if kind is bool:
        return values + ["maybe", "2", "nan"]
    if ok.choices is not None:
        return values + ["nope", "1"]
    if typing.get_origin(kind) is list:
        item = typing.get_args(kind)[0]
        good = getattr(config, field)[0] if getattr(config, field) else _number(ok.ge or 0, item)
        values = ["[x]", "[nan]", "[1.5]" if item is int else "[inf]", "[[1]]"]
        values += [f"[{v}]" for v in _outside(ok, item, config)]
        if ok.min_len:
            values += ["", "[]"]  # empty (for a list that may be empty, "" is [])
        if ok.max_len is not None:
            values.append("[" + ",".join([str(good)] * (ok.max_len + 1)) + "]")
        return values
    values += ["x", "nan", "inf", "-inf"] + (["1.5", "1e3"] if kind is int else [])
    return values + _outside(ok, kind, config)


CASES = [(name, field) for name in MODELS for field in config_types(get(name).Config)]


def test_every_field_gets_values_outside_what_it_accepts():
    for name, field in CASES:
        assert len(bad_values(name, field)) >= 3, (name, field)
    assert "1001" in bad_values("ddim", "steps")  # a bound that names another field: train_timesteps + 1
    assert "4" in bad_values("pixelcnn", "kernel") and "[8,8,8,8,8,8,8]" in bad_values("ddpm", "channels")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_the_runner_refuses_every_bad_value_in_one_line_before_training(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite a bad hyper-parameter"))
    monkeypatch.setattr(run.features, "classifier_space", lambda *a, **k: pytest.fail("built the feature space"))
    out = tmp_path / "run"
    for field in config_types(get(name).Config):
        for value in bad_values(name, field):
            argv = ["--models", name, "--set", f"{name}.{field}={value}", "--preset", "smoke", "--out", str(out)]
            code = run.main(argv)
            printed = capsys.readouterr().out.strip()
            assert code == 2, (argv, printed)
            assert len(printed.splitlines()) == 1 and printed.startswith("error: ") and field in printed, (argv, printed)
            assert not out.exists(), argv


def test_python_values_of_the_wrong_kind_are_refused_on_the_same_path():
    """zoo.create (presets, plugins, saved configs) goes through the same check as --set."""
    spec = DataSpec(1, 28, 28, 10)
    for name, field in CASES:
        kind = config_types(get(name).Config)[field]
        wrong = [math.nan, math.inf, "x", {}, object()]
        wrong += [] if type(None) in typing.get_args(kind) else [None]
        wrong += [True, 2.5] if kind is int else []
        listed = typing.get_origin(kind) is list
        wrong += [[None], ["x"], [math.nan]] if listed else [[]]
        wrong += [[]] if listed and accepts(get(name).Config, field).min_len else []
        for value in wrong:
            with pytest.raises(GenzooError) as e:
                zoo.create(name, spec, preset="smoke", **{field: value})
                pytest.fail(f"{name}.{field} = {value!r} accepted")
            assert len(str(e.value).splitlines()) == 1 and f"{field} must be" in str(e.value), (name, field, value, e.value)


def test_a_value_a_constructor_refuses_past_its_config_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    """A plugin whose Config declares no range (docs/add-a-model.md): torch's optimizer refuses lr=-1."""
    def refusing(name, spec, preset, **hp):
        raise ValueError(f"Invalid learning rate: {hp['lr']}\nmore of torch's words")

    monkeypatch.setattr(run.zoo, "create", refusing)
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite a bad hyper-parameter"))
    out = tmp_path / "run"
    assert run.main(["--models", "vae", "--set", "vae.lr=0.5", "--preset", "smoke", "--out", str(out)]) == 2
    assert capsys.readouterr().out.strip() == "error: vae could not be built (lr=0.5): ValueError: Invalid learning rate: 0.5"
    assert not out.exists()


def test_a_constructor_that_fails_names_the_preset_only_where_the_model_has_one(tmp_path, capsys, monkeypatch):
    """A plugin with no presets whose __init__ raised was 'could not be built (its smoke hyper-parameters)',
    sending its author to look for values it never set."""
    def failing(name, spec, preset, **hp):
        raise RuntimeError("oops in __init__")

    monkeypatch.setattr(run.zoo, "create", failing)
    monkeypatch.setattr(run.zoo.registry.get("ae"), "presets", {})
    for model, given in [("vae", "its smoke hyper-parameters"), ("ae", "its defaults")]:
        assert run.main(["--models", model, "--preset", "smoke", "--out", str(tmp_path / model)]) == 2
        assert capsys.readouterr().out.strip() == f"error: {model} could not be built ({given}): RuntimeError: oops in __init__"


@pytest.mark.parametrize(("models", "message"), [
    ("ae,,vae", "--models 'ae,,vae' has an empty entry; separate the items with single commas, e.g. ae,ddpm"),
    ("ae,vea", "unknown model 'vea'; available: aae, ae,"),
    ("ddim@x", "bad model variant 'ddim@x'"),
    ("", "--models '' has an empty entry"),  # not the whole zoo
])
def test_the_gpu_benchmark_reads_its_model_list_as_the_runner_does(models, message, capsys):
    from benchmarks import gpu_bench
    with pytest.raises(SystemExit) as stop:
        gpu_bench.parse_args(["out", "--models", models])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert gpu_bench.parse_args(["out", "--models", " ae, ddim@10"]).names == ["ae", "ddim@10"]
    assert gpu_bench.parse_args(["out"]).names == MODELS


@pytest.mark.parametrize(("argv", "message"), [
    # unranged before: each went on to the benchmark itself (on a GPU; nothing here shows what it did there)
    (["--batch", "0"], "--batch must be a whole number >= 1, got 0"),
    (["--sample-batch", "-1"], "--sample-batch must be a whole number >= 1, got -1"),
    (["--time-per-run", "0"], "--time-per-run must be a number of seconds > 0, got 0.0"),
    (["--seconds", "nan"], "--seconds must be a number of seconds > 0, got nan"),
    (["--seconds", "inf"], "--seconds must be a number of seconds > 0, got inf"),
])
def test_the_gpu_benchmark_ranges_its_numbers_before_it_looks_for_cuda(argv, message, capsys):
    from benchmarks import gpu_bench
    with pytest.raises(SystemExit) as stop:
        gpu_bench.parse_args(["out", *argv])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
