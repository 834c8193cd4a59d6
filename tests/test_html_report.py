"""RUN/index.html: the results table (sortable), every figure with its caption, one self-contained file."""
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import explore, html_report, report
from benchmarks.records import COLUMNS, Record, RunFolder, t_interval

EVIL = "<script>alert(\"x&y\")"  # a record's file name holds no "/", so no closing tag
VOID = {"meta", "img", "br", "hr", "link", "input", "source", "wbr", "col", "area", "base", "embed", "track"}


class Page(HTMLParser):
    """A page read back: its rows of (cell text, attributes), images, links and captions; it fails on
    an end tag that closes something other than the innermost open element."""

    def __init__(self, text: str):
        super().__init__()
        self.open: list[str] = []
        self.headers: list[str] = []
        self.rows: list[list[tuple[str, dict]]] = []
        self.images: list[dict] = []
        self.links: list[str] = []
        self.captions: list[str] = []
        self.scripts: list[str] = []
        self._cell: dict | None = None
        self._text: list[str] = []
        self.feed(text)
        self.close()
        assert not self.open, f"unclosed: {self.open}"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in VOID:
            self.open.append(tag)
        if tag == "tr" and "tbody" in self.open:
            self.rows.append([])
        if tag in ("td", "th", "figcaption", "script"):
            self._cell, self._text = attrs, []
        if tag == "img":
            self.images.append(attrs)
        self.links += [v for k, v in attrs.items() if k in ("src", "href")]

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
        text = "".join(self._text)
        if tag == "th":
            self.headers.append(text)
        elif tag == "td":
            self.rows[-1].append((text, self._cell))
        elif tag == "figcaption":
            self.captions.append(text)
        elif tag == "script":
            self.scripts.append(text)

    def handle_data(self, data):
        self._text.append(data)


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "white").save(path)


@pytest.fixture
def folder(tmp_path) -> RunFolder:
    """A run folder as the runner and explore leave it: records (two seeds of vae, a word where a number
    goes, a model that failed, a model named with a script), plots, a plugin's plot and lecture figures."""
    folder = RunFolder(tmp_path / "run")
    records = [
        Record("data", 0, status="ok", fid=1.0, precision=0.9, recall=0.9),
        Record("vae", 0, status="ok", fid=40.0, precision=0.5, train_flops=2.5e12, nfe=1, flops_to_target=1.5e12),
        Record("vae", 1, status="ok", fid=44.0, precision=0.6, train_flops=2.5e12, nfe=1, flops_to_target=2.5e12),
        Record("ddim", 0, status="ok", fid=20.0, nfe=50, flops_to_target="not reached"),
        Record("gan", 0, status="error", error="RuntimeError: <b>boom</b>"),
        Record(EVIL, 0, status="ok", fid=30.0),
    ]
    for r in records:
        folder.write_record(r)
    folder.merge({"dataset": "mnist5k", "preset": "smoke", "seeds": [0, 1], "device": "cpu", "device_name": "x86_64",
                  "threads": 2, "new_history": [{"command": "python -m benchmarks.run", "wall_seconds": 90.0}]},
                 ["vae", "ddim", "gan", EVIL])
    for name in ("comparison.png", "plots/quality_vs_cost.png", "plots/my_plugin_plot.png", "explore/holes.png",
                 "explore/drawing-ddim.png", "explore/drawing-vae.png", "explore/unlisted.png"):
        _png(folder.path / name)
    (folder.path / "explore" / "explore.json").write_text(json.dumps({
        "feature_space": "classifier:mnist5k", "settings": {"seed": 0}, "skipped": {},
        "images": {"holes": ["holes.png"], "drawing": ["drawing-ddim.png", "drawing-vae.png"]},
        "figures": {"drawing": {"ddim": {"what": "x_t at 8 of 50 steps"}}}}))
    return folder


def _page(folder: RunFolder) -> tuple[str, Page]:
    run, records = folder.read()
    text = html_report.page(folder, run, records)
    return text, Page(text)


def test_one_row_per_model_and_every_column(folder):
    _, page = _page(folder)
    assert page.headers == report.headers() and len(page.headers) == len(COLUMNS) + 1
    assert [row[0][0] for row in page.rows] == ["data", "vae", "ddim", "gan", EVIL]  # the model's name, as text
    assert all(len(row) == len(page.headers) for row in page.rows)
    _, records = folder.read()
    expected = [report.cells(row) for row in report.aggregate(records)]
    assert [[text for text, _ in row] for row in page.rows] == expected  # every cell as results.md shows it


def test_cells_sort_by_their_value(folder):
    """Numbers by value in the column's unit, intervals by their mean, words as words, empty cells unsorted."""
    _, page = _page(folder)
    column = {h: i for i, h in enumerate(page.headers)}
    vae = dict(zip(page.headers, page.rows[1]))
    mean, half = t_interval([40.0, 44.0])
    text, attrs = vae["FID ↓"]
    assert text == f"{mean:.2f} ± {half:.2f}" and float(attrs["data-sort"]) == mean
    assert float(vae["train TFLOP"][1]["data-sort"]) == pytest.approx(2.5)  # scaled as the header says
    assert float(vae["TFLOP to target FID"][1]["data-sort"]) == pytest.approx(2.0)
    assert float(vae["NFE"][1]["data-sort"]) == 1
    ddim = page.rows[2]
    assert ddim[column["TFLOP to target FID"]][1]["data-sort"] == "not reached"
    assert ddim[column["recall ↑"]] == ("–", {})  # empty: no sort key, so it sorts last
    assert vae["model"][1]["data-sort"] == "vae" and vae["status"][1]["data-sort"] == "ok"


