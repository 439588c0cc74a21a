"""The scale plan: one schedule for stylize, the experiments, the studio and the progress line."""

from __future__ import annotations

import pytest
import torch

import painterly
from painterly.config import Settings
from painterly.errors import InputError
from painterly.plan import ScalePlan, evaluations, plan_scales, seconds_left


def test_the_default_ladder_and_its_evaluations():
    s = Settings(size=512).resolved()
    plans = plan_scales(s, (384, 512))
    assert [p.size for p in plans] == [(192, 256), (272, 362), (384, 512)]
    assert [p.evaluations for p in plans] == [50, 50, 150]
    assert evaluations(plans) == 250


def test_a_thin_picture_starts_at_the_first_scale_it_fits_and_a_too_small_one_is_refused():
    s = Settings(size=512, model="vgg16").resolved()  # the seed's taps reach pool4: 16 px at least
    plans = plan_scales(s, (20, 512))  # 128 px wide is 5 px tall: skipped until the side reaches 16
    assert [p.size for p in plans] == [(20, 512)]
    with pytest.raises(InputError, match="at 512 px the content is 512x10, smaller than the 16 px"):
        plan_scales(s, (10, 512))


def test_a_wide_or_tall_picture_skips_the_coarse_scales_thinner_than_one_step_below_the_start():
    s = Settings(size=512).resolved()  # start 256 px, √2 steps: a coarse scale needs a 181 px short side
    assert [p.size for p in plan_scales(s, (512, 512))] == [(256, 256), (362, 362), (512, 512)]
    assert [p.size for p in plan_scales(s, (600, 512))] == [(256, 218), (362, 309), (512, 437)]  # a portrait
    assert [p.size for p in plan_scales(s, (256, 512))] == [(181, 362), (256, 512)]  # 2:1: starts at 362 px
    assert [p.size for p in plan_scales(s, (100, 512))] == [(100, 512)]  # a 5:1 strip: one scale
    assert [p.size for p in plan_scales(s, (512, 104))] == [(512, 104)]
    explicit = Settings(size=512, scales=(256, 512)).resolved()  # --scales is taken as given
    assert [p.size for p in plan_scales(explicit, (100, 512))] == [(50, 256), (100, 512)]


def test_seconds_left_weights_later_scales_by_their_pixels():
    plans = [ScalePlan((64, 64), 150), ScalePlan((128, 128), 60)]
    assert seconds_left(plans, 0, 100, 1.0) == 50 + 60 * 4  # 50 more here, 60 at four times the cost
    assert seconds_left(plans, 1, 30, 2.0) == 60
    assert seconds_left(plans, 5, 0, 1.0) == 0.0


def test_each_step_carries_the_work_left():
    steps = []
    gen = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 32, 32, generator=gen), torch.rand(1, 3, 32, 32, generator=gen)
    tiny = dict(weights="random", model="vgg16", content_layer="relu1_2", style_layers=("relu1_2",))
    painterly.stylize(content, style, size=32, scales=(16, 32), iterations=3, coarse_iterations=2,
                      callback=steps.append, **tiny)  # fmt: skip
    assert [s.work_left for s in steps] == [1 + 3 * 4, 0 + 3 * 4, 2, 1, 0]


def test_modelled_seconds_count_what_is_left_at_each_scale():
    from painterly.plan import modelled_seconds

    plans = [ScalePlan((64, 64), 10), ScalePlan((128, 128), 4)]
    per_pixel = lambda size: size[0] * size[1] * 1e-3  # noqa: E731
    assert modelled_seconds(plans, per_pixel) == pytest.approx(10 * 4.096 + 4 * 16.384)
    assert modelled_seconds(plans, per_pixel, 0, 6) == pytest.approx(4 * 4.096 + 4 * 16.384)
    assert modelled_seconds(plans, per_pixel, 1) == pytest.approx(4 * 16.384)
    assert modelled_seconds(plans, per_pixel, 2) == 0.0


