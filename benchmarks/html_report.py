"""A run as one web page: RUN/index.html, the handout of results.md for a projector.

    python -m benchmarks.report results/mnist5k-quick --html

The page holds the results table (click a header to sort by that column), the comparison figure,
every plot in RUN/plots/ and every lecture figure in RUN/explore/, each with its caption. It is one
self-contained file: the images are the PNGs beside it in the run folder, referenced by relative
path, and the style and the sorting script are inline, so it opens from the file system in any
browser with no network. `report.write_reports` writes it with results.md, from the same records,
so the two never disagree; `benchmarks.run`, `benchmarks.explore` and `benchmarks.report` all end there.

Captions come from where each figure is made: `report.FIGURES` for the comparison and the plots,
`explore.TITLES` and `explore.CAPTIONS` (and what explore.json says each model's drawing shows) for the lecture figures.
A PNG none of them names (a plugin's figure) still appears, captioned with its file name.
"""
from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

from benchmarks.records import COLUMNS, DATA_ROW, Record, Row, RunFolder, aggregate, atomic_write, describe_device, is_number
from benchmarks.report import FIGURES, cells, footnote, headers

PAGE = "index.html"


def write(folder: RunFolder, run: dict[str, Any], records: list[Record]) -> Path:
    """Write RUN/index.html (replaced atomically) and return its path."""
    path = folder.path / PAGE
    atomic_write(path, page(folder, run, records))
    return path


def page(folder: RunFolder, run: dict[str, Any], records: list[Record]) -> str:
    """The whole page as text: a header with the run's settings, the table, the figures."""
    title = f"genzoo · {run.get('dataset', '?')} · preset {run.get('preset', '?')}"
    plots, lecture = figures(folder), lecture_figures(folder)
    nav = [("results", "Results")] + [(id_, name) for id_, name, items in (("figures", "Figures", plots),
                                                                           ("lecture", "Lecture figures", lecture)) if items]
    body = [
        "<header>", f"<h1>{escape(title)}</h1>", settings(run, records),
        "<nav>" + " · ".join(f'<a href="#{i}">{escape(n)}</a>' for i, n in nav) + "</nav>", "</header>",
        '<section id="results">', "<h2>Results</h2>",
        "<p class=\"hint\">Click a column's header to sort by it; click again to reverse. Empty cells stay last.</p>",
        table(records), f'<p class="note">{escape(footnote(run, records))}</p>', unfinished(records), "</section>",
    ]
    if plots:
        body += ['<section id="figures">', "<h2>Figures</h2>", gallery(plots), "</section>"]
    if lecture:
        body += ['<section id="lecture">', "<h2>Lecture figures</h2>",
                 "<p class=\"hint\">Drawn from the run's checkpoints by <code>python -m benchmarks.explore</code>.</p>"]
        for group, items in lecture:
            body += [f"<h3>{escape(group)}</h3>", gallery(items)]
        body.append("</section>")
    return TEMPLATE.substitute(title=escape(title), style=STYLE, script=SCRIPT, body="\n".join(body))


# -- the header and the table -----------------------------------------------------------------------

def settings(run: dict[str, Any], records: list[Record]) -> str:
    """The run at a glance: dataset, preset, seeds, budget, host, ruler and the commands that made it."""
    seeds = run.get("seeds") or sorted({r.seed for r in records})
    space = run.get("feature_space", {})
    items = [("dataset", run.get("dataset")), ("preset", run.get("preset")), ("seeds", ", ".join(map(str, seeds))),
             ("budget", run.get("budget")), ("host", describe_device(run, "")),
             ("feature space", space.get("name") if isinstance(space, dict) else space)]
    items += [("command", f"{h.get('command', '?')} ({h['wall_seconds'] / 60:.1f} min"
               + (f", {h['interrupted']}" if h.get("interrupted") else "") + ")")
              for h in run.get("history", []) if isinstance(h.get("wall_seconds"), (int, float))]
    if run.get("versions"):
        items.append(("versions", ", ".join(f"{k} {v}" for k, v in run["versions"].items())))
    return '<dl class="run">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in items if v) + "</dl>"


