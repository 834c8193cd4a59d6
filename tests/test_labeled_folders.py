"""Folders of images in class subfolders are read with their labels; flat and deeper folders stay
unlabeled; a mixed folder is refused; `--labels none` reads a labeled folder unlabeled."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import run
from zoo import data
from zoo.base import DataSpec, GenzooError
from zoo.batches import Batches
from zoo.parallel import Processes


def write(path, value: int, size: int = 12, rgb: bool = False) -> None:
    """A small image of one class: a bright square on a dark ground, its place and level from `value`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size), 20, np.uint8)
    k = value % 3
    img[2 + k:6 + k, 2 + 2 * k:6 + 2 * k] = 120 + 40 * k
    img = img + np.random.default_rng(value).integers(0, 12, img.shape).astype(np.uint8)
    Image.fromarray(np.stack([img] * 3, -1) if rgb else img).save(path)


def labeled(root, classes=("b-circle", "a-square", "c-bar"), per_class=10):
    """root/<class>/<i>.png: `per_class` images in each class folder."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            write(root / name / f"{i:02d}.png", value=3 * i + c)
    return root


def test_a_folder_of_class_subfolders_is_labeled_by_sorted_name(tmp_path):
    root = labeled(tmp_path / "set")
    splits = data.load_splits(f"folder:{root}", image_size=8)
    assert splits.classes == ("a-square", "b-circle", "c-bar")  # sorted, whatever order they were made in
    assert splits.spec == DataSpec(1, 8, 8, 3)
    assert splits.y_train is not None and splits.y_test is not None
    assert len(splits.y_train) == 27 and len(splits.y_test) == 3  # every 10th of the 30, sorted by path: as unlabeled
    # each image's label is its folder's index: the folders are read in sorted order, ten each
    every = torch.arange(30) // 10
    test = torch.arange(30) % 10 == 9
    assert torch.equal(splits.y_train, every[~test]) and torch.equal(splits.y_test, every[test])
    assert data.folder_layout(root, "auto")[1] == ["a-square", "b-circle", "c-bar"]
    _, x, y = data.load(f"folder:{root}", image_size=8)
    assert torch.equal(y, splits.y_train) and torch.equal(x, splits.x_train)


def test_the_streamed_folder_yields_the_labels_of_the_in_memory_path(tmp_path):
    root = labeled(tmp_path / "set")
    _, x8, y = data.load(f"folder:{root}", image_size=8, uint8=True)
    stream = data.ImageFolder(root, size=8)
    assert stream.classes == ["a-square", "b-circle", "c-bar"] and stream.spec.num_classes == 3
    items = [stream[i] for i in range(len(stream))]
    assert torch.equal(torch.stack([x for x, _ in items]), x8)
    assert [label for _, label in items] == y.tolist()
    cpu = torch.device("cpu")
    in_memory, streamed = Batches(x8, y, 8, 3, Processes(), cpu), Batches(stream, None, 8, 3, Processes(), cpu)
    for step in range(4):  # the training loop's batches: the same images and labels either way
        (xa, ya), (xb, yb) = in_memory(step), streamed(step)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    unlabeled = data.ImageFolder(root, size=8, labels="none")
    assert unlabeled.classes is None and {unlabeled[i][1] for i in range(3)} == {-1}


def test_labels_none_reads_a_labeled_folder_unlabeled_with_another_hash(tmp_path):
    root = labeled(tmp_path / "set")
    with_labels = data.load_splits(f"folder:{root}", image_size=8)
    without = data.load_splits(f"folder:{root}", image_size=8, labels="none")
    assert without.y_train is None and without.y_test is None and without.spec.num_classes is None
    assert without.classes is None
    assert torch.equal(without.x_train, with_labels.x_train)  # the same images
    assert without.content_hash != with_labels.content_hash  # the labels are part of the data
    with pytest.raises(GenzooError, match="unknown labels setting 'some'; accepted: auto, none"):
        data.load(f"folder:{root}", labels="some")


def test_relabeling_a_folder_changes_its_hash(tmp_path):
    """The same images moved between class folders are other data: no stale feature net or training."""
    a, b = tmp_path / "a", tmp_path / "b"
    labeled(a, classes=("x", "y"))
    labeled(b, classes=("x", "y"))
    (b / "x" / "00.png").rename(b / "y" / "00b.png")  # one image to the other class
    ha = data.load_splits(f"folder:{a}", image_size=8).content_hash
    hb = data.load_splits(f"folder:{b}", image_size=8).content_hash
    assert ha != hb
    (a / "x").rename(a / "renamed")  # the same classes in the same order, another name: the same data
    assert data.load_splits(f"folder:{a}", image_size=8).content_hash == ha


def test_flat_deep_and_one_class_folders_stay_unlabeled(tmp_path):
    for i in range(10):
        write(tmp_path / "flat" / f"{i}.png", i)
        write(tmp_path / "deep" / ("a" if i % 2 else "b") / "inner" / f"{i}.png", i)  # two levels down
        write(tmp_path / "one" / "only" / f"{i}.png", i)  # a single class folder is not a labeling
        write(tmp_path / "uneven" / ("a" if i % 2 else "b") / ("sub/" if i == 3 else "") / f"{i}.png", i)
    for name in ("flat", "deep", "one", "uneven"):
        splits = data.load_splits(f"folder:{tmp_path / name}", image_size=8)
        assert splits.y_train is None and splits.spec.num_classes is None and splits.classes is None, name
        assert len(splits.x_train) == 9 and len(splits.x_test) == 1, name
    # and a skipped conditional model says why (it said "this dataset has no labels", found by a probe)
    assert data.why_unlabeled(f"folder:{tmp_path / 'flat'}").endswith("its images sit in it, not in class subfolders")
    assert data.why_unlabeled(f"folder:{tmp_path / 'deep'}").endswith(
        f"{Path('a', 'inner', '1.png')} sits deeper than one class folder (labeled: every image exactly one level down)")
    assert data.why_unlabeled(f"folder:{tmp_path / 'one'}").endswith("it has one class folder (only), and labels need two")
    assert data.why_unlabeled(f"folder:{tmp_path / 'uneven'}").endswith(f"{Path('a', 'sub', '3.png')} sits deeper than one class folder "
                                                                        "(labeled: every image exactly one level down)")
    assert data.why_unlabeled("celeba") == "this dataset has no labels"  # read without its attributes


def test_a_mixed_folder_is_refused_in_one_line_unless_labels_none(tmp_path):
    root = labeled(tmp_path / "set")
    write(root / "stray.png", 0)
    with pytest.raises(GenzooError) as e:
        data.load(f"folder:{root}")
    line = str(e.value)
    assert "\n" not in line
    assert "mixes images at its top level (1, e.g. stray.png) with images in subfolders (30" in line
    assert "every image in a class subfolder" in line and "--labels none" in line
    with pytest.raises(GenzooError, match="mixes images"):
        data.ImageFolder(root, size=8)
    _, x, y = data.load(f"folder:{root}", image_size=8, labels="none")  # read as today: every image, unlabeled
    assert y is None and len(x) == 28


def test_the_runner_refuses_a_mixed_folder_in_one_line(tmp_path, capsys):
    root = labeled(tmp_path / "set")
    write(root / "stray.png", 0)
    code = run.main(["--dataset", f"folder:{root}", "--models", "ae", "--preset", "smoke", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().out.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: image folder") and "mixes images" in err[-1]
    assert not (tmp_path / "r").exists()
    with pytest.raises(GenzooError, match="invalid choice: 'maybe'"):
        run.parse_args(["--labels", "maybe"])


def test_a_labeled_folder_runs_a_conditional_model_in_the_classifier_space(tmp_path, capsys):
    root = labeled(tmp_path / "set", classes=("a", "b"), per_class=20)
    out = tmp_path / "run"
    code = run.main(["--dataset", f"folder:{root}", "--image-size", "16", "--models", "cgan", "--preset", "smoke",
                     "--threads", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().out
    # 4 test images against smoke's 200 samples: the data row is scored on fewer, and the run says so
    assert "note: the test split holds 4 images, fewer than the 200 samples a model is scored with" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    space = results["run"]["feature_space"]
    assert space["task"] == "labels" and space["num_classes"] == 2  # the classifier space, trained on the labels
    cgan = next(m for m in results["models"] if m["model"] == "cgan")
    assert cgan["status"] == "ok" and cgan["label_accuracy"] is not None and cgan["modes"] is not None
    # --labels none: the same folder, unlabeled: cgan is skipped (beside ae; alone it is refused), the net learns rotations
    code = run.main(["--dataset", f"folder:{root}", "--image-size", "16", "--models", "cgan,ae", "--preset", "smoke",
                     "--budget", "2steps", "--threads", "1", "--labels", "none", "--out", str(tmp_path / "unlabeled")])
    assert code == 0
    results = json.loads((tmp_path / "unlabeled" / "results.json").read_text())
    assert results["run"]["feature_space"]["task"] == "rotations"
    assert next(m for m in results["models"] if m["model"] == "cgan")["status"] == "skipped"


def test_an_empty_class_folder_is_no_class_and_a_note_says_so(tmp_path):
    """Found by a probe: an empty class folder `bird` was left out without a word, so circle was class 0,
    not 1 as the sorted folder names (torchvision's ImageFolder refuses it) would have it."""
    root = labeled(tmp_path / "set", classes=("circle", "square"))
    (root / "bird").mkdir()
    (root / ".hidden").mkdir()
    splits = data.load_splits(f"folder:{root}", image_size=8)
    assert splits.classes == ("circle", "square")
    assert data.empty_classes_note(root, splits.classes) == \
        "note: subfolders without images are no class: bird; the classes, 0 to 1: circle, square"
    (root / "bird").rmdir()
    assert data.empty_classes_note(root, splits.classes) is None and data.empty_classes_note(root, None) is None


def test_a_class_whose_only_image_is_held_out_is_named_in_a_note(tmp_path):
    """Found by a probe: class b's one image, 10th by path, went to the test split; cgan was asked for b
    (a third of its label accuracy) though neither it nor the feature net had seen one, without a word."""
    root = labeled(tmp_path / "set", classes=("a",), per_class=9)
    write(root / "b" / "00.png", 1)
    labeled(root, classes=("c",), per_class=30)
    splits = data.load_splits(f"folder:{root}", image_size=8)
    assert splits.classes == ("a", "b", "c") and splits.y_test[0] == 1 and 1 not in splits.y_train
    assert data.untrained_classes_note(splits) == (
        "note: classes with no training image (every image of theirs is held out for test): b; conditional models "
        "are asked for them all the same (label accuracy); give them more images")
    write(root / "b" / "01.png", 2)  # now b's first image trains
    assert data.untrained_classes_note(data.load_splits(f"folder:{root}", image_size=8)) is None


def test_a_linked_class_folder_counts_and_hidden_or_macos_folders_do_not(tmp_path):
    """Found by a probe: a class folder that is a symbolic link was left out without a word (two
    classes left: the folder read as unlabeled), and a hidden folder became a class."""
    root = labeled(tmp_path / "set", classes=("a", "b"))
    labeled(tmp_path / "elsewhere", classes=("c",))
    (root / "c").symlink_to(tmp_path / "elsewhere" / "c", target_is_directory=True)
    (root / "c" / "loop").symlink_to(root, target_is_directory=True)  # a link back up: read once, not forever
    write(root / ".ipynb_checkpoints" / "00.png", 1)
    write(root / "__MACOSX" / "a" / "00.png", 1)
    (root / "a" / "._00.png").write_bytes(b"AppleDouble, not a PNG")
    files, classes = data.folder_layout(root)
    assert classes == ["a", "b", "c"] and len(files) == 30
    (root / "d").symlink_to(root / "a", target_is_directory=True)  # a second path to a: read twice, or a class lost
    with pytest.raises(GenzooError) as e:
        data.folder_layout(root)
    assert str(e.value) == f"{root / 'a'} and {root / 'd'} are one folder (through a link): its images would be read twice; " \
        "remove one of them"


def test_a_link_to_an_image_that_is_gone_is_one_line(tmp_path):
    """Found by a probe: an image that is a dangling symbolic link was left out without a word."""
    root = labeled(tmp_path / "set", classes=("a", "b"))
    (root / "a" / "99.png").symlink_to(tmp_path / "moved" / "99.png")
    with pytest.raises(GenzooError) as e:
        data.folder_layout(root)
    assert str(e.value) == (f"{root / 'a' / '99.png'} is a link to {tmp_path / 'moved' / '99.png'}, which does not exist; "
                            f"fix the link, or move it out of {root}")


def test_a_class_folder_that_cannot_be_read_is_one_line(tmp_path, monkeypatch):
    import os

    root = labeled(tmp_path / "set", classes=("a", "b", "c"))
    scandir = os.scandir

    def refusing(path="."):
        if str(path).endswith("b"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)  # chmod 000 does not stop root, so the refusal is simulated
    with pytest.raises(GenzooError) as e:
        data.folder_layout(root)
    assert str(e.value) == f"cannot read {root / 'b'}: Permission denied; make it readable, or move it out of {root}"
