"""benchmarks.serve over HTTP: the page, every endpoint of the API, its refusals and its bounds.

One smoke run (five training steps per model) is served for the whole session; the browser
test (test_serve_browser.py) serves the same folder."""
import hashlib
import http.client
import io
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import zoo
from benchmarks import serve
from zoo.base import GenzooError

pytestmark = pytest.mark.slow  # an end-to-end run to serve
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODELS = "ae,vae,ddim,ddpm-cond,pixelcnn,dcgan"  # plain and 2-D latents, steps + inversion, guidance + classes, a raster, G(z)


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory, _cache) -> Path:
    """A smoke run with checkpoints (the VAE with a 2-D code), made once per session: the browser test
    reuses it from the same place."""
    from benchmarks import run
    from zoo.models.pixelcnn import PixelCNN

    out = tmp_path_factory.getbasetemp() / "serve-run"
    if not (out / "checkpoints").is_dir():
        before = torch.get_num_threads()
        with pytest.MonkeyPatch.context() as mp:  # its table is not what is tested here: few raster samples for it
            mp.setattr(PixelCNN, "eval_samples", {"smoke": 8})
            code = run.main(["--models", MODELS, "--preset", "smoke", "--budget", "5steps", "--set", "vae.latent_dim=2", "--curves", "off",
                             "--threads", "1", "--out", str(out)])  # one thread: two fight over a busy machine's cores
        torch.set_num_threads(before)
        assert code == 0
    return out


