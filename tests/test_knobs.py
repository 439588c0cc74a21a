"""The candidate quality options of issue #12, each off by default: what each does, on tiny inputs."""

from __future__ import annotations

import pytest
import torch

from painterly import stylize
from painterly.api import score
from painterly.config import Settings
from painterly.errors import InputError
from painterly.objective import GaussianTarget, feature_mean, gram_per_pixel, trace_sqrt, wasserstein_loss

FAST = dict(weights="random", model="vgg16", size=40, iterations=6, coarse_iterations=4, start_size=28,
            style_layers=("relu1_1", "relu2_1"), content_layer="relu2_1", device="cpu",
            precision="float32")  # fmt: skip


def _w2(f: torch.Tensor, target: GaussianTarget) -> torch.Tensor:
    return wasserstein_loss(feature_mean(f), gram_per_pixel(f), target)


def _target(f: torch.Tensor) -> GaussianTarget:
    return GaussianTarget.of(feature_mean(f), gram_per_pixel(f))


# ---------------------------------------------------------------- 1. style_loss = "wasserstein"
def test_w2_by_hand_in_one_dimension():
    # One filter: W2² = (μ − μ_s)² + (σ − σ_s)².  f = [0, 2] (μ 1, σ 1); s = [1, 5] (μ 3, σ 2): 4 + 1 = 5
    f = torch.tensor([[[[0.0, 2.0]]]], dtype=torch.float64)
    s = torch.tensor([[[[1.0, 5.0]]]], dtype=torch.float64)
    assert _w2(f, _target(s)).item() == pytest.approx(5.0, rel=1e-3)


def test_w2_is_zero_for_identical_statistics_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(1, 6, 5, 5, generator=g)
    other = torch.rand(1, 6, 5, 5, generator=g) * 2
    far = _w2(other, _target(f)).item()
    assert far > 0.1
    assert abs(_w2(f, _target(f)).item()) < 1e-3 * far
    # The same statistics in another arrangement (positions permuted) are a match too: W2 is of the statistics.
    shuffled = f.flatten(2)[..., torch.randperm(25, generator=g)].reshape(f.shape)
    assert abs(_w2(shuffled, _target(f)).item()) < 1e-3 * far


