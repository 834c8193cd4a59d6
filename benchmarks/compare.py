"""Does a run measure what a reference run measured?

    python -m benchmarks.compare results/mnist5k-quick results/cpu-mnist5k-quick
    python -m benchmarks.compare second-run first-run --identical

Across machines a run cannot repeat a reference to the last digit: another processor's kernels round
differently, and a few thousand steps turn that into other weights. What it can do is land where the
reference's seeds land. So, for each model both folders hold and each quality or likelihood column
(`records.QUALITY_COLUMNS`), this prints the reference's mean and 95 % t-interval over its n seeds,
this run's mean over its own m seeds, and whether that mean falls where the mean of m new seeds drawn
like the reference's would fall 95 % of the time: within t s sqrt(1/n + 1/m) of the reference's mean
(s its seeds' standard deviation; the interval of the reference's mean alone, t s / sqrt(n), is half
as wide for n = 3, m = 1, and a run like the reference's would fall outside it one time in six).
If not, by how much; one such check in twenty fails for a run drawn exactly like the reference's,
and the last line says how many of them to expect so. A
reference with one seed has no interval: its number and this run's are compared as they are, and
agree where the tables print them alike (the data row on another processor differs in float32's last
digits). A seed gives a number or a word instead ("not reached", inf, NaN). An outcome no reference
seed gave disagrees, also beside numbers (whose mean is then not compared). One the reference's
seeds gave and none of this run's (it reached the target every time) is where the reference's seeds
split: runs drawn like them leave an outcome out by chance, a one-seed run always, so it disagrees
only where that is rarer than one time in twenty, like an interval check, and is said beside the
verdict otherwise. One number among the other seeds' words (a target one seed reached and the others
did not) has no interval either, and is no one-seed reference: it is not compared. A
column only one of the two measured (curves off, no likelihood) is left out. A model (a seed, with
--identical) that finished in the reference and diverged or failed in this run disagrees.

`--identical` is the stricter check for one machine (or one GPU with `--deterministic`): record by
record (model and seed), every quality and likelihood number and the weights' hash must be equal,
and the two folders must hold the same records with the same status (a record only one holds
disagrees). Without it, a model only one folder holds is named under the table, not compared.

Only like is compared with like. Folders of different datasets are refused in one line; a model whose
ruler (feature space), budget, hyper-parameters or sample count differ between the two is listed as
not comparable, with the reason. The exit status is 0 when every compared number agrees, 1 otherwise.
"""
from __future__ import annotations

import itertools
import math
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks.cli import Parser
from benchmarks.records import COLUMNS, LEVEL, QUALITY_COLUMNS, Record, RunFolder, difference, is_number, settings_differ, t_interval
from zoo.base import GenzooError

HEADER = {name: header for name, header, *_ in COLUMNS}
FORMAT = {name: (spec.replace("{:d}", "{:.1f}"), scale) for name, _, spec, _, scale in COLUMNS}
# What must be the same for two records of a model to measure the same thing.
LIKE = (("feature_space", "the rulers"), ("budget", "the budgets"), ("hparams", "the hyper-parameters"), ("fid_samples", "the sample counts"))


@dataclass
class Finding:
    """One number of one model (one seed with --identical) against the reference."""

    model: str
    column: str
    reference: str  # as the tables print it: mean ± half-width (n seeds)
    run: str
    agrees: bool
    verdict: str  # "inside", "outside by ...", "equal", "differs by ...", "not comparable: ..."
    by_chance: float = 0.0  # how often a run drawn like the reference's disagrees here: 0.05 for a prediction interval


NUMBER = "a number"  # a seed's outcome in a column where it gave a finite number, beside the words


def numbers(records: list[Record], column: str) -> list[float]:
    """A column's finite numbers over the records: a flagged record's inf or NaN is its `outcome`, a word."""
    return [float(v) for r in records if is_number(v := getattr(r, column)) and math.isfinite(v)]


def outcome(value: Any) -> str | None:
    """A seed's outcome in a column: NUMBER for a finite number, else the word it holds instead ("not
    reached", "inf", "nan"); None where it measured nothing."""
    if isinstance(value, str):
        return value
    if not is_number(value):
        return None
    return NUMBER if math.isfinite(value) else str(float(value))


