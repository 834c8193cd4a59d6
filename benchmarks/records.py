"""A model's result as one typed `Record`, and the run folder that stores them.

Runner, report, plots and tests share this type. Each field's metadata names its table header and
format; `COLUMNS` lists the ones the tables show, in order, so the list of metrics lives here only.

A run folder holds one file per (model, seed) in `records/`, each written atomically under a unique
temporary name, and `results.json`, their merge, rewritten under a file lock. Several runner
processes can therefore share a folder (an `xargs -P` sweep, a Slurm array) without losing a record.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import math
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.base import GenzooError, of_type, one_line
from zoo.files import atomic_write, say, set_aside
from zoo.registry import DATA_ROW  # the test split, scored like a model: the floor every model is read against

# The run settings the commands read, by the types runs write (a first-wave run wrote its budget as a
# dict): one of another type, as a hand edit may leave it, is read as absent.
RUN_INFO_TYPES: dict[str, type | tuple[type, ...]] = {
    "dataset": str, "data_hash": str, "preset": str, "budget": (str, dict), "seeds": list, "history": list,
    "feature_space": dict, "data_options": dict, "reference": dict, "versions": dict}
MAX_NAME = 100  # a row's name: it names the row's files (NAME--seedS.json), which file systems cap at 255 bytes
SAME_RUN = ("data_hash", "preset", "budget", "precision")  # what the records of one run folder share (`RunFolder.claim`)
# What a model's seeds share, for the mean of its row to be one measurement (`RunFolder.set_aside_unlike`).
RECIPE = (("hparams", "hyper-parameters"), ("train_precision", "--precision"), ("feature_space", "feature space"),
          ("fid_samples", "sample count"))


def col(header: str, fmt: str = "{}", **meta: Any) -> Any:
    """A Record field shown in the tables under `header`, formatted with `fmt`."""
    return field(default=None, metadata={"header": header, "fmt": fmt, **meta})


SCORED = "scored by benchmarks.score from "  # the event that marks a record as samples made elsewhere


@dataclass
class Record:
    """One model (or the data row) trained and evaluated with one seed. Units are in the names or headers."""

    model: str  # registered name, variant included (ddim@10)
    seed: int
    status: str = col("status")  # ok | error | diverged | skipped
    error: str | None = None  # one line: why it did not finish, or why it was skipped
    # sample quality, in `feature_space`, against the training split
    fid: float | None = col("FID ↓", "{:.2f}", ci=True, quality=True)
    kid: float | None = col("KID ↓", "{:.4f}", ci=True, quality=True)
    kid_std: float | None = None
    precision: float | None = col("precision ↑", "{:.3f}", ci=True, quality=True)
    recall: float | None = col("recall ↑", "{:.3f}", ci=True, quality=True)
    density: float | None = col("density", "{:.3f}", ci=True, quality=True)  # Naeem et al. 2020, k = 5: about 1 for the data
    coverage: float | None = col("coverage ↑", "{:.3f}", ci=True, quality=True)
    recognisable: float | None = col("recognisable ↑", "{:.3f}", ci=True, quality=True)  # share classified with p >= 0.9
    inception_score: float | None = col("IS ↑", "{:.2f}", ci=True, quality=True)  # of the feature net's classifier head (Salimans et al. 2016)
    fid_samples: int | None = col("samples", "{:d}")
    feature_space: str | None = None
    modes: int | None = col("modes ↑", "{:.1f}", ci=True, quality=True)
    mode_kl: float | None = col("mode KL ↓", "{:.3f}", ci=True, quality=True)
    label_accuracy: float | None = col("label acc ↑", "{:.3f}", ci=True, quality=True)
    # memorisation, in `feature_space`: each sample's distance to its nearest training image, against the test images'
    copy_rate: float | None = col("copy rate ↓", "{:.3f}", ci=True, quality=True)  # nearer than 1 % of test images come; data ~0.01
    nn_distance_ratio: float | None = col("NN dist ratio", "{:.2f}", ci=True, quality=True)  # median sample / median test image
    nn_distance_quantiles: dict[str, float] = field(default_factory=dict)  # p05..p95 of sample distance / test median
    # likelihood on the held-out split, bits per sub-pixel on the 8-bit scale
    bits_per_dim: float | None = col("bits/dim ↓", "{:.3f}", ci=True, quality=True)
    bpd_kind: str | None = col("bpd kind")  # exact | bound
    bpd_images: int | None = None
    bpd_extras: dict[str, float] = field(default_factory=dict)  # other figures, by the label the model gives them
    # quality against training compute (`benchmarks.curves`): FID (and more) at shares of the budget;
    # the data row's one point is the floor at the curve's sample count
    quality_curve: list[dict[str, Any]] = field(default_factory=list)
    # training FLOPs where the curve's FID first reaches the target (the footnote says which FID); "not reached"
    flops_to_target: float | str | None = col("TFLOP to target FID", "{:.3f}", ci=True, quality=True, scale=1e-12)
    # cost
    nfe: int | None = col("NFE", "{:d}")
    sample_images_per_s: float | None = col("sample img/s", "{:.1f}", ci=True)
    sample_batch_seconds: float | None = None
    sample_batch: int | None = None
    train_steps: int | None = col("steps", "{:.0f}", ci=True)
    train_flops: float | None = col("train TFLOP", "{:.2f}", scale=1e-12)
    flops_per_step: float | None = None  # of the global batch: every data-parallel process's FLOPs together
    train_processes: int | None = None  # data-parallel processes that trained it (1: no data parallelism)
    deterministic: bool | None = None  # trained and evaluated with deterministic kernels (--deterministic)
    train_precision: str | None = None  # --precision: fp32, bf16, ...
    train_seconds: float | None = col("train s", "{:.0f}", ci=True)
    train_images_per_s: float | None = col("train img/s", "{:.0f}", ci=True)
    eval_seconds: dict[str, float] = field(default_factory=dict)  # per phase: sampling, fidelity, likelihood
    peak_memory_mb: float | None = col("peak MB", "{:.0f}", ci=True)
    memory_kind: str | None = None  # cuda_peak_allocated | cpu_process_peak_rss
    params: int | None = col("params", "{:,}")
    # provenance: what was trained and evaluated, so a rerun reuses only what matches
    budget: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # from --set
    train_key: str | None = None
    eval_key: str | None = None
    checkpoint: str | None = None  # folder, relative to the run folder
    weights_hash: str | None = None
    train_reused: bool = False
    events: list[str] = field(default_factory=list)  # resumed, interrupted, ...
    diverged_step: int | None = None
    loss_curve: list[list[float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def scored(self) -> bool:
        """Samples made elsewhere, scored by `benchmarks.score`: no training, no model to draw from."""
        return any(e.startswith(SCORED) for e in self.events)

    @property
    def file_name(self) -> str:
        return f"{self.model}--seed{self.seed}.json"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any], seed: int = 0) -> Record:
        """A record from results.json; records of older runs (no seed, a VAE's `bpd_elbo`) still read."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        if "bpd_elbo" in d:  # first-wave files kept the VAE's ELBO under its own key
            elbo = d.pop("bpd_elbo")
            d.setdefault("bpd_extras", {} if elbo is None else {"ELBO": elbo})
        d.setdefault("seed", seed)
        clean = {k: v for k, v in d.items() if k in names and v is not None}
        hints = _field_types()
        for k, v in clean.items():  # a hand-edited `"seed": "x"` would fail later, deep in a sort or a format
            if isinstance(v, float) and v.is_integer() and not of_type(v, hints[k], finite=False) and of_type(int(v), hints[k]):
                clean[k] = int(v)  # a count a plugin gave as a float (an NFE of 8.0)
            elif not of_type(v, hints[k], finite=False):
                raise TypeError(f"{k} is {v!r}, not {hints[k]}")
        return cls(**clean)


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Record)


