"""One ruler: the feature net for mnist5k ships with the package, matched to the data by hash;
`--feature-net PATH` uses a given one; the space's name carries the image size and the net's hash."""
import dataclasses
import json
import shutil

import pytest
from safetensors.torch import save_file

import zoo.data
from zoo.base import GenzooError
from zoo.metrics import features


def test_mnist5k_is_measured_with_the_shipped_net_whose_hash_is_recorded(splits):
    space = features.classifier_space(splits)
    meta = json.loads((features.SHIPPED / "classifier-mnist5k.json").read_text())
    assert space.info["source"] == "shipped" and space.info["sha256"] == meta["sha256"]
    assert space.weights_path == str(features.SHIPPED / "classifier-mnist5k.safetensors")
    assert space.name == f"classifier:mnist5k@28px#{meta['sha256'][:8]}"
    assert meta["data_hash"] == splits.content_hash and meta["test_accuracy"] > 0.95


def test_a_damaged_shipped_net_is_one_line(splits, tmp_path, monkeypatch):
    shutil.copytree(features.SHIPPED, tmp_path / "nets")
    weights = tmp_path / "nets" / "classifier-mnist5k.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0" * 10)
    monkeypatch.setattr(features, "SHIPPED", tmp_path / "nets")
    with pytest.raises(GenzooError, match="missing or damaged"):
        features.classifier_space(splits)


def test_a_given_net_is_used_and_named_by_its_hash(splits, tmp_path):
    for f in features.SHIPPED.iterdir():
        shutil.copy(f, tmp_path / f.name.replace("classifier-mnist5k", "lab"))
    space = features.classifier_space(splits, net_path=tmp_path / "lab.safetensors")
    assert space.info["source"] == "file" and space.info["file"] == str(tmp_path / "lab.safetensors")
    assert space.name == features.classifier_space(splits).name  # the same bytes: the same ruler


@pytest.mark.parametrize("problem, message", [
    ("missing", "expected a .safetensors file"),
    ("no-json", "expected a .safetensors file"),
    ("other-size", "was made for 1-channel 32-pixel images"),
    ("empty-weights", "its weights do not load into the feature net net.json describes"),
    ("other-classes", "size mismatch for head.weight"),  # a net of 5 classes, its .json claiming 10
    ("no-task", "net.json is not a feature net's description (task missing"),
    ("size-as-text", "net.json gives image_size '28'; it is an integer or absent"),
    ("accuracy-as-text", "net.json gives test_accuracy 'high'; each is a number or absent"),  # was a traceback in the header
])
def test_a_net_that_does_not_fit_is_refused_in_one_line(splits, tmp_path, problem, message):
    path = tmp_path / "net.safetensors"
    if problem != "missing":
        shutil.copy(features.SHIPPED / "classifier-mnist5k.safetensors", path)
    if problem not in ("missing", "no-json"):
        meta = json.loads((features.SHIPPED / "classifier-mnist5k.json").read_text())
        if problem == "other-size":
            meta["image_size"] = 32
        if problem == "no-task":
            del meta["task"]
        if problem == "size-as-text":
            meta["image_size"] = "28"
        if problem == "accuracy-as-text":
            meta["test_accuracy"] = "high"
        path.with_suffix(".json").write_text(json.dumps(meta))
    if problem == "empty-weights":
        path.write_bytes(b"")
    if problem == "other-classes":
        save_file(features.FeatureNet(1, 5).state_dict(), path)
    with pytest.raises(GenzooError, match="--feature-net") as e:
        features.classifier_space(splits, net_path=path)
    assert "\n" not in str(e.value) and message in str(e.value)


def test_a_labels_net_of_other_classes_is_refused_for_labeled_data(splits):
    # the shipped net's 10 digits on a 3-class folder: the data row's mode coverage was a traceback
    # (bincount of predicted classes past the data's 3)
    three = dataclasses.replace(splits, spec=dataclasses.replace(splits.spec, num_classes=3),
                                y_train=splits.y_train % 3, y_test=splits.y_test % 3)
    net = features.SHIPPED / "classifier-mnist5k.safetensors"
    with pytest.raises(GenzooError, match="--feature-net .* classifies 10 classes \\(mnist5k's\\); mnist5k has 3") as e:
        features.classifier_space(three, net_path=net)
    assert "\n" not in str(e.value)
    unlabeled = dataclasses.replace(splits, spec=dataclasses.replace(splits.spec, num_classes=None), y_train=None, y_test=None)
    assert features.classifier_space(unlabeled, net_path=net).info["source"] == "file"  # its features measure any grey 28 px