def test_w2_gradient_is_the_numerical_one_in_float64():
    g = torch.Generator().manual_seed(1)
    target = _target(torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64))
    x = torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _w2(t, target).double(), (x,))
    a = torch.rand(1, 4, 4, generator=g, dtype=torch.float64)
    a = (a @ a.mT + torch.eye(4, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: trace_sqrt(m), (a,))
    # Repeated eigenvalues (the identity): still finite, the spectral gradient ½ A^-½.
    eye = torch.eye(3, dtype=torch.float64).unsqueeze(0).requires_grad_(True)
    trace_sqrt(eye).backward()
    assert torch.allclose(eye.grad, 0.5 * torch.eye(3, dtype=torch.float64))


def test_wasserstein_run_optimises_its_own_term_and_score_stays_gram(tiny_pair):
    content, style = tiny_pair
    gram = stylize(content, style, Settings(**FAST))
    w2 = stylize(content, style, Settings(**FAST, style_loss="wasserstein"))
    assert not torch.equal(gram.image, w2.image)
    # The normalised W2 term is 1 at the content (the start) and falls as the style is taken.
    first = w2.history[0]["style:relu1_1"] / w2.weights["normalizers"]["style"]["relu1_1"]
    last = w2.losses["style:relu1_1"] / w2.weights["normalizers"]["style"]["relu1_1"]
    assert last < first
    # score reports the seed's Gram term whatever the run optimised.
    s = Settings(**FAST)
    assert score(w2.image, content, style, s) == score(w2.image, content, style, s, style_loss="wasserstein")


def test_wasserstein_with_two_styles_and_masks_runs(tiny_pair):
    content, style = tiny_pair
    mask = torch.zeros(1, 1, 40, 48)
    mask[..., :, :24] = 1
    out = stylize(content, [style, content], Settings(**FAST, style_loss="wasserstein"), masks=[mask, 1 - mask])
    assert torch.isfinite(out.image).all() and out.evaluations == 6 + 4 * len(Settings(**FAST).scale_sizes()[:-1])


def test_wasserstein_tiled_run_is_the_untiled_one_and_bad_names_are_one_line(tiny_pair):
    content, style = tiny_pair
    s = Settings(**{**FAST, "iterations": 3, "coarse_iterations": 0}, style_loss="wasserstein")
    whole, tiled = stylize(content, style, s, tile=0), stylize(content, style, s, tile=16)
    assert torch.allclose(whole.image, tiled.image, atol=1e-3)
    with pytest.raises(InputError, match="unknown --style-loss"):
        Settings(**FAST, style_loss="mrf").resolved()


# ---------------------------------------------------------------- 2. iterate_average
def test_iterate_average_returns_the_unbiased_average_of_the_last_scales_iterates(tiny_pair):
    content, style = tiny_pair
    d = 0.6
    steps = []
    out = stylize(content, style, Settings(**FAST, scales=(40,), iterate_average=d), callback=steps.append)
    plain = stylize(content, style, Settings(**FAST, scales=(40,)))
    assert torch.equal(steps[-1].image, plain.image)  # the iterates themselves are unchanged
    images = [s.image for s in steps]
    n = len(images)
    expected = sum((1 - d) * d ** (n - 1 - i) * x for i, x in enumerate(images)) / (1 - d**n)
    assert torch.allclose(out.image, expected, atol=1e-6)
    assert not torch.equal(out.image, plain.image)


def test_iterate_average_carries_each_scales_average_up(tiny_pair):
    content, style = tiny_pair
    starts = {}

    def callback(step):
        starts.setdefault(step.scale, step.image)

    stylize(content, style, Settings(**FAST), callback=callback)
    with_avg = {}
    stylize(
        content, style, Settings(**FAST, iterate_average=0.9), callback=lambda s: with_avg.setdefault(s.scale, s.image)
    )
    # The first scale starts from the content either way; the next from the average, not the last iterate.
    assert torch.equal(with_avg[0], starts[0]) and not torch.equal(with_avg[1], starts[1])


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan")])
def test_iterate_average_out_of_range_is_one_line(bad):
    with pytest.raises(InputError, match="--iterate-average"):
        Settings(**FAST, iterate_average=bad).resolved()


# ---------------------------------------------------------------- 3. padding
@pytest.mark.parametrize("padding", ["zeros", "replicate-first", "replicate"])
def test_replicate_padding_sees_no_frame_around_a_flat_picture(padding):
    from painterly.network import VGGFeatures, cached_weights

    net = VGGFeatures("vgg16", ["relu1_1", "relu2_1"], cached_weights("vgg16", "random", 0), padding)
    feats = net(torch.full((1, 3, 12, 12), 0.3))
    spread = {k: float(v.amax((-2, -1)).sub(v.amin((-2, -1))).max()) for k, v in feats.items()}
    # A flat picture's features are flat wherever a convolution replicates its edge, not where it pads zeros.
    assert (spread["relu1_1"] < 1e-6) == (padding != "zeros")
    assert (spread["relu2_1"] < 1e-6) == (padding == "replicate")


def test_padding_changes_the_picture_and_refuses_unknown_names(tiny_pair):
    content, style = tiny_pair
    plain = stylize(content, style, Settings(**FAST))
    padded = stylize(content, style, Settings(**FAST, padding="replicate-first"))
    assert not torch.equal(plain.image, padded.image)
    with pytest.raises(InputError, match="unknown --padding"):
        Settings(**FAST, padding="reflect").resolved()


# ---------------------------------------------------------------- 4. carry_detail
def test_carry_detail_starts_each_finer_scale_with_the_contents_lost_detail(tiny_pair):
    from painterly.image import as_image, resize, resize_to
    from painterly.optimize import upsample

    content, style = tiny_pair
    s = Settings(**FAST, carry_detail=True)
    steps = []
    stylize(content, style, s, callback=steps.append)
    coarse_out = [x.image for x in steps if x.scale == 0][-1]  # the coarse scale's result
    start = next(x.image for x in steps if x.scale == 1)  # the first image evaluated at the next scale
    size, small = tuple(start.shape[-2:]), tuple(coarse_out.shape[-2:])
    c = resize(as_image(content, "content"), s.size)
    expected = (upsample(coarse_out, size) + resize_to(c, size) - upsample(resize_to(c, small), size)).clamp(0, 1)
    assert torch.allclose(start, expected, atol=1e-6)
    plain_steps = []
    stylize(content, style, Settings(**FAST), callback=plain_steps.append)
    plain_start = next(x.image for x in plain_steps if x.scale == 1)
    assert torch.allclose(plain_start, upsample(coarse_out, size), atol=1e-6)  # same coarse scale, no detail

    def detail(x):  # what a blur takes away: sharper starts have more of it, as the content has
        return (x - upsample(resize_to(x, small), size)).abs().mean()

    assert detail(plain_start) < detail(start)


# ---------------------------------------------------------------- 4b. carry_blur (session 7)
def test_gaussian_blur_of_an_impulse_is_the_hand_computed_kernel():
    from painterly.image import gaussian_blur

    # σ = 1: taps exp(-i²/2) for i = -3..3, Σ = 1 + 2 (e^-0.5 + e^-2 + e^-4.5) = 2.505950; the centre of a
    # blurred unit impulse is (1/Σ)² = 0.159241 (≈ 1/2π), its neighbour e^-0.5/Σ² = 0.096585, the
    # diagonal e^-1/Σ² = 0.058582, and three pixels out along a row e^-4.5/Σ² = 0.001769
    image = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    image[..., 4, 4] = 1
    out = gaussian_blur(image, 1.0)
    assert out[0, 0, 4, 4].item() == pytest.approx(0.159241, abs=1e-6)
    assert out[0, 0, 4, 5].item() == pytest.approx(0.096585, abs=1e-6)
    assert out[0, 0, 3, 5].item() == pytest.approx(0.058582, abs=1e-6)
    assert out[0, 0, 4, 7].item() == pytest.approx(0.001769, abs=1e-6)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-12)  # nothing reaches the edge: nothing lost


