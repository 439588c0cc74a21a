"""The seed's formulas against values worked out by hand on tiny tensors."""

import pytest
import torch
from torch import nn

from painterly.objective import Objective, Weights, content_loss, gram_matrix, gram_per_pixel, style_loss, tv_loss

# F: K = 2 filters over H×W = 1×2 positions.  channel 0 = [1, 2], channel 1 = [0, 1].
F2 = torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]]]])


def test_gram_by_hand():
    # G_00 = 1·1 + 2·2 = 5; G_01 = 1·0 + 2·1 = 2; G_11 = 0 + 1 = 1
    assert torch.equal(gram_matrix(F2), torch.tensor([[[5.0, 2.0], [2.0, 1.0]]]))


def test_gram_of_ones_is_number_of_positions():
    assert torch.equal(gram_matrix(torch.ones(1, 3, 4, 5)), torch.full((1, 3, 3), 20.0))


def test_content_loss_by_hand():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # K=1, H=W=2
    # (1 + 4 + 9 + 16) / (K H W = 4) = 7.5
    assert content_loss(f, torch.zeros_like(f)).item() == pytest.approx(7.5)


def test_style_loss_by_hand():
    # Σ (G − 0)² = 25 + 4 + 4 + 1 = 34;  1/(K H W) · 1/K² = 1/(2·2) · 1/4  ->  34/16
    g = gram_matrix(F2)
    assert style_loss(g, torch.zeros_like(g), area=2).item() == pytest.approx(34 / 16)


def test_tv_checkerboard_by_hand():
    # 2×2 checkerboard: two horizontal and two vertical unit steps -> 4
    assert tv_loss(torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])).item() == pytest.approx(4.0)
    # 1×3 ramp 0, .5, 1 per channel, 3 channels: 3 · (0.25 + 0.25) = 1.5; no vertical neighbours
    ramp = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).repeat(1, 3, 1, 1)
    assert tv_loss(ramp).item() == pytest.approx(1.5)


def test_tv_gradient_by_hand():
    # checkerboard: d/dx00 of (x01 − x00)² + (x10 − x00)² = −2 − 2; x01: 2(x01 − x00) − 2(x11 − x01) = 2 + 2
    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]], requires_grad=True)
    (3 * tv_loss(x)).backward()
    assert x.grad.tolist() == [[[[-12.0, 12.0], [12.0, -12.0]]]]


def test_gradients_float64():
    x = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    a = gram_matrix(torch.rand(1, 2, 3, 3, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda t: style_loss(gram_matrix(t), a, 9), (x,))
    assert torch.autograd.gradcheck(tv_loss, (x,))
    p = torch.rand(1, 2, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: content_loss(t, p), (x,))


class Identity(nn.Module):
    """A stand-in network whose only tap is the image itself (K=3)."""

    taps = ["x"]

    def forward(self, image):
        return {"x": image}


def _objective(content, style, alpha=0.0, beta=1.0, gamma=0.0, area=None, **kw):
    return Objective(
        Identity(),
        content,
        [style],
        content_layer="x",
        style_layers=["x"],
        weights=Weights(alpha, beta, gamma, {"x": 1.0}),
        blend_weights=[1.0],
        output_area=area or content.shape[-2] * content.shape[-1],
        **kw,
    )


def test_objective_is_the_seed_formula_at_equal_sizes():
    torch.manual_seed(0)
    content, style, image = torch.rand(3, 1, 3, 4, 5).unbind(0)
    terms = _objective(content, style, alpha=2.0, beta=3.0, gamma=5.0)(image)
    by_hand = style_loss(gram_matrix(image), gram_matrix(style), 20)
    assert terms["style"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert terms["content"].item() == pytest.approx(((image - content) ** 2).mean().item(), rel=1e-5)
    total = 2 * terms["content"] + 3 * terms["style"] + 5 * tv_loss(image)
    assert terms["total"].item() == pytest.approx(total.item(), rel=1e-5)
    # each term as weighed, the progress line's shares: α L_c, β L_s, γ L_tv, summing to the total
    assert terms["weighted:content"].item() == pytest.approx(2 * terms["content"].item(), rel=1e-6)
    assert terms["weighted:style"].item() == pytest.approx(3 * terms["style"].item(), rel=1e-6)
    assert terms["weighted:tv"].item() == pytest.approx(5 * terms["tv"].item(), rel=1e-6)


def test_style_image_of_another_size_compares_per_pixel():
    torch.manual_seed(1)
    image = torch.rand(1, 3, 2, 3)
    # The style is the image tiled 2×2: 4× the positions, the same per-pixel Gram -> zero loss.
    style = image.repeat(1, 1, 2, 2)
    assert _objective(image, style)(image)["style"].item() == pytest.approx(0.0, abs=1e-6)
    # A is the style's per-pixel Gram scaled to the output's H·W = 6: check one value by hand.
    other = torch.rand(1, 3, 4, 4)
    expected = style_loss(gram_matrix(image), gram_matrix(other) / 16 * 6, 6)
    assert _objective(image, other)(image)["style"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_beta_means_the_same_at_a_coarser_scale():
    # At a coarse scale the style term is evaluated as at the output's area (here 4× larger).
    torch.manual_seed(2)
    image, style = torch.rand(2, 1, 3, 4, 4).unbind(0)
    coarse = _objective(image, style, area=64)(image)["style"]
    g, a = gram_per_pixel(image) * 64, gram_per_pixel(style) * 64
    assert coarse.item() == pytest.approx(style_loss(g, a, 64).item(), rel=1e-5)


def test_guided_gram_sees_only_its_region():
    image = torch.zeros(1, 3, 2, 4)
    image[..., :2] = 1.0  # left half white, right half black
    left = torch.zeros(1, 1, 2, 4)
    left[..., :2] = 1.0
    # Under the left mask the per-pixel Gram is that of ones: all entries 1; unmasked it is 1/2.
    assert torch.allclose(gram_per_pixel(image, left), torch.ones(1, 3, 3))
    assert torch.allclose(gram_per_pixel(image), torch.full((1, 3, 3), 0.5))


def test_blend_weights_normalise():
    torch.manual_seed(3)
    content, s1, s2 = torch.rand(3, 1, 3, 4, 4).unbind(0)
    obj = Objective(
        Identity(),
        content,
        [s1, s2],
        content_layer="x",
        style_layers=["x"],
        weights=Weights(0, 1, 0, {"x": 1.0}),
        blend_weights=[3.0, 1.0],
        output_area=16,
    )
    expected = 0.75 * gram_per_pixel(s1) + 0.25 * gram_per_pixel(s2)
    assert torch.allclose(obj.targets[0][0].a, expected)
