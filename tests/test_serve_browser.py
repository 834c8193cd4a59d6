"""The lecture page in a real browser: headless Chromium opens it, draws, moves the sliders, clicks
the latent plane, interpolates and plays an animation, checking each time that a new image arrived,
and saves a screenshot of each control.

Needs Debian's `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver) and the
`selenium` package; skipped, with the reason, where one is missing. Nothing is downloaded: the driver
is given by its path, so selenium-manager stays idle, and Chromium's background networking is off.

As a script it takes the screenshots for the README and docs/serve.md against any servable run:

    python tests/test_serve_browser.py results/mnist5k-quick [docs/screenshots]
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_serve import _one_thread, run_folder, served  # noqa: F401 - the HTTP tests' run and server, shared

from benchmarks.serve import ANIMATION_FRAMES, FRAME_MS

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars"]
WAIT = 300  # seconds for one image: the smoke models are quick, a busy CI machine is not
SHOT_FRAME = 2 * ANIMATION_FRAMES // 3  # the animation's frame the screenshots show
SHOTS = ("overview", "sample", "steps", "guidance", "plane", "interpolation", "trajectory", "raster")


def missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path in (CHROMIUM, DRIVER):
        if not path.is_file():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def open_browser(profile: Path, width: int = 1500, height: int = 1500) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(DRIVER)), options=options)


# -- driving the page ------------------------------------------------------------------------------

class Page:
    """The page in a browser, with waits for the images its requests bring."""

    def __init__(self, driver: Any, base: str):
        self.driver, self.base = driver, base

    def el(self, id_: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, id_)

    def reveal(self, id_: str) -> Any:
        """The element, scrolled to the middle of the window (clear of the status bar at the bottom)."""
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", self.el(id_))
        return self.el(id_)

    def click(self, id_: str) -> None:
        self.reveal(id_).click()

    def loads(self, id_: str) -> int:
        return int(self.el(id_).get_attribute("data-loads") or 0)

    def wait_new(self, id_: str, before: int) -> str:
        """Wait until image `id_` shows a new answer (more loads than `before`, decoded, not empty); its src."""
        from selenium.webdriver.support.ui import WebDriverWait

        def arrived(_: Any) -> bool:
            status = self.el("status")
            if "bad" in (status.get_attribute("class") or ""):
                raise AssertionError(f"the page says: {status.text}")
            return self.loads(id_) > before and self.driver.execute_script(
                "const i = document.getElementById(arguments[0]); return i.complete && i.naturalWidth > 0;", id_)

        WebDriverWait(self.driver, WAIT, poll_frequency=0.2).until(arrived)
        return self.el(id_).get_attribute("src")

    def idle(self) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, WAIT, poll_frequency=0.2).until(lambda _: self.el("status").text == "ready")

    def choose(self, model: str, then: str = "sample") -> None:
        from selenium.webdriver.support.ui import Select

        before = self.loads(then)
        Select(self.el("model")).select_by_value(model)
        self.wait_new(then, before)

    def shoot(self, id_: str, path: Path) -> None:
        self.reveal(id_).screenshot(str(path))

    def caption(self, id_: str) -> str:
        return self.el(id_).text


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path.lstrip("/"), timeout=WAIT) as res:
        return json.loads(res.read())


def with_control(models: list[dict], control: str, value: Any = None) -> dict | None:
    return next((m for m in models if control in m["controls"] and value in (None, m["controls"][control])), None)


def tour(driver: Any, base: str, shots: Path) -> dict[str, Any]:
    """Every control of the page, chosen by what the run's models offer (never by their names), each
    checked to bring a new image and saved as a screenshot in `shots`; returns what it saw."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    shots.mkdir(parents=True, exist_ok=True)
    page, seen = Page(driver, base), {}
    models = api(base, "/api/models")["models"]
    pair = api(base, "/api/run")["pair"]  # the first test image, and the first of another class
    driver.get(base)
    page.wait_new("sample", 0)
    page.idle()
    seen["first"] = models[0]["name"]
    seen["steps_hidden_without_steps"] = not page.el("steps-row").is_displayed() if "steps" not in models[0]["controls"] else None
    driver.save_screenshot(str(shots / "overview.png"))
    page.shoot("draw", shots / "sample.png")

    stepper = with_control(models, "steps")
    if stepper:
        page.choose(stepper["name"])
        page.idle()
        before, src = page.loads("sample"), page.el("sample").get_attribute("src")
        page.reveal("steps").send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT)  # a slider moved by hand
        seen["steps_src_changed"] = page.wait_new("sample", before) != src
        seen["steps_caption"] = page.caption("sample-caption")
        seen["steps_value"] = page.el("steps-value").text
        page.idle()
        page.shoot("draw", shots / "steps.png")

    guided = with_control(models, "guidance")
    if guided:
        page.choose(guided["name"])
        page.idle()
        before = page.loads("sample")
        page.reveal("guidance").send_keys(*[Keys.ARROW_RIGHT] * 4)
        page.wait_new("sample", before)
        seen["guidance_caption"] = page.caption("sample-caption")
        page.idle()
        page.shoot("draw", shots / "guidance.png")

    planes = [m for m in models if "plane" in m["controls"]]
    if planes:  # a model's own 2-D code where there is one, else a projection
        plane = next((m for m in planes if api(base, f"/api/plane-points?model={m['name']}")["kind"].startswith("its own")), planes[0])
        page.choose(plane["name"], then="plane-image")
        page.idle()
        page.click("plane-show-dots")
        before = page.loads("plane-decoded")
        image = page.reveal("plane-image")
        ActionChains(driver).move_to_element_with_offset(image, -image.size["width"] // 4, -image.size["height"] // 5).click().perform()
        page.wait_new("plane-decoded", before)
        seen["plane_point"] = page.caption("plane-point-caption")
        page.idle()
        page.shoot("plane", shots / "plane.png")

    walker = with_control(models, "interpolate", "images")
    if walker:
        if page.el("model").get_attribute("value") != walker["name"]:
            page.choose(walker["name"])
        page.idle()
        for end, index in (("image-a", "3"), ("image-b", str(pair[1] + 1))):  # two images of different classes, as a lecture picks
            field = page.reveal(end)
            field.clear()
            field.send_keys(index, Keys.TAB)
        seen["pair"] = [3, pair[1] + 1]
        before = page.loads("interpolation")
        page.click("interpolate-button")
        page.wait_new("interpolation", before)
        seen["interpolation"] = page.caption("interpolation-caption")
        page.idle()
        page.shoot("interpolate", shots / "interpolation.png")

    seen["animations"] = {}
    for m in (m for m in models if "trajectory" in m["controls"]):  # until both kinds are seen: a trajectory, a raster
        page.choose(m["name"])
        page.idle()
        before = page.loads("animation")
        page.click("play")
        page.wait_new("animation", before)
        loaded = time.monotonic()
        caption = page.caption("animation-caption")
        kind = "raster" if "raster order" in caption else "trajectory"
        if kind not in seen["animations"]:
            seen["animations"][kind] = caption
            page.idle()
            # the GIF plays from its load: shoot two thirds in, not the first frame (all noise, or a blank raster)
            time.sleep(max(0.0, SHOT_FRAME * FRAME_MS / 1000 - (time.monotonic() - loaded)))
            page.shoot("trajectory", shots / f"{kind}.png")
        if len(seen["animations"]) == 2:
            break
    seen["status"] = page.el("status").text
    return seen


# -- the test --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_page_in_headless_chromium(request, tmp_path):
    reason = missing()
    if reason:
        pytest.skip(reason)
    base, run = request.getfixturevalue("served")  # the smoke run, only where a browser can look at it
    from PIL import Image
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = open_browser(tmp_path / "profile")
    try:
        seen = tour(driver, base, tmp_path / "shots")
        page = Page(driver, base)
        with run.lock:  # a drawing under way: the next one waits, and the page says so, with the cost cap
            before = page.loads("sample")
            page.click("draw-button")
            WebDriverWait(driver, 30).until(lambda _: "drawing…" in page.el("status").text)
            waiting = page.el("status").text
            answered = driver.execute_async_script(  # the page and the server still answer meanwhile
                "const done = arguments[0]; fetch('/api/models').then((r) => done(r.status), () => done(0));")
        page.wait_new("sample", before)
        seed = page.reveal("seed")  # a refusal reaches the page as the server's one line
        seed.clear()
        seed.send_keys("-5", Keys.TAB)
        WebDriverWait(driver, WAIT).until(lambda _: "bad" in (page.el("status").get_attribute("class") or ""))
        refusal = page.el("status").text
    finally:
        driver.quit()
    assert refusal == "seed must be an int in [0, 2147483647], got -5"
    assert "network passes an image" in waiting and "cap: 6400 passes" in waiting and answered == 200
    assert seen["steps_hidden_without_steps"] is not False  # a model without steps shows no steps slider
    assert seen["steps_src_changed"] and f"steps {seen['steps_value']}" in seen["steps_caption"]
    assert seen["steps_value"] != "50"  # moved off ddim's default
    assert "guidance" in seen["guidance_caption"] and "guidance 3," not in seen["guidance_caption"]
    assert "decoded" in seen["plane_point"]
    a, b = seen["pair"]
    assert f"test images {a} (" in seen["interpolation"] and f"and {b} (" in seen["interpolation"]
    assert set(seen["animations"]) == {"trajectory", "raster"}
    assert seen["status"] == "ready"
    for name in SHOTS:
        with Image.open(tmp_path / "shots" / f"{name}.png") as shot:
            assert shot.width >= 400 and shot.height >= 200, name
            assert len(shot.convert("L").getcolors(1 << 16) or []) > 8, f"{name}.png is blank"


def main(argv: list[str]) -> int:
    """Screenshots of the page against a run folder, into OUT (default docs/screenshots/)."""
    from benchmarks import serve

    if not argv or argv[0].startswith("-"):
        print("usage: python tests/test_serve_browser.py RUN [OUT]: screenshots of the page against a servable run, "
              "into OUT (default docs/screenshots/)", file=sys.stderr)
        return 2
    reason = missing()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "screenshots"
    server = serve.make_server(serve.Run(argv[0]), port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = Path(tempfile.mkdtemp(prefix="genzoo-chromium-"))
    driver = open_browser(profile)
    try:
        seen = tour(driver, serve.url(server), out)
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    print(json.dumps(seen, indent=1))
    print(f"screenshots in {out}/: {', '.join(p.name for p in sorted(out.glob('*.png')))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
