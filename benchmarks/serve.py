"""The live lecture page: a run folder's checkpoints behind a local web page a teacher drives.

    python -m benchmarks.serve results/mnist5k-quick [--port 8000] [--host 127.0.0.1] [--device cpu]

Open the address it prints. Pick a model and draw a grid with a seed; move the sampler's steps and
the guidance scale where a model has them; click a point of a 2-D latent plane and see its decoding;
interpolate between two test images; watch a diffusion model's trajectory or a PixelCNN drawing in
raster order. The page (`benchmarks/page/`) is plain HTML, CSS and JavaScript, and talks to this
server through a small HTTP API, every endpoint of which `docs/serve.md` lists.

What a model is offered comes from its declared capabilities (`zoo.base`), never from its name:
`Latent` gets the plane and interpolation, `Invertible` interpolation through its noise, `Stepwise`
the animation, `Conditional` a class, and the sampler fields a `Stepwise` model's `steps_hparam` and
a `Guided` one's `guidance_hparam` name the `SLIDERS`, where what they accept is bounded
(`zoo.base.accepts`). The computations are
`zoo.explore`'s; models load from their checkpoints (`benchmarks.explore.load_model`) when first
asked for, and stay loaded.

A request costs at most `PASS_BUDGET` network passes (images x the model's `nfe`), so ddpm's 1000-step
sampler draws a few images where an autoencoder draws a full grid. One request computes at a time
(a lock); the server is threaded, so the page and the run's files stay served meanwhile. It binds to
127.0.0.1 unless told otherwise, and serves nothing outside the run folder and the page.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import mimetypes
import os
import re
import sys
import threading
import time
import traceback
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid  # type: ignore[import-untyped]

import zoo
import zoo.explore as ex
from benchmarks.cli import Parser, set_threads
from benchmarks.explore import NO_CHECKPOINTS, NOT_LATENT, load_model, lowest_seeds, run_data, tint_undrawn, weights_problem
from benchmarks.records import Record, RunFolder
from zoo.base import (
    CONFIG_FILE,
    CodeSampler,
    Conditional,
    DataSpec,
    Generator,
    GenzooError,
    Guided,
    Invertible,
    Latent,
    Noising,
    Stepwise,
    accepts,
    capabilities,
    check_config,
    config_types,
    one_line,
    saved_spec,
)
from zoo.data import to_float
from zoo.train import resolve_device

PAGE = Path(__file__).parent / "page"
PAGE_FILES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css"}

PASS_BUDGET = 6400  # network passes one request may spend (images x nfe): ddpm's 1000 steps get 6 images, ddim's 50 get 64
MAX_IMAGES = 64  # images in one grid, however cheap
DEFAULT_IMAGES = 16  # a grid when the request does not say
SLIDERS = ("steps", "guidance")  # the page's sliders, each a sampler field the model declares (`slider_field`)
PLANE_SIDE = 15  # decoded images along each side of the plane's background
PLANE_CODES = 1000  # test images whose codes give a plane its directions (a projection) and its dots
INTERPOLATION_FRAMES = 9
ANIMATION_FRAMES = 28  # frames of a trajectory or a raster animation (a 28-row canvas: one row a frame)
ANIMATION_IMAGES = 8  # images an animation shows at most
FRAME_MS, LAST_FRAME_MS = 110, 1500
MAX_SEED = 2**31 - 1
MAX_URL = 2048  # characters of a request's path and query
MODEL_CACHE = 6  # models (sampler settings included) kept loaded
WAIT_SECONDS = 120  # a request that waits longer for the one before it is told the server is busy


class Refused(Exception):
    """A request refused with an HTTP status and one line of text."""

    def __init__(self, status: int, line: str):
        super().__init__(line)
        self.status = status


# -- the run: which models it can serve, loaded when first asked for ----------------------------

@dataclass
class Entry:
    """A servable model of the run: its record (the lowest seed that finished) and its class."""

    record: Record
    cls: type[Generator]
    spec: DataSpec  # from the checkpoint's config.json: what the model was built for

    @property
    def name(self) -> str:
        return self.record.model

    def config(self, **settings: Any) -> Any:
        """The model's Config from its record, with sampler settings on top (nothing is built)."""
        return self.cls.Config(**{**self.record.hparams, **settings})


def servable(folder: RunFolder, records: list[Record]) -> tuple[dict[str, Entry], dict[str, str]]:
    """Per model, its lowest seed's record (the one `benchmarks.explore.load_models` picks) as the page
    offers it, nothing loaded; and why each other model is not served."""
    out: dict[str, Entry] = {}
    skipped: dict[str, str] = {}
    for name, rec in lowest_seeds(records).items():
        try:
            out[name] = served_entry(folder, rec)
        except GenzooError as e:
            skipped[name] = str(e)
    return out, skipped