def test_every_figure_appears_with_its_caption(folder):
    _, page = _page(folder)
    shown = dict(zip((i["src"] for i in page.images), page.captions))
    pngs = {p.relative_to(folder.path).as_posix() for p in folder.path.glob("**/*.png")}
    assert set(shown) == pngs  # the comparison, every plot and every lecture figure, none twice
    assert len(page.images) == len(pngs)
    assert shown["comparison.png"] == dict(report.FIGURES)["comparison.png"]
    assert shown["plots/quality_vs_cost.png"] == dict(report.FIGURES)["plots/quality_vs_cost.png"]
    assert shown["plots/my_plugin_plot.png"] == "My plugin plot (plots/my_plugin_plot.png)"  # a plugin's plot still shows
    what = explore.CAPTIONS
    assert shown["explore/holes.png"] == f"2. Holes in a plain autoencoder's code space. {what['holes']}"
    assert shown["explore/drawing-ddim.png"] == f"6. How each paradigm draws: ddim, x_t at 8 of 50 steps. {what['drawing']}"
    assert shown["explore/drawing-vae.png"] == f"6. How each paradigm draws: vae. {what['drawing']}"
    assert set(what) == set(explore.FIGURES)  # every lecture figure has its caption
    assert shown["explore/unlisted.png"] == "Unlisted (explore/unlisted.png)"
    assert all(i["alt"] == c for i, c in zip(page.images, page.captions))
    assert list(shown).index("explore/holes.png") < list(shown).index("explore/drawing-ddim.png")  # explore's order


def test_text_is_escaped(folder):
    text, page = _page(folder)
    assert EVIL not in text and "&lt;script&gt;alert(&quot;x&amp;y&quot;)" in text
    assert "<b>boom</b>" not in text and "&lt;b&gt;boom&lt;/b&gt;" in text
    assert len(page.scripts) == 1 and "alert" not in page.scripts[0]  # the one script is the page's own
    assert page.rows[4][0][0] == EVIL  # and reads back as the name it is


def test_the_page_is_self_contained(folder):
    text, page = _page(folder)
    assert page.links and all(not link.startswith(("http:", "https:", "//", "/", "file:")) for link in page.links)
    assert "http://" not in text and "https://" not in text and "@import" not in text and "<link" not in text
    for link in page.links:  # every image and link is the file beside it, or a place on the page
        assert link.startswith("#") or (folder.path / link).is_file(), link


def test_header_names_the_run(folder):
    text, _ = _page(folder)
    run = text[text.index('<dl class="run">'):text.index("</dl>") + 5]  # the header's facts, each under its name
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", run))
    assert facts == {"dataset": "mnist5k", "preset": "smoke", "seeds": "0, 1", "host": "cpu (x86_64, 2 threads)",
                     "command": "python -m benchmarks.run (1.5 min)"}


def test_report_html_writes_the_page(folder, capsys):
    assert report.main([str(folder.path), "--html"]) == 0
    out = capsys.readouterr().out
    page = folder.path / "index.html"
    assert f"page: {page.resolve().as_uri()}" in out
    assert len(Page(page.read_text()).rows) == 5
    assert not list(folder.path.glob("*.tmp")) and not list(folder.path.glob(".*.tmp"))


def test_report_html_of_a_bad_folder_is_one_line(tmp_path, capsys):
    for bad in (tmp_path / "missing", tmp_path / "a-file"):
        if bad.name == "a-file":
            bad.write_text("not a folder")
        assert report.main([str(bad), "--html"]) == 2
        out = capsys.readouterr().out.strip()
        assert len(out.splitlines()) == 1 and out.startswith("error: no results.json in") and "Traceback" not in out
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]  # nothing made: no folder, no page, in or beside it


def test_explore_rewrites_the_reports(folder, monkeypatch):
    """Explore ends as report does: results.md and the page with the lecture figures, through one writer."""
    calls = []
    monkeypatch.setattr(report, "write_reports", lambda *a: calls.append(a) or folder.path / "index.html")
    explore.explore(folder.path, figures=["training"], log=lambda s: None)
    assert len(calls) == 1 and calls[0][0].path == folder.path


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs headless Chromium")
def test_clicking_a_header_sorts_in_a_browser(folder, tmp_path):
    """The page's script in Chromium: FID ascending, then descending; the empty cell last both times."""
    run, records = folder.read()
    text = html_report.page(folder, run, records)
    fid = report.headers().index("FID ↓")
    orders = []
    for clicks in (1, 2):
        click = f"<script>for (var i = 0; i < {clicks}; i++) document.querySelectorAll('th')[{fid}].click();</script>"
        path = tmp_path / f"clicked{clicks}.html"
        path.write_text(text.replace("</body>", click + "</body>"))
        dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                              "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120).stdout
        orders.append([row[0][0] for row in Page(dom[dom.index("<table"):dom.index("</table>") + 8]).rows])
    assert orders[0] == ["data", "ddim", EVIL, "vae", "gan"]  # 1, 20, 30, 42 and the failed gan's empty FID
    assert orders[1] == ["vae", EVIL, "ddim", "data", "gan"]