def test_a_labels_net_of_as_many_but_other_classes_is_refused(splits, tmp_path):
    """A net's .json names the classes it was trained on: ten letters are not the ten digits (found by a
    probe: the count matched, so its class k was read as the data's). A .json without names (the shipped
    ruler's, and any written before they were) is checked on the count alone."""
    letters = dataclasses.replace(splits, name="folder:letters", classes=tuple("abcdefghij"))
    net, meta = features.make_feature_net(dataclasses.replace(letters, x_train=letters.x_train[:64],
                                                              y_train=letters.y_train[:64]))
    assert meta["classes"] == list("abcdefghij")
    path = tmp_path / "letters.safetensors"
    save_file(net.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(GenzooError) as e:
        features.classifier_space(splits, net_path=path)
    assert str(e.value) == (f"--feature-net {path} classifies folder:letters's 10 classes (a, b, c, d, e, ...); mnist5k "
                            "has 10 classes (0, 1, 2, 3, 4, ...), which the recognisable share, modes and label accuracy "
                            "read through its classes; give a net trained on these classes, or --labels none")
    assert features.classifier_space(letters, net_path=path).info["source"] == "file"  # its own classes
    del meta["classes"]  # a .json that names none: the count is all there is to check
    path.with_suffix(".json").write_text(json.dumps(meta))
    assert features.classifier_space(splits, net_path=path).info["source"] == "file"


@pytest.mark.parametrize("given", ["", ".", "/"])
def test_a_net_path_without_a_file_name_is_refused_in_one_line(splits, given):
    # `--feature-net ''`, `.` or `/`: was a ValueError traceback from pathlib (PosixPath('.') has an empty name)
    with pytest.raises(GenzooError, match="--feature-net .*: expected a .safetensors file") as e:
        features.classifier_space(splits, net_path=given)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("given, message", [
    ("folder", "is not a file; give the file https://"),  # was "does not exist"
    ("text", "does not load as Inception-v3's weights ("),  # was "offline, fetch ... and pass it with --inception-weights"
])
def test_inception_weights_that_are_not_are_named_in_one_line(tmp_path, given, message):
    path = tmp_path / "weights"
    path.mkdir() if given == "folder" else path.write_text("not weights")
    with pytest.raises(GenzooError, match="--inception-weights") as e:
        features.inception_space(str(path))
    assert "\n" not in str(e.value) and message in str(e.value)


def test_a_net_trained_here_takes_eight_epochs_and_at_least_500_steps(monkeypatch):
    # docs/experiments/2026-12-06-feature-net-steps.md: 8 epochs of 120 labeled digits left the net at chance
    monkeypatch.undo()  # the real floor, not conftest's brief one
    assert features.training_epochs(120) == 500 and features.training_epochs(400) == 125  # 1 and 4 steps an epoch
    assert features.training_epochs(128 * 63) == 8 and features.training_epochs(60000) == 8  # 8 epochs make 500 already
    assert features.training_epochs(128 * 62) == 9


def test_a_net_made_here_records_the_floor_it_was_trained_with(monkeypatch):
    monkeypatch.undo()  # the real floor
    seen, train = [], features.train_feature_net

    def brief(x, y, **kw):  # what make_feature_net asks for, on a net trained one epoch
        seen.append(kw["epochs"])
        return train(x, y, **{**kw, "epochs": 1})

    monkeypatch.setattr(features, "train_feature_net", brief)
    small = zoo.data.load_splits("mnist5k")
    small = dataclasses.replace(small, x_train=small.x_train[:120], y_train=small.y_train[:120])
    _, meta = features.make_feature_net(small)
    assert seen == [500] and (meta["epochs"], meta["steps"]) == (500, 500)  # one step an epoch


def test_the_shipped_ruler_is_not_replaced(tmp_path):
    (tmp_path / "classifier-mnist5k.safetensors").write_bytes(b"the ruler")
    with pytest.raises(GenzooError, match="ships already and is the ruler of every number measured with it"):
        features.ship("mnist5k", out=tmp_path)
    assert (tmp_path / "classifier-mnist5k.safetensors").read_bytes() == b"the ruler"
