"""Tests for painterly.image: every bad input is one InputError line; odd files load right; saves are atomic."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin

import painterly.files
from imagefiles import encoded, png_header_only
from painterly import image as pim
from painterly.errors import InputError
from painterly.image import check_output_path, image_alpha, load_image, resize, resize_to, save_image, to_pil

RNG = np.random.default_rng(0)
NOISE = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def corrupt_png() -> bytes:
    data = bytearray(encoded(Image.fromarray(NOISE), "PNG"))
    data[len(data) // 2 : len(data) // 2 + 40] = bytes(40)  # zeros inside IDAT: bad CRC and zlib
    return bytes(data)


def _write(name: str, data: bytes | None):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        return path

    return make


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "folder.png").mkdir()
    return tmp_path / "folder.png"


PNG = encoded(Image.fromarray(NOISE), "PNG")
JPEG = encoded(Image.fromarray(NOISE), "JPEG")
BAD_INPUTS = {  # id: (make file, max_pixels, a fragment the message must contain)
    "missing": (_write("missing.png", None), None, "no such file"),
    "directory": (_folder, None, "folder"),
    "empty": (_write("empty.png", b""), None, "empty"),
    "truncated-png": (_write("cut.png", PNG[: len(PNG) // 2]), None, "truncated"),
    "truncated-jpeg": (_write("cut.jpg", JPEG[: len(JPEG) // 2]), None, "truncated"),
    "corrupt-png": (_write("broken.png", corrupt_png()), None, "corrupt"),
    "text": (_write("notes.png", b"just some text, not a picture\n" * 20), None, "not a PNG"),
    "random-bytes": (_write("noise.jpg", RNG.bytes(3000)), None, "not a PNG"),
    "svg": (_write("vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>'), None, "not a PNG"),
    "unsupported-ppm": (_write("photo.ppm", encoded(Image.fromarray(NOISE), "PPM")), None, "not a PNG"),
    "bomb-warning": (_write("bomb.png", png_header_only(10_000, 10_000)), None, "decompression bomb"),
    "bomb-error": (_write("bomb2.png", png_header_only(60_000, 60_000)), None, "decompression bomb"),
    "header-no-data": (_write("hollow.png", png_header_only(3000, 3000)), None, "cannot be decoded"),
    "over-max-pixels": (_write("big.png", PNG), 500, "32x24 = 768 pixels, over the limit of 500"),
}


@pytest.mark.parametrize("make, max_pixels, fragment", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_naming_the_file(tmp_path, make, max_pixels, fragment):
    path = make(tmp_path)
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    with pytest.raises(InputError) as err:
        load_image(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and path.name in message and fragment in message


def test_max_pixels_message_says_how_to_raise_it(tmp_path):
    (tmp_path / "big.png").write_bytes(PNG)
    with pytest.raises(InputError, match="raise max_pixels"):
        load_image(tmp_path / "big.png", max_pixels=500)
    assert load_image(tmp_path / "big.png", max_pixels=768).shape == (1, 3, 24, 32)


def load_pil(tmp_path: Path, im: Image.Image, fmt: str = "PNG", **kwargs) -> torch.Tensor:
    path = tmp_path / f"in.{fmt.lower()}"
    im.save(path, fmt, **{k: v for k, v in kwargs.items() if k != "alpha"})
    out = load_image(path, **({"alpha": kwargs["alpha"]} if "alpha" in kwargs else {}))
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
    return out


def pixel(t: torch.Tensor, y: int = 0, x: int = 0) -> list[float]:
    return [round(v, 4) for v in t[0, :, y, x].tolist()]


def test_grayscale_and_bilevel(tmp_path):
    assert pixel(load_pil(tmp_path, Image.new("L", (2, 2), 51))) == [0.2, 0.2, 0.2]
    assert pixel(load_pil(tmp_path, Image.new("1", (2, 2), 1))) == [1.0, 1.0, 1.0]


def test_palette_with_and_without_transparency(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255])
    im.putpixel((1, 0), 1)
    plain = load_pil(tmp_path, im)
    assert pixel(plain, 0, 0) == [1.0, 0.0, 0.0] and pixel(plain, 0, 1) == [0.0, 0.0, 1.0]
    composite = load_pil(tmp_path, im, transparency=0)  # the red entry is fully transparent
    assert pixel(composite, 0, 0) == [1.0, 1.0, 1.0] and pixel(composite, 0, 1) == [0.0, 0.0, 1.0]
    kept = load_pil(tmp_path, im, transparency=0, alpha="keep")
    assert pixel(kept, 0, 0) == [1.0, 0.0, 0.0, 0.0]


def test_la_and_rgba_composite_on_white_or_keep(tmp_path):
    assert pixel(load_pil(tmp_path, Image.new("LA", (1, 1), (0, 0)))) == [1.0, 1.0, 1.0]
    im = Image.new("RGBA", (2, 1), (255, 0, 0, 0))  # fully transparent red
    im.putpixel((1, 0), (0, 0, 0, 51))  # black at alpha 0.2
    out = load_pil(tmp_path, im)
    assert out.shape == (1, 3, 1, 2)
    assert pixel(out, 0, 0) == [1.0, 1.0, 1.0] and pixel(out, 0, 1) == [0.8, 0.8, 0.8]
    kept = load_pil(tmp_path, im, alpha="keep")
    assert kept.shape == (1, 4, 1, 2) and pixel(kept, 0, 0) == [1.0, 0.0, 0.0, 0.0]
    path = tmp_path / "in.png"
    assert torch.equal(image_alpha(path), kept[:, 3:])
    Image.new("RGB", (2, 1)).save(path)
    assert image_alpha(path) is None and load_image(path, alpha="keep")[0, 3].eq(1).all()
    with pytest.raises(InputError, match="alpha must be"):
        load_image(path, alpha="drop")


def test_cmyk(tmp_path):
    im = Image.new("CMYK", (2, 1), (0, 0, 0, 0))
    im.putpixel((1, 0), (255, 0, 0, 0))  # pure cyan
    out = load_pil(tmp_path, im, "TIFF")
    assert pixel(out, 0, 0) == [1.0, 1.0, 1.0] and pixel(out, 0, 1) == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_keeps_precision(tmp_path, fmt):
    im = Image.fromarray(np.array([[4660, 40000]], dtype=np.uint16))
    assert im.mode == "I;16"
    out = load_pil(tmp_path, im, fmt)
    assert out[0, :, 0, 0].sub(4660 / 65535).abs().max() < 1e-6
    assert out[0, :, 0, 1].sub(40000 / 65535).abs().max() < 1e-6  # convert("RGB") gives 1.0


def test_int32_and_float_modes_are_scaled(tmp_path):
    assert pixel(load_pil(tmp_path, Image.fromarray(np.full((1, 1), 40000, np.int32)), "TIFF"))[0] == 0.6104
    assert pixel(load_pil(tmp_path, Image.fromarray(np.full((1, 1), 0.25, np.float32)), "TIFF"))[0] == 0.25


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    im = Image.fromarray(NOISE[:3, :5])
    out = load_pil(tmp_path, im, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "in.png"))) / 255
    assert np.array_equal(out[0].permute(1, 2, 0).numpy(), expected.astype(np.float32))


def test_exif_orientation_6_rotates_jpeg(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    assert load_pil(tmp_path, Image.new("RGB", (60, 40)), "JPEG", exif=exif).shape == (1, 3, 60, 40)


def swapped_red_green_profile() -> bytes:
    """An ICC v2 matrix/TRC RGB profile whose red and green primaries are sRGB's green and red."""

    def s15(*values: float) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    def xyz(*values: float) -> bytes:
        return b"XYZ \0\0\0\0" + s15(*values)

    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"  # gamma 2.2 as u8Fixed8
    red, green, blue = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)
    white = (0.9642, 1.0, 0.8249)  # D50, the ICC connection space's white
    tags = [(b"rXYZ", xyz(*green)), (b"gXYZ", xyz(*red)), (b"bXYZ", xyz(*blue)), (b"wtpt", xyz(*white))]
    tags += [(b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    start = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        table += signature + struct.pack(">II", start + len(data), len(body))
        data += body
    header = struct.pack(">I4sI4s4s4s", start + len(data), b"lcms", 0x02100000, b"mntr", b"RGB ", b"XYZ ")
    header += bytes(12) + b"acsp" + bytes(28) + s15(*white) + bytes(48)
    assert len(header) == 128
    return header + table + data


def test_icc_profile_is_converted_to_srgb(tmp_path):
    im = Image.new("RGB", (1, 1), (255, 0, 0))
    assert pixel(load_pil(tmp_path, im)) == [1.0, 0.0, 0.0]
    out = load_pil(tmp_path, im, icc_profile=swapped_red_green_profile())
    assert out[0, 0, 0, 0] < 0.05 and out[0, 1, 0, 0] > 0.95 and out[0, 2, 0, 0] < 0.05


def test_garbage_icc_profile_warns_and_assumes_srgb(tmp_path):
    im = Image.new("RGB", (1, 1), (255, 0, 0))
    with pytest.warns(UserWarning, match="assuming sRGB"):
        assert pixel(load_pil(tmp_path, im, icc_profile=b"not a profile" * 20)) == [1.0, 0.0, 0.0]


def test_very_wide_and_tall_images(tmp_path):
    assert load_pil(tmp_path, Image.new("RGB", (4000, 3))).shape == (1, 3, 3, 4000)
    assert load_pil(tmp_path, Image.new("RGB", (3, 4000))).shape == (1, 3, 4000, 3)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert pixel(load_image(tmp_path / "anim.gif")) == [1.0, 0.0, 0.0]


def random_image(height: int = 6, width: int = 7, channels: int = 3) -> torch.Tensor:
    return torch.from_numpy(RNG.random((1, channels, height, width), dtype=np.float32))


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp", ".webp"])
def test_8_bit_round_trip_is_exact_for_lossless_formats(tmp_path, ext):
    image = torch.from_numpy(NOISE).permute(2, 0, 1)[None].float() / 255
    path = save_image(image, tmp_path / f"out{ext}")
    assert torch.equal(load_image(path), image)
    if ext != ".bmp":
        assert Image.open(path).info["icc_profile"] == pim._srgb_icc()


def test_rgba_round_trip_keeps_alpha(tmp_path):
    image = (random_image(channels=4) * 255).round() / 255
    assert torch.equal(load_image(save_image(image, tmp_path / "a.png"), alpha="keep"), image)
    alpha = torch.zeros(1, 1, 6, 7)
    jpeg = load_image(save_image(image[:, :3], tmp_path / "a.jpg", alpha=alpha))
    assert jpeg.min() > 0.97  # JPEG has no alpha: fully transparent composites to white


def test_16_bit_tiff_round_trip(tmp_path):
    image = random_image()
    back = load_image(save_image(image, tmp_path / "out.tif", bit_depth=16))
    assert (back - image).abs().max() <= 0.5 / 65535 + 1e-7
    rgba = random_image(channels=4)
    back = load_image(save_image(rgba, tmp_path / "rgba.tiff", bit_depth=16), alpha="keep")
    assert (back - rgba).abs().max() <= 0.5 / 65535 + 1e-7


def decode_png16(data: bytes) -> np.ndarray:
    """Independent reader for the files our writer makes: 16-bit RGB, every row Sub-filtered."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    idat, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(tag + body)
        idat += body if tag == b"IDAT" else b""
        pos += 12 + length
    channels = {2: 3, 6: 4}[color]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels * 2)
    assert depth == 16 and (rows[:, 0] == 1).all()
    raw = rows[:, 1:].reshape(height, width, channels * 2).cumsum(axis=1, dtype=np.uint8)  # undo Sub
    return raw.view(">u2").reshape(height, width, channels)


def test_16_bit_png_round_trip(tmp_path):
    image = random_image()
    path = save_image(image, tmp_path / "out.png", bit_depth=16)
    values = decode_png16(path.read_bytes())
    assert np.abs(values / 65535 - image[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 65535 + 1e-7
    with Image.open(path) as im:  # Pillow accepts the file and reads the high bytes
        assert im.info["icc_profile"] == pim._srgb_icc()
        assert np.array_equal(np.asarray(im), (values >> 8).astype(np.uint8))
    assert (load_image(path) - image).abs().max() <= 1 / 255  # documented: read back at 8 bits


def test_jpeg_is_444_quality_95_with_srgb_profile(tmp_path):
    image = resize_to(random_image(4, 4), (32, 32))
    path = save_image(image, tmp_path / "out.jpeg")
    with Image.open(path) as im:
        assert im.format == "JPEG" and JpegImagePlugin.get_sampling(im) == 0
        assert im.info["icc_profile"] == pim._srgb_icc()
    assert (load_image(path) - image).abs().mean() < 0.01


def test_check_output_path_refusals(tmp_path):
    assert check_output_path(tmp_path / "ok.PNG", bit_depth=16) == tmp_path / "ok.PNG"
    for bad, fragment in [
        (tmp_path / "out.xyz", "unknown image extension"),
        (tmp_path / "out", "unknown image extension"),
        (tmp_path / "nowhere" / "out.png", "does not exist"),
        (tmp_path, "unknown image extension"),
    ]:
        with pytest.raises(InputError, match=fragment):
            check_output_path(bad)
    with pytest.raises(InputError, match="16-bit output needs"):
        check_output_path(tmp_path / "out.jpg", bit_depth=16)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        check_output_path(tmp_path / "dir.png")


def test_failed_write_probe_is_refused(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(painterly.files, "open", denied, raising=False)
    with pytest.raises(InputError, match="is not writable .Permission denied"):
        check_output_path(tmp_path / "out.png")


def test_unwritable_folder_is_refused(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        try:  # root (CI runs as root) can still write here: probe rather than trust the mode bits
            (folder / "probe").write_bytes(b"")
        except PermissionError:
            pass
        else:  # sysfs refuses new files to everyone, root included
            folder = Path("/sys")
            if not folder.is_dir():
                pytest.skip("this user can write into a 0o500 folder and there is no /sys")
        with pytest.raises(InputError, match="not writable"):
            save_image(random_image(), folder / "out.png")
    finally:
        (tmp_path / "locked").chmod(0o700)


@pytest.mark.parametrize("error, expected", [(OSError("disk full"), InputError), (RuntimeError("bug"), RuntimeError)])
def test_crash_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, error, expected):
    target = save_image(random_image(), tmp_path / "out.png")
    good = target.read_bytes()

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half an image")
        raise error

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(expected):
        save_image(random_image(), target)
    assert target.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_nan_or_inf_refused_and_nothing_written(tmp_path):
    for bad in (float("nan"), float("inf")):
        image = random_image()
        image[0, 1, 2, 3] = bad
        with pytest.raises(pim.NonFiniteImageError, match="NaN or infinite") as err:
            save_image(image, tmp_path / "out.png")
        assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_saved_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_image(random_image(), tmp_path / "out.png")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_webp_side_limit_checked_before_writing(tmp_path):
    with pytest.raises(InputError, match="16383"):
        save_image(torch.zeros(1, 3, 1, 16_384), tmp_path / "wide.webp")
    assert list(tmp_path.iterdir()) == []


def test_resize_keeps_aspect_and_range():
    checker = (torch.arange(40 * 100).reshape(40, 100) % 2).float().expand(1, 3, 40, 100)
    out = resize(checker, 200)
    assert out.shape == (1, 3, 80, 200) and out.min() >= 0 and out.max() <= 1
    assert torch.nn.functional.interpolate(checker, (80, 200), mode="bicubic", antialias=True).max() > 1
    assert resize(torch.rand(1, 3, 1, 1000), 10).shape == (1, 3, 1, 10)
    stripes = (torch.arange(99) % 2).float().expand(1, 3, 3, 99)  # a 3x shrink samples whole pixels
    assert resize(stripes, 33).sub(0.5).abs().max() < 0.1  # antialiased; without it, 1,0,1,... alias
    assert resize_to(torch.full((1, 3, 5, 5), 0.3), (9, 2)).sub(0.3).abs().max() < 1e-6


def test_to_pil():
    image = torch.zeros(1, 3, 2, 5)
    image[0, 0, 1, 4] = 1.0
    im = to_pil(image)
    assert im.mode == "RGB" and im.size == (5, 2) and im.getpixel((4, 1)) == (255, 0, 0)


def test_image_module_leaves_pillow_global_state_alone(tmp_path):
    before = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    (tmp_path / "bomb.png").write_bytes(png_header_only(10_000, 10_000))
    with pytest.raises(InputError):
        load_image(tmp_path / "bomb.png")
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before
