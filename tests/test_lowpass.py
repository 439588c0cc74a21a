"""The coarse tone term (issue #12, session 6, an option): its formula by hand, its gradient, how a run weighs it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from painterly import stylize
from painterly.api import build_problem
from painterly.config import Settings
from painterly.errors import InputError
from painterly.image import load_image, resize
from painterly.objective import LOWPASS_MIN_VARIANCE, cell_means, coarse_tone, laplacian_cells, lowpass_loss

FAST = dict(weights="random", model="vgg16", size=40, iterations=6, coarse_iterations=4, start_size=28,
            style_layers=("relu1_1", "relu2_1"), content_layer="relu2_1", device="cpu",
            precision="float32")  # fmt: skip


def test_coarse_tone_by_hand():
    # luminance 0.299 R + 0.587 G + 0.114 B, less its mean over the grid
    m = torch.zeros(1, 3, 1, 2)
    m[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # pure red: luminance 0.299
    m[0, :, 0, 1] = torch.tensor([0.0, 0.0, 1.0])  # pure blue: 0.114
    tone = coarse_tone(m)
    assert tone.shape == (1, 1, 1, 2)
    assert tone.flatten().tolist() == pytest.approx([(0.299 - 0.114) / 2, -(0.299 - 0.114) / 2])
    # an overall shift of brightness changes nothing; a one-channel picture is its own luminance
    assert torch.allclose(coarse_tone(m + 0.3), tone)
    assert coarse_tone(torch.tensor([[[[0.2, 0.4, 0.9]]]])).flatten().tolist() == pytest.approx([-0.3, -0.1, 0.4])


def test_lowpass_loss_by_hand_and_its_gradient():
    # white left half, black right half against an even grey target: tones ±0.5, squared 0.25 each
    x = torch.zeros(1, 1, 2, 4)
    x[..., :2] = 1.0
    target = torch.zeros(1, 1, 1, 2)
    assert lowpass_loss(coarse_tone(cell_means(x, (1, 2))), target).item() == pytest.approx(0.25)
    assert lowpass_loss(target, target).item() == 0.0
    v = torch.rand(1, 3, 12, 16, dtype=torch.float64, requires_grad=True)
    t = coarse_tone(cell_means(torch.rand(1, 3, 12, 16, dtype=torch.float64), (3, 5)))  # 4 × 3.2 px cells
    assert torch.autograd.gradcheck(lambda a: lowpass_loss(coarse_tone(cell_means(a, (3, 5))), t), (v,))


def test_the_term_in_the_objective(tiny_pair):
    content, style = tiny_pair
    s = Settings(**FAST, lowpass_weight=2.0, lowpass_pool=64.0).resolved()
    problem = build_problem(resize(load_image(content), s.size), [load_image(style)], s)
    height, width = problem.content.shape[-2:]
    cells = laplacian_cells(height, width, 64.0 * max(height, width) / 512)
    assert problem.lowpass_cells() == cells
    w = problem.weights
    own = coarse_tone(F.adaptive_avg_pool2d(problem.content, cells))
    assert w.lowpass == 2.0 and w.lowpass_norm == pytest.approx(max(float(own.pow(2).mean()), LOWPASS_MIN_VARIANCE))
    objective = problem.objective_at((height, width))
    out = torch.rand(1, 3, height, width)
    terms = objective(out)
    expected = lowpass_loss(coarse_tone(F.adaptive_avg_pool2d(out, cells)), own)
    assert terms["lowpass"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["weighted:lowpass"].item() == pytest.approx(2.0 * expected.item() / w.lowpass_norm, rel=1e-5)
    rest = terms["weighted:content"] + terms["weighted:style"] + terms["weighted:tv"] + terms["weighted:laplacian"]
    assert terms["total"].item() == pytest.approx((rest + terms["weighted:lowpass"]).item(), rel=1e-6)
    # one even tone scores μ (its variance is the normaliser's), the content itself 0, at any scale
    flat = objective(torch.full((1, 3, height, width), 0.5))
    if w.lowpass_norm > LOWPASS_MIN_VARIANCE:
        assert flat["weighted:lowpass"].item() == pytest.approx(2.0, rel=1e-4)
    assert objective(problem.content)["lowpass"].item() < 1e-12
    assert problem.objective_at((height // 2, width // 2)).lowpass_target.shape[-2:] == cells
    report = w.to_dict()
    assert report["lowpass"] == 2.0 and report["normalizers"]["lowpass"] == w.lowpass_norm


def test_off_by_default_and_a_run_lowers_it(tiny_pair):
    content, style = tiny_pair
    assert Settings().resolved().lowpass_weight == 0.0
    plain = stylize(content, style, Settings(**FAST))
    assert "lowpass" not in plain.losses and "lowpass" not in plain.weights
    s = Settings(**{**FAST, "coarse_iterations": 0, "iterations": 8}, style_weight=1e4)
    without, with_it = stylize(content, style, s), stylize(content, style, s, lowpass_weight=30.0)
    on = Settings(**{**FAST, "coarse_iterations": 0, "iterations": 8}, style_weight=1e4, lowpass_weight=30.0)
    judge = build_problem(resize(load_image(content), s.size), [load_image(style)], on.resolved())
    measure = judge.objective_at(tuple(without.image.shape[-2:]))
    assert measure(with_it.image)["lowpass"] < measure(without.image)["lowpass"]


@pytest.mark.parametrize(
    "flag", ["--lowpass-weight=-1", "--lowpass-weight=nan", "--lowpass-pool=0", "--lowpass-pool=600"]
)
def test_a_bad_value_is_one_line_and_exit_2(tmp_path, tiny_pair, capsys, flag):
    from painterly.cli import main

    assert main([*tiny_pair, "-o", str(tmp_path / "out.png"), "--weights", "random", "--size", "32", flag]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(InputError):
        Settings(lowpass_pool=0.5).resolved()


def test_the_flags_a_record_and_score(tmp_path, tiny_pair):
    from painterly.api import score
    from painterly.cli import main
    from painterly.image import read_metadata

    out = tmp_path / "out.png"
    fast = ["--weights", "random", "--model", "vgg16", "--size", "40", "--iterations", "4", "--coarse-iterations",
            "0", "--style-layers", "relu1_1,relu2_1", "--content-layer", "relu2_1", "--quiet"]  # fmt: skip
    assert main([*tiny_pair, "-o", str(out), *fast, "--lowpass-weight", "1.5", "--lowpass-pool", "32"]) == 0
    recorded = read_metadata(out)["settings"]
    assert recorded["lowpass_weight"] == 1.5 and recorded["lowpass_pool"] == 32.0
    report = score(str(out), *tiny_pair, Settings(**FAST, lowpass_weight=1.5, lowpass_pool=32.0))
    assert report["weights"]["lowpass"] == 1.5 and report["lowpass"] > 0
    plain = score(str(out), *tiny_pair, Settings(**FAST))
    assert report["total"] > plain["total"] and "lowpass" not in plain