def outcomes(records: list[Record], column: str) -> Counter[str]:
    """How many of the records gave a finite number and how many each word, in a column."""
    return Counter(o for r in records if (o := outcome(getattr(r, column))) is not None)


def missed(reference: Counter[str], seeds: int) -> float:
    """How often `seeds` seeds drawn like the reference's, each outcome as often as among its seeds,
    leave out at least one of its outcomes (inclusion-exclusion over the outcomes left out)."""
    shares = [count / reference.total() for count in reference.values()]
    return sum(((-1) ** (k + 1) * (1 - sum(left_out)) ** seeds
                for k in range(1, len(shares)) for left_out in itertools.combinations(shares, k)), 0.0)


def show(column: str, value: float) -> str:
    spec, scale = FORMAT[column]
    return spec.format(value * scale)


def unlike(ref: list[Record], run: list[Record]) -> str | None:
    """Why a model's records in the two folders do not measure the same thing, by the rule a run
    folder sets unlike seeds aside with (`records.settings_differ`), with the values that differ;
    None when they do."""
    for field, name in LIKE:
        for was, now in ((getattr(a, field), getattr(b, field)) for a in ref for b in run):
            if settings_differ(was, now):
                return f"not comparable: {name} differ from the reference to this run {difference(was, now)}"
    return None


def against_interval(model: str, column: str, ref: list[Record], run: list[Record]) -> Finding | None:
    """This run's mean of a column against the reference's interval over its seeds; None where one
    of the two did not measure it."""
    ref_values, run_values = numbers(ref, column), numbers(run, column)
    ref_outcomes, run_outcomes = outcomes(ref, column), outcomes(run, column)
    if not ref_outcomes or not run_outcomes:
        return None  # one of them did not measure it (no likelihood, curves off)
    reference, ours_cell = cell(column, ref_values, ref_outcomes), cell(column, run_values, run_outcomes)
    # a word no reference seed gave (cgan "not reached" where all the reference's reached), or a number where
    # its seeds gave words alone, is a difference, not a seed to leave out of the mean
    if added := run_outcomes.keys() - ref_outcomes.keys():
        return Finding(model, column, reference, ours_cell, False,
                       f"{', '.join(sorted(added))} only in this run ({seeds_giving(run_outcomes, added)})")
    # one the reference's seeds gave and none of this run's (it reached the target every time) is where the
    # reference's seeds split: runs drawn like them leave one out by chance, a one-seed run always; a
    # difference where that is rarer than an interval check's one in twenty, else said beside the verdict
    miss = missed(ref_outcomes, run_outcomes.total())
    flagged = miss if miss < 1 - LEVEL else 0.0  # how often a run drawn like the reference is told so
    left_out, note = ref_outcomes.keys() - run_outcomes.keys(), ""
    if left_out:
        note = (f"{', '.join(sorted(left_out))} only in the reference ({seeds_giving(ref_outcomes, left_out)}; "
                f"{run_outcomes.total()}-seed runs drawn like it leave one of its outcomes out {100 * miss:.0f} % of the time)")
        if miss < 1 - LEVEL:
            return Finding(model, column, reference, ours_cell, False, note, flagged)

    def agreed(verdict: str, by_chance: float = flagged) -> Finding:
        return Finding(model, column, reference, ours_cell, True, "; ".join(filter(None, (verdict, note))), by_chance)

    if not run_values:  # words alone, each one the reference's seeds also gave
        return agreed("" if left_out else "equal")
    mean, half = t_interval(ref_values)
    if half is None and ref_outcomes.total() > 1:  # one seed's number among the others' words: no spread to hold this run's to
        return agreed(f"numbers not compared: the reference's is one seed's of {ref_outcomes.total()}, without a spread")
    ours = sum(run_values) / len(run_values)
    printed_alike = ours != mean and show(column, ours) == show(column, mean)  # another processor's float rounding
    if half is None:
        if ours == mean or printed_alike:
            return agreed("equal as printed" if printed_alike else "equal")
        return Finding(model, column, reference, ours_cell, False, f"differs by {show(column, ours - mean)}"
                       + (f" ({100 * (ours - mean) / abs(mean):+.1f} %)" if mean else ""), flagged)
    reach = half * math.sqrt(1 + len(ref_values) / len(run_values))  # t s sqrt(1/n + 1/m): see the docstring
    off = abs(ours - mean) - reach
    chance = flagged + (1 - flagged) * (1 - LEVEL if reach > 0 else 0.0)  # an outcome left out, or else outside
    if off <= 0 or printed_alike:
        return agreed(f"inside ± {show(column, reach)}", chance)
    return Finding(model, column, reference, ours_cell, False,
                   f"outside ± {show(column, reach)} by {show(column, off)}"
                   if reach > 0 else f"outside by {show(column, off)} (the reference's seeds agree exactly)", chance)