def test_gaussian_blur_reflects_at_the_edge_keeps_constants_and_channels_apart():
    from painterly.image import gaussian_blur

    # a row [1, 0, 0, 0] at σ = 0.5: radius 2, taps exp(-2 i²) = [e^-8, e^-2, 1, e^-2, e^-8] / S with
    # S = 1 + 2 e^-2 + 2 e^-8 = 1.271341; reflected, the row reads [0, 0, 1, 0, 0, 0, 0] around pixel 0
    # (… x2 x1 | x0 x1 x2 …), so out[0] = 1/S = 0.786571 and out[1] = e^-2/S = 0.106451, out[2] = e^-8/S
    row = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]], dtype=torch.float64)
    out = gaussian_blur(row, 0.5)  # one pixel tall: the column is left as it is
    assert out[0, 0, 0, 0].item() == pytest.approx(0.786571, abs=1e-6)
    assert out[0, 0, 0, 1].item() == pytest.approx(0.106451, abs=1e-6)
    assert out[0, 0, 0, 2].item() == pytest.approx(0.000264, abs=1e-6)
    flat = torch.full((1, 3, 5, 7), 0.25)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat, atol=1e-7)  # radius 6 > the sides: cut to fit
    g = torch.Generator().manual_seed(0)
    two = torch.rand(1, 2, 8, 8, generator=g)
    both = gaussian_blur(two, 1.0)
    assert torch.allclose(both[:, 1:], gaussian_blur(two[:, 1:], 1.0))  # each channel on its own
    assert gaussian_blur(two, 0.0) is two


def test_carry_blur_blurs_each_coarse_result_before_it_is_carried_up(tiny_pair):
    from painterly.image import gaussian_blur
    from painterly.optimize import upsample

    content, style = tiny_pair
    steps = []
    stylize(content, style, Settings(**FAST, carry_blur=1.0), callback=steps.append)
    coarse_out = [x.image for x in steps if x.scale == 0][-1]
    start = next(x.image for x in steps if x.scale == 1)
    expected = upsample(gaussian_blur(coarse_out, 1.0), tuple(start.shape[-2:]))
    assert torch.allclose(start, expected, atol=1e-6)
    assert not torch.allclose(start, upsample(coarse_out, tuple(start.shape[-2:])), atol=1e-3)
    first = next(x.image for x in steps if x.scale == 0)  # the first scale starts from the content, unblurred
    plain = []
    stylize(content, style, Settings(**FAST), callback=plain.append)
    assert torch.equal(first, next(x.image for x in plain if x.scale == 0))


