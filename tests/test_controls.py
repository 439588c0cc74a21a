"""Artist controls (Gatys et al. 2017): style blends, guided Gram masks, style scale, layer presets,
and all of them together through the CLI down to a 16-bit file. Tiny images, seeded random weights."""

import struct
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

import painterly
from painterly.api import build_problem
from painterly.cli import _masks, build_parser, main
from painterly.config import CONTENT_PRESETS, STYLE_PRESETS, Settings
from painterly.errors import InputError
from painterly.flags import settings_from
from painterly.image import save_image
from painterly.network import build_network
from painterly.objective import Objective, Problem, Weights, gram_per_pixel, style_loss

TINY = dict(model="vgg16", weights="random", size=32, scales=(32,), style_layers=("relu1_2", "relu2_2"),
            content_layer="relu2_2")  # fmt: skip
SCORE = {k: v for k, v in TINY.items() if k not in ("size", "scales")}  # score takes the image's size


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


class Identity(nn.Module):
    """A stand-in network whose only tap is the image itself (K = 3): Grams are of pixels."""

    def forward(self, image):
        return {"x": image}


def _objective(content, styles, blend=None, masks=None):
    return Objective(
        Identity(), content, styles, content_layer="x", style_layers=["x"], weights=Weights(0.0, 1.0, 0.0, {"x": 1.0}),
        blend_weights=blend or [1.0] * len(styles),
        output_area=content.shape[-2] * content.shape[-1], output_masks=masks,
    )  # fmt: skip