def seeds_giving(counts: Counter[str], chosen: set[str]) -> str:
    """How many of a side's seeds gave the chosen outcomes: "1 of its 3 seeds", or "its one seed"."""
    seeds = counts.total()
    return f"{sum(counts[o] for o in chosen)} of its {seeds} seeds" if seeds > 1 else "its one seed"


def cell(column: str, values: list[float], counts: Counter[str]) -> str:
    """A side's numbers as the tables print them, then the words its seeds gave instead."""
    return ", ".join([describe(column, values)] * bool(values) + sorted(counts.keys() - {NUMBER}))


def describe(column: str, values: list[float]) -> str:
    """Values as the tables print them: the mean, ± the interval's half-width with several, the seed count."""
    if not values:
        return ""
    mean, half = t_interval(values)
    spec, scale = FORMAT[column]
    text = spec.format(mean * scale) + (f" ± {spec.format(half * scale)}" if half is not None else "")
    return text + f" ({len(values)} seed{'s' if len(values) > 1 else ''})"


def identical(model: str, ref: Record, run: Record) -> Iterator[Finding]:
    """Every quality and likelihood number of one record, and its weights' hash, against the reference's."""
    pairs: list[tuple[str, Any, Any]] = [(c, getattr(ref, c), getattr(run, c)) for c in QUALITY_COLUMNS]
    pairs += [(f"bits/dim {k}", ref.bpd_extras.get(k), run.bpd_extras.get(k)) for k in sorted(ref.bpd_extras.keys() | run.bpd_extras.keys())]
    pairs += [("weights_hash", ref.weights_hash, run.weights_hash)]
    for column, a, b in pairs:
        if a is None and b is None:
            continue
        same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
        yield Finding(f"{model} seed {run.seed}", column, str(a), str(b), same, "equal" if same else "differs")


def compare(run: RunFolder, reference: RunFolder, exact: bool = False) -> list[Finding]:
    """The findings for every model both folders finished (the data row included), in the run's order."""
    run_info, run_records = run.read()
    ref_info, ref_records = reference.read()
    for folder, info in ((run, run_info), (reference, ref_info)):
        if "dataset" not in info:
            raise GenzooError(f"{folder.path} has no run settings ({folder.results} does not parse or holds no run): "
                              "which data it ran on is unknown; a rerun of its command there rebuilds them")
    # the images themselves, where both runs recorded their hash: one folder under two paths is one dataset
    hashes = {run_info.get("data_hash"), ref_info.get("data_hash")}
    key = "data_hash" if None not in hashes else "dataset"
    if run_info.get(key) != ref_info.get(key):
        raise GenzooError(f"{run.path} is a run on {run_info.get('dataset')} and {reference.path} on "
                          f"{ref_info.get('dataset')}" + (" (other images or labels: their hashes differ)" if key == "data_hash" else "")
                          + "; compare runs on one dataset")
    spaces = [{r.feature_space for r in records if r.ok and r.feature_space} for records in (run_records, ref_records)]
    if all(spaces) and not spaces[0] & spaces[1]:
        raise GenzooError(f"{run.path} was measured in {', '.join(sorted(spaces[0]))} and {reference.path} in "
                          f"{', '.join(sorted(spaces[1]))}; numbers from different feature spaces are not comparable")
    ours = {m: [r for r in run_records if r.model == m and r.ok] for m in dict.fromkeys(r.model for r in run_records)}
    theirs = {m: [r for r in ref_records if r.model == m and r.ok] for m in dict.fromkeys(r.model for r in ref_records)}
    found = []
    if exact:  # the same command twice holds the same records: one the other run lacks, or another status, differs
        for model, seed, where in one_sided(run_records, ref_records, by_seed=True):
            found.append(Finding(f"{model} seed {seed}", "–", "", "", False, f"only in {where}"))
        statuses = {(t.model, t.seed): t.status for t in ref_records}
        found += [Finding(f"{r.model} seed {r.seed}", "status", statuses[r.model, r.seed], r.status, False,
                          f"{r.status} in this run, {statuses[r.model, r.seed]} in the reference")
                  for r in run_records if statuses.get((r.model, r.seed), r.status) != r.status and not
                  (r.status in ("error", "diverged") and statuses[r.model, r.seed] == "ok")]  # that one: just below
    for r in (r for r in run_records if r.status in ("error", "diverged")):  # failed here, finished there: a disagreement
        same_seed = [t for t in ref_records if t.model == r.model and t.seed == r.seed]
        if any(t.ok for t in same_seed) or (not same_seed and not exact and any(t.ok for t in ref_records if t.model == r.model)):
            found.append(Finding(r.model if not exact else f"{r.model} seed {r.seed}", "status", "ok", r.status, False,
                                 f"seed {r.seed}: {r.status} in this run, finished in the reference"))
    for model, records in ours.items():
        ref = theirs.get(model, [])
        if not records or not ref:
            continue
        why = unlike(ref, records)
        if why:
            found.append(Finding(model, "–", "", "", False, why))
        elif exact:
            by_seed = {r.seed: r for r in ref}
            for r in records:
                if r.seed in by_seed:
                    found += identical(model, by_seed[r.seed], r)
        else:
            found += [f for c in QUALITY_COLUMNS if (f := against_interval(model, c, ref, records)) is not None]
    if not found:
        raise GenzooError(f"{run.path} and {reference.path} share no finished model (and seed, with --identical) to compare")
    return found