def test_a_long_run_times_one_evaluation_and_its_steps_carry_the_model(monkeypatch):
    import io

    from painterly import api
    from painterly.progress import ProgressBar

    monkeypatch.setattr(api, "ESTIMATE_ABOVE_PIXELS", 0)  # every run is "long"
    monkeypatch.setattr(api, "CALIBRATE_SIDE", 32)
    steps = []
    gen = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 32, 32, generator=gen), torch.rand(1, 3, 32, 32, generator=gen)
    tiny = dict(weights="random", model="vgg16", content_layer="relu1_2", style_layers=("relu1_2",))
    out = io.StringIO()
    bar = ProgressBar(file=out, log_every=0)
    painterly.stylize(content, style, size=32, scales=(16, 32), iterations=3, coarse_iterations=2,
                      callback=lambda s: (steps.append(s), bar(s)), **tiny)  # fmt: skip
    assert [s.here_left for s in steps] == [1, 0, 2, 1, 0]
    later = [s.later_seconds for s in steps]
    assert later[0] == later[1] > 0 and later[2:] == [0.0, 0.0, 0.0]
    first = out.getvalue().splitlines()[0]
    assert first.startswith("painterly: 5 evaluations over 2 scales, about ") and "in all" in first


def test_the_time_model_charges_a_recomputed_content_target(monkeypatch):
    from painterly import api, tiling

    monkeypatch.setattr(api, "CALIBRATE_SIDE", 32)
    gen = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 64, 64, generator=gen), torch.rand(1, 3, 64, 64, generator=gen)
    s = Settings(weights="random", model="vgg16", content_layer="relu1_2", style_layers=("relu1_2",), size=64,
                 tile=16, precision="float32").resolved()  # fmt: skip
    seconds_at = api.time_model(api.build_problem(content, [style], s))
    plain = seconds_at((64, 64))
    monkeypatch.setattr(tiling, "RECOMPUTE_TARGET_ABOVE", 64 * 64 - 1)
    assert seconds_at((64, 64)) == pytest.approx(plain * tiling.RECOMPUTE_TARGET_COST[torch.float32])
    assert seconds_at((63, 64)) == pytest.approx(plain * 63 / 64)  # not over the threshold: not charged


def test_a_short_run_has_no_time_model():
    steps = []
    gen = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 32, 32, generator=gen), torch.rand(1, 3, 32, 32, generator=gen)
    tiny = dict(weights="random", model="vgg16", content_layer="relu1_2", style_layers=("relu1_2",))
    painterly.stylize(content, style, size=32, scales=(32,), iterations=2, callback=steps.append, **tiny)
    assert all(s.later_seconds is None for s in steps)


def test_the_progress_line_adds_this_scales_measured_rate_to_the_models_later_scales():
    import io
    from types import SimpleNamespace

    from painterly.progress import ProgressBar

    out = io.StringIO()
    bar = ProgressBar(file=out, log_every=0)
    step = SimpleNamespace(iteration=1, total=10, scale=0, scales=2, size=(8, 8), losses={"total": 1.0},
                           elapsed=2.0, work_left=9, later_seconds=100.0, here_left=4)  # fmt: skip
    bar(step)
    lines = out.getvalue().splitlines()
    assert "about 2 min in all" in lines[0]  # 2 s done + 4 x 2 s here + 100 s later = 110 s
    assert "about 2 min left" in lines[1]