def served_entry(folder: RunFolder, rec: Record) -> Entry:
    """A finished record whose checkpoint holds the weights it scored, and whose settings this genzoo
    accepts (a record from another version may hold others): one line where it is not."""
    if not rec.ok:
        raise GenzooError(f"status {rec.status}" + (f": {rec.error}" if rec.error else ""))
    if why := weights_problem(folder, rec):
        raise GenzooError(why)
    ckpt = folder.checkpoint_of(rec)
    assert ckpt is not None  # weights_problem said none
    try:
        spec = saved_spec(ckpt)
    except (ValueError, KeyError, TypeError) as e:
        raise GenzooError(f"its {ckpt / CONFIG_FILE} does not read: {one_line(e)}") from None
    cls = zoo.registry.get(rec.model)  # a plugin that is not installed here: one line
    try:
        check_config(rec.model, cls.Config(**rec.hparams))
    except (GenzooError, TypeError) as e:
        raise GenzooError(f"its record's settings are not accepted here: {e if isinstance(e, GenzooError) else one_line(e)}") from None
    return Entry(rec, cls, spec)


@dataclass
class Plane:
    """A 2-D plane through a model's code space, in standard units: `to_code` maps eps (N,2) to codes
    (N,D). Either the model's own 2-D code (eps of its Gaussian) or the test codes' top two principal
    directions (eps in standard deviations along each)."""

    kind: str
    to_code: Callable[[Tensor], Tensor]
    image: bytes  # the decoded PLANE_SIDE x PLANE_SIDE grid, as latent_grid_2d lays it out
    points: list[list[float]]  # the test codes in page coordinates: [x, y, label]


class Run:
    """A run folder served: its models (loaded lazily, cached), its test images, one lock for model work."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.folder = RunFolder(path)
        if not self.folder.path.is_dir():
            raise GenzooError(f"no run folder at {self.folder.path}")
        self.info, records = self.folder.read()
        if "dataset" not in self.info:
            raise GenzooError(f"{self.folder.results} has no run info (dataset); is {self.folder.path} a run folder?")
        self.entries, self.skipped = servable(self.folder, records)
        if not self.entries and not (self.folder.trainings / "checkpoints").is_dir():
            raise GenzooError(NO_CHECKPOINTS.format(path=self.folder.path, use="serve", command="serve"))
        if not self.entries:
            raise GenzooError(f"{self.folder.path} has no model to serve: "
                              + "; ".join(f"{name}: {why}" for name, why in self.skipped.items()))
        self.device = resolve_device(device)
        self.lock = threading.Lock()
        self._models: OrderedDict[tuple[str, tuple[tuple[str, Any], ...]], Generator] = OrderedDict()
        self._planes: dict[str, Plane] = {}
        # The test split (images in [0,1], labels or None), read now: the page draws against the run's
        # own data, and data gone or changed since the run is one line here rather than a failed page.
        splits = run_data(self.folder, self.info, "the page draws", uint8=True)
        self.test = (to_float(splits.x_test), splits.y_test)
        self.class_names = splits.classes

    @contextmanager
    def working(self) -> Iterator[None]:
        """One request computes at a time; one that waits too long is told so."""
        if not self.lock.acquire(timeout=WAIT_SECONDS):
            raise Refused(503, f"busy: another request has drawn for over {WAIT_SECONDS} s; try again")
        try:
            yield
        finally:
            self.lock.release()

    def entry(self, name: str | None) -> Entry:
        if not name:
            raise Refused(400, f"model is missing; this run serves: {', '.join(self.entries)}")
        if name in self.skipped:
            raise Refused(404, f"{name} is not served: {self.skipped[name]}")
        if name not in self.entries:
            raise Refused(404, f"unknown model {name!r}; this run serves: {', '.join(self.entries)}")
        return self.entries[name]

    def model(self, entry: Entry, settings: dict[str, Any] | None = None) -> Generator:
        """The model with these sampler settings, from its checkpoint (call it holding the lock)."""
        key = (entry.name, tuple(sorted((settings or {}).items())))
        if key not in self._models:
            record = dataclasses.replace(entry.record, hparams={**entry.record.hparams, **(settings or {})})
            try:
                self._models[key] = load_model(self.folder, record).to(self.device)
            except GenzooError as e:
                if weights_problem(self.folder, record):  # removed or changed since the server started
                    raise Refused(500, str(e)) from None
                raise  # settings outside what the model accepts: the request's fault (400)
            except Exception as e:  # noqa: BLE001 - damaged weights: the file's fault, named in one line
                raise Refused(500, f"{entry.name}: its checkpoint {self.folder.checkpoint_of(record)} does not load: {one_line(e)}") from None
            while len(self._models) > MODEL_CACHE:
                self._models.popitem(last=False)
        self._models.move_to_end(key)
        return self._models[key]

    def plane(self, entry: Entry) -> Plane:
        """The model's plane, computed once (call it holding the lock)."""
        if entry.name not in self._planes:
            self._planes[entry.name] = make_plane(self.model(entry), *self.test)
        return self._planes[entry.name]


# -- what each model is offered: from its capabilities -------------------------------------------

def slider_field(cls: type[Generator], control: str) -> str | None:
    """The Config field behind one of the page's `SLIDERS`, as the model declares it: a `Stepwise`
    model's `steps_hparam`, a `Guided` one's `guidance_hparam`; None where it declares none."""
    if control == "steps":
        return cls.steps_hparam if issubclass(cls, Stepwise) else None
    return cls.guidance_hparam if issubclass(cls, Guided) else None


