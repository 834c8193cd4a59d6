"""A training's folder: what a training produced (`TrainResult`), the key that names it, and
`Checkpoint`, the one place that decides whether a training is done, can be resumed, or starts over."""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import pickle
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from zoo.base import CONFIG_FILE, WEIGHTS_FILE, Generator, GenzooError
from zoo.budget import Budget
from zoo.files import atomic_write, flush_to_disk, set_aside, stale_temporaries, unwritable

SAVE_EVERY = 300.0  # seconds between resumable checkpoints; $GENZOO_SAVE_EVERY overrides it (0: after every step)


@dataclass
class TrainResult:
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    flops_per_step: float | None = None  # matmul/conv FLOPs of one train_step, forward and backward
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per step
    events: list[str] = field(default_factory=list)  # resumes and interruptions, in order
    # What hooks measured during training (quality-curve points), saved with it so a resume goes on from there.
    curve: list[dict[str, Any]] = field(default_factory=list)
    reused: bool = False

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def train_flops(self) -> float | None:
        return None if self.flops_per_step is None else self.flops_per_step * self.steps


def save_interval() -> float:
    """Seconds between resumable checkpoints: $GENZOO_SAVE_EVERY if set, else SAVE_EVERY."""
    text = os.environ.get("GENZOO_SAVE_EVERY")
    if text is None:
        return SAVE_EVERY
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:
        raise GenzooError(f"GENZOO_SAVE_EVERY must be seconds between checkpoints, >= 0 (0: after every step); got {text!r}")
    return seconds


def training_key(model: Generator, data_hash: str, budget: Budget, seed: int, processes: int = 1,
                 precision: str = "fp32") -> str:
    """Same key = same training: sampler variants (ddpm/ddim) of one model share it. The data enters
    by the hash of its content, never its path, so changed images never reuse an old training.
    A data-parallel training draws other noise than one process does, so its process count is part
    of the key (left out for one process, so that single-process keys stay as they were)."""
    what: dict[str, Any] = {
        "family": model.training_family(),
        "config": model.training_config(),
        "spec": asdict(model.spec),
        "data": data_hash,
        "budget": asdict(budget),
        "seed": seed,
    }
    if processes > 1:
        what["processes"] = processes
    if precision != "fp32":  # the same for mixed precision
        what["precision"] = precision
    digest = hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{what['family']}-{digest}"


def split_training_key(key: str) -> tuple[str, str]:
    """A training key's family and hash: "diffusion-0a1b2c3d4e" -> ("diffusion", "0a1b2c3d4e")."""
    family, _, digest = key.rpartition("-")
    return family, digest


