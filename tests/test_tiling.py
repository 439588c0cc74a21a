"""The tiled evaluation (painterly.tiling) gives the untiled gradient: masks, two styles, tiny tiles."""

import dataclasses

import pytest
import torch

from painterly import network, tiling
from painterly.network import VGGFeatures, cached_weights
from painterly.objective import Objective, Weights

SHALLOW = ("relu1_2", "relu2_2", "relu3_3")


def _net(taps, dtype=torch.float32):
    return VGGFeatures("vgg16", taps, cached_weights("vgg16", "random", 0)).to(dtype)


def _images(h, w, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    content = torch.rand(1, 3, h, w, generator=g, dtype=dtype)
    styles = [torch.rand(1, 3, h + 8, w - 4, generator=g, dtype=dtype),
              torch.rand(1, 3, h - 6, w + 10, generator=g, dtype=dtype)]  # fmt: skip
    left = torch.zeros(1, 1, h, w, dtype=dtype)
    left[..., : w // 2 + 3] = 1.0
    masks = [left, 1 - left * 0.7]  # soft, overlapping
    image = torch.rand(1, 3, h, w, generator=g, dtype=dtype)
    return content, styles, masks, image


def _gradient(net, content, styles, masks, image, layers, content_layer, tile, **kw):
    objective = Objective(
        net, content, styles, content_layer=content_layer, style_layers=layers,
        weights=Weights(1.0, 1e3, 1.0, dict.fromkeys(layers, 1.0)), blend_weights=[1.0, 2.0],
        output_area=float(content.shape[-2] * content.shape[-1]), output_masks=masks, tile=tile, **kw,
    )  # fmt: skip
    x = image.clone().requires_grad_(True)
    terms = objective(x)
    terms["total"].backward()
    return {k: float(v.detach()) for k, v in terms.items()}, x.grad


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_halo_is_worked_out_from_the_receptive_field():
    names = _net(["relu5_3"]).names
    assert tiling.conv_reach(names, names.index("relu5_3")) == (90, 16)
    assert tiling.halo_for(names, names.index("relu5_3")) == (96, 16)
    assert tiling.halo_for(names, names.index("relu3_3")) == (20, 4)
    assert tiling.halo_for(names, names.index("pool3")) == (24, 8)


def test_tiled_gradient_equals_untiled_with_masks_and_two_styles():
    net = _net(SHALLOW)
    content, styles, masks, image = _images(44, 54)
    whole_terms, whole = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", None)
    terms, tiled = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    assert _rel(tiled, whole) < 1e-4
    for k, v in whole_terms.items():
        assert terms[k] == pytest.approx(v, rel=1e-4, abs=1e-9), k


def test_the_halo_is_just_wide_enough(monkeypatch):
    """In float64 the worked-out halo (20 px for relu3_3's reach of 18) leaves only rounding; one
    stride less and the cores at a tile's edge read padding instead of pixels."""
    net = _net(SHALLOW, torch.float64)
    content, styles, masks, image = _images(36, 40, dtype=torch.float64)
    _, whole = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", None)
    _, tiled = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    assert _rel(tiled, whole) < 1e-12
    monkeypatch.setattr(tiling, "halo_for", lambda names, upto: (16, 4))
    _, short = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    assert _rel(short, whole) > 1e-8


@pytest.mark.parametrize("depth", [None, "pool3"])
def test_tiled_whole_network_and_early_blocks_only(depth, monkeypatch):
    monkeypatch.setattr(tiling, "TILE_DEPTH", depth)
    layers = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    net = _net(layers)
    content, styles, masks, image = _images(96, 80, seed=1)
    monkeypatch.setattr(tiling.Tiler.__init__, "__defaults__", (depth,))
    _, whole = _gradient(net, content, styles, masks, image, layers, "relu3_3", None)
    _, tiled = _gradient(net, content, styles, masks, image, layers, "relu3_3", 48)
    assert _rel(tiled, whole) < 1e-4


def test_stylize_tiled_equals_untiled_with_luminance(tiny_pair):
    import painterly

    content, style = tiny_pair
    s = painterly.Settings(weights="random", model="vgg16", size=48, iterations=2, coarse_iterations=0,
                           scales=(48,), preserve_color="luminance", precision="float32")  # fmt: skip
    untiled = painterly.stylize(content, style, dataclasses.replace(s, tile=0))
    tiled = painterly.stylize(content, style, dataclasses.replace(s, tile=32))
    assert (tiled.image - untiled.image).abs().max() < 1e-3
    assert tiled.losses["total"] == pytest.approx(untiled.losses["total"], rel=1e-4)


def test_auto_tiles_only_when_the_picture_would_not_fit(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(tiling, "available_bytes", lambda device: 8 * 2**30)
    assert tiling.choose_tile(None, (512, 512), cpu) is None
    assert tiling.choose_tile(None, (6144, 8192), cpu) == tiling.DEFAULT_TILE
    assert tiling.choose_tile(0, (6144, 8192), cpu) is None
    assert tiling.choose_tile(256, (64, 64), cpu) == 256


def test_progress_shows_the_time_left_from_work_left_and_the_measured_rate():
    import io
    from types import SimpleNamespace

    from painterly.progress import ProgressBar, duration

    out = io.StringIO()
    bar = ProgressBar(file=out, log_every=0)

    def step(i, scale, elapsed, work_left):
        return SimpleNamespace(iteration=i, total=10, scale=scale, scales=2, size=(8, 8), losses={"total": 1.0},
                               elapsed=elapsed, work_left=work_left)  # fmt: skip

    bar(step(1, 0, 2.0, 9))  # the run's first evaluation pays one-off set-up: not timed
    bar(step(2, 0, 4.0, 8))  # 2 s per evaluation: 16 s left
    bar(step(3, 1, 12.0, 7))  # the next scale's first evaluation took 8 s: 56 s left
    lines = out.getvalue().splitlines()
    assert "left" not in lines[0] and "about 16 s left" in lines[1] and "about 56 s left" in lines[2]
    assert duration(600) == "10 min" and duration(7500) == "2 h 05 min"


def test_tiled_gradient_equals_untiled_with_replicate_padding():
    # Replicate padding reads the edge value, one pixel inside: the receptive field is the zero
    # padding's, so the same halo keeps every core feature exact (here every convolution replicates;
    # replicate-first is the same at conv1_1 alone).
    net = VGGFeatures("vgg16", SHALLOW, cached_weights("vgg16", "random", 0), "replicate")
    content, styles, masks, image = _images(44, 54)
    whole_terms, whole = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", None)
    terms, tiled = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    assert _rel(tiled, whole) < 1e-4
    assert terms == pytest.approx(whole_terms, rel=1e-4)


def test_tiled_gradient_equals_untiled_with_the_wasserstein_style_loss():
    net = _net(SHALLOW)
    content, styles, masks, image = _images(44, 54)
    for guide in (None, masks):
        whole_terms, whole = _gradient(net, content, styles, guide, image, SHALLOW, "relu2_2", None,
                                       style_loss="wasserstein")  # fmt: skip
        terms, tiled = _gradient(net, content, styles, guide, image, SHALLOW, "relu2_2", 16, style_loss="wasserstein")
        assert _rel(tiled, whole) < 1e-4
        # W2 is a difference of traces: float32 sums in another order move it by ~1e-7 absolute.
        assert terms == pytest.approx(whole_terms, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("size", [(1536, 2048), (3072, 4096), (6144, 8192), (37, 53), (600, 100)])
def test_the_grid_partitions_the_picture_in_aligned_cores_within_the_tile(size):
    h, w = size
    tile, halo, align = (16, 20, 4) if h < 100 else (1024, 96, 16)
    cover = torch.zeros(h, w, dtype=torch.int32)
    n = 0
    for t in tiling.tiles(h, w, tile, halo, align):
        (r0, r1), (c0, c1) = t.core_rows, t.core_cols
        assert r0 % align == 0 and c0 % align == 0 and t.rows[0] % align == 0 and t.cols[0] % align == 0
        assert (r1 - r0) * (c1 - c0) <= tile * tile
        assert t.rows == (max(0, r0 - halo), min(h, r1 + halo)) and t.cols == (max(0, c0 - halo), min(w, c1 + halo))
        cover[r0:r1, c0:c1] += 1
        n += 1
    assert bool((cover == 1).all())
    if size == (1536, 2048):  # 4 cores of 768x1024, not 2048-wide strips: fewer tile pixels
        assert n == 4


def test_a_picture_that_fits_one_tile_is_one_tile():
    assert len(list(tiling.tiles(700, 900, 1024, 96, 16))) == 1


def test_tiles_that_recompute_give_the_same_gradient(monkeypatch):
    net = _net(SHALLOW)
    content, styles, masks, image = _images(44, 54)
    _, kept = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    monkeypatch.setattr(tiling, "TILE_RECOMPUTE_ABOVE", 0)
    _, recomputed = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    assert _rel(recomputed, kept) < 1e-6


def _tiled_shallow(net):
    """An 80x72 objective on the SHALLOW taps in 32 px tiles (content at relu2_2), its content and an image."""
    content, styles, _, image = _images(80, 72)
    layers = list(SHALLOW)
    objective = Objective(
        net, content, styles, content_layer="relu2_2", style_layers=layers,
        weights=Weights(1.0, 1e3, 1.0, dict.fromkeys(layers, 1.0)), blend_weights=[1.0, 2.0],
        output_area=float(80 * 72), tile=32,
    )  # fmt: skip
    return objective, content, image


def test_a_bfloat16_network_keeps_its_tiled_content_target_in_bfloat16():
    net = VGGFeatures("vgg16", SHALLOW, cached_weights("vgg16", "random", 0))
    net.compute_dtype = torch.bfloat16
    objective, content, image = _tiled_shallow(net)
    assert objective.content_target.dtype == torch.bfloat16
    exact = net(content)["relu2_2"]
    assert _rel(objective.content_target.float(), exact) < 1e-2
    x = image.clone().requires_grad_(True)
    objective(x)["total"].backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_a_channels_last_network_keeps_the_tiled_path_in_one_layout():
    # Mixed layouts made the tiled evaluation 1.6x slower in bfloat16 (BENCHMARKS.md, "Print size,
    # twelfth session"): the stored target, a core window's Gram and each tap's dL/dF stay channels-last.
    from painterly.objective import _is_channels_last, _positions_by_channels, gram_matrix

    net = VGGFeatures("vgg16", SHALLOW, cached_weights("vgg16", "random", 0)).to(memory_format=torch.channels_last)
    objective, _, _ = _tiled_shallow(net)
    assert objective.content_target.is_contiguous(memory_format=torch.channels_last)
    tap = torch.rand(1, 8, 12, 20).contiguous(memory_format=torch.channels_last)
    window = tap[..., 2:10, 3:17]
    assert _is_channels_last(window) and not _is_channels_last(window.contiguous())
    rows = _positions_by_channels(window)
    assert torch.equal(rows, window.permute(0, 2, 3, 1).reshape(1, -1, 8))
    assert torch.allclose(gram_matrix(window), gram_matrix(window.contiguous()))
    f = tap.clone().requires_grad_(True)
    g = torch.rand(1, 8, 8, 14)
    placed = tiling._placed(g, f, slice(2, 10), slice(3, 17))
    (3 * tiling._Seeded.apply(f, placed)).backward()
    assert f.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(f.grad[..., 2:10, 3:17], 3 * g)
    halo = torch.ones_like(f.grad, dtype=torch.bool)
    halo[..., 2:10, 3:17] = False
    assert not f.grad[halo].any()  # zero outside the core


@pytest.mark.parametrize("recompute", [False, True])
def test_pass_two_lets_each_tiles_dl_df_go_before_its_backward_ends(recompute, monkeypatch):
    """A tile's dL/dF (one tap-sized tensor per tap) is gone by the time its backward reaches the
    tile's input: pass 2 holds one tile's graph, not that graph plus the taps' gradients beside it
    (which, handed to torch.autograd.backward as a list, lived through the whole backward: 1.1 of
    a 2.2 GiB tile's peak, BENCHMARKS.md "Print size, third session")."""
    import weakref

    if recompute:
        monkeypatch.setattr(tiling, "TILE_RECOMPUTE_ABOVE", 0)
    alive, checked = [], []
    core_gradient, run_head = tiling.TiledEvaluation._core_gradient, tiling.Tiler.run_head

    def recording_core_gradient(self, *args):
        g = core_gradient(self, *args)
        if g is not None:
            alive.append(weakref.ref(g))
        return g

    def hooked_run_head(self, x, low, taps, *args, **kw):
        out = run_head(self, x, low, taps, *args, **kw)
        if x.requires_grad and x.is_leaf:

            def at_the_input(grad):
                checked.append([r() is None for r in alive])
                alive.clear()

            x.register_hook(at_the_input)
        return out

    monkeypatch.setattr(tiling.TiledEvaluation, "_core_gradient", recording_core_gradient)
    monkeypatch.setattr(tiling.Tiler, "run_head", hooked_run_head)
    net = _net(SHALLOW)
    content, styles, masks, image = _images(44, 54)
    _, whole = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", None)
    _, tiled = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    assert _rel(tiled, whole) < 1e-4
    assert len(checked) > 1 and all(len(c) > 0 and all(c) for c in checked), checked


def test_when_the_largest_tile_recomputes_every_tile_does(monkeypatch):
    """A small edge tile kept whole needs more than a large one recomputing (2.1 against 1.23 KB per
    pixel at print size): so the grid's largest tile decides for all of them; the gradient stays."""
    net = _net(SHALLOW)
    content, styles, masks, image = _images(44, 54)
    _, kept = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    sizes = sorted({(t.rows[1] - t.rows[0]) * (t.cols[1] - t.cols[0]) for t in tiling.Tiler(net, 16).tiles(44, 54)})
    assert len(sizes) > 1
    monkeypatch.setattr(tiling, "TILE_RECOMPUTE_ABOVE", sizes[-1] - 1)  # only the largest is over
    stretched = []
    real = network.checkpoint  # the recomputing forward (network.run_recomputing) checkpoints each stretch
    monkeypatch.setattr(
        network,
        "checkpoint",
        lambda fn, mods, x, **kw: (x.shape[1] == 3 and stretched.append(x.shape[-2:])) or real(fn, mods, x, **kw),
    )
    _, recomputed = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    pixels = {h * w for h, w in stretched}  # the tile inputs whose first stretch was checkpointed
    assert pixels == set(sizes)  # the smallest tiles recomputed too
    assert _rel(recomputed, kept) < 1e-6


def _objective(net, content, styles, masks, layers, content_layer, tile):
    return Objective(
        net, content, styles, content_layer=content_layer, style_layers=layers,
        weights=Weights(1.0, 1e3, 1.0, dict.fromkeys(layers, 1.0)), blend_weights=[1.0, 2.0],
        output_area=float(content.shape[-2] * content.shape[-1]), output_masks=masks, tile=tile,
    )  # fmt: skip


def test_a_large_pictures_content_target_is_float16_tiled_and_untiled_alike(monkeypatch):
    """Over HALF_TARGET_ABOVE pixels the float32 content target is kept in float16, by the picture's
    size alone: the tiled and the untiled evaluation compare with the same target, and their
    gradients still agree within 1e-4; under it the target stays float32."""
    net = _net(SHALLOW)
    content, styles, masks, image = _images(44, 54)
    small = _objective(net, content, styles, masks, SHALLOW, "relu2_2", None)
    assert small.content_target.dtype == torch.float32
    monkeypatch.setattr(tiling, "HALF_TARGET_ABOVE", 44 * 54 - 1)
    whole = _objective(net, content, styles, masks, SHALLOW, "relu2_2", None)
    tiled = _objective(net, content, styles, masks, SHALLOW, "relu2_2", 16)
    assert whole.content_target.dtype == tiled.content_target.dtype == torch.float16
    # (the same float32 features up to rounding, so the same float16 values up to one ulp)
    assert _rel(tiled.content_target.float(), whole.content_target.float()) < 1e-3
    assert _rel(whole.content_target.float(), small.content_target) < 1e-3
    whole_terms, whole_grad = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", None)
    terms, tiled_grad = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    assert _rel(tiled_grad, whole_grad) < 1e-4
    assert terms["content"] == pytest.approx(whole_terms["content"], rel=1e-4)
    # The untiled content term compares in float32, not in the target's float16.
    f = net(image)["relu2_2"]
    assert whole_terms["content"] == pytest.approx(float((f - whole.content_target.float()).pow(2).mean()), rel=1e-5)


def test_a_recomputed_content_target_gives_the_stored_ones_gradient(monkeypatch):
    """Over RECOMPUTE_TARGET_ABOVE pixels a tiled objective keeps the content image, not its target,
    and recomputes each tile's target (in pass 1 and pass 2, the last tile's kept between them): the
    same terms and gradient as with the stored target, bit for bit here, and the untiled gradient
    within 1e-4; with the float16 threshold crossed too, the recomputed target is float16 as the
    stored one is."""
    net = _net(SHALLOW)
    content, styles, masks, image = _images(44, 54)
    for half in (10**9, 0):
        monkeypatch.setattr(tiling, "HALF_TARGET_ABOVE", half)
        monkeypatch.setattr(tiling, "RECOMPUTE_TARGET_ABOVE", 10**9)
        stored = _objective(net, content, styles, masks, SHALLOW, "relu2_2", 16)
        assert stored.content_source is None and stored.content_target is not None
        whole_terms, whole_grad = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", None)
        stored_terms, stored_grad = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
        monkeypatch.setattr(tiling, "RECOMPUTE_TARGET_ABOVE", 44 * 54 - 1)
        again = _objective(net, content, styles, masks, SHALLOW, "relu2_2", 16)
        assert again.content_target is None and again.content_source is content and again.has_content_target
        assert again.content_numel == stored.content_target[0].numel()
        assert again.content_dtype == stored.content_target.dtype == (torch.float16 if half == 0 else torch.float32)
        calls = []
        target_core = tiling.Tiler.target_core
        monkeypatch.setattr(tiling.Tiler, "target_core", lambda self, *a: calls.append(a[2]) or target_core(self, *a))
        terms, grad = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
        n = len(again.tiler.tiles(44, 54))
        assert n > 2 and len(calls) == 2 * n - 1  # each tile twice, less the tile kept from pass 1 to pass 2
        monkeypatch.setattr(tiling.Tiler, "target_core", target_core)
        assert terms["content"] == stored_terms["content"] and terms["total"] == stored_terms["total"]
        assert torch.equal(grad, stored_grad)
        assert _rel(grad, whole_grad) < 1e-4
        assert terms["content"] == pytest.approx(whole_terms["content"], rel=1e-4)
    # Untiled, the threshold changes nothing: the target is stored.
    assert _objective(net, content, styles, masks, SHALLOW, "relu2_2", None).content_source is None


def test_total_variations_backward_runs_after_the_tiled_pass_two(monkeypatch):
    """TV is computed before the tiled evaluation, so its backward (autograd runs the later node
    first) comes after pass 2: nothing of it (its gradient, or autograd's saved differences) is held
    while the tiles' backwards run."""
    from painterly import objective as objective_module

    net = _net(SHALLOW)
    content, styles, masks, image = _images(44, 54)
    order = []
    second, tv_backward = tiling.TiledEvaluation.second, objective_module._TotalVariation.backward
    monkeypatch.setattr(tiling.TiledEvaluation, "second", lambda self, *a: order.append("pass 2") or second(self, *a))
    monkeypatch.setattr(objective_module._TotalVariation, "backward",
                        staticmethod(lambda ctx, g: order.append("tv") or tv_backward(ctx, g)))  # fmt: skip
    _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    assert order == ["pass 2", "tv"]


def test_the_halo_is_trimmed_layer_by_layer_as_worked_out():
    """Before each convolution a tile is cropped to its core widened by the reach still to come
    (module docstring): for VGG16 to relu5_3 (reach 90 px, stride 16) 80 px before conv3_2 (90 - 10,
    rounded up to 16), 64 before conv4_2 (90 - 26), then 48, 32 and 16 before conv5_1-5_3 (one cell
    of 16 px each: no pool is to come); to relu3_3 (reach 18, no pool after block 3's start) 16 px
    before conv2_1, then 12, 8 and 4 before conv3_1-3_3."""
    names = _net(["relu5_3"]).names
    deep = tiling.Tiler(_net(["relu5_3"]), 48)
    assert {names[k]: m for k, m in deep.crops.items()} == {
        "conv3_2": 80, "conv4_2": 64, "conv5_1": 48, "conv5_2": 32, "conv5_3": 16}  # fmt: skip
    shallow = tiling.Tiler(_net(SHALLOW), 16)
    assert {names[k]: m for k, m in shallow.crops.items()} == {"conv2_1": 16, "conv3_1": 12, "conv3_2": 8,
                                                                 "conv3_3": 4}  # fmt: skip
    # a tile inside a 192x208 picture: its relu5_3 activation is its core and one cell each side
    t = next(t for t in deep.tiles(192, 208) if t.core_rows[0] > 16 and t.core_cols[0] > 16)
    assert deep.window("relu5_3", t) == ((t.core_rows[0] - 16, min(192, t.core_rows[1] + 16)),
                                         (t.core_cols[0] - 16, min(208, t.core_cols[1] + 16)))  # fmt: skip
    with torch.no_grad():
        feats, _ = deep.run_head(torch.rand(1, 3, t.rows[1] - t.rows[0], t.cols[1] - t.cols[0]), False,
                                 {"relu5_3"}, tile=t)  # fmt: skip
    (r0, r1), (c0, c1) = deep.window("relu5_3", t)
    assert tuple(feats["relu5_3"].shape[-2:]) == ((r1 - r0) // 16, (c1 - c0) // 16)


def test_the_trimmed_halo_is_exact_and_one_cell_more_breaks_it(monkeypatch):
    """With the crops (all four of relu3_3's are cut in a 36x40 picture's 16 px tiles) the tiled
    gradient is the untiled one in float64 (rounding only: test_the_halo_is_just_wide_enough, which
    runs trimmed; the whole network's, trimmed, in test_tiled_whole_network_and_early_blocks_only);
    cropping conv3_2's input one cell (4 px) closer to the core makes the cores' edge features read
    padding."""
    net = _net(SHALLOW, torch.float64)
    content, styles, masks, image = _images(36, 40, dtype=torch.float64)
    _, whole = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", None)
    init = tiling.Tiler.__init__

    def one_cell_more(self, *args, **kw):
        init(self, *args, **kw)
        k, last = sorted(self.crops)[-2:]  # conv3_2's input: 8 px past the core, now 4 (conv3_3's)
        self.crops[k] = 4
        for name in self.net.names[k:last]:
            self.margin[name] = 4

    monkeypatch.setattr(tiling.Tiler, "__init__", one_cell_more)
    _, short = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    assert _rel(short, whole) > 1e-8
    monkeypatch.setattr(tiling, "TRIM_HALO", False)  # the same tiler untrimmed: exact again
    _, untrimmed = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16)
    assert _rel(untrimmed, whole) < 1e-12


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_pass_two_reuses_the_graphs_of_the_tiles_pass_one_kept(keep, monkeypatch):
    """With k tiles kept (the objective's keep_tiles, as tiling.keep_for chooses it) pass 1 keeps
    its last k tiles' graphs and pass 2 runs k forwards fewer: the image's tiles are forwarded
    2n - k times, and the gradient is still the untiled one."""
    monkeypatch.setattr(tiling, "KEEP_TILES", None)
    calls = []
    run_head = tiling.Tiler.run_head

    def counted(self, x, low, taps, *args, **kw):
        if low:  # the optimised image's tiles (the targets' and styles' run with low False)
            calls.append(kw.get("tile"))
        return run_head(self, x, low, taps, *args, **kw)

    monkeypatch.setattr(tiling.Tiler, "run_head", counted)
    net = _net(SHALLOW)
    content, styles, masks, image = _images(44, 54)
    _, whole = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", None)
    _, tiled = _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16, keep_tiles=keep)
    n = len(tiling.Tiler(net, 16).tiles(44, 54))
    assert n == 12 and _rel(tiled, whole) < 1e-4
    assert len(calls) == 2 * n - keep and len(set(calls)) == n


def test_a_fixed_keep_tiles_wins_over_the_objectives(monkeypatch):
    """tiling.KEEP_TILES set (benchmarks.tiling's variants) replaces the count the objective was given."""
    monkeypatch.setattr(tiling, "KEEP_TILES", 2)
    calls = []
    run_head = tiling.Tiler.run_head
    monkeypatch.setattr(tiling.Tiler, "run_head",
                        lambda self, x, low, taps, *a, **kw: (calls.append(1) if low else None) or
                        run_head(self, x, low, taps, *a, **kw))  # fmt: skip
    net = _net(SHALLOW)
    content, styles, masks, image = _images(44, 54)
    _gradient(net, content, styles, masks, image, SHALLOW, "relu2_2", 16, keep_tiles=3)
    assert len(calls) == 2 * 12 - 2
