"""painterly.quality: the measures behind benchmarks/quality.py, on hand-made pictures whose answer is known."""

import pytest
import torch

import painterly
from painterly import quality
from painterly.image import gaussian_blur


def scene(h: int = 96, w: int = 128) -> torch.Tensor:
    """A light wall with a dark window and a mid-grey disc: outlines at several sizes, in colour."""
    img = torch.full((1, 3, h, w), 0.8)
    img[..., 20:50, 15:45] = 0.15
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    disc = (yy - 60) ** 2 + (xx - 90) ** 2 < 22**2
    for channel, value in enumerate((0.4, 0.5, 0.3)):
        img[0, channel][disc] = value
    return img


def blurred(img: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(img, sigma)


def test_content_is_one_for_the_content_itself_and_falls_with_blur_and_noise():
    x = scene()
    assert quality.content_kept(x, x) == pytest.approx(1.0, abs=1e-6)
    soft, softer = quality.content_kept(blurred(x, 2), x), quality.content_kept(blurred(x, 6), x)
    assert 1.0 > soft > softer
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    little, much = (quality.content_kept((x + a * noise).clamp(0, 1), x) for a in (0.1, 0.5))
    assert 1.0 > little > much


def test_fine_texture_costs_less_content_than_moving_the_structure():
    """A 1 px checker (brush work) is blurred away by the measure; a window moved by 12 px is not."""
    x = scene()
    checker = ((torch.arange(96)[:, None] + torch.arange(128)[None]) % 2).float() * 0.2 - 0.1
    textured = (x + checker).clamp(0, 1)
    moved = x.clone()
    moved[..., 20:50, 15:45] = 0.8
    moved[..., 32:62, 15:45] = 0.15
    assert quality.content_kept(textured, x) > 0.9 > quality.content_kept(moved, x)


def test_light_and_dark_swapped_is_negative():
    x = scene()
    assert quality.content_kept(1 - x, x) == pytest.approx(-1.0, abs=1e-6)


def test_weakest_region_finds_the_one_ruined_cell():
    x = scene()
    ruined = x.clone()
    ruined[..., 20:50, 15:45] = 0.8  # the window painted over: one part of the picture lost
    assert quality.weakest_region(x, x) == pytest.approx(1.0, abs=1e-6)
    assert quality.weakest_region(ruined, x) < quality.content_kept(ruined, x) - 0.2


def test_invented_is_zero_for_a_re_toned_content_and_flags_a_new_blob():
    x = scene()
    assert quality.invented(x, x) == pytest.approx(0.0, abs=1e-6)
    # A style that darkens and compresses the whole picture invents nothing (a linear tone change
    # exactly; a curved one nearly: the curve is fitted after the blur, where it is no longer exact).
    assert quality.invented(0.1 + 0.5 * x, x) == pytest.approx(0.0, abs=1e-6)
    assert quality.invented(0.1 + 0.5 * x**2, x) < 0.1
    blob = x.clone()
    blob[..., 55:90, 5:40] = 0.05  # a dark blob on the light wall, in neither image
    assert quality.invented(blob, x) > 0.3
    # Fine texture is blurred away at σ = 16 px: far less than the blob.
    checker = ((torch.arange(96)[:, None] + torch.arange(128)[None]) % 2).float() * 0.3 - 0.15
    assert quality.invented((x + checker).clamp(0, 1), x) < 0.05


def test_lengths_follow_the_picture_size():
    """The same picture at twice the size measures the same (lengths are given at 512 px)."""
    x = scene()
    big = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    noisy_big = torch.nn.functional.interpolate(noisy, scale_factor=2, mode="bilinear", align_corners=False)
    assert quality.content_kept(noisy_big, big) == pytest.approx(quality.content_kept(noisy, x), abs=0.05)


def test_sizes_must_match():
    with pytest.raises(ValueError, match="sizes differ"):
        quality.content_kept(scene(96, 128), scene(64, 64))


def test_style_taken_is_one_for_the_content_and_less_towards_the_style(tiny_pair):
    content, style = tiny_pair
    s = painterly.Settings(model="vgg16", weights="random", size=48)
    own = quality.style_taken(painterly.score(content, content, style, s))
    assert own == pytest.approx(1.0, rel=1e-3)
    nearer = quality.style_taken(painterly.score(style, content, style, s))
    assert nearer < 0.5


def test_style_taken_weighs_layers_by_the_seed_weights():
    report = {
        "weights": {"layer_weights": {"a": 1.0, "b": 0.5}},
        "normalizers": {"style": {"a": 2.0, "b": 4.0}},
        "style_layers": {"a": 1.0, "b": 4.0},
    }
    assert quality.style_taken(report) == pytest.approx((1.0 * 0.5 + 0.5 * 1.0) / 1.5)


# --strength: one knob from faithful to bold, mapped to β and the start size; the expert weights win.


def test_strength_half_is_the_default_picture():
    default = painterly.Settings(model="vgg16").resolved()
    half = painterly.Settings(model="vgg16", strength=0.5).resolved()
    assert (half.style_weight, half.start_size) == (default.style_weight, default.start_size)


def test_strength_raises_beta_by_decades_and_shrinks_the_start_only_when_bold():
    from painterly.config import BOLD_START_SIZE, START_SIZE, STRENGTH_DECADES, STYLE_WEIGHT, strength_weights

    betas = [strength_weights(s)[0] for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert betas == sorted(betas)
    assert betas[0] == pytest.approx(STYLE_WEIGHT / 10**STRENGTH_DECADES)
    assert betas[-1] == pytest.approx(STYLE_WEIGHT * 10**STRENGTH_DECADES)
    assert strength_weights(0.0)[1] == strength_weights(0.5)[1] == START_SIZE
    assert strength_weights(1.0)[1] == min(START_SIZE, BOLD_START_SIZE)


def test_given_weights_win_over_strength():
    s = painterly.Settings(model="vgg16", strength=1.0, style_weight=7.0, start_size=200).resolved()
    assert (s.style_weight, s.start_size) == (7.0, 200)
    again = s.resolved()  # a replayed record resolves to the same run
    assert (again.style_weight, again.start_size) == (7.0, 200)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_strength_out_of_range_is_one_line(value):
    with pytest.raises(painterly.errors.InputError, match="--strength must be a number from 0 to 1"):
        painterly.Settings(strength=value).resolved()


def test_strength_flag_on_the_command_line(tmp_path, tiny_pair, capsys):
    from painterly.cli import main

    content, style = tiny_pair
    code = main([content, style, "-o", str(tmp_path / "o.png"), "--strength", "2", "--weights", "random"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--strength must be a number from 0 to 1, got 2" in err[0]
    assert not (tmp_path / "o.png").exists()