def test_scales_over_a_megapixel_get_fewer_evaluations_and_the_default_picture_none():
    from painterly.plan import FINE_MIN, FINE_PIXELS, STRONG_MIN, fine_evaluations

    assert [p.evaluations for p in plan_scales(Settings(size=1024).resolved(), (768, 1024))][-1] == 150
    # the default E = 1.0 (session 9): 1448 px 50 x 1048576 / 1572528 = 33.3; 2048 px 50 / 3 = 16.7;
    # 2896 px 50 x 1048576 / 6290112 = 8.3; 4096 px 150 / 12 = 12.5, half to even: 12
    default = plan_scales(Settings(size=4096).resolved(), (3072, 4096))
    assert Settings().taper_exponent == 1.0 and [p.evaluations for p in default] == [50, 50, 50, 50, 50, 33, 17, 8, 12]
    assert fine_evaluations(50, 10**9) == 7  # the floor at E = 1.0
    plans = plan_scales(Settings(size=4096, taper_exponent=0.5).resolved(), (3072, 4096))
    counts = [p.evaluations for p in plans]
    assert counts == [fine_evaluations(50, p.size[0] * p.size[1], 0.5) for p in plans[:-1]] + [counts[-1]]
    # by hand, E = 0.5 (the default before): 1448 px is 1086x1448 = 1.5 MP, 50 x (1048576 / 1572528) ** 0.5 = 40.8;
    # 2048 px 50 / 3 ** 0.5 = 28.9; 2896 px (2172x2896) 50 x 0.408 = 20.4; 4096 px 150 / 12 ** 0.5 = 43.3
    assert counts == [50, 50, 50, 50, 50, 41, 29, 20, 43]
    small = sum(1 for p in plans if p.size[0] * p.size[1] <= FINE_PIXELS)  # 256 to 1024 px: untouched
    assert small == 5 and counts[:small] == [50] * small
    assert counts[small:] == sorted(counts[small:-1], reverse=True) + [counts[-1]]
    assert fine_evaluations(5, 10**9, 0.5) == 5 and fine_evaluations(50, 10**9, 0.5) == FINE_MIN
    # the print taper, E = 1.5: 50 x (1048576 / 1572528) ** 1.5 = 27.2; 50 / 3 ** 1.5 = 9.6; 2896 px 3.4
    # and 4096 px 150 / 12 ** 1.5 = 3.6, both raised to STRONG_MIN = 4
    strong = plan_scales(Settings(size=4096, taper_exponent=1.5).resolved(), (3072, 4096))
    assert [p.evaluations for p in strong] == [50, 50, 50, 50, 50, 27, 10, 4, 4] and STRONG_MIN == 4
    print_2048 = plan_scales(Settings(size=2048, taper_exponent=1.5).resolved(), (1536, 2048))
    assert [p.evaluations for p in print_2048][-2:] == [27, 29]
    assert fine_evaluations(3, 10**9, 1.5) == 3 and fine_evaluations(50, 10**9, 1.5) == STRONG_MIN
    untapered = plan_scales(Settings(size=4096, taper=False).resolved(), (3072, 4096))
    assert [p.evaluations for p in untapered] == [50] * (len(plans) - 1) + [150]