# The table's columns, in order: (field, header, format, show a confidence interval, scale).
COLUMNS = tuple(
    (f.name, f.metadata["header"], f.metadata["fmt"], f.metadata.get("ci", False), f.metadata.get("scale", 1))
    for f in dataclasses.fields(Record) if "header" in f.metadata
)
# The columns that say how good a model is (quality and likelihood), not what it cost: the numbers two runs of
# one command must share, and that a run on another machine is checked against (`benchmarks.compare`).
QUALITY_COLUMNS = tuple(f.name for f in dataclasses.fields(Record) if f.metadata.get("quality"))


# -- the run folder ----------------------------------------------------------------------------

_WARNED: set[tuple[Path, int]] = set()  # the damaged files warned of in this process: (path, mtime)


def describe_device(run: dict[str, Any], missing: str) -> str:
    """A run's device as its results.json records it: "cpu (x86_64, 2 threads)", "cuda (NVIDIA H100 ...)";
    `missing` where the run recorded none."""
    device, name = run.get("device"), run.get("device_name")
    if device is None:
        return missing
    if str(device).startswith("cpu") and run.get("threads"):
        threads = run["threads"]
        return f"{device} ({name}, {threads} thread{'s' if threads != 1 else ''})"
    return f"{device} ({name})" if name else str(device)