def slider(entry: Entry, control: str) -> dict[str, Any] | None:
    """One of the page's `SLIDERS` for this model: its sampler field (`slider_field`), type, bounds
    (resolved against the record's config: ddim's steps go up to its train_timesteps) and default;
    None where the model declares no such field or what it accepts is not bounded on both sides."""
    field = slider_field(entry.cls, control)
    if field is None:
        return None
    ok, kind, config = accepts(entry.cls.Config, field), config_types(entry.cls.Config).get(field), entry.config()
    bound = lambda b: ok.bound(b, config)  # a bound may name another field
    lo = bound(ok.ge) if ok.ge is not None else bound(ok.gt)
    hi = bound(ok.le) if ok.le is not None else bound(ok.lt)
    if kind not in (int, float) or lo is None or hi is None:
        return None
    if kind is int:  # an open end excludes its bound
        lo = math.ceil(lo) + (ok.ge is None and lo == math.ceil(lo))
        hi = math.floor(hi) - (ok.le is None and hi == math.floor(hi))
    return {"field": field, "type": kind.__name__, "min": lo, "max": hi, "default": getattr(config, field),
            "accepts": ok.describe(kind, config)}


def controls(entry: Entry, run: Run) -> tuple[dict[str, Any], dict[str, str]]:
    """What the page offers this model, and for each control it lacks, why (one line)."""
    cls = entry.cls
    have: dict[str, Any] = {"sample": True}
    why: dict[str, str] = {}
    for field in SLIDERS:
        s = slider(entry, field)
        if s is not None:
            have[field] = s
        else:
            why[field] = f"its sampler has no {field} to set"
    if issubclass(cls, Conditional):
        have["label"] = {"classes": entry.spec.num_classes, "names": run.class_names}
    else:
        why["label"] = "not class-conditional: it draws no asked-for class"
    if issubclass(cls, Latent):
        have["plane"] = True
    else:
        why["plane"] = NOT_LATENT + ": no code space to walk"
    if issubclass(cls, (Latent, Invertible)):
        have["interpolate"] = "images"
    elif issubclass(cls, CodeSampler) and not issubclass(cls, Conditional):
        have["interpolate"] = "codes"
    else:
        why["interpolate"] = "not `Latent`, not `Invertible` and no unconditional `CodeSampler`: nothing to walk between"
    if issubclass(cls, Stepwise):
        have["trajectory"] = True
    else:
        why["trajectory"] = "it draws in one pass (not `Stepwise`): no steps to watch"
    return have, why


def describe_model(entry: Entry, run: Run) -> dict[str, Any]:
    rec = entry.record
    have, why = controls(entry, run)
    return {"name": entry.name, "capabilities": capabilities(entry.cls),
            "controls": have, "missing": why, "seed": rec.seed,
            "metrics": {"fid": rec.fid, "bits_per_dim": rec.bits_per_dim, "bpd_kind": rec.bpd_kind, "nfe": rec.nfe,
                        "sample_images_per_s": rec.sample_images_per_s, "params": rec.params}}


# -- the request's parameters -------------------------------------------------------------------

MAX_FIELDS = 20  # query parameters a request may give: more than any endpoint takes
WHOLE = r"(0|[1-9][0-9]{0,11})"  # no leading zero: '008' is not how a number is written
INT = re.compile(rf"[+-]?{WHOLE}")
FLOAT = re.compile(rf"[+-]?({WHOLE}(\.[0-9]*)?|\.[0-9]+)")


class Query:
    """A request's query string, read one named parameter at a time; a parameter the endpoint does
    not take, a repeated one or a malformed number is refused in one line."""

    def __init__(self, endpoint: str, text: str, allowed: tuple[str, ...]):
        if text.count("&") >= MAX_FIELDS:
            raise Refused(400, f"over {MAX_FIELDS} query parameters; {endpoint} takes: {', '.join(allowed) or 'none'}")
        try:
            pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
        except ValueError as e:
            raise Refused(400, f"malformed query string ({e}): give name=value pairs joined by '&'; "
                               f"{endpoint} takes: {', '.join(allowed) or 'none'}") from None
        names = [k for k, _ in pairs]
        unknown = sorted(set(names) - set(allowed))
        if unknown:
            raise Refused(400, f"{endpoint} takes no parameter {', '.join(unknown)}; it takes: {', '.join(allowed) or 'none'}")
        repeated = sorted({k for k in names if names.count(k) > 1})
        if repeated:
            raise Refused(400, f"parameter {', '.join(repeated)} given more than once")
        self.values = dict(pairs)

    def text(self, name: str) -> str | None:
        return self.values.get(name)

    def number(self, name: str, written: re.Pattern[str], what: str) -> str | None:
        """The parameter as given (None if not given), refused unless all of it is written as
        `written` says: int() and float() would pass over spaces around it."""
        raw = self.values.get(name)
        if raw is not None and not written.fullmatch(raw):
            raise Refused(400, f"{name} must be {what}, got {raw[:40]!r}")
        return raw

    def int(self, name: str, default: int | None, lo: int, hi: int) -> int | None:
        what = f"an int in [{lo}, {hi}]"
        raw = self.number(name, INT, what)
        if raw is None:
            return default
        value = int(raw)
        if not lo <= value <= hi:
            raise Refused(400, f"{name} must be {what}, got {value}")
        return value

    def float(self, name: str, lo: float, hi: float, open_ends: bool = False) -> float | None:
        what = f"a number in {'(' if open_ends else '['}{lo:g}, {hi:g}{')' if open_ends else ']'}"
        raw = self.number(name, FLOAT, what)
        if raw is None:
            return None
        value = float(raw) + 0.0  # + 0.0: "-0" is 0, not a caption's "guidance -0"
        if not (lo < value < hi if open_ends else lo <= value <= hi):
            raise Refused(400, f"{name} must be {what}, got {value:g}")
        return value