@pytest.mark.parametrize("value", ["x", "-1", "0", "nan", "inf", "5"])
def test_bad_taper_exponent_is_one_line_exit_2(tmp_path, tiny_pair, capsys, value):
    from painterly.cli import main

    content, style = tiny_pair
    out = tmp_path / "out.png"
    fast = ["--model", "vgg16", "--weights", "random", "--size", "48", "--iterations", "1", "--scales", "48"]
    assert main([content, style, "-o", str(out), *fast, "--taper-exponent", value]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "taper-exponent" in err[0] and "Traceback" not in err[0], err
    assert not out.exists()


def test_the_taper_benchmark_saves_the_counts_each_exponent_gives_a_portrait(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # benchmarks/ at the repo root
    from benchmarks.taper import plans, snapshots

    counts = plans(2048, (600, 512))  # grace_hopper.jpg's shape
    # by hand: 2048 px is 2048x1748 (512 x 2048 / 600 = 1747.6) = 3579904 px, 1048576 / that = 0.29291, and
    # 150 x 0.29291 ** (1.5, 1, 0.5) = 23.8, 43.9, 81.2; 1448 px is 1448x1236 = 1789728 px, ratio 0.58588,
    # 50 x 0.58588 ** (1.5, 1, 0.5) = 22.4, 29.3, 38.3; 256 to 1024 px (1024x874, under 1 MP) keep 50
    assert {e: c[-2:] for e, c in counts.items()} == {1.5: [(1448, 1236, 22), (2048, 1748, 24)],
                                                     1.0: [(1448, 1236, 29), (2048, 1748, 44)],
                                                     0.5: [(1448, 1236, 38), (2048, 1748, 81)]}  # fmt: skip
    assert all([p[2] for p in c[:-2]] == [50] * 5 for c in counts.values())
    offsets, final_at, prev_at = snapshots(counts)
    assert offsets == [0, 50, 100, 150, 200, 250, 288]  # today's ladder: 5 x 50, then 1448 px's 38
    assert final_at == [24, 44, 81] and prev_at == [22, 29, 38]


def test_the_tapers_floor_runs_from_ten_at_the_default_exponent_to_four_at_the_print_taper():
    from painterly.plan import fine_evaluations, fine_floor

    # the line through (0.5, 10) and (1.5, 4), clamped: 0.6 gives 10 - 6 x 0.1 = 9.4, 1.0 gives 7
    assert [fine_floor(e) for e in (0.25, 0.5, 0.6, 1.0, 1.5, 2.0, 4.0)] == [10, 10, 9, 7, 4, 4, 4]
    # a huge scale: 50 x (1048576 / 1e9) ** 0.6 = 0.8 and ** 1.0 = 0.05, both raised to their floor
    # (0.6 used to drop to 4, as every exponent over 0.5 did)
    assert fine_evaluations(50, 10**9, 0.6) == 9 and fine_evaluations(50, 10**9, 1.0) == 7
    assert fine_evaluations(8, 10**9, 0.6) == 8  # asked for fewer than the floor: kept
    # where the floor does not bind the taper is as before: 2048x2048 is 4x FINE_PIXELS, and
    # 150 x 0.25 ** 0.6 = 65.3, 150 x 0.25 ** 1.0 = 37.5 (round half to even: 38), 50 x 0.25 ** 1.5 = 6.25
    assert [fine_evaluations(n, 2048 * 2048, e) for n, e in ((150, 0.6), (150, 1.0), (50, 1.5))] == [65, 38, 6]
    # E = 1.0 at 4096x3072 (floor 7, never reached): 1448 px 50 x 1048576 / 1572528 = 33.3; 2048 px 50 / 3 = 16.7;
    # 2896 px 50 x 1048576 / 6290112 = 8.3; 4096 px 150 / 12 = 12.5, half to even: 12
    middle = plan_scales(Settings(size=4096, taper_exponent=1.0).resolved(), (3072, 4096))
    assert [p.evaluations for p in middle] == [50, 50, 50, 50, 50, 33, 17, 8, 12]


def test_the_taper_grid_keeps_its_crops_at_100_percent_on_a_4096_px_picture(monkeypatch, tmp_path):
    from pathlib import Path

    import numpy as np
    from PIL import Image

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # benchmarks/ at the repo root
    from benchmarks.taper import CROPS, grid

    # a 4096x3072 picture whose every pixel says where it is (x in red, y in green, each mod 256)
    y, x = np.mgrid[0:3072, 0:4096]
    Image.fromarray(np.stack([x % 256, y % 256, x // 256], -1).astype(np.uint8)).save(tmp_path / "a.png")
    grid(str(tmp_path), str(tmp_path / "sheet.png"), "a,a", content="tubingen.jpg")
    sheet = np.asarray(Image.open(tmp_path / "sheet.png"))
    # twice 2048 px: the crops are 512 px (two columns, three rows under an 18 px label) at twice the places
    assert sheet.shape == (18 + 3 * 512, 2 * 512, 3)
    for row, (left, top) in enumerate(CROPS["tubingen"].values()):
        for col in (0, 1):
            cell = sheet[18 + row * 512 : 18 + (row + 1) * 512, col * 512 : (col + 1) * 512]
            # the crop's top-left pixel is the picture's (2 left, 2 top), its last the one 511 px on
            assert tuple(cell[0, 0]) == ((2 * left) % 256, (2 * top) % 256, (2 * left) // 256)
            assert tuple(cell[-1, -1]) == ((2 * left + 511) % 256, (2 * top + 511) % 256, (2 * left + 511) // 256)
