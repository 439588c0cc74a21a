"""The Laplacian content term (issue #12, Li et al. 2017): its formula by hand, its gradient, how a run weighs it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from painterly import stylize
from painterly.api import build_problem
from painterly.config import LAPLACIAN_GATE, LAPLACIAN_WEIGHT, Settings
from painterly.errors import InputError
from painterly.image import load_image, resize
from painterly.objective import (
    cell_means,
    laplacian_cells,
    laplacian_gate,
    laplacian_loss,
    nested_cell_means,
    pooled_laplacian,
)
from painterly.progress import shown_terms

FAST = dict(weights="random", model="vgg16", size=40, iterations=6, coarse_iterations=4, start_size=28,
            style_layers=("relu1_1", "relu2_1"), content_layer="relu2_1", device="cpu",
            precision="float32")  # fmt: skip


def test_pooled_laplacian_by_hand():
    # 6×6, the middle 2×2 block at 1: pooled over 3×3 cells of 2×2 the middle cell is 1, the rest 0;
    # Δ there = 4 neighbours (0) − 4 × 1 = −4, and the grid's inside is that one cell.
    x = torch.zeros(1, 1, 6, 6)
    x[..., 2:4, 2:4] = 1.0
    assert torch.equal(pooled_laplacian(x, (3, 3)), torch.tensor([[[[-4.0]]]]))
    # A quarter of the block lit: the cell's average is 1/4, so Δ = −1.
    y = torch.zeros(1, 1, 6, 6)
    y[..., 2, 2] = 1.0
    assert torch.equal(pooled_laplacian(y, (3, 3)), torch.tensor([[[[-1.0]]]]))
    # Each channel on its own; a linear ramp (a smooth region, any colour) has none.
    ramp = torch.linspace(0, 1, 8).expand(1, 3, 8, 8) * torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    assert pooled_laplacian(ramp + 0.3, (8, 8)).abs().max() < 1e-6
    assert pooled_laplacian(ramp, (4, 4)).shape == (1, 3, 2, 2)


def test_laplacian_loss_by_hand():
    # Δ of a spot is −4 at its cell and +1 at each of its 4 neighbours; on a 5×5 grid the inside is
    # 3×3: against a smooth target the squared differences are 16 + 4·1 = 20 over 9 cells.
    x = torch.zeros(1, 1, 5, 5)
    x[..., 2, 2] = 1.0
    target = pooled_laplacian(torch.zeros(1, 1, 5, 5), (5, 5))
    assert laplacian_loss(pooled_laplacian(x, (5, 5)), target).item() == pytest.approx(20 / 9)
    assert laplacian_loss(target, target).item() == 0.0


def test_laplacian_gradient_is_the_numerical_one_in_float64():
    x = torch.rand(1, 3, 11, 9, dtype=torch.float64, requires_grad=True)
    t = pooled_laplacian(torch.rand(1, 3, 11, 9, dtype=torch.float64), (5, 4))  # cells of 2.2 × 2.25 px
    assert torch.autograd.gradcheck(lambda v: laplacian_loss(pooled_laplacian(v, (5, 4)), t), (x,))


def test_cell_means_by_hand_and_as_the_adaptive_pool():
    # 4×6 pixels over 2×3 cells of 2×2: each cell the mean of its four pixels
    x = torch.arange(24.0).reshape(1, 1, 4, 6)
    assert torch.equal(cell_means(x, (2, 3)), torch.tensor([[[[3.5, 5.5, 7.5], [15.5, 17.5, 19.5]]]]))
    assert cell_means(x, (4, 6)) is x  # a cell per pixel: the image itself
    y = torch.rand(2, 3, 48, 64, dtype=torch.float64)
    for cells in ((12, 16), (3, 4), (5, 7)):  # divisible (a plain pool), and not (the adaptive one)
        assert torch.allclose(cell_means(y, cells), F.adaptive_avg_pool2d(y, cells))


def test_nested_cell_means_are_each_grids_own():
    # 16 px cells pooled from the 4 px ones are the same cells: equal to pooling the image directly
    y = torch.rand(1, 3, 96, 128, dtype=torch.float64)
    grids = [(6, 8), (24, 32), (5, 7)]  # (5, 7) divides neither: from the image, adaptively
    out = nested_cell_means(y, grids)
    assert sorted(out) == sorted(grids)
    for g in grids:
        assert torch.allclose(out[g], F.adaptive_avg_pool2d(y, g))
    # an image the finer grid does not divide: the coarser grid is not taken from it
    z = torch.rand(1, 1, 50, 50, dtype=torch.float64)
    out = nested_cell_means(z, [(20, 20), (5, 5)])
    assert torch.allclose(out[(5, 5)], F.adaptive_avg_pool2d(z, (5, 5)))
    x = torch.rand(1, 2, 24, 16, dtype=torch.float64, requires_grad=True)

    def energy(v):
        return sum(m.pow(2).sum() for m in nested_cell_means(v, [(6, 4), (3, 2)]).values())

    assert torch.autograd.gradcheck(energy, (x,))


def test_pooled_laplacian_is_the_four_neighbour_kernel():
    y = torch.rand(1, 3, 40, 56, dtype=torch.float64)
    p = F.adaptive_avg_pool2d(y, (10, 14))
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64).expand(3, 1, 3, 3)
    assert torch.allclose(pooled_laplacian(y, (10, 14)), F.conv2d(p, kernel, groups=3))


def test_cells_are_the_outputs_at_every_scale():
    assert laplacian_cells(512, 384, 4.0) == (128, 96)
    assert laplacian_cells(20, 10, 16.0) == (3, 3)  # never under 3 × 3
    assert laplacian_cells(6, 4, 0.5) == (6, 4)  # never more than a cell per pixel


def test_the_term_in_the_objective(tiny_pair):
    content, style = tiny_pair
    s = Settings(**FAST, laplacian_weight=2.0, laplacian_pools=(2.0, 8.0), laplacian_gate=0.0).resolved()  # Li et al.'s
    problem = build_problem(resize(load_image(content), s.size), [load_image(style)], s)
    w = problem.weights
    # Normalised by the content's own pooled Laplacian energy, one normaliser per pool.
    height, width = problem.content.shape[-2:]
    cells = {p: laplacian_cells(height, width, p * max(height, width) / 512) for p in (2.0, 8.0)}
    assert problem.laplacian_cells() == cells
    for p, c in cells.items():
        assert w.laplacian_norms[p] == pytest.approx(float(pooled_laplacian(problem.content, c).pow(2).mean()))
    out = torch.rand(1, 3, height, width)
    terms = problem.objective_at((height, width))(out)
    target = {p: pooled_laplacian(problem.content, c) for p, c in cells.items()}
    by_pool = {p: laplacian_loss(pooled_laplacian(out, c), target[p]) for p, c in cells.items()}
    assert terms["laplacian"].item() == pytest.approx(sum(by_pool.values()).item(), rel=1e-5)
    expected = sum(2.0 / 2 * v / w.laplacian_norms[p] for p, v in by_pool.items())
    assert terms["weighted:laplacian"].item() == pytest.approx(expected.item(), rel=1e-5)
    seed = terms["weighted:content"] + terms["weighted:style"] + terms["weighted:tv"]
    assert terms["total"].item() == pytest.approx((seed + terms["weighted:laplacian"]).item(), rel=1e-6)
    # A flat grey output: 1 per pool (no structure at all), so λ exactly.
    flat = problem.objective_at((height, width))(torch.full((1, 3, height, width), 0.5))
    assert flat["weighted:laplacian"].item() == pytest.approx(2.0, rel=1e-5)
    # The content itself: 0 at every scale, the targets on the output's grid.
    coarse = problem.objective_at((height // 2, width // 2))
    assert {p: (t.shape[-2] + 2, t.shape[-1] + 2) for p, t in coarse.laplacian_targets.items()} == cells
    assert problem.objective_at((height, width))(problem.content)["laplacian"].item() < 1e-12
    report = problem.weights.to_dict()
    assert report["laplacian"] == 2.0 and set(report["normalizers"]["laplacian"]) == {"2", "8"}


def test_the_default_and_no_normalize():
    # λ by default where the terms are normalised; with --no-normalize 0 (the seed's raw objective) unless given.
    assert Settings().resolved().laplacian_weight == LAPLACIAN_WEIGHT
    # Since session 5 the default is the gated term at λ = 1 (docs/quality.md): on, and only where the
    # photograph has structure.
    assert (LAPLACIAN_WEIGHT, LAPLACIAN_GATE) == (1.0, 1.0)
    assert Settings().resolved().laplacian_gate == LAPLACIAN_GATE
    assert Settings(normalize=False).resolved().laplacian_weight == 0.0
    assert Settings(normalize=False, laplacian_weight=2.0).resolved().laplacian_weight == 2.0
    assert Settings(laplacian_weight=0.0).resolved().laplacian_weight == 0.0


def test_off_is_the_seed_objective(tiny_pair):
    content, style = tiny_pair
    plain = stylize(content, style, Settings(**FAST, laplacian_weight=0.0))
    assert "laplacian" not in plain.losses and "laplacian" not in plain.weights
    assert torch.equal(
        plain.image, stylize(content, style, Settings(**FAST, laplacian_weight=0.0, laplacian_pools=(3.0,))).image
    )


def test_a_run_lowers_its_laplacian_term_and_tiles_give_the_same(tiny_pair):
    content, style = tiny_pair
    s = Settings(**{**FAST, "coarse_iterations": 0, "iterations": 8}, laplacian_weight=0.0)
    without, with_it = stylize(content, style, s), stylize(content, style, s, laplacian_weight=3.0)
    on = Settings(**{**FAST, "coarse_iterations": 0, "iterations": 8}, laplacian_weight=3.0).resolved()
    judge = build_problem(resize(load_image(content), s.size), [load_image(style)], on)
    measure = judge.objective_at(tuple(without.image.shape[-2:]))
    assert measure(with_it.image)["laplacian"] < measure(without.image)["laplacian"]
    # Tiled, the network's terms are computed tile by tile and the Laplacian on the whole image: the same.
    whole, tiled = stylize(content, style, on, iterations=3, tile=0), stylize(content, style, on, iterations=3, tile=16)
    assert torch.allclose(whole.image, tiled.image, atol=1e-3)
    assert tiled.losses["laplacian"] == pytest.approx(whole.losses["laplacian"], rel=1e-3)


def test_progress_shows_the_term_once_as_its_share():
    shown = shown_terms({"content": 2.0, "style": 1.0, "tv": 1.0, "laplacian": 9.0, "total": 1.0,
                         "weighted:content": 0.5, "weighted:style": 0.2, "weighted:tv": 0.1,
                         "weighted:laplacian": 0.2})  # fmt: skip
    assert shown == {"content": "50%", "style": "20%", "tv": "10%", "laplacian": "20%", "total": "1"}


@pytest.mark.parametrize(
    "flag", ["--laplacian-weight=-1", "--laplacian-pools=0", "--laplacian-pools=4,nan", "--laplacian-gate=-1",
             "--laplacian-gate=inf", "--laplacian-gate-floor=1.5"]
)  # fmt: skip
def test_a_bad_value_is_one_line_and_exit_2(tmp_path, tiny_pair, capsys, flag):
    from painterly.cli import main

    assert main([*tiny_pair, "-o", str(tmp_path / "out.png"), "--weights", "random", "--size", "32", flag]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()
    with pytest.raises(InputError):
        Settings(laplacian_pools=()).resolved()


def test_score_and_a_record_carry_it(tmp_path, tiny_pair):
    from painterly.api import score
    from painterly.cli import main
    from painterly.image import read_metadata

    out = tmp_path / "out.png"
    fast = ["--weights", "random", "--model", "vgg16", "--size", "40", "--iterations", "4", "--coarse-iterations",
            "0", "--style-layers", "relu1_1,relu2_1", "--content-layer", "relu2_1", "--quiet"]  # fmt: skip
    assert main([*tiny_pair, "-o", str(out), *fast, "--laplacian-weight", "1.5", "--laplacian-pools", "2,6"]) == 0
    recorded = read_metadata(out)["settings"]
    assert recorded["laplacian_weight"] == 1.5 and recorded["laplacian_pools"] == [2.0, 6.0]
    report = score(str(out), *tiny_pair, Settings(**FAST, laplacian_weight=1.5))
    assert report["weights"]["laplacian"] == 1.5 and report["laplacian"] > 0
    seed = score(str(out), *tiny_pair, Settings(**FAST, laplacian_weight=0.0))
    assert report["total"] > seed["total"] and "laplacian" not in seed


# --strength maps to λ too: the default's λ up to 0.5, falling to 0 at 1 (the bold end's large strokes).


def test_strength_maps_to_lambda(monkeypatch):
    from painterly import config
    from painterly.config import strength_laplacian

    monkeypatch.setattr(config, "LAPLACIAN_WEIGHT", 2.0)  # the mapping's shape, whatever today's default
    assert [strength_laplacian(s) for s in (0.0, 0.5, 0.75, 1.0)] == [2.0, 2.0, 1.0, 0.0]
    assert Settings(strength=0.0).resolved().laplacian_weight == 2.0
    assert Settings(strength=0.5).resolved().laplacian_weight == Settings().resolved().laplacian_weight == 2.0
    assert Settings(strength=1.0).resolved().laplacian_weight == 0.0
    assert Settings(strength=1.0, laplacian_weight=3.0).resolved().laplacian_weight == 3.0  # given by hand wins
    assert Settings(strength=0.25, normalize=False).resolved().laplacian_weight == 0.0  # the seed's raw objective
    again = Settings(strength=0.75).resolved()
    assert again.resolved().laplacian_weight == again.laplacian_weight == 1.0  # a replayed record: the same run


# The gate (session 5): the term only where the photograph has structure.


def test_gate_by_hand():
    # Energy Σ_c Δ² = 1² + 2² = 5 in the middle cell of a 3 × 3 grid, 0 elsewhere; the picture's mean 5/9.
    # Each cell's 3 × 3 neighbourhood (inside the grid) holds the middle one: 5/4 at a corner (4 cells),
    # 5/6 at an edge (6), 5/9 in the middle (9). Over threshold × 5/9, clamped to [0, 1]:
    t = torch.zeros(1, 2, 3, 3)
    t[0, 0, 1, 1], t[0, 1, 1, 1] = 1.0, -2.0
    assert torch.equal(laplacian_gate(t, 1.0), torch.ones(1, 1, 3, 3))  # 9/4, 3/2, 1: all clamped to 1
    expected = torch.tensor([[1.0, 0.75, 1.0], [0.75, 0.5, 0.75], [1.0, 0.75, 1.0]])  # 9/8→1, 3/4, 1/2
    assert torch.allclose(laplacian_gate(t, 2.0)[0, 0], expected)
    assert laplacian_gate(t, 0.0) is None  # 0: no gate, every cell counts
    # A floor f keeps f of the term on a smooth cell: f + (1 − f) × the gate.
    assert torch.allclose(laplacian_gate(t, 2.0, floor=0.5)[0, 0], 0.5 + 0.5 * expected)
    # Far from the structure a cell gets 0: the style is free there.
    far = torch.zeros(1, 1, 3, 8)
    far[..., 1, 0] = 1.0
    assert laplacian_gate(far, 1.0)[0, 0, :, 2:].abs().max() == 0.0
    assert laplacian_gate(far, 1.0)[0, 0, :, :2].min() == 1.0
    assert laplacian_gate(far, 1.0, floor=0.1)[0, 0, :, 2:].min() == pytest.approx(0.1)
    # A picture with no structure at all (a ramp: its Δ is round-off) has none to hold: the gate is 0
    # everywhere, not its round-off over its round-off mean.
    ramp = torch.linspace(0.3, 0.7, 16).view(1, 1, 1, 16).expand(1, 3, 12, 16).contiguous()
    assert laplacian_gate(pooled_laplacian(ramp, (12, 16)), 1.0).abs().max() < 1e-6  # round-off over 1e-3
    # A faint spot, energy 0.04² = 1.6e-3: the picture's mean (1.6e-3 / 9) is under the least energy
    # (1e-3), which is then the threshold; a corner (4 neighbours, one the spot) has 4e-4 of it.
    faint = torch.zeros(1, 1, 3, 3)
    faint[..., 1, 1] = 0.04
    assert laplacian_gate(faint, 1.0)[0, 0, 0, 0] == pytest.approx(min(1.0, 1.6e-3 / 4 / 1e-3))


def test_gated_loss_by_hand():
    # Two channels, three cells: squared differences (1, 4, 9) and (0, 1, 0) under the gate (1, ½, 0),
    # over C·R·W = 6 values: (1 + 2 + 0 + 0 + ½ + 0) / 6.
    lap = torch.tensor([[[[1.0, 2.0, 3.0]], [[0.0, 1.0, 0.0]]]])
    gate = torch.tensor([[[[1.0, 0.5, 0.0]]]])
    assert laplacian_loss(lap, torch.zeros_like(lap), gate).item() == pytest.approx(3.5 / 6)
    ones = torch.ones(1, 1, 1, 3)
    assert laplacian_loss(lap, torch.zeros_like(lap), ones).item() == pytest.approx(
        laplacian_loss(lap, torch.zeros_like(lap)).item()
    )


def test_gated_gradient_is_the_numerical_one_in_float64():
    x = torch.rand(1, 3, 14, 21, dtype=torch.float64, requires_grad=True)
    c = torch.rand(1, 3, 14, 21, dtype=torch.float64)
    c[..., :, 6:] = 0.5  # a smooth right part: gate 0 there, a ramp between, 1 on the left
    t = pooled_laplacian(c, (7, 10))  # cells of 2 × 2.1 px
    gate = laplacian_gate(t, 1.0).double()
    assert gate.min() == 0.0 and gate.max() == 1.0 and ((gate > 0) & (gate < 1)).any()
    assert torch.autograd.gradcheck(lambda v: laplacian_loss(pooled_laplacian(v, (7, 10)), t, gate), (x,))


def test_the_gated_term_leaves_smooth_regions_to_the_style(tiny_pair):
    content, style = tiny_pair
    s = Settings(**FAST, laplacian_weight=1.0, laplacian_pools=(8.0,), laplacian_gate=1.0).resolved()
    photo = resize(load_image(content), s.size)
    photo[..., :, 20:] = 0.5  # the right half smooth (no structure at all)
    problem = build_problem(photo, [load_image(style)], s)
    height, width = problem.content.shape[-2:]
    objective = problem.objective_at((height, width))
    (pool, target), gate = next(iter(objective.laplacian_targets.items())), objective.laplacian_gates[8.0]
    # The normaliser: the photograph's energy under the gate, so a flat output scores λ exactly.
    assert problem.weights.laplacian_norms[pool] == pytest.approx(float((gate * target.pow(2)).mean()), rel=1e-5)
    flat = objective(torch.full((1, 3, height, width), 0.5))
    assert flat["weighted:laplacian"].item() == pytest.approx(1.0, rel=1e-5)
    assert objective(problem.content)["laplacian"].item() < 1e-12
    # A spot painted in the smooth half costs nothing gated; the ungated term charges for it.
    spot = problem.content.clone()
    spot[..., 16:24, width - 10 : width - 2] = 1.0
    assert objective(spot)["laplacian"].item() < 1e-12
    ungated = build_problem(photo, [load_image(style)], dataclasses.replace(s, laplacian_gate=0.0))
    assert ungated.objective_at((height, width))(spot)["laplacian"].item() > 1e-3
    # The same spot where the photograph has structure is charged under the gate too.
    left = problem.content.clone()
    left[..., 16:24, 2:10] = 1.0
    assert objective(left)["laplacian"].item() > 1e-3
    assert problem.weights.to_dict()["laplacian_gate"] == 1.0


def test_gated_tiles_give_the_same(tiny_pair):
    content, style = tiny_pair
    on = Settings(**{**FAST, "coarse_iterations": 0}, laplacian_weight=3.0, laplacian_gate=1.0).resolved()
    whole, tiled = stylize(content, style, on, iterations=3, tile=0), stylize(content, style, on, iterations=3, tile=16)
    assert torch.allclose(whole.image, tiled.image, atol=1e-3)
    assert tiled.losses["laplacian"] == pytest.approx(whole.losses["laplacian"], rel=1e-3)
    ungated = stylize(content, style, on, iterations=3, tile=0, laplacian_gate=0.0)
    assert not torch.equal(ungated.image, whole.image)  # the gate is in the objective, not ignored