@pytest.mark.parametrize("value", [-1.0, float("nan"), 17.0])
def test_a_bad_carry_blur_is_one_line(value):
    with pytest.raises(InputError, match="--carry-blur") as error:
        Settings(**FAST, carry_blur=value).resolved()
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- 5. coarse_content_weight
def test_coarse_content_weight_multiplies_alpha_at_the_coarse_scales_only(tiny_pair):
    content, style = tiny_pair
    k = 4.0
    # the seed's terms only (no Laplacian term, every scale the final one's w_l): the total below is their weighted sum
    out = stylize(
        content, style, Settings(**FAST, coarse_content_weight=k, laplacian_weight=0.0, coarse_shallow_weight=1.0)
    )
    w = out.weights
    last = len(Settings(**FAST).scale_sizes()) - 1

    def total(h, alpha_factor):
        norms = w["normalizers"]
        style_part = sum(
            w["beta"] * w["layer_weights"][n] / norms["style"][n] * h[f"style:{n}"] for n in norms["style"]
        )
        return (
            alpha_factor * w["alpha"] / norms["content"] * h["content"]
            + style_part
            + w["gamma"] / norms["tv"] * h["tv"]
        )

    assert {h["scale"] for h in out.history} == set(range(last + 1)) and last >= 1
    for h in out.history:
        assert h["total"] == pytest.approx(total(h, k if h["scale"] < last else 1.0), rel=1e-5)
    assert not torch.equal(
        out.image, stylize(content, style, Settings(**FAST, laplacian_weight=0.0, coarse_shallow_weight=1.0)).image
    )
    with pytest.raises(InputError, match="--coarse-content-weight"):
        Settings(**FAST, coarse_content_weight=-1.0).resolved()


# ---------------------------------------------------------------- 5b. coarse_style_layer_weights (session 7)
def test_coarse_style_layer_weights_replace_w_l_at_the_coarse_scales_only(tiny_pair):
    content, style = tiny_pair
    coarse = (0.0, 3.0)  # FAST's two style layers: relu1_1 off below the final scale, relu2_1 at 3
    out = stylize(content, style, Settings(**FAST, coarse_style_layer_weights=coarse, laplacian_weight=0.0))
    w = out.weights
    assert w["layer_weights"] == {"relu1_1": 1.0, "relu2_1": 0.5}  # the report keeps the final scale's w_l
    last = len(Settings(**FAST).scale_sizes()) - 1
    norms = w["normalizers"]

    def total(h, layer_weights):
        style_part = sum(w["beta"] * layer_weights[n] / norms["style"][n] * h[f"style:{n}"] for n in norms["style"])
        return w["alpha"] / norms["content"] * h["content"] + style_part + w["gamma"] / norms["tv"] * h["tv"]

    assert {h["scale"] for h in out.history} == set(range(last + 1)) and last >= 1
    for h in out.history:
        weights = dict(zip(("relu1_1", "relu2_1"), coarse)) if h["scale"] < last else w["layer_weights"]
        assert h["total"] == pytest.approx(total(h, weights), rel=1e-5)
    # a coarse scale's total is not the one it would have with the final scale's weights
    h = out.history[0]
    assert abs(h["total"] - total(h, w["layer_weights"])) > 1e-3 * h["total"]


# ---------------------------------------------------------------- 5c. coarse_shallow_weight (session 8: on by default)
def test_the_default_weighs_blocks_1_and_2_by_0_3_at_the_coarse_scales_only(tiny_pair):
    content, style = tiny_pair
    s = Settings(**FAST, laplacian_weight=0.0)
    r = s.resolved()
    assert r.coarse_shallow_weight == 0.3 and r.style_layer_weights == (1.0, 0.5)
    assert r.coarse_layer_weights() == pytest.approx((0.3, 0.15))  # relu1_1, relu2_1: both in blocks 1-2
    out = stylize(content, style, s)
    w, norms = out.weights, out.weights["normalizers"]
    last = len(s.scale_sizes()) - 1

    def total(h, layer_weights):
        style_part = sum(w["beta"] * layer_weights[n] / norms["style"][n] * h[f"style:{n}"] for n in norms["style"])
        return w["alpha"] / norms["content"] * h["content"] + style_part + w["gamma"] / norms["tv"] * h["tv"]

    coarse = {"relu1_1": 0.3, "relu2_1": 0.15}
    assert {h["scale"] for h in out.history} == set(range(last + 1)) and last >= 1
    for h in out.history:
        assert h["total"] == pytest.approx(total(h, coarse if h["scale"] < last else w["layer_weights"]), rel=1e-5)
    # 1 is the seed's objective at every scale, and --no-normalize keeps it
    assert Settings(**FAST, coarse_shallow_weight=1.0).resolved().coarse_layer_weights() is None
    assert Settings(**FAST, normalize=False).resolved().coarse_layer_weights() is None