SAMPLER_PARAMS = ("model", "seed", "label", *SLIDERS)


def sampler_settings(entry: Entry, q: Query) -> dict[str, Any]:
    """The request's sliders (steps, guidance) as this model's sampler fields, each checked against
    what the model's Config accepts (`zoo.base.accepts`: ddim's steps up to its train_timesteps)."""
    settings: dict[str, Any] = {}
    for control in SLIDERS:
        raw = q.text(control)
        if raw is None:
            continue
        s = slider(entry, control)
        if s is None:
            raise Refused(400, f"{entry.name} takes no {control}: its sampler has none to set")
        value = q.int(control, None, s["min"], s["max"]) if s["type"] == "int" else q.float(control, s["min"], s["max"])
        ok = accepts(entry.cls.Config, s["field"])
        if not ok.admits(value, int if s["type"] == "int" else float, entry.config()):
            raise Refused(400, f"{entry.name}: {control} must be {s['accepts']}, got {raw[:40]}")
        settings[s["field"]] = value
    return settings  # checks of fields together (guidance needs label dropout) come when the model is built: 400 too


def labels_for(entry: Entry, model: Generator, q: Query, n: int) -> Tensor | None:
    """Class labels for a `Conditional` model's n images: all of `label`, or None (drawn uniformly
    from the seed); a model that is not conditional refuses a label."""
    if q.text("label") is None:
        return None
    if not isinstance(model, Conditional):
        raise Refused(400, f"{entry.name} is not class-conditional: it takes no label")
    classes = model.spec.num_classes or 1
    label = q.int("label", None, 0, classes - 1)
    return torch.full((n,), int(label or 0), dtype=torch.long)