def _halves(h, w):
    left = torch.zeros(1, 1, h, w)
    left[..., : w // 2] = 1
    return left, 1 - left


def _seed_style_loss(region, style, area):
    """The seed's L_style for a region's per-pixel Gram against a style's, at output area H·W."""
    return float(style_loss(gram_per_pixel(region) * area, gram_per_pixel(style) * area, area))


# --------------------------------------------------------------------------------------- blends
def test_blend_weights_normalise_to_a_weighted_mean_of_grams():
    content, s1, s2 = _rand(1, 3, 4, 6, seed=1), _rand(1, 3, 5, 5, seed=2), _rand(1, 3, 3, 7, seed=3)
    a = _objective(content, [s1, s2], blend=[2.0, 6.0]).targets[0][0].a
    b = _objective(content, [s1, s2], blend=[0.25, 0.75]).targets[0][0].a
    assert torch.equal(a, b)
    assert torch.allclose(a, 0.25 * gram_per_pixel(s1) + 0.75 * gram_per_pixel(s2), atol=1e-7)


def test_a_zero_blend_weight_is_the_other_style_alone():
    image, content, s1, s2 = (_rand(1, 3, 24, 32, seed=i) for i in range(4))
    both = painterly.score(image, content, [s1, s2], style_blend_weights=(1, 0), **SCORE)
    alone = painterly.score(image, content, [s1], **SCORE)
    assert both["style"] == pytest.approx(alone["style"], rel=1e-5)
    assert both["total"] == pytest.approx(alone["total"], rel=1e-5)


def test_blend_weights_must_match_the_styles():
    with pytest.raises(InputError, match="2 values for 3 style images"):
        build_problem(_rand(1, 3, 24, 32), [_rand(1, 3, 8, 8)] * 3, Settings(**TINY, style_blend_weights=(1, 2)))


# ---------------------------------------------------------------------------------- guided Gram
def test_guided_gram_is_the_gram_of_the_region_alone():
    f = _rand(1, 3, 4, 6, seed=4)
    left, _ = _halves(4, 6)
    assert torch.allclose(gram_per_pixel(f, left), gram_per_pixel(f[..., :3]), atol=1e-7)


def test_masks_restrict_each_gram_to_its_region():
    h, w = 4, 6
    content, s1, s2 = _rand(1, 3, h, w, seed=5), _rand(1, 3, 5, 5, seed=6), _rand(1, 3, 6, 4, seed=7)
    left, right = _halves(h, w)
    objective = _objective(content, [s1, s2], masks=[left, right])
    # A style without a style mask is targeted by its whole image's Gram.
    assert torch.equal(objective.targets[0][0].a, gram_per_pixel(s1))
    image = _rand(1, 3, h, w, seed=8)
    # Each half against its own style, each counted by its share (½) of the image.
    want = 0.5 * _seed_style_loss(image[..., :3], s1, h * w) + 0.5 * _seed_style_loss(image[..., 3:], s2, h * w)
    assert float(objective(image)["style"]) == pytest.approx(want, rel=1e-5)


def test_pixels_under_no_mask_get_no_style():
    content, style = _rand(1, 3, 4, 6, seed=9), _rand(1, 3, 5, 5, seed=10)
    left, _ = _halves(4, 6)
    image = _rand(1, 3, 4, 6, seed=11).requires_grad_(True)
    _objective(content, [style], masks=[left])(image)["style"].backward()
    assert torch.count_nonzero(image.grad[..., 3:]) == 0
    assert image.grad[..., :3].abs().min() > 0


def test_guided_blend_weights_and_a_none_mask_meaning_everywhere():
    h, w = 4, 6
    content, s1, s2 = _rand(1, 3, h, w, seed=12), _rand(1, 3, 5, 5, seed=13), _rand(1, 3, 6, 4, seed=14)
    left, _ = _halves(h, w)
    image = _rand(1, 3, h, w, seed=15)
    value = float(_objective(content, [s1, s2], blend=[3.0, 1.0], masks=[left, None])(image)["style"])
    # weights relative to an equal blend: 2·¾ = 1.5 and 2·¼ = 0.5; style 2 covers the whole image
    want = 1.5 * 0.5 * _seed_style_loss(image[..., :3], s1, h * w) + 0.5 * _seed_style_loss(image, s2, h * w)
    assert value == pytest.approx(want, rel=1e-5)


def test_all_none_masks_are_the_plain_blend():
    image, content, s1, s2 = (_rand(1, 3, 24, 32, seed=i) for i in range(16, 20))
    plain = painterly.score(image, content, [s1, s2], **SCORE)
    none = painterly.score(image, content, [s1, s2], masks=[None, None], **SCORE)
    assert none["style"] == pytest.approx(plain["style"], rel=1e-6)


def test_a_style_confined_to_the_left_half_changes_the_left_far_more():
    h, w = 24, 32
    ramp = torch.linspace(0.3, 0.7, w).view(1, 1, 1, w).expand(1, 3, h, w).contiguous()
    left, _ = _halves(h, w)
    settings = {**TINY, "size": w, "scales": (w,), "style_weight": 1e4}
    result = painterly.stylize(ramp, _rand(1, 3, 32, 32, seed=20), masks=[left], iterations=4, **settings)
    change = (result.image - ramp).abs().mean(dim=(0, 1, 2))  # per column
    # away from the seam (receptive fields reach a few pixels across it)
    left_change, right_change = float(change[: w // 2 - 5].mean()), float(change[w // 2 + 5 :].mean())
    assert left_change > 0.02
    assert left_change > 5 * right_change


# ---------------------------------------------------------------------------------- style scale
def _problem(content, style, net=None, **settings):
    s = Settings(**{**TINY, **settings}).resolved()
    return Problem(s, net, content, [style], (1.0,), None, torch.device("cpu"))


def test_style_scale_and_style_size_set_the_styles_sampling_at_every_scale():
    content, style = _rand(1, 3, 24, 32, seed=21), _rand(1, 3, 100, 80, seed=22)
    net = SimpleNamespace(min_size=2)  # all _style_images asks of the network
    sides = {}
    for name, extra in {"1": {}, "2": {"style_scale": 2.0}, "size40": {"style_size": 40}}.items():
        problem = _problem(content, style, net, **extra)
        sides[name] = [max(problem._style_images(size)[0].shape[-2:]) for size in ((24, 32), (12, 16))]
    assert sides == {"1": [32, 16], "2": [64, 32], "size40": [40, 20]}  # strokes keep their size per scale


def test_a_small_style_scale_never_shrinks_a_style_below_what_the_network_takes():
    content, wide = _rand(1, 3, 24, 32, seed=25), _rand(1, 3, 40, 160, seed=26)
    problem = _problem(content, wide, SimpleNamespace(min_size=16), style_scale=0.25)
    assert tuple(problem._style_images((24, 32))[0].shape[-2:]) == (16, 64)  # not 2×8


def test_style_scale_changes_the_style_target():
    content, style = _rand(1, 3, 24, 32, seed=23), _rand(1, 3, 64, 64, seed=24)
    net = build_network(Settings(**TINY).resolved(), torch.device("cpu"), torch.float32)
    unit = Weights(1, 1, 0, {"relu1_2": 1, "relu2_2": 1})
    one, two = (_problem(content, style, net, style_scale=k).objective_at((24, 32), unit) for k in (1, 2))
    a1, a2 = one.targets[0][0].a, two.targets[0][0].a
    assert (a1 - a2).abs().max() > 0.01 * a1.abs().max()


# -------------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("model", ["vgg16", "vgg16-hed", "vgg19"])
def test_layer_presets_and_free_lists(model):
    arch = Settings(model=model).model_defaults().arch
    for name, layers in STYLE_PRESETS[arch].items():
        assert Settings(model=model, style_layers=(name,)).resolved().style_layers == layers
    for name, layer in CONTENT_PRESETS[arch].items():
        assert Settings(model=model, content_layer=name).resolved().content_layer == layer
    free = Settings(model=model, style_layers=("conv1_1", "relu3_2"), content_layer="conv4_1").resolved()
    assert free.style_layers == ("conv1_1", "relu3_2") and len(free.style_layer_weights) == 2
    # from Python a string does what the flag does: a preset name or a comma list
    assert Settings(model=model, style_layers="gatys").resolved().style_layers == STYLE_PRESETS[arch]["gatys"]
    assert Settings(model=model, style_layers="conv1_1, relu3_2").resolved().style_layers == free.style_layers
    with pytest.raises(InputError, match="relu1_1"):  # an unknown name lists the valid ones
        Settings(model=model, style_layers=("relu9_9",)).resolved()


# ------------------------------------------------------------------------- the CLI, all together
def test_cli_flags_build_the_settings():
    args = build_parser().parse_args(
        ["c.jpg", "a.jpg", "b.jpg", "-o", "o.png", "--style-blend-weights", "1,3", "--preserve-color",
         "histogram", "--style-scale", "0.5", "--style-layers", "gatys", "--content-layer", "relu4_2",
         "--mask", "sky.png", "--mask", "none"]
    )  # fmt: skip
    s = settings_from(args)
    assert (s.style_blend_weights, s.preserve_color, s.style_scale) == ((1.0, 3.0), "histogram", 0.5)
    assert (s.style_layers, s.content_layer) == (("gatys",), "relu4_2")
    assert _masks(args.mask) == ["sky.png", None]


def _png_bit_depth(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    return depth, colour_type


def test_cli_runs_every_control_together_and_writes_16_bit(tmp_path):
    for name, seed in (("c.png", 25), ("a.png", 26), ("b.png", 27)):
        save_image(_rand(1, 3, 24, 32, seed=seed), tmp_path / name)
    left, _ = _halves(24, 32)
    save_image(left.repeat(1, 3, 1, 1), tmp_path / "mask.png")
    common = ["--model", "vgg16", "--weights", "random", "--size", "32", "--scales", "32", "--iterations", "2",
              "--style-layers", "relu1_2,relu2_2", "--content-layer", "relu2_2", "--quiet"]  # fmt: skip
    out = tmp_path / "out.png"
    code = main(
        [str(tmp_path / "c.png"), str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(out), *common,
         "--style-blend-weights", "3,1", "--preserve-color", "luminance", "--style-scale", "0.75",
         "--mask", str(tmp_path / "mask.png"), "--mask", "none", "--bit-depth", "16"]
    )  # fmt: skip
    assert code == 0
    assert _png_bit_depth(out) == (16, 2)  # 16 bits per channel, RGB
    tif = tmp_path / "out.tif"
    assert main([str(tmp_path / "c.png"), str(tmp_path / "a.png"), "-o", str(tif), *common, "--bit-depth", "16"]) == 0
    pixels = tifffile.imread(tif)
    assert pixels.dtype == np.uint16 and pixels.shape == (24, 32, 3)
    assert np.any(pixels % 257 != 0)  # real 16-bit values, not 8-bit ones widened
    assert main([str(tmp_path / "c.png"), str(tmp_path / "a.png"), "-o", str(tmp_path / "o.jpg"), *common,
                 "--bit-depth", "16"]) != 0  # fmt: skip