def test_coarse_shallow_weight_touches_only_blocks_1_and_2_and_yields_to_explicit_weights():
    deep = Settings(
        model="vgg16", weights="random", style_layers=("relu1_1", "relu3_1", "relu5_1"), coarse_shallow_weight=0.5
    )
    assert deep.resolved().coarse_layer_weights() == pytest.approx((0.5, 0.5, 0.25))  # w_l 1, 0.5, 0.25
    given = Settings(**FAST, coarse_style_layer_weights=(0.0, 2.0)).resolved()
    assert given.coarse_layer_weights() == (0.0, 2.0)
    for bad in (-1.0, float("nan"), 1e7):
        with pytest.raises(InputError, match="--coarse-shallow-weight") as error:
            Settings(**FAST, coarse_shallow_weight=bad).resolved()
        assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [((1.0,), "has 1 values for 2 style layers"), ((1.0, -1.0), "finite numbers >= 0"),
     ((1.0, float("inf")), "finite numbers >= 0")],
)  # fmt: skip
def test_bad_coarse_style_layer_weights_are_one_line(value, message):
    with pytest.raises(InputError, match="--coarse-style-layer-weights") as error:
        Settings(**FAST, coarse_style_layer_weights=value).resolved()
    assert message in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------------- all five: off by default, recorded, replayed
KNOBS = dict(style_loss="wasserstein", iterate_average=0.5, padding="replicate-first", carry_detail=True,
             coarse_content_weight=3.0, carry_blur=0.5, coarse_style_layer_weights=(0.0, 1.0))  # fmt: skip
OFF = dict(style_loss="gram", iterate_average=0.0, padding="zeros", carry_detail=False, coarse_content_weight=1.0,
           carry_blur=0.0, coarse_style_layer_weights=None)  # fmt: skip


def test_every_option_is_off_by_default_and_off_is_todays_picture(tiny_pair):
    defaults = Settings()
    assert {k: getattr(defaults, k) for k in OFF} == OFF
    content, style = tiny_pair
    assert torch.equal(
        stylize(content, style, Settings(**FAST)).image, stylize(content, style, Settings(**FAST, **OFF)).image
    )


def test_the_options_round_trip_through_a_record_and_the_command_line(tmp_path, tiny_pair):
    from painterly.cli import main
    from painterly.image import load_image, read_metadata

    s = Settings(**FAST, **KNOBS)
    assert Settings.from_dict(s.to_dict()) == s
    assert Settings.from_dict({k: str(v).lower() if isinstance(v, float) else v for k, v in KNOBS.items()}) == Settings(
        **KNOBS
    )
    content, style = tiny_pair
    flags = ["--style-loss", "wasserstein", "--iterate-average", "0.5", "--padding", "replicate-first",
             "--carry-detail", "--coarse-content-weight", "3", "--carry-blur", "0.5",
             "--coarse-style-layer-weights", "0,1"]  # fmt: skip
    fast = ["--weights", "random", "--model", "vgg16", "--size", "40", "--iterations", "6", "--coarse-iterations",
            "4", "--start-size", "28", "--style-layers", "relu1_1,relu2_1", "--content-layer", "relu2_1",
            "--quiet"]  # fmt: skip
    first = tmp_path / "first.png"
    assert main([content, style, "-o", str(first), *fast, *flags]) == 0
    recorded = read_metadata(first)["settings"]
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in KNOBS} == KNOBS
    again = tmp_path / "again.png"
    assert main(["--config", str(first), "-o", str(again), "--quiet"]) == 0
    assert torch.equal(load_image(again), load_image(first))


@pytest.mark.parametrize("flag", ["--style-loss=mrf", "--padding=reflect", "--iterate-average=1",
                                  "--coarse-content-weight=-2", "--carry-blur=-1",
                                  "--coarse-style-layer-weights=1"])  # fmt: skip
def test_a_bad_option_on_the_command_line_is_one_line_and_exit_2(tmp_path, tiny_pair, capsys, flag):
    from painterly.cli import main

    assert main([*tiny_pair, "-o", str(tmp_path / "out.png"), "--weights", "random", "--size", "32", flag]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()