def table(records: list[Record]) -> str:
    """The results table as results.md shows it, each cell carrying its sort key in `data-sort`."""
    names = headers()
    head = "".join(f'<th scope="col" tabindex="0">{escape(h)}</th>' for h in names)
    rows = []
    for row in aggregate(records):
        keys = [row.model] + [sort_value(row.cells[name][0], scale) for name, _, _, _, scale in COLUMNS]
        tds = []
        for name, text, key in zip(names, cells(row), keys):
            sort = "" if key is None else f' data-sort="{escape(key)}"'
            tip = f' title="{escape(errors(row))}"' if name == "status" and errors(row) else ""  # why, on hover
            tds.append(f"<td{sort}{tip}>{escape(text)}</td>")
        kind = "data" if row.model == DATA_ROW else "ok" if row.status.startswith(("ok", "skipped")) else "bad"
        rows.append(f'<tr class="{kind}">' + "".join(tds) + "</tr>")
    return ('<div class="scroll"><table class="sortable"><thead><tr>' + head + "</tr></thead><tbody>\n"
            + "\n".join(rows) + "\n</tbody></table></div>")


def sort_value(value: Any, scale: float = 1) -> str | None:
    """What a cell sorts by: a number's value in the column's unit (the mean of "mean ± interval"),
    a word as itself ("not reached", "exact"), None for an empty cell (sorted last)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if is_number(value):
        return repr(float(value) * scale)
    return str(value)


def errors(row: Row) -> str:
    return "; ".join(f"seed {r.seed}: {r.error}" for r in row.records if r.error)


def unfinished(records: list[Record]) -> str:
    bad = [r for r in records if r.status != "ok"]
    if not bad:
        return ""
    items = "".join(f"<li><b>{escape(r.model)}</b> (seed {r.seed}): {escape(r.status)} — {escape(r.error or '')}</li>"
                    for r in bad)
    return f"<h3>Models that did not finish, were skipped or were flagged</h3><ul>{items}</ul>"


# -- the figures --------------------------------------------------------------------------------------

def figures(folder: RunFolder) -> list[tuple[str, str]]:
    """(path relative to the run folder, caption) of the comparison and every PNG in plots/: the
    captioned ones in `report.FIGURES`' order, then any other by name."""
    known = dict(FIGURES)
    found = [f for f in known if (folder.path / f).is_file()]
    plots = folder.path / "plots"
    found += sorted(f"plots/{p.name}" for p in plots.glob("*.png") if f"plots/{p.name}" not in known) if plots.is_dir() else []
    return [(f, known.get(f) or generic_caption(f)) for f in found]


def lecture_figures(folder: RunFolder) -> list[tuple[str, list[tuple[str, str]]]]:
    """The lecture figures by group, (heading, [(path, caption)]), in `explore.FIGURES`' order as
    explore.json lists them; a PNG of RUN/explore/ it does not list comes last, under its file name."""
    out = folder.path / "explore"
    if not out.is_dir():
        return []
    from benchmarks import explore  # here, not above: explore imports report, which imports this module

    try:
        data = json.loads((out / "explore.json").read_text())
        images, numbers = dict(data["images"]), dict(data["figures"])
    except (OSError, ValueError, KeyError, TypeError):
        images, numbers = {}, {}
    order = {k: i for i, k in enumerate(explore.FIGURES)}
    groups, listed = [], set()
    for key in sorted(images, key=lambda k: (order.get(k, len(order)), k)):
        title = explore.TITLES.get(key, key.replace("_", " ").capitalize())
        items = []
        for name in images[key]:
            if (out / name).is_file():
                listed.add(name)
                head = title + drawn_with(key, name, numbers.get(key))
                items.append((f"explore/{name}", head + (f"{'' if head.endswith('?') else '.'} {explore.CAPTIONS[key]}"
                                                         if key in explore.CAPTIONS else "")))
        if items:
            groups.append((title, items))
    rest = sorted(p.name for p in out.glob("*.png") if p.name not in listed)
    if rest:
        groups.append(("Other figures", [(f"explore/{n}", generic_caption(f"explore/{n}")) for n in rest]))
    return groups