@pytest.fixture(scope="session")
def served(run_folder):
    """The run served on a free port of 127.0.0.1 in a thread: (base address, the `Run`)."""
    run = serve.Run(run_folder)
    server = serve.make_server(run, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield serve.url(server), run
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small tensors through many sampler steps: one thread is faster than two, and leaves a core free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def get(served, path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """A request sent as written (http.client does not tidy `..` away): (status, headers, body)."""
    host, port = served[0].split("//")[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), res.read()
    finally:
        conn.close()


def image(body: bytes) -> Image.Image:
    return Image.open(io.BytesIO(body))


def one_line(body: bytes) -> str:
    text = body.decode()
    assert text.endswith("\n") and text.count("\n") == 1, f"not one line: {text!r}"
    assert "Traceback" not in text
    return text.strip()


def models(served) -> dict:
    return {m["name"]: m for m in json.loads(get(served, "/api/models")[2])["models"]}


# -- the page --------------------------------------------------------------------------------------

def test_page_is_served_and_fetches_nothing_from_outside(served):
    status, headers, body = get(served, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/app.js">' in body and b'href="/style.css"' in body
    for path, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, headers, _ = get(served, path)
        assert status == 200 and headers["Content-Type"].startswith(kind)
    for name in ("index.html", "app.js", "style.css"):
        text = (serve.PAGE / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


def test_run_overview(served, run_folder):
    info = json.loads(get(served, "/api/run")[2])
    assert info["folder"] == run_folder.name and info["dataset"] == "mnist5k" and info["preset"] == "smoke"
    assert info["pass_budget"] == serve.PASS_BUDGET and info["test_images"] > 100
    # the page's first interpolation: test image 0 and the first test image of another class
    labels = served[1].test[1].tolist()
    assert info["pair"] == [0, next(i for i, c in enumerate(labels) if c != labels[0])]
    assert "comparison.png" in info["figures"]
    assert get(served, "/files/" + info["figures"][0])[0] == 200


# -- the API: sampling -------------------------------------------------------------------------------

def test_sample_is_a_png_that_one_seed_repeats_and_two_seeds_change(served):
    status, headers, first = get(served, "/api/sample?model=ae&seed=0")
    assert status == 200 and headers["Content-Type"] == "image/png" and first.startswith(PNG_SIGNATURE)
    assert image(first).size == (4 * 30 + 2, 4 * 30 + 2)  # 16 images of 28 px, 2 px apart
    assert get(served, "/api/sample?model=ae&seed=0")[2] == first
    assert get(served, "/api/sample?model=ae&seed=1")[2] != first
    assert "16 images, seed 0" in headers["X-Genzoo-Caption"]


def test_models_get_the_controls_their_capabilities_give(served):
    ms = models(served)
    assert set(ms) == set(MODELS.split(","))
    for m in ms.values():  # every control follows from a capability, for every model
        caps, c = set(m["capabilities"]), m["controls"]
        assert ("plane" in c) == ("Latent" in caps)
        assert ("trajectory" in c) == ("Stepwise" in caps)
        assert ("label" in c) == ("Conditional" in caps)
        assert ("guidance" in c) == ("Guided" in caps)
        gan = "CodeSampler" in caps and "Conditional" not in caps
        walks = "images" if caps & {"Latent", "Invertible"} else "codes" if gan else None
        assert c.get("interpolate") == walks
        for control, why in m["missing"].items():
            assert control not in c and why and "\n" not in why
    assert ms["ddim"]["controls"]["steps"] == {"field": "steps", "type": "int", "min": 1, "max": 1000, "default": 50,
                                               "accepts": "an int in [1, 1000]"}  # up to its train_timesteps
    assert ms["ddpm-cond"]["controls"]["guidance"]["min"] == 0 and ms["ddpm-cond"]["controls"]["guidance"]["max"] == 20
    assert ms["ddpm-cond"]["controls"]["label"]["classes"] == 10
    assert "steps" not in ms["ae"]["controls"] and "steps" not in ms["pixelcnn"]["controls"]


def test_a_slider_is_the_sampler_field_the_model_declares():
    """The page's steps and guidance sliders set the field a model names (`Stepwise.steps_hparam`,
    `Guided.guidance_hparam`), so a plugin's `cfg` scale gets the guidance slider."""
    from zoo.models.diffusion import DDIM, DDPM
    from zoo.models.guided_diffusion import GuidedDDPM
    from zoo.models.pixelcnn import PixelCNN

    class CfgGuided(GuidedDDPM):
        guidance_hparam = "cfg"

    assert [serve.slider_field(c, "steps") for c in (DDIM, DDPM, PixelCNN, GuidedDDPM)] == ["steps", None, None, "steps"]
    assert [serve.slider_field(c, "guidance") for c in (DDIM, GuidedDDPM, CfgGuided)] == [None, "guidance", "cfg"]


def test_steps_and_guidance_change_the_sampler_and_its_cost(served):
    status, headers, body = get(served, "/api/sample?model=ddim&seed=0&steps=5&n=4")
    assert status == 200 and headers["X-Genzoo-NFE"] == "5" and headers["X-Genzoo-Images"] == "4"
    assert get(served, "/api/sample?model=ddim&seed=0&steps=6&n=4")[2] != body
    _, unguided, unguided_png = get(served, "/api/sample?model=ddpm-cond&seed=0&steps=5&guidance=1&label=3&n=4")
    _, guided, guided_png = get(served, "/api/sample?model=ddpm-cond&seed=0&steps=5&guidance=4.5&label=3&n=4")
    assert unguided["X-Genzoo-NFE"] == "5" and guided["X-Genzoo-NFE"] == "10"  # guidance: two passes a step
    assert guided_png != unguided_png  # the scale reaches the images, not only the count of passes
    assert "class 3" in guided["X-Genzoo-Caption"]
    one = get(served, "/api/sample?model=ddpm-cond&seed=0&steps=5&guidance=-0&label=3&n=1")[1]["X-Genzoo-Caption"]
    assert one.startswith("ddpm-cond: 1 image, seed 0, steps 5, guidance 0, class 3;"), one  # was "1 images", "guidance -0"


def test_images_a_request_are_capped_by_the_sampling_cost(served):
    cost = json.loads(get(served, "/api/cost?model=ddim&steps=1000")[2])
    assert cost["nfe"] == 1000 and cost["images"] == serve.PASS_BUDGET // 1000
    status, _, body = get(served, f"/api/sample?model=ddim&steps=1000&n={cost['images'] + 1}")
    assert status == 400 and f"n must be an int in [1, {cost['images']}]" in one_line(body)
    assert json.loads(get(served, "/api/cost?model=ae")[2])["images"] == serve.MAX_IMAGES


# -- the API: the latent plane, interpolation, the animation ----------------------------------------

def test_latent_plane_of_a_2d_code_and_of_a_projection(served):
    side = serve.PLANE_SIDE * 30 + 2
    for name, kind in (("vae", "its own 2-D code"), ("ae", "a projection")):
        status, headers, body = get(served, f"/api/plane-image?model={name}")
        assert status == 200 and image(body).size == (side, side) and kind in headers["X-Genzoo-Caption"]
        points = json.loads(get(served, f"/api/plane-points?model={name}")[2])["points"]
        assert len(points) == serve.PLANE_CODES and all(0 <= x <= 1 and 0 <= y <= 1 for x, y, _ in points)
    corner = get(served, "/api/plane?model=vae&x=0.05&y=0.05")[2]
    assert image(corner).size == (28, 28)  # one image, unpadded
    assert get(served, "/api/plane?model=vae&x=0.95&y=0.95")[2] != corner


def test_a_plane_click_decodes_what_the_background_shows_there(served):
    """The point at the centre of a background cell is that cell's code: the two decodings agree."""
    background = image(get(served, "/api/plane-image?model=vae")[2]).convert("L")
    n = serve.PLANE_SIDE
    i, j = 3, 11  # column, row
    cell = background.crop((2 + 30 * i, 2 + 30 * j, 2 + 30 * i + 28, 2 + 30 * j + 28))
    body = get(served, f"/api/plane?model=vae&x={(i + 0.5) / n:.6f}&y={(j + 0.5) / n:.6f}")[2]
    clicked = image(body).convert("L")
    diff = max(abs(a - b) for a, b in zip(cell.tobytes(), clicked.tobytes()))
    assert diff <= 2


def test_interpolation_between_two_test_images(served):
    def ends(body: bytes) -> tuple[bytes, bytes]:  # the strip's first and last 28 px cells
        strip = image(body).convert("L")
        last = 2 + 30 * (serve.INTERPOLATION_FRAMES + 1)
        return strip.crop((2, 2, 30, 30)).tobytes(), strip.crop((last, 2, last + 28, 30)).tobytes()

    test = [(served[1].test[0][i, 0] * 255).round().to(torch.uint8).numpy().tobytes() for i in (2, 5)]
    for name in ("vae", "ddim"):  # through the codes; through DDIM inversion of the images
        status, headers, body = get(served, f"/api/interpolate?model={name}&a=2&b=5")
        assert status == 200 and image(body).size == ((serve.INTERPOLATION_FRAMES + 2) * 30 + 2, 32)
        assert "test images 2 (class" in headers["X-Genzoo-Caption"]
        assert list(ends(body)) == test  # test image a at the left end, b at the right
    status, headers, body = get(served, "/api/interpolate?model=dcgan&seed=4")  # a GAN: between two random codes
    assert status == 200 and image(body).size == ((serve.INTERPOLATION_FRAMES + 2) * 30 + 2, 32)
    assert "two random codes (seed 4)" in headers["X-Genzoo-Caption"]
    assert ends(body) == (b"\xff" * 28 * 28,) * 2  # no images at the ends: blank
    assert get(served, "/api/interpolate?model=dcgan&seed=5")[2] != body
    status, _, body = get(served, "/api/test-image?i=1")
    assert status == 200 and image(body).size == (28, 28)


def test_trajectory_and_raster_order_are_animations(served):
    status, headers, body = get(served, "/api/trajectory?model=ddim&seed=0&steps=10&n=2")
    assert status == 200 and headers["Content-Type"] == "image/gif" and body.startswith(b"GIF89a")
    gif = image(body)
    assert gif.n_frames == 11 and gif.size == (2 * 30 + 2, 3 * 30 + 2)  # 10 steps and the sample; forward, x_t, x0
    status, headers, body = get(served, "/api/trajectory?model=pixelcnn&seed=0&n=2")
    assert status == 200 and image(body).n_frames == serve.ANIMATION_FRAMES and "raster order" in headers["X-Genzoo-Caption"]
    first = image(body).convert("RGB")
    assert first.getpixel((2 + 14, 2 + 27)) == (89, 115, 204)  # the canvas' last row is not drawn yet: blue


def test_a_noising_models_frames_show_test_images_under_the_forward_process_above_its_trajectory(served):
    """The lecture's "the noising step needs no training": ddim's top row is test images taken to
    each frame's t (noise at the first), the images themselves beside the sample."""
    status, headers, body = get(served, "/api/trajectory?model=ddim&seed=0&steps=10&n=2")
    caption = headers["X-Genzoo-Caption"]
    found = re.search(r"top to bottom: test images (\d+), (\d+) taken to the same t by the forward process", caption)
    assert status == 200 and found, caption
    gif = image(body)
    frames = []
    for k in (0, gif.n_frames - 1):
        gif.seek(k)
        frames.append(np.asarray(gif.convert("L"), dtype=float))
    for column, i in enumerate(int(g) for g in found.groups()):
        want = np.asarray(image(get(served, f"/api/test-image?i={i}")[2]).convert("L"), dtype=float)
        cells = [f[2:30, 2 + 30 * column:30 + 30 * column] for f in frames]
        assert np.abs(cells[1] - want).max() <= 1  # the last frame: the image itself
        assert np.abs(cells[0] - want).mean() > 40  # the first: mostly noise
    assert "forward process" not in get(served, "/api/trajectory?model=pixelcnn&seed=0&n=2")[1]["X-Genzoo-Caption"]


def test_a_one_step_trajectory_is_its_one_step_then_the_sample(served):
    """steps=1 (the slider's low end, or a `ddim@1` run's default): once a 500, ZeroDivisionError."""
    status, headers, body = get(served, "/api/trajectory?model=ddim&seed=0&steps=1&n=1")
    assert status == 200 and image(body).n_frames == 2 and "at 1 of its 1 steps, then the sample" in headers["X-Genzoo-Caption"]


def test_a_point_near_the_planes_edge_decodes_a_finite_code(served):
    """Found by a probe: x=0.00000001 was accepted, but Phi^-1 in float32 made it -inf, and the
    answer was a blank image captioned '(-inf, +0.00)' (the page sends 4 decimals; another client need not)."""
    status, headers, body = get(served, "/api/plane?model=vae&x=0.00000001&y=0.999999999")
    assert status == 200 and image(body).size == (28, 28)
    assert "the code at (-5.61, -6.00) standard units" in headers["X-Genzoo-Caption"]


# -- refusals ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, words", [
    ("/api/sample?model=ae&steps=5", "ae takes no steps"),
    ("/api/sample?model=ddim&guidance=2", "ddim takes no guidance"),
    ("/api/sample?model=ddim&label=3", "not class-conditional"),
    ("/api/trajectory?model=ae", "not `Stepwise`"),
    ("/api/plane-image?model=ddim", "not `Latent`"),
    ("/api/plane?model=pixelcnn&x=0.5&y=0.5", "not `Latent`"),
    ("/api/interpolate?model=pixelcnn&a=0&b=1", "cannot interpolate"),
])
def test_a_control_a_model_lacks_is_refused_in_one_line(served, path, words):
    status, _, body = get(served, path)
    assert status == 400 and words in one_line(body)


@pytest.mark.parametrize("path, status, words", [
    ("/api/sample?model=nope", 404, "unknown model 'nope'; this run serves: ae"),
    ("/api/sample?seed=1", 400, "model is missing"),
    ("/api/sample?model=ddim&steps=0", 400, "steps must be an int in [1, 1000], got 0"),
    ("/api/sample?model=ddim&steps=1001", 400, "steps must be an int in [1, 1000], got 1001"),
    ("/api/sample?model=ddim&steps=1e2", 400, "steps must be an int in [1, 1000], got '1e2'"),
    ("/api/sample?model=ddpm-cond&guidance=21", 400, "guidance must be a number in [0, 20], got 21"),
    ("/api/sample?model=ddpm-cond&guidance=nan", 400, "guidance must be a number in [0, 20]"),
    ("/api/sample?model=ddpm-cond&label=10", 400, "label must be an int in [0, 9], got 10"),
    ("/api/sample?model=ae&seed=1.5", 400, "seed must be an int"),
    ("/api/sample?model=ae&n=%208", 400, "n must be an int in [1, 64], got ' 8'"),  # int() passes over the space
    ("/api/sample?model=ae&n=8+", 400, "n must be an int in [1, 64], got '8 '"),
    ("/api/sample?model=ae&n=008", 400, "n must be an int in [1, 64], got '008'"),
    ("/api/sample?model=ddpm-cond&guidance=%204.5", 400, "guidance must be a number in [0, 20], got ' 4.5'"),
    ("/api/plane?model=vae&x=00.5&y=0.5", 400, "x must be a number in (0, 1), got '00.5'"),
    ("/api/sample?model=ae&seed=-1", 400, "seed must be an int in [0, 2147483647], got -1"),
    ("/api/sample?model=ae&n=0", 400, "n must be an int in [1, 64], got 0"),
    ("/api/sample?model=ae&colour=red", 400, "/api/sample takes no parameter colour"),
    ("/api/sample?model=ae&seed=1&seed=2", 400, "seed given more than once"),
    ("/api/plane?model=vae&x=1&y=0.5", 400, "x must be a number in (0, 1), got 1"),
    ("/api/plane?model=vae", 400, "x and y are required"),
    ("/api/interpolate?model=vae&a=0&b=99999", 400, "b must be an int in [0, "),
    ("/api/interpolate?model=dcgan&a=0&b=1", 400, "dcgan interpolates between two random codes from the seed: it takes no a or b"),
    ("/api/sample?" + "&".join(f"p{i}=1" for i in range(21)), 400, "over 20 query parameters; /api/sample takes: model"),
    ("/api/sample?model=ae&", 400, "malformed query string (bad query field: ''): give name=value pairs joined by '&'; "
                                   "/api/sample takes: model, seed"),
    ("/api/test-image?i", 400, "malformed query string (bad query field: 'i'): give name=value pairs joined by '&'; "
                               "/api/test-image takes: i"),
    ("/api/test-image?i=x", 400, "i must be an int"),
    ("/api/nothing", 404, "no such page or endpoint"),
    ("/api/sample?model=ae&seed=" + "1" * 3000, 414, "request path over 2048 characters"),
])
def test_bad_requests_get_a_4xx_and_one_line(served, path, status, words):
    got, _, body = get(served, path)
    assert got == status and words in one_line(body)


def test_bodies_and_other_methods_are_refused(served):
    status, headers, body = get(served, "/api/sample?model=ae", method="POST", body=b"{}")
    assert status == 405 and headers["Allow"] == "GET, HEAD" and one_line(body)
    assert get(served, "/", method="TRACE")[0] == 405  # a method HTTP defines: not allowed here (not 501)
    status, _, body = get(served, "/api/sample?model=ae", body=b"x" * 100, headers={"Content-Length": "100"})
    assert status == 413 and "no request bodies" in one_line(body)
    status, _, body = get(served, "/api/run", headers={"Transfer-Encoding": "chunked"})
    assert status == 413 and "no request bodies" in one_line(body)
    status, _, body = get(served, "/", headers={"Content-Length": "lots"})
    assert status == 400 and one_line(body)


def test_a_content_length_of_non_ascii_digits_is_malformed(served):
    """Found by a probe: 'Content-Length: ²' (a latin-1 byte that isdigit passes and int refuses) was
    a 500, with a traceback in the server's log."""
    status, _, body = get(served, "/api/run", headers={"Content-Length": "\xb2"})
    assert status == 400 and one_line(body) == "malformed Content-Length"


def test_a_head_request_gets_headers_only_refused_or_not(served):
    """Found by a probe: a HEAD that was refused got the refusal's line as a body."""
    host, port = served[0].split("//")[1].rstrip("/").rsplit(":", 1)
    for path, status in (("/api/run", 200), ("/api/sample?model=nope", 404), ("/files/results.md", 200)):
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.0 {status} ".encode()) and b"Content-Length: " in head and rest == b"", answer


# -- the run folder's files, and nothing else --------------------------------------------------------

def test_files_serves_the_run_folder_and_nothing_outside(served, run_folder, tmp_path):
    status, headers, body = get(served, "/files/comparison.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and body == (run_folder / "comparison.png").read_bytes()
    outside = tmp_path / "secret.txt"
    outside.write_text("not the run's")
    (run_folder / "link-out").unlink(missing_ok=True)
    (run_folder / "link-out").symlink_to(outside)
    (run_folder / "link-in").unlink(missing_ok=True)
    (run_folder / "link-in").symlink_to(run_folder / "results.md")
    try:
        for path in ("/files/../pyproject.toml", "/files/%2e%2e/%2e%2e/pyproject.toml", "/files/plots/../../x",
                     "/files//etc/passwd", "/files/%2Fetc%2Fpasswd", "/files/link-out"):
            status, _, body = get(served, path)
            assert status == 403 and "only the run folder's own files" in one_line(body), path
        assert get(served, "/files/link-in")[0] == 200
        assert get(served, "/files/no-such.png")[0] == 404 and get(served, "/files/plots")[0] == 404
        status, _, body = get(served, "/files/" + "a" * 300)  # longer than a file name may be: was a 500 (OSError)
        assert status == 404 and one_line(body) == f"no file {'a' * 300} in the run folder"
        assert get(served, "/files/")[:3:2] == (404, b"no file named: /files/PATH serves the file PATH of the run folder\n")
    finally:
        (run_folder / "link-out").unlink()
        (run_folder / "link-in").unlink()


@pytest.fixture
def big_file(run_folder):
    """A file of the run folder the size of a small checkpoint, removed afterwards."""
    path = run_folder / "big.bin"
    path.write_bytes(np.random.default_rng(0).bytes(16 << 20))
    yield path
    path.unlink()


def test_a_file_is_sent_from_disk_not_read_whole_into_memory(served, big_file):
    """/files/ serves checkpoints too: a file read whole before it is sent (as it once was) costs its
    size in memory for every request under way."""
    size, want = big_file.stat().st_size, hashlib.sha256(big_file.read_bytes()).digest()
    host, port = served[0].split("//")[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    tracemalloc.start()  # the server's thread is this process's too
    try:
        conn.request("GET", "/files/big.bin")
        res = conn.getresponse()
        got = hashlib.sha256()
        while chunk := res.read(1 << 16):  # a chunk at a time: the client holds no whole copy either
            got.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        conn.close()
    assert res.status == 200 and res.getheader("Content-Length") == str(size) and got.digest() == want
    assert peak < size // 4, f"{peak} bytes allocated at the peak, for a file of {size}"


def test_a_symlink_loop_is_no_file(served, run_folder):
    """Not a 500 (RuntimeError: Symlink loop): a 404, as any path that names no file."""
    (run_folder / "loop-a").symlink_to("loop-b")
    (run_folder / "loop-b").symlink_to("loop-a")
    try:
        status, _, body = get(served, "/files/loop-a")
        assert status == 404 and one_line(body) == "no file loop-a in the run folder"
    finally:
        (run_folder / "loop-a").unlink()
        (run_folder / "loop-b").unlink()


# -- one request at a time, a responsive page, clients that leave ------------------------------------

def test_one_drawing_at_a_time_while_the_page_stays_served(served):
    base, run = served
    answers: list[int] = []
    with run.lock:  # as if a long drawing were under way
        waiting = threading.Thread(target=lambda: answers.append(get(served, "/api/sample?model=ae&seed=5")[0]))
        waiting.start()
        assert get(served, "/")[0] == 200 and get(served, "/api/models")[0] == 200
        assert get(served, "/files/results.md")[0] == 200
        time.sleep(0.5)
        assert answers == []  # the drawing waits its turn
    waiting.join(timeout=60)
    assert answers == [200]


def test_a_client_that_disconnects_mid_response_leaves_the_server_answering(served):
    host, port = served[0].split("//")[1].rstrip("/").rsplit(":", 1)
    for path in ("/api/trajectory?model=ddim&seed=3&steps=20", "/files/comparison.png"):
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.recv(64)  # the response has begun
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # reset, with most of the body unread
    time.sleep(0.5)
    status, _, body = get(served, "/api/sample?model=ae&seed=0")
    assert status == 200 and body.startswith(PNG_SIGNATURE)


def test_a_client_that_sends_nothing_or_stops_reading_is_let_go_quietly(served, big_file, capsys):
    """Each connection holds a thread until its client is done: one that sent no request (a browser
    opens spare connections) or stopped reading its answer was held for a minute, and the one that
    stopped reading left a traceback in the log when it was let go."""
    host, port = served[0].split("//")[1].rstrip("/").rsplit(":", 1)
    before = set(threading.enumerate())
    with socket.create_connection((host, int(port))) as idle, socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        stalled.settimeout(60)
        stalled.connect((host, int(port)))
        stalled.sendall(b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert stalled.recv(4).startswith(b"HTTP")  # its answer has begun; it reads no more
        started = time.monotonic()
        holding = set(threading.enumerate()) - before
        while len(holding) < 2 and time.monotonic() < started + 10:  # the idle one's thread may start later
            time.sleep(0.05)
            holding = set(threading.enumerate()) - before
        assert len(holding) == 2, holding
        for thread in holding:
            thread.join(timeout=max(0.0, started + 20 - time.monotonic()))
        assert not [t for t in holding if t.is_alive()], f"connections still held after {time.monotonic() - started:.0f} s"
        idle.settimeout(60)
        assert idle.recv(1) == b""  # closed, with no answer
    assert "Traceback" not in capsys.readouterr().err


# -- the command ------------------------------------------------------------------------------------------

def test_a_folder_without_checkpoints_is_refused_in_one_line(run_folder, tmp_path, capsys):
    bare = tmp_path / "reference"
    shutil.copytree(run_folder, bare, ignore=shutil.ignore_patterns("checkpoints"))
    assert serve.main([str(bare), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no checkpoints to serve" in err
    assert "python -m benchmarks.run" in err and "results/mnist5k-quick" in err
    assert serve.main([str(tmp_path / "nowhere")]) == 2
    assert "no run folder at" in capsys.readouterr().err


def test_a_checkpoint_whose_weights_do_not_load_is_named_in_one_line(run_folder, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy)
    served = serve.Run(copy)
    weights = copy / served.entry("ae").record.checkpoint / "model.safetensors"
    weights.write_bytes(b"")  # emptied, as by a full disk
    with pytest.raises(serve.Refused) as refused:
        served.model(served.entry("ae"))
    assert refused.value.status == 500 and str(refused.value) == (
        f"{weights} is not the file ae seed 0 was scored with (its hash differs from the record's); "
        "the run's command trains or scores it again")
    served.entry("ae").record.weights_hash = None  # a first-wave record, without a hash: the load itself fails
    with pytest.raises(serve.Refused) as refused:
        served.model(served.entry("ae"))
    assert refused.value.status == 500 and str(refused.value).startswith(f"ae: its checkpoint {weights.parent} does not load: ")
    assert "\n" not in str(refused.value)


def test_changed_weights_and_a_damaged_config_are_not_served_and_said_so(run_folder, tmp_path, capsys, monkeypatch):
    """Found by a probe: weights changed on disk were drawn under the record's FID, and a model whose
    config.json did not read was left out without a word (then 'unknown model')."""
    from benchmarks.explore import load_model

    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy)
    records = serve.Run(copy).entries
    weights = copy / records["ae"].record.checkpoint / "model.safetensors"
    changed = {k: v + 1 for k, v in load_file(weights).items()}  # a valid file, other weights
    save_file(changed, weights)
    (copy / records["vae"].record.checkpoint / "config.json").write_text("{")
    ddim = json.loads((copy / "records" / "ddim--seed0.json").read_text())
    ddim["hparams"]["steps"] = 5000  # as a record from a genzoo whose bounds differed might hold
    (copy / "records" / "ddim--seed0.json").write_text(json.dumps(ddim))
    served = serve.Run(copy)
    assert "ae" not in served.entries and "vae" not in served.entries and "dcgan" in served.entries
    assert served.skipped["ddim"] == ("its record's settings are not accepted here: ddim: steps must be an int in "
                                      "[1, 1000], got 5000")
    assert served.skipped["ae"].endswith("was scored with (its hash differs from the record's); the run's command trains or scores it again")
    assert served.skipped["vae"].startswith(f"its {copy / records['vae'].record.checkpoint / 'config.json'} does not read: JSONDecodeError")
    with pytest.raises(serve.Refused, match="^ae is not served: .*model.safetensors is not the file ae seed 0") as refused:
        served.entry("ae")
    assert refused.value.status == 404
    with pytest.raises(GenzooError, match="is not the file ae seed 0 was scored with"):
        load_model(served.folder, records["ae"].record)  # explore's figures refuse it too

    class Stopped:  # a server that Ctrl-C stops at once
        server_address = ("127.0.0.1", 8000)

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            pass

    monkeypatch.setattr(serve, "make_server", lambda *args, **kwargs: Stopped())
    assert serve.main([str(copy), "--port", "0"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("not served: ae: ") and printed[1].startswith("not served: vae: its ")
    assert printed[2].startswith("not served: ddim: ") and printed[3].startswith(f"serving {copy} (3 models: ")


@pytest.mark.parametrize("change, words", [
    ({"data_hash": "0123456789ab"}, "was run on other data (hash 0123456789ab) than mnist5k as read now"),
    ({"dataset": "folder:/nowhere/at/all"}, "was run on folder:/nowhere/at/all, which cannot be read now: image folder "
                                            "/nowhere/at/all does not exist"),
])
def test_data_gone_or_changed_since_the_run_is_one_line_at_the_start(run_folder, tmp_path, capsys, change, words):
    """Found by a probe: the page drew test images the models never saw (a folder changed since the
    run), and data that could not be read was a 400 on the page's first request."""
    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy, ignore=shutil.ignore_patterns("checkpoints"))
    (copy / "checkpoints").symlink_to(run_folder / "checkpoints")
    results = json.loads((copy / "results.json").read_text())
    results["run"].update(change)
    (copy / "results.json").write_text(json.dumps(results))
    assert serve.main([str(copy), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


@pytest.mark.parametrize("host", ["", " "])
def test_an_empty_host_is_refused_not_every_interface(tmp_path, monkeypatch, capsys, host):
    """`--host "$HOST"` with HOST unset would bind 0.0.0.0: refused before the folder is read."""
    monkeypatch.setattr(serve, "make_server", lambda *args, **kwargs: pytest.fail("it went on to listen"))
    assert serve.main([str(tmp_path), "--host", host, "--port", "0"]) == 2
    assert capsys.readouterr().err == ("error: --host is empty, which would listen on every interface; give an address: "
                                       "127.0.0.1 (the default, this machine only) or 0.0.0.0 (every interface, on purpose)\n")


def test_a_run_folder_given_with_a_literal_tilde_is_read_from_home(run_folder, monkeypatch):
    monkeypatch.setenv("HOME", str(run_folder.parent))
    assert serve.parse_args([f"~/{run_folder.name}"]).run_folder == str(run_folder)


def test_the_command_binds_localhost_and_prints_the_address(run_folder):
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.serve", str(run_folder), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + proc.stderr.read() if proc.poll() is not None else line
        address = line.split("http://", 1)[1].split("/", 1)[0]
        conn = http.client.HTTPConnection(address, timeout=60)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_latent_models_animation_says_its_frames_are_decoded_codes():
    """ldm's sampler works on codes: the caption said x_t of what is the decoder's rendering of z_t."""
    spec = zoo.DataSpec(1, 28, 28)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    test = torch.zeros(1, 1, 28, 28)
    _, latent = serve.animation(zoo.create("ldm", spec, preset="smoke", steps=3), 1, gen(), None, test)
    _, pixels = serve.animation(zoo.create("ddim", spec, preset="smoke", steps=3), 1, gen(), None, test)
    assert latent.startswith("top to bottom: the latent z_t decoded; its predicted clean z0 decoded;")
    assert "x_t" not in latent and "z_t" not in pixels and "; x_t; its predicted clean image;" in pixels