def one_sided(run_records: list[Record], ref_records: list[Record], by_seed: bool) -> list[tuple[str, int | None, str]]:
    """The models (with `by_seed`, the model and seed pairs) that only one of the two folders holds:
    (model, seed or None, "this run" or "the reference")."""
    def keys(records: list[Record]) -> dict[tuple[str, int | None], None]:
        return dict.fromkeys((r.model, r.seed if by_seed else None) for r in records)
    mine, theirs = keys(run_records), keys(ref_records)
    return [(m, s, "this run") for m, s in mine if (m, s) not in theirs] + [
        (m, s, "the reference") for m, s in theirs if (m, s) not in mine]


def table(found: list[Finding], exact: bool) -> Table:
    t = Table(title="record by record" if exact else "this run's mean against the reference's 95 % interval")
    for h in ("model", "column", "reference", "this run", "verdict"):
        t.add_column(h, no_wrap=h in ("model", "column"))
    for f in found:
        t.add_row(f.model, HEADER.get(f.column, f.column), f.reference, f.run, escape(f.verdict),
                  style=None if f.agrees else "red")
    return t


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m benchmarks.compare", description=(__doc__ or "").split("\n\n")[0])
    p.add_path("run", help="the run folder to check")
    p.add_path("reference", help="the run folder to check it against, e.g. results/cpu-mnist5k-quick")
    p.add_argument("--identical", action="store_true", help="every quality and likelihood number and the weights' "
                   "hash equal, record by record (the same command twice on one machine)")
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        args = p.parse_args(argv)
        for path in (args.run, args.reference):
            if not RunFolder(path).results.is_file() and not RunFolder(path).records_dir.is_dir():
                raise GenzooError(f"no results.json in {path}; pass run folders written by benchmarks.run")
        run, reference = RunFolder(args.run), RunFolder(args.reference)
        found = compare(run, reference, exact=args.identical)
    except GenzooError as e:
        console.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    console.print(table(found, args.identical))
    if not args.identical and (alone := one_sided(run.read()[1], reference.read()[1], by_seed=False)):
        console.print("not compared, in one folder only: " + ", ".join(f"{m} ({where})" for m, _, where in alone),
                      highlight=False, soft_wrap=True)
    bad = [f for f in found if not f.agrees]
    models = sorted({f.model for f in bad})
    expected = sum(f.by_chance for f in found)
    console.print(f"{len(found) - len(bad)} of {len(found)} agree" + (f"; not: {', '.join(models)}" if bad else "")
                  + (f" (a run drawn like the reference's leaves about {expected:.0f} outside by chance)" if expected >= 0.5 else ""),
                  highlight=False, soft_wrap=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