def warn_once(path: Path, text: str) -> None:
    """A damaged file's warning, said once a process for the file as it is (a reader reads a folder
    more than once: compare reads both sides, explore reads again to redraw the page)."""
    try:
        seen = (path.resolve(), path.stat().st_mtime_ns)
    except OSError:
        seen = (path.resolve(), -1)
    if seen not in _WARNED:
        _WARNED.add(seen)
        say(text)


class RunFolder:
    """`results.json` (run info + every record), `records/` (one file per record), samples, checkpoints."""

    SUBFOLDERS = ("records", "samples", "plots", "checkpoints", "snapshots", "explore", "set-aside")  # what runs write

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records_dir = self.path / "records"
        self.results = self.path / "results.json"

    def check_subfolders(self, option: str) -> None:
        """One line where a file stands in place of a folder runs write (a stray copy, a hand edit)."""
        if files := [name for name in self.SUBFOLDERS if (self.path / name).exists() and not (self.path / name).is_dir()]:
            raise GenzooError(f"{option} {self.path} holds {', '.join(files)} as a file where a run keeps a folder; "
                              "move it away, or give another folder")

    def check_same_data(self, run: dict[str, Any], content_hash: str, dataset: str, why: str) -> None:
        """One line where the data as read now is not the data the run trained on (by content hash)."""
        if run.get("data_hash") not in (None, content_hash):
            raise GenzooError(f"{self.path} was run on other data (hash {run['data_hash']}) than {dataset} as read now "
                              f"(hash {content_hash}): {why}")

    @property
    def trainings(self) -> Path:
        """The folder holding `checkpoints/` and `snapshots/`: this one, or for a folder set aside
        (`RUN/set-aside/N-NAME/`, which takes its records and grids but not its trainings) the run's."""
        aside = self.path.resolve()
        if not (self.path / "checkpoints").is_dir() and aside.parent.name == "set-aside" and (aside.parents[1] / "checkpoints").is_dir():
            return aside.parents[1]
        return self.path

    def checkpoint(self, train_key: str) -> Path:
        return self.trainings / "checkpoints" / train_key

    def checkpoint_of(self, record: Record) -> Path | None:
        """The checkpoint folder a record names; None where it names none, or a path outside the run
        folder (a record edited by hand)."""
        name = record.checkpoint
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            return None
        return self.trainings / name

    def snapshots(self, train_key: str) -> Path:
        """A training's snapshot strips, one per quality-curve point (`benchmarks.curves`)."""
        return self.trainings / "snapshots" / train_key

    def samples(self, record: Record) -> Path:
        """The sample grid of a record (first-wave folders kept one grid per model, without the seed)."""
        path = self.path / "samples" / f"{record.model}--seed{record.seed}.png"
        older = self.path / "samples" / f"{record.model}.png"
        return older if not path.exists() and older.exists() else path

    @contextlib.contextmanager
    def lock(self, name: str = "results", on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """An exclusive lock on `name` in this folder, across processes (fcntl, POSIX; the kernel
        releases it when its process dies, even by SIGKILL). `on_wait` is called when another holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / f".{name}.lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def load_records(self, repair: bool = True) -> dict[tuple[str, int], Record]:
        """Every record in `records/`. One that does not parse is read from its copy in results.json
        where that has one; with `repair` (the commands that write here: run, score, report) the file
        is also set aside and written again from that copy. Without it (`read`, for the readers:
        compare, index, explore, serve) no file changes, and a warning says what was read instead."""
        out: dict[tuple[str, int], Record] = {}
        for path in sorted(self.records_dir.glob("*.json")) if self.records_dir.is_dir() else []:
            try:
                r = Record.from_json(json.loads(path.read_text()))
                if r.file_name != path.name or not isinstance(r.status, str):  # its seed or status edited away
                    raise ValueError(f"{path.name} holds the record {r.file_name} of status {r.status}")
            except (ValueError, TypeError, KeyError):
                copy = self.copy_in_results(path.name)
                if repair:
                    set_aside(path, f"{path} did not parse", "written again from results.json" if copy else "")
                    if copy is not None:
                        self.write_record(copy)
                else:
                    warn_once(path, f"warning: {path} does not parse; " + ("read from its copy in results.json" if copy
                                                                           else "left out")
                              + " (the next run or report in this folder sets it aside)")
                if copy is None:
                    continue
                r = copy
            out[(r.model, r.seed)] = r
        return out

    def copy_in_results(self, file_name: str) -> Record | None:
        """results.json's copy of the record kept in `records/file_name`, if it has one that reads."""
        try:
            data = json.loads(self.results.read_text())
            seed, entries = data["run"].get("seed", 0), list(data["models"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        for entry in entries:  # each on its own: one mistyped entry does not hide the others
            try:
                copy = Record.from_json(entry, seed)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if copy.file_name == file_name:
                return copy
        return None

    def run_info(self, warn: bool = False) -> dict[str, Any]:
        """The run's settings from results.json; {} where it is missing or does not parse (with `warn`,
        said once: the tables are then made from records/ without them)."""
        try:
            return self._settings(json.loads(self.results.read_text())["run"], warn)
        except (OSError, ValueError, KeyError, TypeError):
            if warn and (self.results.exists() or self.records_dir.is_dir()):  # deleted: the tables would say "?"
                problem, mend = (("does not parse", "the next run in this folder sets it aside and rebuilds it")
                                 if self.results.exists() else ("is missing", "the run's command in this folder rebuilds it"))
                warn_once(self.results, f"warning: {self.results} {problem}; records/ read alone, without the run's "
                                        f"settings ({mend})")
            return {}

    def _settings(self, run: Any, warn: bool) -> dict[str, Any]:
        """results.json's run settings, less those of another type than runs write (said once with `warn`)."""
        if not isinstance(run, dict):
            raise TypeError(f"the run settings are a {type(run).__name__}")
        odd = [k for k, kinds in RUN_INFO_TYPES.items() if k in run and not isinstance(run[k], kinds)]
        if odd and warn:
            warn_once(self.results, f"warning: {self.results}: the run's {', '.join(odd)} {'is' if len(odd) == 1 else 'are'} "
                                    "of another type than a run writes (edited by hand?); read as absent")
        return {k: v for k, v in run.items() if k not in odd}

    def read(self) -> tuple[dict[str, Any], list[Record]]:
        """Run info and records; from `records/` where it exists, else from results.json (older runs).
        It changes no file: a command that writes here repairs a damaged record first (`load_records`)."""
        records = self.load_records(repair=False)
        if records:
            try:  # the order results.json was merged in: the data row, then models as asked for
                order = [m["model"] for m in json.loads(self.results.read_text())["models"]]
            except (OSError, ValueError, KeyError, TypeError):
                order = []
            return self.run_info(warn=True), sorted(records.values(), key=lambda r: (sort_key(r.model, order), r.seed))
        if not self.results.exists():
            raise GenzooError(f"no results.json in {self.path}; pass a run folder written by benchmarks.run")
        try:
            data = json.loads(self.results.read_text())
        except (OSError, ValueError) as e:
            raise GenzooError(f"{self.results} cannot be read ({type(e).__name__}) and there is no records/ folder to rebuild it from") from None
        if not (isinstance(data, dict) and isinstance(data.get("run"), dict) and isinstance(data.get("models"), list)):
            raise GenzooError(f"{self.results} is not a run's results (a JSON object with the run's settings and its "
                              "models' records) and there is no records/ folder to rebuild it from")
        try:
            run = self._settings(data["run"], warn=True)
            return run, [Record.from_json(r, run.get("seed", 0)) for r in data["models"]]
        except (KeyError, TypeError, AttributeError) as e:
            raise GenzooError(f"{self.results} is not a run's results ({one_line(e)}) and there is no records/ folder "
                              "to rebuild it from") from None

    @contextlib.contextmanager
    def claim(self, run: dict[str, Any], order: list[str]) -> Iterator[None]:
        """A runner's hold on the folder while it runs, shared with runners of the same settings.
        Records made on other images or under another preset, budget or precision must not join this run's table:
        while no runner holds the folder they are moved with their results.json into
        `set-aside/N-PRESET-HASH/` (kept, not deleted; the checkpoints stay, keyed by what they trained);
        while one does, this runner is refused in one line. The settings are written at once, so a runner
        started a moment later compares with them."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".run.lock", "a+") as hold:  # readable: NFS refuses a shared lock on a write-only file
            try:
                fcntl.flock(hold, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:  # another runner holds it: shared while it runs, exclusive while it claims
                fcntl.flock(hold, fcntl.LOCK_SH)  # waits out a claim in progress, so its settings are the ones read
                alone = False
            with self.lock():
                self._set_aside_other_run(run, alone)
                self._merge(run, order)
            fcntl.flock(hold, fcntl.LOCK_SH)  # held until the runner ends; the kernel drops it if the process dies
            yield

    def _set_aside_other_run(self, run: dict[str, Any], alone: bool) -> None:
        old = self.run_info()
        differs = [k for k in SAME_RUN if k in old and _same_run_value(k, old[k]) != _same_run_value(k, run.get(k))]
        if not differs:
            return
        named = {"data_hash": "other images or labels", "preset": "another preset", "budget": "another budget",
                 "precision": "another precision"}
        what = f"{' and '.join(named[k] for k in differs)} ({'; '.join(f'was {old[k]}, now {run.get(k)}' for k in differs)})"
        if not alone:  # its records would join this table, or this run's records its table
            raise GenzooError(f"another runner is writing to {self.path}, with {what}; wait for it to finish, "
                              "or give this run another --out")
        aside = self._new_aside(f"{old.get('preset', '')}-{str(old.get('data_hash', ''))[:8]}")
        for part in (self.records_dir, self.results, self.path / "samples"):  # the grids too: its report redraws from them
            if part.exists():
                part.replace(aside / part.name)
        say(f"warning: {self.path} holds results made with {what}; moved to {aside.relative_to(self.path)}/, "
            "this table starts afresh")

    def set_aside_unlike(self, record: Record) -> None:
        """A model's row is the mean over its seeds: its other seeds' records measured otherwise (a
        rerun of some seeds with --set; --precision where records were put together by hand) are moved, with
        their grids, into `set-aside/N-MODEL/` with the run's settings, one warning line each (kept, as another
        run's records are)."""
        with self.lock():
            unlike = [(other, [(key, name) for key, name in RECIPE if settings_differ(getattr(other, key), getattr(record, key))])
                      for other in self.load_records().values() if other.model == record.model and other.seed != record.seed]
            unlike = [(other, differs) for other, differs in unlike if differs]
            if not unlike:
                return
            aside = self._new_aside(record.model)
            for part in ("records", "samples"):
                (aside / part).mkdir()
            for other, differs in unlike:
                (self.records_dir / other.file_name).replace(aside / "records" / other.file_name)
                if (grid := self.samples(other)).is_file():
                    grid.replace(aside / "samples" / grid.name)
                said = "; ".join(f"{name} {difference(getattr(other, key), getattr(record, key))}" for key, name in differs)
                say(f"warning: {record.model} seed {other.seed} was measured with other {said}; moved to "
                    f"{aside.relative_to(self.path)}/: the row is the mean of the seeds measured alike")
            RunFolder(aside).merge(self.run_info(), [record.model])  # a run folder of its own: report, explore and serve read it

    def _new_aside(self, name: str) -> Path:
        """A new folder `set-aside/N-NAME/`, N one more than any there."""
        parent = self.path / "set-aside"
        taken = [int(p.name.split("-")[0]) for p in parent.glob("*") if p.name.split("-")[0].isdigit()]
        aside = parent / f"{max(taken, default=0) + 1}-{name}"
        aside.mkdir(parents=True)
        return aside

    def write_record(self, record: Record) -> None:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.records_dir / record.file_name, json.dumps(record.to_json(), indent=1))

    def merge(self, run: dict[str, Any], order: list[str]) -> list[Record]:
        """Rewrite results.json from every record file, under the lock; returns the records in order."""
        with self.lock():
            return self._merge(run, order)

    def _merge(self, run: dict[str, Any], order: list[str]) -> list[Record]:
        if self.results.exists() and not self.run_info():
            set_aside(self.results, f"{self.results} did not parse")  # rebuilt below from the record files
        records = list(self.load_records().values())
        records.sort(key=lambda r: (sort_key(r.model, order), r.seed))
        old = self.run_info()
        run = {**old, **run, "history": old.get("history", []) + run.get("new_history", [])}
        run.pop("new_history", None)
        run["seeds"] = sorted({*old.get("seeds", []), *run.get("seeds", [])})
        atomic_write(self.results, json.dumps({"run": run, "models": [r.to_json() for r in records]}, indent=1))
        return records


def _same_run_value(key: str, value: Any) -> Any:
    """A SAME_RUN setting as compared: a precision by its name alone (runs before tf32_matmuls was
    recorded apart wrote "fp32 (TF32 matmuls)" on CUDA, and a device is not a setting of the table)."""
    return str(value).split(" ")[0] if key == "precision" and value is not None else value


def _as_read(value: Any) -> Any:
    """A value as a record file gives it back: JSON turns tuples into lists and int keys into strings."""
    return json.loads(json.dumps(value, default=str))


def settings_differ(was: Any, now: Any) -> bool:
    """Whether two records' settings differ where both have them: a config's fields both know (a
    record from before a field was added lacks it), any other value where both have one."""
    if isinstance(was, dict) and isinstance(now, dict):
        return any(_as_read(was[k]) != _as_read(now[k]) for k in was.keys() & now.keys())
    return bool(was) and bool(now) and _as_read(was) != _as_read(now)


def difference(was: Any, now: Any) -> str:
    """"(latent_dim was 4, now 2)" for two configs, "(was fp32, now bf16)" for two values."""
    if isinstance(was, dict) and isinstance(now, dict):
        return "(" + ", ".join(f"{k} was {was[k]!r}, now {now[k]!r}"
                               for k in sorted(was.keys() & now.keys()) if _as_read(was[k]) != _as_read(now[k])) + ")"
    return f"(was {was}, now {now})"


def sort_key(model: str, order: list[str]) -> tuple[int, int, str]:
    """The data row first, then models in the asked-for order, then others by name."""
    if model == DATA_ROW:
        return (0, 0, model)
    return (1, order.index(model), model) if model in order else (2, 0, model)


# -- seeds: mean and 95 % confidence interval ------------------------------------------------------

LEVEL = 0.95  # the confidence of every interval the tables print


def is_number(value: Any) -> bool:
    """Whether a record's value is a number (a JSON true is a bool, not the number 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def t_interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and half-width of the Student-t confidence interval at LEVEL of the finite values (None for
    fewer than 2; the mean is NaN where there are none: a flagged record's inf or NaN)."""
    import numpy as np
    from scipy import stats

    vals = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(vals) < 2:
        return (float(vals[0]) if len(vals) else math.nan), None
    mean = float(vals.mean())
    _, high = stats.t.interval(LEVEL, len(vals) - 1)  # the interval of the standard t; scaled by the standard error
    return mean, float(high * stats.sem(vals))


@dataclass
class Row:
    """A table row: one model over its seeds. `cells` maps a field to (mean, half-width or None)."""

    model: str
    seeds: list[int]
    records: list[Record]
    cells: dict[str, tuple[Any, float | None]]
    table_seeds: int = 1  # the seeds of the whole table, whose mean the footnote says the rows are

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.records)

    @property
    def status(self) -> str:
        bad = [r for r in self.records if not r.ok]
        if bad:
            return f"{bad[0].status}" + (f" ({len(bad)}/{len(self.records)} seeds)" if len(self.records) > 1 else "")
        if self.model == DATA_ROW or len(self.seeds) >= self.table_seeds or all(r.scored for r in self.records):
            # the data row is scored once; samples made elsewhere have the seeds they were given
            return "ok"
        return f"ok ({len(self.seeds)} of {self.table_seeds} seeds)"


def _cell(values: Iterable[Any], ci: bool) -> tuple[Any, float | None]:
    """One column over a model's seeds: the mean and t-interval of its numbers in a column with an
    interval (`ci`), else its first value given."""
    values = list(values)
    numeric = [float(v) for v in values if is_number(v)]
    if ci and numeric:
        return t_interval(numeric)
    return next((v for v in values if v is not None), None), None


def aggregate(records: list[Record]) -> list[Row]:
    """One row per model, in the order the models first appear, its seeds in order: each column
    over the seeds that finished (over all of them where none did)."""
    import pandas as pd

    if not records:
        return []
    order = list(dict.fromkeys(r.model for r in records))
    records = sorted(records, key=lambda r: r.seed)  # stable: each model's records in seed order
    model = pd.Series(pd.Categorical([r.model for r in records], categories=order))
    ok = pd.Series([r.ok for r in records])
    done = ok | ~ok.groupby(model, observed=True).transform("any")
    values = pd.DataFrame({name: pd.Series([getattr(r, name) for r in records], dtype=object) for name, *_ in COLUMNS})
    cells = values[done].groupby(model[done], observed=True).agg(
        {name: functools.partial(_cell, ci=ci) for name, _, _, ci, _ in COLUMNS})
    rows = []
    for name, rs in pd.Series(records, dtype=object).groupby(model, observed=True):
        rs = list(rs)
        row = Row(name, [r.seed for r in rs], rs, dict(cells.loc[name]), len({r.seed for r in records}))
        row.cells["status"] = (row.status, None)
        rows.append(row)
    return rows