def file_hash(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class Checkpoint:
    """A training's folder, the one owner of "is this training done, resumable, or to start over".

    Done: `model.safetensors` + `config.json` (the `Generator.save` format) and `train.json`, which
    holds the TrainResult and the hash of the weights file. In progress: `resume.pt`, the whole
    training state (weights, optimizers, weight average, RNG states, step, history) as tensors,
    numbers, strings, lists and dicts only, read with `torch.load(weights_only=True)`: a run folder
    from someone else cannot run code here. A done training whose weights do not match their hash,
    or a resume file that does not load that way, is set aside with one line and started over."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.result_file = self.folder / "train.json"
        self.resume_file = self.folder / "resume.pt"

    def finished(self) -> dict | None:
        """The saved TrainResult of a finished training whose weights are intact, else None."""
        saved = self._read()
        return saved if isinstance(saved, dict) else None

    def _read(self) -> dict | str:
        """The saved TrainResult of a finished training whose weights are intact, or what is wrong."""
        try:
            saved = json.loads(self.result_file.read_text())
            expected = saved.pop("weights_hash")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, cut short, or not a dict: a hand edit
            return "a train.json that does not read"
        weights = self.folder / WEIGHTS_FILE
        if not weights.is_file():
            return f"no {WEIGHTS_FILE} (deleted?)"
        try:  # the run needs only the weights, but explore, serve and zoo.load read the model from it
            if not isinstance(json.loads((self.folder / CONFIG_FILE).read_text()), dict):
                raise ValueError
        except (OSError, ValueError):
            return f"a {CONFIG_FILE} that does not read"
        try:
            intact = expected == file_hash(weights)
        except OSError:
            intact = False
        return saved if intact else "weights that do not match their hash"

    def weights_hash(self) -> str | None:
        saved = self.finished()
        return None if saved is None else json.loads(self.result_file.read_text())["weights_hash"]

    def load_finished(self, model: Generator) -> TrainResult | None:
        saved = self._read()
        if isinstance(saved, str):
            if self.result_file.exists():
                self._set_aside(self.result_file, saved)
            return None
        try:
            model.load_weights(self.folder)
        except Exception as e:  # a damaged weights file that still hashes right cannot happen; a changed model can
            self._set_aside(self.result_file, f"weights that do not load ({type(e).__name__})")
            return None
        return TrainResult(**{**saved, "reused": True})

    def save_finished(self, model: Generator, result: TrainResult) -> None:
        try:
            model.save(self.folder)
            for written in (WEIGHTS_FILE, CONFIG_FILE):  # on the disk before train.json says they are done
                flush_to_disk(self.folder / written)
        except OSError as e:
            raise unwritable(e.filename or self.folder, e) from None
        except SafetensorError as e:  # safetensors' own error for a write that failed (a full disk), not an OSError
            raise unwritable(self.folder / WEIGHTS_FILE, os_error(e)) from None
        saved = {k: v for k, v in asdict(result).items() if k != "reused"}
        saved["weights_hash"] = file_hash(self.folder / WEIGHTS_FILE)
        atomic_write(self.result_file, json.dumps(saved))
        self.resume_file.unlink(missing_ok=True)

    def save_progress(self, state: dict[str, Any]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file torch writes through Python: a failure is an OSError
                try:
                    torch.save(state, f)
                except RuntimeError as e:  # torch's zip writer reports a failed write (a full disk) as its own error
                    if isinstance(e.__context__, OSError):  # "unexpected pos 22400 vs 22352": the OSError behind it
                        raise e.__context__ from None
                    raise

        atomic_write(self.resume_file, write)

    def load_progress(self, model: Generator) -> dict[str, Any] | None:
        """The saved state of `model`'s unfinished training, or None: none saved, or one set aside that
        does not load or does not fit the model (its code changed since: other weights or optimizers)."""
        for stale in stale_temporaries(self.resume_file):  # a killed saver's; one process trains a key at a time
            stale.unlink(missing_ok=True)
        if not self.resume_file.is_file():
            return None
        try:
            state = torch.load(self.resume_file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # what weights_only refuses: a class, a function, anything that runs code
            self._set_aside(self.resume_file, "a resume file that holds pickled objects (refused: loading it could run code)")
            return None
        except Exception as e:
            self._set_aside(self.resume_file, f"a resume file that does not load ({type(e).__name__})")
            return None
        why = misfit(state, model)
        if why is not None:  # checked before loading: a refused load_state_dict has already changed some weights
            self._set_aside(self.resume_file, f"a resume file that does not fit {model.name} ({why})")
            return None
        return state

    def _set_aside(self, path: Path, why: str) -> None:
        set_aside(path, f"checkpoint {self.folder} has {why}", "training from the start")


def os_error(e: Exception) -> OSError:
    """The OSError behind a safetensors error ("I/O error: No space left on device (os error 28)")."""
    found = re.search(r"\(os error (\d+)\)", str(e))
    code = int(found.group(1)) if found else errno.EIO
    return OSError(code, os.strerror(code))


def misfit(state: dict[str, Any], model: Generator) -> str | None:
    """Why a saved training state cannot continue in `model` (another version of its code), or None."""
    try:
        saved, own = state["model"], model.state_dict()
        if saved.keys() != own.keys():
            return f"weight {sorted(saved.keys() ^ own.keys())[0]} is in one of them only"
        for k, v in own.items():
            if getattr(saved[k], "shape", None) != getattr(v, "shape", None):
                return f"weight {k} has shape {tuple(saved[k].shape)}, the model {tuple(v.shape)}"
        optimizers = model.optimizers()
        if state["optimizers"].keys() != optimizers.keys():
            return f"optimizers {sorted(state['optimizers'])}, the model {sorted(optimizers)}"
        for name, opt in optimizers.items():
            if [len(g["params"]) for g in state["optimizers"][name]["param_groups"]] != [len(g["params"]) for g in opt.param_groups]:
                return f"optimizer {name} steps other weights"
    except (KeyError, TypeError, AttributeError) as e:
        return f"no {e}" if isinstance(e, KeyError) else type(e).__name__
    return None
