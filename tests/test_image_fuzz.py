"""Property test: whatever bytes sit in a file, load_image returns a clean image or raises InputError.

The inputs are arbitrary bytes and valid files of every supported format with bytes overwritten,
inserted or cut off, which reach deeper into the decoders than random noise does.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from painterly.errors import InputError
from painterly.image import load_image

MAX_PIXELS = 1 << 16  # mutated headers can claim huge sizes; keep each example fast


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    seeds = []
    for im, fmt, options in [
        (rgb, "PNG", {}),
        (rgb.convert("RGBA"), "PNG", {}),
        (rgb.convert("P"), "PNG", {"transparency": 0}),
        (Image.fromarray(rng.integers(0, 65536, (6, 5), dtype=np.uint16)), "PNG", {}),
        (rgb, "JPEG", {"quality": 90}),
        (rgb.convert("CMYK"), "JPEG", {}),
        (rgb, "WEBP", {"lossless": True}),
        (rgb, "TIFF", {}),
        (rgb, "BMP", {}),
        (rgb.convert("P"), "GIF", {}),
    ]:
        buffer = io.BytesIO()
        im.save(buffer, fmt, **options)
        seeds.append(buffer.getvalue())
    buffer = io.BytesIO()  # a 16-bit RGB TIFF takes the tifffile path
    tifffile.imwrite(buffer, rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16), photometric="rgb")
    seeds.append(buffer.getvalue())
    return seeds


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid seed file with a few bytes overwritten, inserted or removed, maybe truncated."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "set":
            data[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif len(data) > 1:
            del data[pos]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow and our ICC fallback warn on damaged files
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=512), mutated()))
def test_any_bytes_give_an_image_or_an_input_error(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz.png"
    path.write_bytes(data)
    try:
        image = load_image(path, max_pixels=MAX_PIXELS)
    except InputError as err:
        assert "\n" not in str(err) and "fuzz.png" in str(err)
        return
    assert image.dtype == torch.float32 and image.ndim == 4 and image.shape[:2] == (1, 3)
    assert image.shape[2] * image.shape[3] <= MAX_PIXELS
    assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
