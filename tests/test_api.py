"""stylize and score end to end, on tiny images with seeded random weights."""

import dataclasses
import json

import pytest
import torch

import painterly
from painterly.cli import main
from painterly.config import Settings

# A network cut after relu2_2 keeps these end-to-end runs fast; the full stack is tested elsewhere.
TINY = dict(weights="random", model="vgg16", size=48, scales=(48,), iterations=12, content_layer="relu2_2",
            style_layers=("relu1_2", "relu2_2"))  # fmt: skip


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, 40, 48, generator=gen)
    content = torch.nn.functional.avg_pool2d(content, 5, 1, 2)  # smooth, photo-like
    style = torch.rand(1, 3, 56, 56, generator=gen)
    return content, style


def test_loss_falls_and_every_evaluation_is_reported(images):
    steps = []
    result = painterly.stylize(*images, callback=steps.append, **TINY)
    totals = [h["total"] for h in result.history]
    assert len(steps) == len(result.history) == result.evaluations == 12
    assert totals[-1] < 0.75 * totals[0]
    assert result.image.shape == (1, 3, 40, 48)
    assert 0 <= result.image.min() and result.image.max() <= 1
    assert [s.iteration for s in steps] == list(range(1, 13))


def test_same_seed_same_pixels_and_noise_init_depends_on_seed(images):
    a = painterly.stylize(*images, init="noise", seed=3, **TINY)
    b = painterly.stylize(*images, init="noise", seed=3, **TINY)
    c = painterly.stylize(*images, init="noise", seed=4, **TINY)
    assert torch.equal(a.image, b.image)
    assert not torch.equal(a.image, c.image)


def test_adam_lowers_the_loss(images):
    result = painterly.stylize(*images, optimizer="adam", learning_rate=0.05, **TINY)
    assert result.history[-1]["total"] < result.history[0]["total"]


def test_score_of_the_result_is_the_reported_loss(images):
    result = painterly.stylize(*images, **TINY)
    scored = painterly.score(result.image, *images, Settings(**{**TINY, "size": 512}))
    for term in ("content", "style", "tv", "total"):
        assert scored[term] == pytest.approx(result.losses[term], rel=1e-4, abs=1e-7)
    for layer, value in scored["style_layers"].items():
        assert value == pytest.approx(result.losses[f"style:{layer}"], rel=1e-4, abs=1e-7)
    assert scored["weights"] == {k: v for k, v in result.weights.items() if k != "normalizers"}
    for key in ("content", "tv"):
        assert scored["normalizers"][key] == pytest.approx(result.weights["normalizers"][key])
    assert scored["normalizers"]["style"] == pytest.approx(result.weights["normalizers"]["style"])


def _by_hand(image, content, style, s):
    """The seed's terms for one image, from the network's taps and the formulas written out."""
    from painterly.image import resize
    from painterly.network import VGGFeatures, cached_weights

    s = s.resolved()
    net = VGGFeatures("vgg16", [s.content_layer, *s.style_layers], cached_weights(s.model, s.weights, s.seed))
    with torch.no_grad():
        f, p, a = net(image), net(content), net(resize(style, s.size))  # the style at the output's size
    h, w = image.shape[-2:]
    content_term = float(((f[s.content_layer] - p[s.content_layer]) ** 2).mean())
    layers = {}
    for layer in s.style_layers:  # G = F Fᵀ over the layer's M positions; A the style's per-position Gram × M
        x, y = f[layer][0].flatten(1), a[layer][0].flatten(1)
        k, m = x.shape
        g, big_a = x @ x.T, y @ y.T / y.shape[1] * m
        layers[layer] = float(((g - big_a) ** 2).sum() / (k * m) / k**2)
    tv = float(
        (image[..., :, 1:] - image[..., :, :-1]).pow(2).sum() + (image[..., 1:, :] - image[..., :-1, :]).pow(2).sum()
    )
    return content_term, layers, tv