def drawn_with(key: str, name: str, numbers: Any) -> str:
    """A per-model figure's model and, where explore.json says, what its panel shows
    (drawing-ddpm.png: ": ddpm, x_t and the predicted clean image at 8 of 1000 sampler steps")."""
    stem = name.removesuffix(".png")
    if not stem.startswith(f"{key}-"):
        return ""
    model = stem[len(key) + 1:]
    what = numbers.get(model, {}).get("what") if isinstance(numbers, dict) and isinstance(numbers.get(model), dict) else None
    return f": {model}" + (f", {what}" if isinstance(what, str) else "")


def generic_caption(path: str) -> str:
    """A figure no one captioned: its file name in words, and the file."""
    return f"{Path(path).stem.replace('_', ' ').replace('-', ' ').capitalize()} ({path})"


def gallery(items: list[tuple[str, str]]) -> str:
    """Figures side by side where the page is wide enough, each image linked to itself (to see it whole)."""
    out = []
    for path, caption in items:
        src = escape(quote(path))  # a relative URL: the page and its images move together
        out.append(f'<figure><a href="{src}"><img src="{src}" alt="{escape(caption)}" loading="lazy"></a>'
                   f"<figcaption>{escape(caption)}</figcaption></figure>")
    return '<div class="figures">' + "\n".join(out) + "</div>"


# -- the template ---------------------------------------------------------------------------------------

STYLE = """
:root { color-scheme: light; }
body { margin: 0 auto; max-width: 1600px; padding: 1.5rem 2rem 4rem; background: #fff; color: #1a1a1a;
       font: 20px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 2rem; margin: 0 0 .5rem; }
h2 { font-size: 1.6rem; margin: 2.5rem 0 .5rem; border-bottom: 2px solid #ddd; }
h3 { font-size: 1.25rem; margin: 1.8rem 0 .4rem; }
a { color: #0b5cad; }
nav { margin-top: .6rem; font-size: 1.1rem; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; margin: 0; font-size: .9rem; }
dl.run dt { color: #555; } dl.run dd { margin: 0; }
.hint, .note { color: #444; font-size: .9rem; }
.note { max-width: 80rem; }
.scroll { overflow-x: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: .9rem; font-variant-numeric: tabular-nums; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
td:first-child { font-weight: 600; position: sticky; left: 0; background: #fff; }  /* the name stays in view */
th:first-child { left: 0; z-index: 1; }
th { position: sticky; top: 0; background: #f3f3f3; cursor: pointer; user-select: none; }
th:hover, th:focus { background: #e2ecf7; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
tr.data td { background: #f5f9ff; }
tr.bad td { color: #b00020; }
tbody tr:hover td { background: #fffbe0; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5rem 2.5rem; align-items: flex-start; margin: 1rem 0 2rem; }
figure { display: table; margin: 0; }  /* as a table, the caption is as wide as the image */
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { display: table-caption; caption-side: bottom; padding-top: .4rem; font-size: .95rem; color: #333; }
code { font-size: .9em; }
"""

# Sort the table's body by a column: numbers by value, then words, then empty cells (in either direction).
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("th");
  function key(row, col) {
    var cell = row.cells[col];
    if (!cell.hasAttribute("data-sort")) return null;
    var text = cell.getAttribute("data-sort"), number = Number(text);
    return text.trim() !== "" && isFinite(number) ? number : text;
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") return a - b;
    if (typeof a === "number") return -1;
    if (typeof b === "number") return 1;
    return a.localeCompare(b);
  }
  function sortBy(col) {
    var head = heads[col], down = head.getAttribute("aria-sort") === "ascending";
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = key(r, col), b = key(s, col);
      if (a === null || b === null) return (a === null) - (b === null);
      return down ? compare(b, a) : compare(a, b);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
    head.setAttribute("aria-sort", down ? "descending" : "ascending");
  }
  heads.forEach(function (head, col) {
    head.addEventListener("click", function () { sortBy(col); });
    head.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(col); } });
  });
});
"""

TEMPLATE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$style</style>
</head>
<body>
$body
<script>$script</script>
</body>
</html>
""")
