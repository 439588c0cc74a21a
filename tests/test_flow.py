"""Optical flow, warping and the consistency mask (painterly.flow), on synthetic frames whose flow is known."""

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("cv2")

from painterly import flow  # noqa: E402


def texture(height: int, width: int, seed: int) -> torch.Tensor:
    """A smooth random picture (1, 3, H, W) with structure every 8 px: DIS matches 8 px patches, and on
    finer texture its coarse pyramid levels alias and it underestimates motion."""
    coarse = torch.rand(1, 3, height // 8, width // 8, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def translated(dx: int, dy: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames a and b of a camera pan: b's content is a's moved by (-dx, -dy), so a(x) = b(x + (dx, dy))."""
    big = texture(160, 208, seed=0)
    a = big[..., 16 : 16 + 96, 16 : 16 + 128]
    b = big[..., 16 - dy : 16 - dy + 96, 16 - dx : 16 - dx + 128]
    return a, b


def test_flow_recovers_a_known_translation():
    a, b = translated(3, -2)
    measured = flow.optical_flow(a, b)
    assert measured.shape == (96, 128, 2)
    interior = measured[8:-8, 8:-8]
    error = (interior - torch.tensor([3.0, -2.0])).norm(dim=-1)
    assert float(error.median()) < 0.1  # pixels; DIS reaches ~0.01 on this texture
    assert float((error < 0.5).float().mean()) > 0.95


def test_warp_by_the_flow_reproduces_the_other_frame():
    a, b = translated(3, -2)
    exact = torch.tensor([3.0, -2.0]).expand(96, 128, 2)
    warped = flow.warp(b, exact)  # b sampled at x + (3, -2) is a
    assert torch.allclose(warped[..., 4:-4, 4:-4], a[..., 4:-4, 4:-4], atol=1e-5)
    inside = flow.consistency(exact, -exact)  # drops the 3 columns and 2 rows that come from outside b
    assert float(inside.mean()) == pytest.approx((94 * 125) / (96 * 128))
    assert flow.warping_error(a, b, exact, inside) < 1e-10
    assert flow.warping_error(a, b, torch.zeros(96, 128, 2), inside) > 1e-3  # not by chance


def moving_square() -> tuple[torch.Tensor, torch.Tensor]:
    """Frames t-1 and t: a textured square moves 8 px right over a still textured background."""
    background, square = texture(96, 128, seed=1), texture(32, 32, seed=2)
    before, after = background.clone(), background.clone()
    before[..., 32:64, 40:72] = square
    after[..., 32:64, 48:80] = square
    return before, after


def test_disoccluded_pixels_are_masked():
    before, after = moving_square()
    backward = flow.optical_flow(after, before)  # frame t -> t-1: what warps t-1 onto t
    forward = flow.optical_flow(before, after)
    mask = flow.consistency(backward, forward)
    # Revealed in t behind the square's trailing edge (x 40..48): nothing in t-1 matches them.
    revealed = mask[36:60, 41:47]
    assert float(revealed.mean()) < 0.2
    # Background far from the square, and the square's own interior, are trusted.
    assert float(mask[4:24, 4:124].mean()) > 0.95
    assert float(mask[38:58, 54:74].mean()) > 0.9


def test_the_criteria_with_exact_flows():
    # A 1-D occlusion worked by hand: the right half moves 4 px left in t and covers what was there.
    # backward (t -> t-1): 0 on the left, +4 on the right; forward (t-1 -> t): 0 left, -4 right.
    backward, forward = torch.zeros(8, 32, 2), torch.zeros(8, 32, 2)
    backward[:, 16:, 0], forward[:, 20:, 0] = 4.0, -4.0
    mask = flow.consistency(backward, forward)
    assert mask[:, 2:14].eq(1).all()  # still pixels, far from the edge
    assert mask[:, 16].eq(0).all()  # motion boundary: the flow jumps by 4 px there
    assert mask[:, 29:].eq(0).all()  # x + 4 leaves frame t-1
    assert mask[:, 18:27].eq(1).all()  # moved pixels whose flows cancel
    # Flows that do not cancel: backward +4 but forward 0 at the landing point -> disoccluded.
    forward[:, 20:, 0] = 0.0
    assert flow.consistency(backward, forward)[:, 18:27].eq(0).all()


def test_pan_out_of_frame_is_masked():
    backward = torch.full((16, 16, 2), 0.0)
    backward[..., 0] = 3.0  # each pixel of t was 3 px further right in t-1: the last 3 columns came from outside
    mask = flow.consistency(backward, -backward)
    assert mask[:, :12].eq(1).all() and mask[:, 13:].eq(0).all()
