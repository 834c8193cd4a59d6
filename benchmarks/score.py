"""Score images made elsewhere in genzoo's feature space, next to the zoo.

    python -m benchmarks.score samples/                     # a folder of images, against mnist5k (quick)
    python -m benchmarks.score samples.npz --dataset cifar10 --preset full
    python -m benchmarks.score samples.pt --into results/mnist5k-quick --name my-gan

SAMPLES is a folder of images (read recursively, sorted by path), an `.npz` (its array `images`,
else `arr_0`, else its first), an `.npy`, or a `.pt`/`.pth` file holding a tensor (or a dict with
one under `images`), read with `torch.load(weights_only=True)`: a pickled object is refused.

They are scored against `--dataset` with the evaluation settings of `--preset`, in the same feature
space and by the same rules as a run's rows (`benchmarks.evaluate.score_samples`): the preset's
sample count, a seeded random subset where more are given (the subset the data row draws from the
test split, so the test split written out in its order scores exactly as the data row). With
`--into RUN` the result becomes a row of that run folder's tables and comparison figure (and the
dataset, preset and feature space default to the run's); without it the table is printed, with the
data row beside it.

What is accepted, and what is refused in one line:
- layout (N,H,W), (N,C,H,W) or (N,H,W,C) with C 1 or 3, at the dataset's image size exactly (no
  resampling: resizing changes the scores);
- values: uint8 0..255, other integers within 0..255, or floats in [0,1] (up to 1e-4 outside is
  clipped); anything else (a [-1,1] range, 0..255 as floats, integers 0/1, NaN) is refused, saying what it saw;
- channels: three equal channels are read as grey for a grey dataset (other colour is refused); a
  grey image for a colour dataset is repeated into three channels (a note says so);
- too few samples for a metric: that metric is left empty and the reason printed (FID and KID need
  2, precision and recall 4, density and coverage 6); fewer than the preset's count are all scored,
  with a note that FID and KID then read higher than rows of the full count.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import re
import shlex
import signal
import sys
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.markup import escape
from rich.table import Table
from torch import Tensor

import zoo
from benchmarks import evaluate, report
from benchmarks.cli import Parser, set_threads
from benchmarks.presets import PRESETS
from benchmarks.records import COLUMNS, DATA_ROW, MAX_NAME, SCORED, Record, RunFolder, aggregate
from zoo import data as zdata
from zoo.base import DataSpec, GenzooError, one_line
from zoo.files import SafeConsole
from zoo.metrics import coverage, density, features, fidelity
from zoo.registry import split_variant
from zoo.train import Interrupted

console = SafeConsole(width=None if sys.stdout.isatty() else 200)
ARRAY_SUFFIXES = (".npz", ".npy", ".pt", ".pth")
NUMPY_MAGIC = (b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")  # how an .npy, an .npz, and an empty .npz begin
FLOAT_SLACK = 1e-4  # floats this far outside [0,1] are clipped (rounding in a conversion); further is refused
ACCEPTED = ("give an .npz/.npy/.pt of images, uint8 0..255 or floats in [0,1], shaped (N,H,W), (N,C,H,W) or (N,H,W,C), "
            "or a folder of images")
# The fewest samples each metric needs, and why: below it the metric is left empty.
MINIMUM = {
    "fid": (2, "FID needs 2 samples for a covariance"),
    "kid": (2, "KID needs 2 samples"),
    "precision": (fidelity.MIN_IMAGES, f"precision and recall need {fidelity.MIN_IMAGES} samples "
                                       f"(k = {fidelity.PRC_NEIGHBOURS} neighbours besides itself)"),
    "density": (density.MIN_IMAGES, f"density and coverage need {density.MIN_IMAGES} samples "
                                        f"(k = {density.NEIGHBOURS} neighbours besides itself, among as many real images)"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m benchmarks.score", description=(__doc__ or "").split("\n\n")[0])
    p.add_path("samples", help="a folder of images, an .npz or .npy file, or a .pt tensor")
    p.add_argument("--dataset", help=f"what to score against: one of {', '.join(zdata.NAMES)} "
                                     "(default: the run's with --into, else mnist5k)")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="whose evaluation settings (sample count) to use (default: the run's with --into, else quick)")
    p.add_argument("--image-size", type=int, help="the dataset's image size, as the run's --image-size")
    p.add_argument("--labels", choices=zdata.LABELS, help="as the run's --labels (default: auto)")
    p.add_path("--data-root", help="a folder where torchvision datasets live (default: data)")
    p.add_argument("--feature-space", choices=features.FEATURE_SPACES, help="as the run's (default: classifier)")
    p.add_path("--inception-weights", help="a local Inception-v3 weights file for --feature-space inception")
    p.add_path("--feature-net", help="a feature net file (.safetensors with its .json), as the run's --feature-net")
    p.add_path("--into", metavar="RUN", help="a run folder written by benchmarks.run: the scores become a row of its tables and figures")
    p.add_argument("--name", help="the row's name with --into, e.g. my-gan")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    return p.parse_args(argv)


# -- reading the samples -------------------------------------------------------------------------

def read_samples(path: Path, spec: DataSpec, dataset: str = "the dataset") -> Tensor:
    """SAMPLES -> (N,C,H,W) in the dataset's shape: uint8, or float32 in [0,1]. Refused in one line
    where the layout, size, channels or values do not fit (see the module's doc)."""
    if not path.exists():
        raise GenzooError(f"samples {path} do not exist; give a folder of images, an .npz/.npy file or a .pt tensor")
    if path.is_dir():
        x = _read_folder(path, spec, dataset)
    elif path.suffix.lower() in ARRAY_SUFFIXES:
        x = _layout(_read_array(path), spec, path, dataset)
    else:
        raise GenzooError(f"samples {path}: a {path.suffix or 'suffix-less'} file; give a folder of images, "
                          f"or a file ending in {', '.join(ARRAY_SUFFIXES)}")
    return _channels(_values(x, path), spec, path, dataset)


def _read_folder(root: Path, spec: DataSpec, dataset: str) -> Tensor:
    """Every image under `root`, sorted by path, as stored (no resizing): uint8 (N,C,H,W)."""
    files = zdata.image_files(root)
    if not files:
        raise GenzooError(f"samples folder {root} has no images ({', '.join(sorted(zdata.IMAGE_EXTS))})")
    for f in files:  # headers first: a wrong size is refused before anything is decoded
        with zdata.open_image(f) as img:
            w, h = img.size
        if (h, w) != (spec.height, spec.width):
            raise GenzooError(f"sample {f} is {w}x{h}; {dataset}'s images are {spec.width}x{spec.height} "
                              "(samples are not resized: resampling changes the scores; resize them to the dataset's size)")
    for note in [*zdata.folder_headers(files).notes(), zdata.left_out_note(root)]:  # as the runner says of a dataset folder
        if note:
            console.print(note, highlight=False, soft_wrap=True)
    mode = zdata.folder_mode(files)
    # square images, as every dataset's: an EXIF orientation that turns one a quarter keeps its size
    return torch.stack([zdata.read_image(f, mode, None) for f in files])


def _read_array(path: Path) -> Tensor:
    """The array of an .npz/.npy (no pickles) or the tensor of a .pt (weights_only)."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        try:
            with warnings.catch_warnings():  # torch warns of a pickle protocol it then refuses: the refusal is the line
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a pickled object weights_only refuses, a damaged file, or no torch file at all
            reason = one_line(e)
            if isinstance(e, pickle.UnpicklingError) and "global" in str(e).lower():  # a class, a function, a call
                reason = "it holds pickled objects that torch.load(weights_only=True) does not load"
            elif not zipfile.is_zipfile(path):  # torch.save writes a zip; its failures on other bytes say nothing useful
                reason = "it is not a file written by torch.save"
            raise GenzooError(f"samples {path} cannot be read as a tensor ({reason}); save one with "
                              f"torch.save(images, path), or {ACCEPTED}") from None
        if isinstance(obj, dict) and "images" in obj:
            obj = obj["images"]
            if not isinstance(obj, Tensor):
                raise GenzooError(f"samples {path} holds a dict whose 'images' is a {type(obj).__name__}, not a tensor; "
                                  "save one with torch.save(images, path)")
        if not isinstance(obj, Tensor):
            raise GenzooError(f"samples {path} holds a {type(obj).__name__}, not a tensor (or a dict with one "
                              "under 'images'); save one with torch.save(images, path)")
        odd = ("quantized" if obj.is_quantized else "nested" if obj.is_nested else "meta (data-less)" if obj.is_meta
               else str(obj.layout).removeprefix("torch.") if obj.layout != torch.strided else None)
        if odd:  # torch's other kinds of tensor lack the operations read here
            raise GenzooError(f"samples {path} hold a {odd} tensor, not a dense tensor of numbers (save a sparse one's "
                              f"x.to_dense(), a quantized one's x.dequantize()); {ACCEPTED}")
        return obj.detach().cpu()
    try:
        with path.open("rb") as f:  # np.load reads anything else as a pickle and says it holds objects
            if not f.read(6).startswith(NUMPY_MAGIC):
                raise GenzooError(f"samples {path} is not a NumPy file (as np.save or np.savez write); {ACCEPTED}")
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = [k for k in loaded.files if f"{k}.npy" in loaded]  # .npy members: np.load hands others over as bytes
                if not keys:
                    raise GenzooError(f"samples {path} holds no arrays (no .npy inside, as np.savez writes); {ACCEPTED}")
                named = [k for k in ("images", "arr_0") if k in keys]
                key: str = named[0] if named else next(  # else the first array of images' shape (not the labels)
                    (k for k in keys if isinstance(a := loaded[k], np.ndarray) and a.ndim >= 3), keys[0])
                if len(keys) > 1:  # the others are not scored: say which one is
                    console.print(f"note: {path} holds {len(keys)} arrays; scored: {key} (left out: "
                                  f"{', '.join(k for k in keys if k != key)})", highlight=False, soft_wrap=True)
                array = loaded[key]
            if not isinstance(array, np.ndarray):  # a member that does not begin as an .npy: np.load hands its bytes over
                raise GenzooError(f"samples {path}: its {key}.npy is not a NumPy array (it is damaged); {ACCEPTED}")
        else:
            array = loaded
    except GenzooError:
        raise
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, ValueError) and "allow_pickle" in str(e):  # an object array: numpy would unpickle it
            raise GenzooError(f"samples {path} holds Python objects, not numbers ({one_line(e)}); "
                              "save a numeric array with np.savez(path, images=...)") from None
        raise GenzooError(f"samples {path} is truncated or damaged ({one_line(e)}); write it again with "
                          "np.save or np.savez") from None
    except OSError as e:
        raise GenzooError(f"samples {path} cannot be read ({one_line(e)})") from None
    if array.dtype.kind not in "biuf":
        raise GenzooError(f"samples {path} holds {array.dtype} values; expected uint8 0..255 or floats in [0,1]")
    if array.dtype.kind == "f" and array.dtype.itemsize > 8:  # np.longdouble: torch has no such type; float64 is ample for pixels
        array = array.astype(np.float64)
    array = array.astype(array.dtype.newbyteorder("="), copy=False)  # a big-endian file: torch takes the native order only
    return torch.from_numpy(np.ascontiguousarray(array)).reshape(array.shape)  # ascontiguousarray makes a 0-d array 1-d


def _layout(x: Tensor, spec: DataSpec, path: Path, dataset: str) -> Tensor:
    """(N,H,W), (N,C,H,W) or (N,H,W,C) -> (N,C,H,W), the image size matched against the dataset's."""
    size = (spec.height, spec.width)
    expected = (f"expected (N,H,W), (N,C,H,W) or (N,H,W,C) with C 1 or 3 and HxW {spec.height}x{spec.width} "
                f"({dataset}'s images; samples are not resized)")
    shape = tuple(x.shape)
    if x.ndim == 0:
        raise GenzooError(f"samples {path} hold a single number, not images; {ACCEPTED}")
    if x.ndim == 3 and shape[1:] == size:
        return x.unsqueeze(1)
    if x.ndim == 4 and shape[2:] == size:
        return x
    if x.ndim == 4 and shape[1:3] == size:
        return x.permute(0, 3, 1, 2)
    raise GenzooError(f"samples {path} have shape {shape}; {expected}")


def _values(x: Tensor, path: Path) -> Tensor:
    """uint8 as it is; integers within 0..255 as uint8; floats within [0,1] (FLOAT_SLACK clipped) as float32."""
    if len(x) == 0:
        raise GenzooError(f"samples {path} hold no images")
    # the type in the words of what the user saved: torch's for a .pt, numpy's (no "torch.") for an array or images
    dtype = str(x.dtype) if path.is_file() and path.suffix.lower() in (".pt", ".pth") else str(x.dtype).removeprefix("torch.")
    if x.dtype == torch.bool or x.is_complex():
        raise GenzooError(f"samples {path} are {dtype}; expected uint8 0..255 or floats in [0,1]")
    if not x.is_floating_point():
        values = x.numpy()  # numpy's min and max: torch has none for uint16, uint32 and uint64
        least, most = int(values.min()), int(values.max())
        if least < 0 or most > 255:
            raise GenzooError(f"samples {path} are {dtype} from {least} to {most}; expected 0..255 (or floats in [0,1])")
        if (least, most) == (0, 1):  # 0/1 pixels: as 0..255 they are black, and would be scored so
            raise GenzooError(f"samples {path} are {dtype} from {least} to {most}; expected 0..255: for 0/1 pixels "
                              "multiply by 255, or store floats in [0,1]")
        return x.to(torch.uint8).contiguous()
    x = x.float()
    if not torch.isfinite(x).all():
        raise GenzooError(f"samples {path} hold NaN or infinite values; expected floats in [0,1]")
    low, high = float(x.min()), float(x.max())
    if low < -FLOAT_SLACK or high > 1 + FLOAT_SLACK:
        hint = ("; clip it to [0,1] if that is what it means" if low >= -0.1 and high <= 1.1
                else "; it looks like [-1,1]: map it with (x + 1) / 2" if low >= -1 - FLOAT_SLACK and high <= 1 + FLOAT_SLACK
                else "; it looks like 0..255: divide by 255 or store uint8" if low >= 0 and 16 <= high <= 255 else "")
        raise GenzooError(f"samples {path} are floats from {low:.4g} to {high:.4g}; expected [0,1]{hint}")
    return x.clamp_(0, 1).contiguous()


def _channels(x: Tensor, spec: DataSpec, path: Path, dataset: str) -> Tensor:
    """Three equal channels -> one for a grey dataset; one -> three (repeated) for a colour one."""
    c = x.shape[1]
    if c == spec.channels:
        return x
    if c == 3 and spec.channels == 1:
        if bool((x[:, 0] == x[:, 1]).all()) and bool((x[:, 1] == x[:, 2]).all()):
            return x[:, :1].contiguous()
        raise GenzooError(f"samples {path} are in colour (their three channels differ); {dataset}'s images are grey")
    if c == 1 and spec.channels == 3:
        console.print(f"note: {path} holds grey images; {dataset}'s are in colour: the grey channel is repeated into three",
                      highlight=False)
        return x.expand(-1, 3, -1, -1).contiguous()
    raise GenzooError(f"samples {path} have {c} channels; {dataset}'s images have {spec.channels} (1 or 3 are read)")


# -- scoring -------------------------------------------------------------------------------------

def score_tensor(images: Tensor, splits: zdata.Splits, space: features.FeatureSpace, settings: evaluate.EvalSettings,
                 *, cuda: bool = False) -> tuple[dict[str, Any], Tensor, list[str]]:
    """The metrics of images made elsewhere, the images scored, and why any metric is left empty.
    From 4 images on they are scored like a run's rows (`evaluate.score_samples`); fewer get what
    can be measured of so few (FID and KID from 2, the classifier's share and mode coverage)."""
    n = min(len(images), settings.samples)
    if n >= fidelity.MIN_IMAGES:
        metrics, scored = evaluate.score_samples(images, splits, space, settings, cuda=cuda)
    else:
        scored = zdata.to_float(images[:n])
        metrics = {"fid_samples": n, "feature_space": space.name}
        if n >= MINIMUM["fid"][0]:
            m = fidelity.calculate(scored, splits.x_train, space, reference_name=splits.content_hash, cuda=cuda,
                                   fid=True, kid=True, kid_subset_size=n, kid_subsets=fidelity.KID_SUBSETS)
            values = {"fid": m["frechet_inception_distance"], "kid": m["kernel_inception_distance_mean"],
                      "kid_std": m["kernel_inception_distance_std"]}
            metrics.update({k: float(v) if np.isfinite(v) else None for k, v in values.items()})
        if space.probabilities is not None and splits.y_train is not None and splits.spec.num_classes:
            probs = space.probabilities(scored)
            metrics["recognisable"] = coverage.recognisable(probs)
            metrics.update(coverage.mode_coverage(probs.argmax(1), splits.y_train, splits.spec.num_classes))
    reasons = [why for key, (least, why) in MINIMUM.items() if n < least and metrics.get(key) is None]
    if n < fidelity.MIN_IMAGES:
        reasons.append(f"the copy rate is measured with the other feature metrics, from {fidelity.MIN_IMAGES} samples")
    return metrics, scored, reasons


def quality_table(records: list[Record], title: str, caption: str) -> Table:
    """The run's table with only the columns some row fills (no training or sampling cost here)."""
    rows = aggregate(records)
    keep = [i for i, (name, *_) in enumerate(COLUMNS) if any(row.cells[name][0] is not None for row in rows)]
    table = Table(title=title, caption=caption)
    for h in [report.headers()[0], *(report.headers()[i + 1] for i in keep)]:
        table.add_column(h, justify="left" if h in ("model", "status") else "right")
    for row in rows:
        cells = report.cells(row)
        table.add_row(cells[0], *(cells[i + 1] for i in keep))
    return table


# -- the run folder ------------------------------------------------------------------------------

RUN_OPTIONS = ("dataset", "preset", "image_size", "labels", "data_root", "feature_space", "inception_weights", "feature_net")


def run_settings(run: dict[str, Any]) -> dict[str, Any]:
    """The data and evaluation options a run folder was made with, as its run info records them (a
    folder from before `data_options` was recorded used the defaults)."""
    space = run.get("feature_space", {})
    found = {"dataset": run.get("dataset"), "preset": run.get("preset"), **run.get("data_options", {}),
             "feature_space": space_kind(space.get("name", "")),
             "feature_net": space.get("file"), "inception_weights": _local_file(space.get("weights"))}
    return {k: v for k, v in found.items() if v is not None}


def space_kind(name: str) -> str:
    """--feature-space's value for a recorded feature space's name ("inception-v3", "classifier:...")."""
    return "inception" if str(name).startswith("inception") else "classifier"


def _local_file(path: Any) -> str | None:
    return path if isinstance(path, str) and Path(path).is_file() else None


def check_name(name: str | None, folder: RunFolder) -> str:
    """A row name for --into: at most MAX_NAME characters, free of path characters, not the data row or a
    model of the zoo, and not a trained model of this run (an earlier score under the name is replaced)."""
    if not name:
        raise GenzooError("--into needs --name NAME, the row's name in the run's tables (e.g. my-gan)")
    if len(name) > MAX_NAME:
        raise GenzooError(f"--name is {len(name)} characters long; at most {MAX_NAME} (it names the row's files)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*", name) or "--" in name:
        raise GenzooError(f"--name {name!r}: use letters, digits and _ . @ + - (a single -), starting with a letter or digit")
    # Names are compared without case: a row's files are NAME--seedS.json, and DATA--seed0.json is
    # data--seed0.json on the file systems of macOS and Windows.
    if name.casefold() == DATA_ROW:
        raise GenzooError(f"--name {name} is the data row's name; choose another")
    if (model := split_variant(name.casefold())[0]) in zoo.available():
        raise GenzooError(f"--name {name} is the name of a model of the zoo ({model}); name samples made elsewhere otherwise, "
                          f"e.g. {name}-external")
    trained = [r for r in folder.load_records().values()
               if r.model.casefold() == name.casefold() and not r.scored]
    if trained:
        raise GenzooError(f"{folder.path} already has a row {trained[0].model} that was trained there; choose another --name")
    return name


def _run_folder(path: str) -> tuple[RunFolder, dict[str, Any]]:
    folder = RunFolder(path)
    if not folder.path.is_dir():
        raise GenzooError(f"--into {path}: no such folder; give a run folder written by benchmarks.run")
    if not folder.results.is_file():
        raise GenzooError(f"--into {path}: no results.json there; give a run folder written by benchmarks.run")
    folder.check_subfolders("--into")
    run = folder.run_info()
    if not run.get("dataset"):
        raise GenzooError(f"--into {path}: its results.json holds no run (no dataset); give a run folder written by benchmarks.run")
    return folder, run


def check_run_options(folder: RunFolder, run: dict[str, Any], opts: dict[str, Any]) -> None:
    """Options that differ from the run's are refused before the data or a feature space is loaded
    (a download, maybe); the data's hash and the space's exact name are checked once they are."""
    if run.get("preset") not in (None, opts["preset"]):
        raise GenzooError(f"{folder.path} was evaluated with the {run['preset']} preset (its sample counts); "
                          f"--preset {opts['preset']} would score this row on others; leave --preset out or give {run['preset']}")
    if run.get("dataset") not in (None, opts["dataset"]) and not str(run["dataset"]).startswith("folder:"):
        # a folder may be named from elsewhere or by another path: the data's hash decides, once read
        raise GenzooError(f"{folder.path} was run on {run['dataset']}; --dataset {opts['dataset']} would score this row "
                          f"against other data; leave --dataset out or give {run['dataset']}")
    ran_in = run.get("feature_space", {}).get("name")
    if ran_in is not None and space_kind(ran_in) != opts["feature_space"]:
        raise GenzooError(f"{folder.path} was measured in the feature space {ran_in}; --feature-space {opts['feature_space']} "
                          f"would score this row in another; leave --feature-space out or give {space_kind(ran_in)}")


def _hash(images: Tensor) -> str:
    return hashlib.sha1(zdata.quantize(images).contiguous().numpy().tobytes()).hexdigest()[:12]


# -- the command ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    written: list[str] = []  # the files _main has written so far, for the line a Ctrl-C prints
    try:
        return _main(argv, written)
    except GenzooError as e:
        console.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line saying what is on disk, and 128 + SIGINT, as benchmarks.run
        done = (f"{', '.join(written)} written; the same command again scores and adds the row anew" if written
                else "nothing written in the run folder")
        console.print(f"[yellow]stopped (SIGINT): {escape(done)}[/]", highlight=False, soft_wrap=True)
        return Interrupted(signal.SIGINT).exit_code


def _main(argv: list[str], written: list[str]) -> int:
    from benchmarks.run import MAX_IMAGE_SIZE, save_grid
    from benchmarks.run import parse_args as run_options
    from zoo.train import resolve_device

    started = time.perf_counter()
    args = parse_args(argv)
    set_threads(args.threads)
    folder, run = _run_folder(args.into) if args.into is not None else (None, {})
    name = check_name(args.name, folder) if folder is not None else args.name
    if folder is None and args.name:
        raise GenzooError("--name names the row of --into RUN; without --into the scores are printed")
    defaults = {**vars(run_options([])), **run_settings(run)}  # the run's settings, else the runner's own defaults
    opts: dict[str, Any] = {k: getattr(args, k) if getattr(args, k) is not None else defaults.get(k) for k in RUN_OPTIONS}
    size = opts["image_size"]  # from --image-size, or as the run recorded it (which a hand edit may have changed)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 4 <= size <= MAX_IMAGE_SIZE):
        raise GenzooError(f"--image-size must be between 4 and {MAX_IMAGE_SIZE}, got {size!r}"
                          + ("" if args.image_size is not None else f" (from {folder.results if folder else 'the run'})"))
    if opts["preset"] not in PRESETS:
        raise GenzooError(f"{folder.results if folder else 'the run'} records the preset {opts['preset']!r}, which is not one "
                          f"of {', '.join(PRESETS)} (edited by hand?); give a run folder written by benchmarks.run")
    if folder is not None:
        check_run_options(folder, run, opts)
    features.check_space_files(opts["feature_space"], args.feature_net, args.inception_weights)
    features.check_cache()
    preset = PRESETS[opts["preset"]]
    device = resolve_device(args.device)
    path = Path(args.samples)
    if not path.exists():  # before the dataset is read
        raise GenzooError(f"samples {path} do not exist; give a folder of images, an .npz/.npy file or a .pt tensor")
    splits = zdata.load_splits(opts["dataset"], image_size=opts["image_size"], data_root=opts["data_root"], uint8=True,
                               min_test=fidelity.MIN_IMAGES, labels=opts["labels"])
    if folder is not None:
        folder.check_same_data(run, splits.content_hash, opts["dataset"], "its images, or how genzoo reads them, changed since "
                               "the run, or --dataset, --image-size or --labels differ from the run's")
    images = read_samples(path, splits.spec, opts["dataset"])
    if opts["feature_space"] == "classifier":
        space = features.classifier_space(splits, device=device, net_path=opts["feature_net"])
    else:
        space = features.inception_space(opts["inception_weights"])
    ran_in = run.get("feature_space", {}).get("name")
    if folder is not None and ran_in not in (None, space.name):
        raise GenzooError(f"{folder.path} was measured in the feature space {ran_in}; these samples would be scored in "
                          f"{space.name}; give the run's --feature-space or --feature-net")

    n = len(images)
    console.print(f"scoring {n} image{'s' if n != 1 else ''} from {path} against {opts['dataset']} {tuple(splits.x_train.shape)}, preset "
                  f"{preset.name} ({preset.eval.samples} samples), features {space.name}", highlight=False)
    if n > preset.eval.samples:
        console.print(f"note: {preset.eval.samples} of the {n} images are scored (a seeded random subset, as the data row "
                      "draws from the test split)", highlight=False)
    elif n < preset.eval.samples:
        console.print(f"note: {n} image{'s' if n != 1 else ''}, fewer than the preset's {preset.eval.samples}: FID and KID read higher with fewer "
                      "samples; compare them with rows of the same count", highlight=False)
    metrics, scored, reasons = score_tensor(images, splits, space, preset.eval, cuda=device.type == "cuda")
    for why in reasons:
        console.print(f"[yellow]left empty: {why}; {n} given[/]", highlight=False)

    if folder is None:
        data_metrics, _ = evaluate.score_data(splits, space, preset.eval)
        rows = [Record(DATA_ROW, 0, status="ok", **data_metrics), Record(path.name, 0, status="ok", **metrics)]
        about = {"reference": {"split": f"{opts['dataset']}:train", "images": len(splits.x_train)},
                 "budget": "none (samples made elsewhere)"}
        console.print(quality_table(rows, title=f"genzoo · {opts['dataset']} · {preset.name} · {path.name}",
                                    caption=report.footnote(about, rows)))
        return 0

    assert name is not None
    seed = (run.get("seeds") or [0])[0]
    eval_key = hashlib.sha1(json.dumps([_hash(scored), space.fingerprint, preset.name], sort_keys=True).encode()).hexdigest()[:12]
    record = Record(name, seed, status="ok", **metrics, eval_key=eval_key, events=[f"{SCORED}{path}"])
    same = lambda model: model.casefold() == name.casefold()  # noqa: E731 - one file for both where case is not told apart
    earlier = [r for r in folder.load_records().values() if same(r.model)]  # an earlier score under this name
    save_grid(scored, folder.samples(record))
    written.append(str(folder.samples(record)))
    folder.write_record(record)  # first: should writing fail, the earlier row is still there
    written.append(str(folder.records_dir / record.file_name))
    for old in earlier:
        for stale, new in ((folder.records_dir / old.file_name, folder.records_dir / record.file_name),
                           (folder.samples(old), folder.samples(record))):
            if stale.exists() and not stale.samefile(new):  # not the file just written (one file where case is not told apart)
                stale.unlink()
        console.print(f"note: replacing the earlier scores named {old.model} (seed {old.seed})", highlight=False)
    try:
        order = [m["model"] for m in json.loads(folder.results.read_text())["models"]]
    except (OSError, ValueError, KeyError, TypeError):
        order = []
    entry = {"command": " ".join(["python -m benchmarks.score", *map(shlex.quote, argv)]),
             "wall_seconds": round(time.perf_counter() - started, 1), "models": [name], "seeds": [seed]}
    folder.merge({"new_history": [entry]}, [*(m for m in order if not same(m)), name])
    written.append(str(folder.results))
    made = report.render(folder.path)
    run, records = folder.read()
    records = report.flag(records, warn=lambda line: None)
    console.print(report.rich_table(records, title=f"genzoo · {run.get('dataset', '?')} · {run.get('preset', '?')}",
                                    caption=report.footnote(run, records)))
    if len(seeds := run.get("seeds") or []) > 1:  # only its empty interval cells would say so otherwise
        console.print(f"note: {folder.path} ran {len(seeds)} seeds; {name} is one measurement (under seed {seed}), "
                      "not a mean over seeds: its cells have no ± interval", highlight=False)
    console.print(f"added {name} to {folder.path}: results.md, results.csv, results.json, "
                  + ", ".join(str(m.relative_to(folder.path)) for m in made), highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