@pytest.mark.parametrize("normalize", [False, True])
def test_score_reports_the_seed_terms_the_weights_and_the_total_optimised(images, normalize):
    content, style = images
    image = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(9))
    # the seed's terms only (no Laplacian term; the default's is checked at the end)
    s = Settings(**{**TINY, "style_layer_weights": (1.0, 0.25)}, normalize=normalize, content_weight=2.0,
                 style_weight=3.0, tv_weight=5.0, laplacian_weight=0.0)  # fmt: skip
    scored = painterly.score(image, content, style, s)
    content_term, layers, tv = _by_hand(image, content, style, s)
    # Raw terms: the formulas, whatever the normalisation.
    assert scored["content"] == pytest.approx(content_term, rel=1e-4)
    assert scored["style_layers"] == pytest.approx(layers, rel=1e-4)
    assert scored["style"] == pytest.approx(layers["relu1_2"] + 0.25 * layers["relu2_2"], rel=1e-4)
    assert scored["tv"] == pytest.approx(tv, rel=1e-5)
    # The weights as given, the normalisers apart.
    assert scored["weights"] == {"alpha": 2.0, "beta": 3.0, "gamma": 5.0,
                                 "layer_weights": {"relu1_2": 1.0, "relu2_2": 0.25}}  # fmt: skip
    n = scored["normalizers"]
    if normalize:
        assert n["tv"] == 3 * 40 * 48 and n["content"] > 0 and all(v > 0 for v in n["style"].values())
    else:
        assert n["content"] == n["tv"] == 1.0 and n["style"] == {"relu1_2": 1.0, "relu2_2": 1.0}
    # The total is the weighted sum of what is reported.
    total = 2.0 / n["content"] * scored["content"] + 5.0 / n["tv"] * scored["tv"]
    total += 3.0 * sum(w / n["style"][k] * layers[k] for k, w in (("relu1_2", 1.0), ("relu2_2", 0.25)))
    assert scored["total"] == pytest.approx(total, rel=1e-4)
    # With the default λ (1, gated, since issue 12's session 5) the normalised objective adds the Laplacian
    # term, reported apart and in the total; --no-normalize is the seed's objective, without it.
    default = painterly.score(image, content, style, dataclasses.replace(s, laplacian_weight=None))
    if normalize:
        assert default["weights"]["laplacian"] == 1.0 and default["weights"]["laplacian_gate"] == 1.0
        assert default["laplacian"] > 0 and default["total"] > scored["total"]
    else:
        assert "laplacian" not in default and default["total"] == pytest.approx(scored["total"], rel=1e-6)


def test_score_honours_size_and_refuses_too_small(images):
    content, style = images
    scored = painterly.score(content, content, style, Settings(**TINY), size=32)
    assert (scored["width"], scored["height"]) == (32, 27)
    with pytest.raises(painterly.PainterlyError, match="--size must be an integer >= 16"):
        painterly.score(content, content, style, Settings(**TINY), size=2)


def test_coarse_to_fine_visits_each_scale_in_order(images):
    steps = []
    painterly.stylize(*images, callback=steps.append, **{**TINY, "scales": (32, 48), "coarse_iterations": 4})
    assert [s.scale for s in steps] == [0] * 4 + [1] * 12
    assert steps[0].size == (27, 32) and steps[-1].size == (40, 48)


def test_scale_sizes_default_ladder():
    assert Settings(size=512).scale_sizes() == [256, 362, 512]  # √2 steps from 256 px (docs/quality.md)
    assert Settings(size=512, scale_step=2.0).scale_sizes() == [256, 512]
    assert Settings(size=512, start_size=128).scale_sizes() == [128, 181, 256, 362, 512]  # the old ladder
    assert Settings(size=100).scale_sizes() == [100]
    assert Settings(size=512, scales=(512,)).scale_sizes() == [512]


def test_score_command_prints_json(tmp_path, capsys, images):
    paths = []
    for name, img in zip(("c.png", "s.png"), images):
        painterly.save_image(img, tmp_path / name)
        paths.append(str(tmp_path / name))
    code = main(["score", paths[0], "--content", paths[0], "--style", paths[1], "--weights", "random",
                 "--model", "vgg16"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(out) >= {"content", "style", "tv", "total", "style_layers", "weights", "normalizers"}
    assert out["content"] == pytest.approx(0.0, abs=1e-6)
    # A --no-normalize run can be re-scored from the shell, and --size is honoured.
    code = main(["score", paths[0], "--content", paths[0], "--style", paths[1], "--weights", "random",
                 "--model", "vgg16", "--no-normalize", "--size", "32"])  # fmt: skip
    raw = json.loads(capsys.readouterr().out)
    assert code == 0 and raw["normalize"] is False and raw["width"] == 32
    assert raw["normalizers"]["content"] == 1.0 and set(raw["normalizers"]["style"].values()) == {1.0}
