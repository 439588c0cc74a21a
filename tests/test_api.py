"""stylize and score end to end, on tiny images with seeded random weights."""

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
    assert scored["alpha"] == pytest.approx(result.weights["alpha"])


def test_raw_seed_terms_without_normalisation(images):
    raw = dict(
        normalize=False, content_weight=2.0, style_weight=3.0, tv_weight=5.0, content_layer=None, style_layers=None
    )
    s = Settings(**{**TINY, **raw})
    scored = painterly.score(images[0], images[0], images[1], s)
    assert scored["content"] == 0.0  # the content image against itself
    assert scored["total"] == pytest.approx(3.0 * scored["style"] + 5.0 * scored["tv"], rel=1e-5)
    assert scored["layer_weights"] == [1.0, 0.5, 0.25, 0.125, 0.0625]


def test_coarse_to_fine_visits_each_scale_in_order(images):
    steps = []
    painterly.stylize(*images, callback=steps.append, **{**TINY, "scales": (32, 48), "coarse_iterations": 4})
    assert [s.scale for s in steps] == [0] * 4 + [1] * 12
    assert steps[0].size == (27, 32) and steps[-1].size == (40, 48)


def test_scale_sizes_default_ladder():
    assert Settings(size=512).scale_sizes() == [128, 181, 256, 362, 512]  # √2 steps
    assert Settings(size=512, scale_step=2.0).scale_sizes() == [128, 256, 512]
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
    assert set(out) >= {"content", "style", "tv", "total", "alpha", "beta", "gamma", "layer_weights"}
    assert out["content"] == pytest.approx(0.0, abs=1e-6)
