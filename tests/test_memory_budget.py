"""The automatic tile keeps a scale within a memory budget (painterly.tiling.choose_tile, --memory-budget)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from painterly import tiling
from painterly.cli import main
from painterly.config import Settings
from painterly.errors import InputError

CPU = torch.device("cpu")
GIB = 2**30
FAST = ["--model", "vgg16", "--weights", "random", "--size", "48", "--iterations", "1", "--scales", "48"]


@pytest.fixture
def free_24(monkeypatch):
    monkeypatch.setattr(tiling, "available_bytes", lambda device: 22 * GIB)


def test_without_a_budget_the_rule_is_todays(free_24):
    assert tiling.choose_tile(None, (1536, 2048), CPU) is None  # 5.9 GiB estimate, 80 % of 22 free
    assert tiling.choose_tile(None, (2172, 2896), CPU) is None  # 11.7 GiB estimate: it fits, and runs whole
    # 21.4 GiB (a whole default run's measured peak) is over 80 % of 22: it tiles; --tile 0 runs it whole
    assert tiling.choose_tile(None, (3072, 4096), CPU) == tiling.DEFAULT_TILE
    assert tiling.choose_tile(0, (3072, 4096), CPU) is None
    assert tiling.choose_tile(None, (6144, 8192), CPU) == tiling.DEFAULT_TILE
    assert tiling.choose_tile(0, (6144, 8192), CPU, budget=1) is None  # --tile wins over the budget
    assert tiling.choose_tile(320, (6144, 8192), CPU, budget=1) == 320


def test_the_untiled_estimate_follows_both_measured_bounds():
    # 2000 B/px to 2048x1536 (5.86 GiB; measured 5.93 after two evaluations), the fitted line above
    assert tiling.untiled_peak_bytes(1536 * 2048) == 1536 * 2048 * 2000
    # the whole default 4096 px run's measured peak (21.39 GiB): on a 24 GiB machine it tiles
    assert abs(tiling.untiled_peak_bytes(3072 * 4096) / GIB - 21.39) < 0.2
    assert tiling.untiled_peak_bytes(3072 * 4096) > tiling.UNTILED_SHARE * 24 * GIB
    assert tiling.untiled_peak_bytes(6144 * 8192) > 40 * GIB  # 8192 px never fits a 24 GiB machine whole


def test_with_less_memory_free_a_4096_px_picture_tiles(monkeypatch):
    monkeypatch.setattr(tiling, "available_bytes", lambda device: 16 * GIB)
    assert tiling.choose_tile(None, (3072, 4096), CPU) == tiling.DEFAULT_TILE
    assert tiling.choose_tile(None, (2172, 2896), CPU) is None  # 10.0 GiB of 12.8


def test_a_budget_tiles_every_scale_whose_untiled_estimate_exceeds_it(free_24):
    assert tiling.choose_tile(None, (768, 1024), CPU, budget=4) is None  # 1.5 GiB untiled
    tile = tiling.choose_tile(None, (1536, 2048), CPU, budget=4)  # 5.9 GiB untiled: tiled now
    assert tile == tiling.DEFAULT_TILE and tiling.tiled_peak_bytes((1536, 2048), tile) <= 4 * GIB
    assert tiling.choose_tile(None, (3072, 4096), CPU, budget=4) == tiling.DEFAULT_TILE  # modelled 3.57 GiB


def test_a_tight_budget_takes_the_largest_tile_that_fits(free_24):
    size = (3072, 4096)
    tile = tiling.choose_tile(None, size, CPU, budget=3.4)
    assert tiling.MIN_AUTO_TILE <= tile < tiling.DEFAULT_TILE
    assert tiling.tiled_peak_bytes(size, tile) <= 3.4 * GIB
    larger = range(tile + tiling.AUTO_TILE_STEP, tiling.DEFAULT_TILE + 1, tiling.AUTO_TILE_STEP)
    assert all(tiling.tiled_peak_bytes(size, t) > 3.4 * GIB for t in larger)


def test_the_model_counts_the_optimisers_state_and_the_target():
    adam = tiling.tiled_peak_bytes((3072, 4096), 896, "adam")
    # the fourth session's fit (3.58 GiB measured, float32) less total variation's 12 B/px (sixth session)
    assert adam == pytest.approx(3.57 * GIB - 12 * 3072 * 4096, rel=0.01)
    # bfloat16 at 8192x6144, Adam, the target recomputed: its tiles 0.58 + 50.3 M x 77 B + 1.18 MP x 560 B
    # (4.80 GiB) are under its Adam step, 0.58 + 50.3 M x (48 + 24 + 24) B = 5.08 GiB (5.04 measured)
    assert tiling.tiled_peak_bytes((6144, 8192), 896, dtype=torch.bfloat16) == pytest.approx(5.08 * GIB, rel=0.01)
    assert tiling.tiled_peak_bytes((3072, 4096), 896, "lbfgs") > adam  # 3 history pairs, 96 B/px
    mid = (4608, 6144)  # over HALF_TARGET_ABOVE: the target is 32 B/px
    per_pixel = (tiling.tiled_peak_bytes(mid, 896) - tiling.TILED_BASE_BYTES) / (mid[0] * mid[1])
    assert 121 < per_pixel < 121 + 50  # 121 B/px of whole-picture buffers, the rest the tile's (1.2 GiB)
    big = (6144, 8192)  # over RECOMPUTE_TARGET_ABOVE: no target is kept (each tile recomputes its own)
    per_pixel = (tiling.tiled_peak_bytes(big, 896) - tiling.TILED_BASE_BYTES) / (big[0] * big[1])
    assert 89 < per_pixel < 89 + 30


# 2048x1536 in 896 px tiles: 4 tiles of 864x1120 = 967,680 input pixels, each under a megapixel, so
# kept whole at 2100 B a pixel: 2,032,128,000 B a tile. Adam, float32: 0.58 GiB (622,770,257 B) +
# 3,145,728 px x (53 + 64 + 24) B (443,547,648) + one tile = 3,098,445,905 B (2.89 GiB); each further
# kept tile 2,032,128,000 more: 5,130,573,905 (4.78 GiB), 7,162,701,905 (6.67), 9,194,829,905 (8.56).
PEAKS_2048 = [3_098_445_905, 5_130_573_905, 7_162_701_905, 9_194_829_905]


def test_the_model_counts_the_kept_graphs():
    assert [tiling.tiled_peak_bytes((1536, 2048), 896, keep=k) for k in (1, 2, 3, 4)] == PEAKS_2048
    # a grid of 4 tiles keeps at most 4: a fifth is not counted
    assert tiling.tiled_peak_bytes((1536, 2048), 896, keep=5) == PEAKS_2048[3]


@pytest.mark.parametrize(("budget", "keep"), [(2, 1), (4, 1), (4.777, 1), (4.779, 2), (6.670, 2),
                                              (6.671, 3), (8.563, 3), (8.564, 4), (20, 4)])  # fmt: skip
def test_the_kept_tiles_follow_the_budget(budget, keep, free_24):
    """As many kept graphs as the budget holds by the model, at least 1 (even where one is over: the
    tile is chosen first), at most KEEP_MAX (4, here also the grid's tiles)."""
    assert tiling.choose_keep((1536, 2048), 896, CPU, budget=budget) == keep


def test_without_a_budget_the_kept_tiles_stay_within_the_issues_targets(free_24, monkeypatch):
    """The line 4 GiB x sqrt(pixels / 4096x3072): 4 GiB at 4096x3072, 8 at 8192x6144, 2 at 2048x1536."""
    assert tiling.print_limit_bytes(3072 * 4096) == 4 * GIB
    assert tiling.print_limit_bytes(6144 * 8192) == 8 * GIB
    assert tiling.print_limit_bytes(1536 * 2048) == 2 * GIB
    assert tiling.choose_keep((1536, 2048), 896, CPU) == 1  # 2.89 GiB with one, over the 2 GiB line
    assert tiling.choose_keep((3072, 4096), 896, CPU) == 1  # float32: 3.43 GiB with one, 4.50 with two
    # bfloat16 (0.56 KB per tile pixel): 2.47, 3.01, 3.56, 4.07 GiB with 1-4 kept
    assert tiling.choose_keep((3072, 4096), 896, CPU, dtype=torch.bfloat16) == 3
    # 8192x6144 float32 (Adam, target recomputed): 5.40, 6.49, 7.57, 8.66 GiB with 1-4 kept
    assert tiling.choose_keep((6144, 8192), 896, CPU) == 3
    for size, limit in (((3072, 4096), 4), ((6144, 8192), 8)):
        for dtype in (torch.float32, torch.bfloat16):
            keep = tiling.choose_keep(size, 896, CPU, dtype=dtype)
            assert tiling.tiled_peak_bytes(size, 896, dtype=dtype, keep=keep) <= limit * GIB
    # with little memory free, half of it is the limit: 6 GiB free keeps one at 8192x6144
    monkeypatch.setattr(tiling, "available_bytes", lambda device: 6 * GIB)
    assert tiling.choose_keep((6144, 8192), 896, CPU) == 1


def test_a_runs_objective_keeps_what_the_budget_holds(tiny_pair, free_24, monkeypatch):
    from painterly.api import build_problem
    from painterly.image import load_image

    monkeypatch.setattr(tiling, "KEEP_TILES", None)
    content, style = tiny_pair
    s = Settings(model="vgg16", weights="random", size=48, tile=16, precision="float32", optimizer="adam")
    for budget, keep in ((None, 1), (1, 4)):  # a 48 px picture's model: ~0.58 GiB; its line ~0.05 GiB
        r = dataclasses.replace(s, memory_budget=budget).resolved()
        problem = build_problem(load_image(content), [style], r)
        objective = problem.objective_at(tuple(problem.content.shape[-2:]))
        assert objective.tiler.keep == keep == tiling.keep_for(r, tuple(problem.content.shape[-2:]), CPU, 16)


def test_a_budget_no_tile_fits_is_one_line(free_24):
    with pytest.raises(InputError, match=r"8192x6144 scale needs about [\d.]+ GiB even in tiles.*--memory-budget 2"):
        tiling.choose_tile(None, (6144, 8192), CPU, budget=2)
    # without a budget the default tile is used rather than refusing
    assert tiling.choose_tile(None, (6144, 8192), CPU) == tiling.DEFAULT_TILE


@pytest.mark.parametrize("value", ["x", "-1", "0", "nan", "inf"])
def test_bad_memory_budget_flag_is_one_line_exit_2(tmp_path, tiny_pair, capsys, value):
    content, style = tiny_pair
    out = tmp_path / "out.png"
    assert main([content, style, "-o", str(out), *FAST, "--memory-budget", value]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "memory-budget" in err[0] and "Traceback" not in err[0], err
    assert not out.exists()


def test_a_budget_too_small_stops_before_painting(tmp_path, tiny_pair, capsys, monkeypatch):
    monkeypatch.setattr(tiling, "UNTILED_BYTES_PER_PIXEL", 10**9)  # a 48 px picture "does not fit" untiled
    content, style = tiny_pair
    out = tmp_path / "out.png"
    assert main([content, style, "-o", str(out), *FAST, "--memory-budget", "0.5"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "even in tiles" in err[0], err
    assert not out.exists()


def test_a_budget_paints_like_the_tile_it_picks(tiny_pair, monkeypatch):
    import painterly

    monkeypatch.setattr(tiling, "UNTILED_BYTES_PER_PIXEL", 10**9)
    monkeypatch.setattr(tiling, "TILED_BASE_BYTES", 0)
    monkeypatch.setattr(tiling, "MIN_AUTO_TILE", 32)
    monkeypatch.setattr(tiling, "DEFAULT_TILE", 32)
    content, style = tiny_pair
    kw = dict(model="vgg16", weights="random", size=48, iterations=2, scales=(48,))
    budgeted = painterly.stylize(content, style, Settings(memory_budget=1.0), **kw)
    tiled = painterly.stylize(content, style, Settings(tile=32), **kw)
    assert torch.equal(budgeted.image, tiled.image)
    assert Settings(memory_budget=1.0).resolved().to_dict()["memory_budget"] == 1.0


def test_the_memory_this_process_freed_goes_back_before_the_tile_is_chosen() -> None:
    # A scale's activations freed inside reuse_freed_memory stay in the heap, where MemAvailable counts
    # them as used: a 4096 px scale tiled after an untiled 2896 px one. available_bytes hands them back first.
    import os

    from painterly.device import _glibc, kept_free_bytes, release_freed, reuse_freed_memory

    if _glibc() is None or not hasattr(_glibc(), "mallinfo2"):
        pytest.skip("needs glibc 2.33+")

    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    cpu = torch.device("cpu")
    with reuse_freed_memory():
        release_freed(cpu)  # what earlier tests left free goes back first
        before = kept_free_bytes()
        x = torch.ones(64 * 2**20)  # 256 MiB, touched
        del x
        assert kept_free_bytes() - before > 200 * 2**20  # kept by glibc, resident
        held = resident()
        tiling.available_bytes(cpu)
        assert resident() < held - 200 * 2**20  # handed back


# ---------------------------------------------------------------------------- recomputing only where memory is short
def test_an_untiled_scale_recomputes_only_where_keeping_everything_would_not_fit(free_24):
    assert not tiling.choose_recompute((1000, 1500), CPU, budget=0.1)  # 1.5 MP and under: never, as before
    # 80 % of 22 GiB free = 17.6 GiB; keeping everything is modelled at 1.7x the recomputing estimate
    assert not tiling.choose_recompute((1086, 1448), CPU)  # 2.9 GiB x 1.7 = 5.0: kept (it recomputed before)
    assert not tiling.choose_recompute((1536, 2048), CPU)  # 5.9 x 1.7 = 10.0: kept
    assert tiling.choose_recompute((2172, 2896), CPU)  # 11.7 x 1.7 = 19.9: recomputes
    assert tiling.choose_recompute((1536, 2048), CPU, budget=8)  # --memory-budget counts, not the memory free
    assert not tiling.choose_recompute((2172, 2896), CPU, budget=20)


def test_the_objective_recomputes_as_the_rule_says(tiny_pair, monkeypatch):
    from painterly import network
    from painterly.api import build_problem
    from painterly.image import load_image

    content, style = tiny_pair
    s = Settings(model="vgg16", weights="random", size=48, scales=(48,), tile=0).resolved()  # untiled always
    problem = build_problem(load_image(content), [load_image(style)], s)
    calls = []
    real = network.run_recomputing
    monkeypatch.setattr(network, "run_recomputing", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(network, "RECOMPUTE_ABOVE_PIXELS", 0)  # every size is a candidate
    for free, recomputes in ((22 * GIB, False), (2**20, True)):
        monkeypatch.setattr(tiling, "available_bytes", lambda device, free=free: free)
        objective = problem.objective_at((48, 48))
        assert objective.recompute is recomputes
        calls.clear()
        x = torch.rand(1, 3, 48, 48, requires_grad=True)
        objective(x)["total"].backward()
        assert bool(calls) is recomputes