def images_allowed(model: Generator) -> int:
    """Images one request may draw with this model: PASS_BUDGET network passes, at least one, at most MAX_IMAGES."""
    return max(1, min(MAX_IMAGES, PASS_BUDGET // max(1, model.nfe)))


def passes(nfe: int) -> str:
    return f"{nfe} network pass{'es' if nfe != 1 else ''}"


def seed_generator(q: Query) -> tuple[int, torch.Generator]:
    seed = q.int("seed", 0, 0, MAX_SEED)
    assert seed is not None
    return seed, torch.Generator().manual_seed(seed)


# -- images out ----------------------------------------------------------------------------------

def to_pil(grid: Tensor) -> Image.Image:
    """An image (C,H,W) in [0,1] as a PIL image (grey stays grey, three channels RGB)."""
    array = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def png(images: Tensor, per_row: int) -> bytes:
    """Images (N,C,H,W) in [0,1] as one PNG grid, per_row a row, 2 px of white between them."""
    out = io.BytesIO()
    to_pil(make_grid(images.float().cpu(), nrow=per_row, padding=2, pad_value=1.0)).save(out, format="PNG")
    return out.getvalue()


def gif(frames: list[Tensor]) -> bytes:
    """Frames (each (C,H,W) in [0,1]) as an animated GIF that loops, holding the last frame."""
    pictures = [to_pil(f).convert("RGB") for f in frames]
    out = io.BytesIO()
    durations = [FRAME_MS] * (len(pictures) - 1) + [LAST_FRAME_MS]
    pictures[0].save(out, format="GIF", save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return out.getvalue()


def side(n: int) -> int:
    """Images a row for a square-ish grid of n."""
    return max(1, math.ceil(math.sqrt(n)))


# -- the plane -----------------------------------------------------------------------------------

def normal_cdf(eps: Tensor) -> Tensor:
    return torch.distributions.Normal(0.0, 1.0).cdf(eps)


def normal_icdf(p: Tensor) -> Tensor:
    """Phi^-1 of p, finite for every p in (0, 1): in float32 (or through erfinv(2p - 1)) a p near 0
    or 1 rounds to the end, an infinite code, decoded as a blank image."""
    return torch.special.ndtri(p.double()).float()


def make_plane(model: Generator, x_test: Tensor, y_test: Tensor | None) -> Plane:
    """A `Latent` model's plane: its own code when that is 2-D and has a Gaussian (the grid is
    `zoo.explore.latent_grid_2d`'s), else the plane of the test codes' top two principal directions
    through their mean, in standard deviations along each (`zoo.explore.principal_directions`)."""
    z = ex.codes(model, x_test[:PLANE_CODES])
    prior = ex.code_prior(model)
    if prior is not None and prior.dim == 2:
        kind = f"its own 2-D code: quantiles of its {prior.kind} Gaussian along each axis"
        to_code: Callable[[Tensor], Tensor] = lambda eps: prior.from_standard(eps.to(prior.loc))
        from_code: Callable[[Tensor], Tensor] = lambda c: prior.to_standard(c.to(prior.loc))
        grid = ex.latent_grid_2d(model, PLANE_SIDE)[1]
    else:
        dirs, sd = ex.principal_directions(z, 2)
        mean = z.mean(0)
        kind = (f"a projection of its {z.shape[1]}-D code: the plane of the test codes' top two principal "
                "directions, quantiles of their spread along each")
        to_code = lambda eps: mean + (eps * sd) @ dirs
        from_code = lambda c: ((c - mean) @ dirs.T) / sd
        grid = ex.decode(model, to_code(ex.standard_grid_2d(PLANE_SIDE)))
    eps = from_code(z).float().cpu()
    p = normal_cdf(eps)
    labels = y_test[:PLANE_CODES].tolist() if y_test is not None else [-1] * len(z)
    points = [[round(float(a), 4), round(1 - float(b), 4), int(lab)] for (a, b), lab in zip(p.tolist(), labels)]
    return Plane(kind, to_code, png(grid, PLANE_SIDE), points)


def plane_point(q: Query) -> Tensor:
    """The clicked point (x across, y down the plane, each in (0, 1)) as eps (1,2) of the plane's axes."""
    x, y = q.float("x", 0, 1, open_ends=True), q.float("y", 0, 1, open_ends=True)
    if x is None or y is None:
        raise Refused(400, "x and y are required: the point's place across and down the plane, each in (0, 1)")
    return normal_icdf(torch.tensor([[x, 1 - y]], dtype=torch.float64))


# -- the endpoints ---------------------------------------------------------------------------------
# Each takes the run and the query string and returns (content type, body, headers). Headers say
# what the image shows (X-Genzoo-Caption) and what it cost, for the page's captions.

Reply = tuple[str, bytes, dict[str, str]]
PNG, GIF, JSON = "image/png", "image/gif", "application/json"


def as_json(data: Any) -> Reply:
    return JSON, json.dumps(data, default=float).encode(), {}


def api_run(run: Run, query: str) -> Reply:
    Query("/api/run", query, ())
    path = run.folder.path
    figures = [p.relative_to(path).as_posix() for pattern in ("comparison.png", "plots/*.png", "explore/*.png")
               for p in sorted(path.glob(pattern))]
    return as_json({"folder": path.name, "dataset": run.info.get("dataset"), "preset": run.info.get("preset"),
                    "device": str(run.device), "pass_budget": PASS_BUDGET, "max_images": MAX_IMAGES,
                    "test_images": len(run.test[0]), "pair": first_pair(*run.test),
                    "report": "index.html" if (path / "index.html").is_file() else None,
                    "results": "results.md" if (path / "results.md").is_file() else None, "figures": figures})


def first_pair(x: Tensor, y: Tensor | None) -> list[int]:
    """Two test images to interpolate between before anyone picks: the first, and the first of another class."""
    other = next((i for i in range(1, len(x)) if y is not None and int(y[i]) != int(y[0])), 1)
    return [0, min(other, len(x) - 1)]


def api_models(run: Run, query: str) -> Reply:
    Query("/api/models", query, ())
    return as_json({"models": [describe_model(e, run) for e in run.entries.values()]})


def api_cost(run: Run, query: str) -> Reply:
    q = Query("/api/cost", query, ("model", *SLIDERS))
    entry = run.entry(q.text("model"))
    settings = sampler_settings(entry, q)
    with run.working():
        model = run.model(entry, settings)
        return as_json({"model": entry.name, **settings, "nfe": model.nfe, "images": images_allowed(model),
                        "pass_budget": PASS_BUDGET})


def api_sample(run: Run, query: str) -> Reply:
    q = Query("/api/sample", query, (*SAMPLER_PARAMS, "n"))
    entry = run.entry(q.text("model"))
    settings = sampler_settings(entry, q)
    seed, gen = seed_generator(q)
    with run.working():
        model = run.model(entry, settings)
        most = images_allowed(model)
        n = q.int("n", min(DEFAULT_IMAGES, most), 1, most)
        assert n is not None
        labels = labels_for(entry, model, q, n)
        started = time.perf_counter()
        images = model.sample(n, generator=gen, labels=labels).cpu()
        seconds = time.perf_counter() - started
    fields = {c: slider_field(entry.cls, c) for c in SLIDERS}
    what = "".join(f", {c} {getattr(model.config, f):g}" for c, f in fields.items() if f)  # the model's own, if not asked
    label = f", class {int(labels[0])}" if labels is not None else ""
    caption = (f"{entry.name}: {n} image{'s' if n > 1 else ''}, seed {seed}{what}{label}; "
               f"{passes(model.nfe)} an image, at most {most} images a request ({PASS_BUDGET} passes); {seconds:.1f} s")
    return PNG, png(images, side(n)), {"X-Genzoo-Caption": caption, "X-Genzoo-Images": str(n),
                                       "X-Genzoo-NFE": str(model.nfe), "X-Genzoo-Seconds": f"{seconds:.3f}"}


def latent_entry(run: Run, q: Query) -> Entry:
    entry = run.entry(q.text("model"))
    if not issubclass(entry.cls, Latent):
        raise Refused(400, f"{entry.name} has no latent plane: {NOT_LATENT}")
    return entry


def api_plane_image(run: Run, query: str) -> Reply:
    q = Query("/api/plane-image", query, ("model",))
    entry = latent_entry(run, q)
    with run.working():
        plane = run.plane(entry)
    return PNG, plane.image, {"X-Genzoo-Caption": f"{entry.name}: {plane.kind}; {PLANE_SIDE}x{PLANE_SIDE} decoded points"}


def api_plane_points(run: Run, query: str) -> Reply:
    q = Query("/api/plane-points", query, ("model",))
    entry = latent_entry(run, q)
    with run.working():
        plane = run.plane(entry)
    return as_json({"model": entry.name, "kind": plane.kind, "points": plane.points})


def api_plane(run: Run, query: str) -> Reply:
    q = Query("/api/plane", query, ("model", "x", "y"))
    entry = latent_entry(run, q)
    eps = plane_point(q)
    with run.working():
        model, plane = run.model(entry), run.plane(entry)
        image = ex.decode(model, plane.to_code(eps))
    e1, e2 = eps[0].tolist()
    return PNG, png(image, 1), {"X-Genzoo-Caption": f"{entry.name}: the code at ({e1:+.2f}, {e2:+.2f}) standard units, decoded"}


def pick_test_image(run: Run, q: Query, name: str) -> tuple[int, Tensor, str]:
    x, y = run.test
    i = q.int(name, None, 0, len(x) - 1)
    if i is None:
        raise Refused(400, f"{name} is required: a test image's index in [0, {len(x) - 1}]")
    return i, x[i:i + 1], (f"class {int(y[i])}" if y is not None else "unlabeled")


def api_test_image(run: Run, query: str) -> Reply:
    q = Query("/api/test-image", query, ("i",))
    i, x, label = pick_test_image(run, q, "i")
    return PNG, png(x, 1), {"X-Genzoo-Caption": f"test image {i}, {label}"}


def api_interpolate(run: Run, query: str) -> Reply:
    """Frames between two test images (a `Latent` model through its codes, an `Invertible` one through
    its noises), or between two random codes of an unconditional `CodeSampler` (a GAN), from the seed."""
    q = Query("/api/interpolate", query, ("model", "a", "b", "seed"))
    entry = run.entry(q.text("model"))
    seed, gen = seed_generator(q)
    xa: Tensor | None = None
    xb: Tensor | None = None
    if issubclass(entry.cls, (Latent, Invertible)):
        (i, xa, la), (j, xb, lb) = pick_test_image(run, q, "a"), pick_test_image(run, q, "b")
        ends = f"test images {i} ({la}) and {j} ({lb})"
    elif issubclass(entry.cls, CodeSampler) and not issubclass(entry.cls, Conditional):
        if q.text("a") is not None or q.text("b") is not None:
            raise Refused(400, f"{entry.name} interpolates between two random codes from the seed: it takes no a or b "
                               "(test images need an encoder or an inversion to noise)")
        ends = f"two random codes (seed {seed}); no images at the ends"
    else:
        raise Refused(400, f"{entry.name} cannot interpolate: not `Latent`, not `Invertible` and no unconditional `CodeSampler`")
    with run.working():
        model = run.model(entry)
        cost = (INTERPOLATION_FRAMES + 2 * isinstance(model, Invertible)) * model.nfe  # an inversion costs a sample
        if cost > PASS_BUDGET:
            raise Refused(400, f"interpolating with {entry.name} costs {cost} network passes, over the cap of {PASS_BUDGET} a request")
        frames, kind = ex.interpolate(model, xa, xb, INTERPOLATION_FRAMES, generator=gen, n=1)
    if isinstance(model, Latent):
        how = f"{kind} between the codes"
    elif isinstance(model, Invertible):
        how = f"{model.inversion_name}, {kind} of the noises"
    else:
        how = f"{kind} between the codes"
    blank = torch.ones(1, *model.spec.shape)
    strip = torch.cat([blank if xa is None else xa, frames[0].cpu(), blank if xb is None else xb])
    return PNG, png(strip, len(strip)), {"X-Genzoo-Caption": f"{entry.name}: {how}, {INTERPOLATION_FRAMES} frames between {ends}"}


def api_trajectory(run: Run, query: str) -> Reply:
    q = Query("/api/trajectory", query, (*SAMPLER_PARAMS, "n"))
    entry = run.entry(q.text("model"))
    if not issubclass(entry.cls, Stepwise):
        raise Refused(400, f"{entry.name} draws in one pass (not `Stepwise`): no steps to watch")
    settings = sampler_settings(entry, q)
    seed, gen = seed_generator(q)
    with run.working():
        model = run.model(entry, settings)
        most = min(ANIMATION_IMAGES, images_allowed(model))
        n = q.int("n", most, 1, most)
        assert n is not None
        labels = labels_for(entry, model, q, n)
        frames, caption = animation(model, n, gen, labels, run.test[0])
    return GIF, gif(frames), {"X-Genzoo-Caption": f"{entry.name}, seed {seed}: {caption}", "X-Genzoo-Frames": str(len(frames))}


def animation(model: Generator, n: int, gen: torch.Generator, labels: Tensor | None,
              test: Tensor) -> tuple[list[Tensor], str]:
    """A `Stepwise` model's sampler as frames: the canvas filling in where its steps say what is
    drawn (an autoregressive model: `zoo.explore.snapshots`, undrawn pixels blue), else each step's
    x_t over its predicted finished image (`zoo.explore.trajectory`), ending on the sample. A
    `Noising` model's frames also show n test images (from `test`) taken to each step's noise level
    by the forward process, above the sampler's state at that level."""
    first = ex.first_step(model)
    if first.drawn is not None:
        parts = min(ANIMATION_FRAMES, first.total)
        shots = ex.snapshots(model, n, parts, generator=gen, labels=labels)
        canvases = tint_undrawn(shots["images"], shots["drawn"])
        return ([make_grid(c, nrow=n, padding=2, pad_value=1.0) for c in canvases],
                f"the canvas after each 1/{parts} of its {first.total} steps, in raster order (blue: not drawn yet)")
    tr = ex.trajectory(model, n, min(ANIMATION_FRAMES, first.total), generator=gen, labels=labels)
    final = tr["final"].clamp(0, 1)
    predicted = tr["x0"] is not None
    rows = [[xt, x0] if predicted else [xt] for xt, x0 in zip(tr["x_t"], tr["x0"] if predicted else tr["x_t"])]
    rows.append([final, final] if predicted else [final])
    # a latent model's state is a code, shown through its decoder, as the drawing figure labels it
    state, guess = ("the latent z_t decoded", "its predicted clean z0 decoded") if tr["decoded"] else ("x_t", "its predicted clean image")
    said = [state, guess] if predicted else [state]
    if isinstance(model, Noising) and None not in tr["timesteps"]:
        picked, noised = forward_process(model, test, n, tr["timesteps"], gen)
        rows = [[forward, *row] for forward, row in zip(noised, rows)]
        said.insert(0, f"test image{'s' if n > 1 else ''} {', '.join(map(str, picked))} taken to the same t by the "
                       "forward process, no network (beside the sample: the images themselves)")
    frames = [make_grid(torch.cat(row), nrow=n, padding=2, pad_value=1.0) for row in rows]
    shown = f"top to bottom: {'; '.join(said)};" if len(said) > 1 else said[0]
    return frames, f"{shown} at {len(frames) - 1} of its {tr['total_steps']} steps, then the sample"


def forward_process(model: Generator, test: Tensor, n: int, timesteps: list[int],
                    gen: torch.Generator) -> tuple[list[int], list[Tensor]]:
    """n test images picked by `gen` (drawn from after the sample, so the sample is the one the seed
    gives elsewhere), noised to each of `timesteps` with one noise draw, then the images themselves:
    their indices and (len(timesteps) + 1) batches (n,C,H,W) in [0,1]."""
    picked = torch.randperm(len(test), generator=gen)[torch.arange(n) % len(test)]  # a split smaller than n repeats
    x = test[picked]
    return picked.tolist(), list(ex.forward_process(model, x, timesteps, torch.randn(x.shape, generator=gen)))


ENDPOINTS: dict[str, Callable[[Run, str], Reply]] = {
    "/api/run": api_run, "/api/models": api_models, "/api/cost": api_cost, "/api/sample": api_sample,
    "/api/plane-image": api_plane_image, "/api/plane-points": api_plane_points, "/api/plane": api_plane,
    "/api/test-image": api_test_image, "/api/interpolate": api_interpolate, "/api/trajectory": api_trajectory,
}


def run_file(run: Run, rel: str) -> Path:
    """A file of the run folder by its path under /files/; a path that leaves the folder (`..`, an
    absolute path, a link that points out) is refused."""
    rel = urllib.parse.unquote(rel)
    parts = PurePosixPath(rel).parts
    if not rel:
        raise Refused(404, "no file named: /files/PATH serves the file PATH of the run folder")
    if "\x00" in rel or rel.startswith("/") or "\\" in rel or ".." in parts:
        raise Refused(403, "only the run folder's own files are served: no '..', no absolute path")
    root = run.folder.path.resolve()
    try:
        path = (root / rel).resolve()
    except (RuntimeError, OSError):  # a symlink loop, which Python before 3.13 raises on: no file there
        raise Refused(404, f"no file {rel} in the run folder") from None
    if not path.is_relative_to(root):
        raise Refused(403, "only the run folder's own files are served: this path leads out of it")
    try:
        found = path.is_file()
    except OSError:  # a name longer than the file system takes (ENAMETOOLONG): no file there either
        found = False
    if not found:
        raise Refused(404, f"no file {rel} in the run folder")
    return path


# -- the server ----------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    """Routes GET requests to the page, the API and the run's files; every refusal is one line."""

    server_version = "genzoo-serve"
    timeout = 10  # each connection holds a thread: one whose client sends or reads nothing for this long is let go
    run: Run  # set on the subclass `make_server` builds
    quiet = False

    def do_GET(self) -> None:
        self.respond()

    do_HEAD = do_GET  # `send` leaves out the body

    def refuse_method(self) -> None:
        self.send_line(405, "only GET and HEAD are served: the API takes no request bodies", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = refuse_method

    def respond(self) -> None:
        try:
            kind, body, headers = self.route()
            if isinstance(body, Path):  # a run file, a checkpoint perhaps: sent from disk, never held whole
                with body.open("rb") as file:
                    self.send(200, kind, file, headers)
            else:
                self.send(200, kind, body, headers)
        except Refused as e:
            self.send_line(e.status, str(e))
        except GenzooError as e:
            self.send_line(400, str(e))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left; the server goes on
        except Exception as e:  # noqa: BLE001 - one request failing must not take the server down
            traceback.print_exc()
            self.send_line(500, f"internal error: {one_line(e)}")

    def route(self) -> tuple[str, bytes | Path, dict[str, str]]:
        if len(self.path) > MAX_URL:
            raise Refused(414, f"request path over {MAX_URL} characters")
        length = self.headers.get("Content-Length", "0").strip()
        if not (length.isascii() and length.isdigit()):  # isdigit alone passes '²' (a latin-1 byte), which int refuses
            raise Refused(400, "malformed Content-Length")
        if int(length) > 0 or "Transfer-Encoding" in self.headers:  # a body, sized or chunked
            raise Refused(413, "the API takes no request bodies; its parameters are in the query string")
        path, _, query = self.path.partition("?")
        if path.startswith("/files/"):
            file = run_file(self.run, path[len("/files/"):])
            return mimetypes.guess_type(file.name)[0] or "application/octet-stream", file, {}
        if path in PAGE_FILES:
            name = PAGE_FILES[path]
            kind = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
                    "css": "text/css; charset=utf-8"}[name.rsplit(".", 1)[1]]
            return kind, (PAGE / name).read_bytes(), {"Cache-Control": "no-cache"}
        if path in ENDPOINTS:
            return ENDPOINTS[path](self.run, query)
        raise Refused(404, f"no such page or endpoint {path[:80]!r}; the API is under /api/ (see docs/serve.md)")

    def send(self, status: int, kind: str, body: bytes | BinaryIO, headers: dict[str, str]) -> None:
        size = len(body) if isinstance(body, bytes) else os.fstat(body.fileno()).st_size
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(size))
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in headers.items():
                self.send_header(k, v.encode("latin-1", "replace").decode("latin-1"))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD answer is headers only, a refusal's too
                if isinstance(body, bytes):
                    self.wfile.write(body)
                else:  # from the file to the socket in chunks, no more than Content-Length should the file grow
                    self.wfile.flush()  # the headers first
                    self.connection.sendfile(body, 0, size)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):  # the client left, or stopped reading
            self.close_connection = True

    def send_line(self, status: int, line: str, headers: dict[str, str] | None = None) -> None:
        text = (line.splitlines()[0] if line else HTTPStatus(status).phrase) + "\n"
        self.send(status, "text/plain; charset=utf-8", text.encode(), headers or {})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's refusals (a malformed request line, too many headers) as one line too."""
        self.close_connection = True
        self.send_line(code, message or HTTPStatus(code).phrase)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung client never keeps the process alive
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, TimeoutError)):
            super().handle_error(request, client_address)


def make_server(run: Run, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> Server:
    """A threaded HTTP server for the run (port 0: any free port; `server.server_address` says which)."""
    handler = type("RunHandler", (Handler,), {"run": run, "quiet": quiet})
    return Server((host, port), handler)


def url(server: Server) -> str:
    host, port = server.server_address[:2]
    host = str(host)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


# -- the command -----------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m benchmarks.serve", description=(__doc__ or "").split("\n\n")[0])
    p.add_path("run_folder", help="a run folder with checkpoints, written by python -m benchmarks.run")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        set_threads(args.threads)
        if not 0 <= args.port <= 65535:
            raise GenzooError(f"--port must be an int in [0, 65535], got {args.port}")
        if not args.host.strip():  # '' binds every interface: an unset $HOST must not open the page to the network
            raise GenzooError("--host is empty, which would listen on every interface; give an address: 127.0.0.1 "
                              "(the default, this machine only) or 0.0.0.0 (every interface, on purpose)")
        run = Run(args.run_folder, device=args.device)
        server = make_server(run, args.host, args.port)
    except GenzooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    for name, why in run.skipped.items():
        print(f"not served: {name}: {why}", flush=True)
    print(f"serving {run.folder.path} ({len(run.entries)} models: {', '.join(run.entries)}) on {run.device} "
          f"at {url(server)}  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
