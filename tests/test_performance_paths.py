"""The fast paths give the same numbers as the plain ones: Gram backward, recomputation, history cap."""

import pytest
import torch

from painterly import optimize
from painterly.errors import InputError
from painterly.network import VGGFeatures, resolve_precision
from painterly.objective import gram_matrix


@pytest.mark.parametrize("channels_last", [False, True])
def test_gram_backward_matches_finite_differences_in_both_layouts(channels_last):
    torch.manual_seed(0)
    features = torch.rand(2, 4, 3, 5, dtype=torch.float64)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    features.requires_grad_(True)
    assert torch.autograd.gradcheck(gram_matrix, (features,))


def test_gram_gradient_of_a_channels_last_tensor_stays_channels_last():
    features = torch.rand(1, 8, 6, 7).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    (grad,) = torch.autograd.grad(gram_matrix(features).sum(), features)
    assert grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous()
    # d/dF Σ_ij G_ij = 2 Σ_j F_j: every channel's gradient is twice the sum over channels
    assert torch.allclose(grad, 2 * features.detach().sum(dim=1, keepdim=True).expand_as(grad), atol=1e-5)


@pytest.mark.parametrize(
    "taps", [["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"], ["conv1_2", "relu1_2", "pool2", "conv3_1"]]
)
def test_recomputing_forward_gives_the_same_taps_and_gradient(taps):
    torch.manual_seed(0)
    net = VGGFeatures("vgg16", taps).double()
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    image = torch.rand(1, 3, 32, 48, dtype=torch.float64, requires_grad=True)
    results = []
    for threshold in (10**9, 0):  # never, always
        net.recompute_above = threshold
        out = net(image)
        loss = sum((i + 1) * v.pow(2).sum() for i, v in enumerate(out.values()))
        results.append((out, torch.autograd.grad(loss, image)[0]))
    (plain, g_plain), (recomputed, g_recomputed) = results
    for tap in taps:
        assert torch.equal(plain[tap], recomputed[tap])
    assert torch.allclose(g_plain, g_recomputed, rtol=1e-12, atol=1e-12)
    assert g_plain.abs().sum() > 0


def test_lbfgs_history_shrinks_for_big_images_only(monkeypatch):
    monkeypatch.setattr(optimize, "LBFGS_HISTORY_BYTES", 2 * 3 * 64 * 64 * 4 * 10)  # 10 pairs at 64x64
    small = torch.zeros(1, 3, 32, 32, requires_grad=True)
    big = torch.zeros(1, 3, 64, 128, requires_grad=True)
    huge = torch.zeros(1, 3, 256, 256, requires_grad=True)
    assert optimize.make_optimizer("lbfgs", small, 1.0, 20).defaults["history_size"] == 20
    assert optimize.make_optimizer("lbfgs", big, 1.0, 20).defaults["history_size"] == 5
    assert optimize.make_optimizer("lbfgs", huge, 1.0, 20).defaults["history_size"] == optimize.MIN_HISTORY


def test_bfloat16_evaluates_only_images_being_optimised_and_returns_its_taps_in_bfloat16():
    torch.manual_seed(0)
    net = VGGFeatures("vgg16", ["relu1_2", "relu3_3"])
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    image = torch.rand(1, 3, 64, 64)
    exact = net(image)
    net.compute_dtype = torch.bfloat16
    tiny = torch.rand(1, 3, 16, 16, requires_grad=True)  # below LOW_PRECISION_MIN_PIXELS: float32
    low_tiny = net(tiny)["relu3_3"]
    net.compute_dtype = torch.float32
    assert torch.equal(low_tiny, net(tiny)["relu3_3"])
    net.compute_dtype = torch.bfloat16
    with torch.no_grad():  # targets, normalisers and scores stay exact
        assert all(torch.equal(v, exact[k]) for k, v in net(image).items())
    x = image.clone().requires_grad_(True)
    low = net(x)
    assert all(v.dtype == torch.bfloat16 for v in low.values())  # the objective reads them as they are
    for k, v in low.items():  # bfloat16 keeps ~3 significant digits
        assert torch.allclose(v.float(), exact[k], rtol=0.05, atol=0.05 * float(exact[k].abs().max()))
        assert not torch.equal(v.float(), exact[k])
    sum(v.float().sum() for v in low.values()).backward()
    assert x.grad is not None and x.grad.dtype == torch.float32 and x.grad.abs().sum() > 0


def test_resolve_precision():
    assert resolve_precision("float32", torch.device("cpu")) == torch.float32
    assert resolve_precision("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert resolve_precision("auto", torch.device("meta")) == torch.float32  # not a CPU: float32
    with pytest.raises(InputError, match="precision"):
        resolve_precision("float8", torch.device("cpu"))


@pytest.mark.parametrize("channels_last", [False, True])
def test_gram_of_bfloat16_features_is_float32_and_exact_to_their_values(channels_last, monkeypatch):
    from painterly import objective

    monkeypatch.setattr(objective, "GRAM_CHUNK_VALUES", 8 * 5)  # several chunks of 5 positions
    torch.manual_seed(0)
    low = torch.randn(2, 8, 6, 7).to(torch.bfloat16)
    if channels_last:
        low = low.contiguous(memory_format=torch.channels_last)
    exact = low.double()
    got = gram_matrix(low.requires_grad_(True))
    assert got.dtype == torch.float32
    # products of bfloat16 values are exact in float32: only float32 summation error remains
    want = exact.flatten(2) @ exact.flatten(2).transpose(1, 2)
    assert torch.allclose(got.double(), want, rtol=1e-6, atol=1e-5)
    weights = torch.randn(2, 8, 8)
    (grad,) = torch.autograd.grad((got * weights).sum(), low)
    assert grad.dtype == torch.bfloat16
    assert grad.is_contiguous(memory_format=torch.channels_last) == channels_last
    want_grad = ((weights + weights.transpose(1, 2)).double() @ exact.flatten(2)).view_as(exact)
    assert torch.allclose(grad.double(), want_grad, rtol=0.02, atol=0.02 * float(want_grad.abs().max()))


def test_content_loss_of_bfloat16_features_against_a_float32_target():
    from painterly.objective import content_loss

    torch.manual_seed(0)
    features = torch.randn(1, 4, 5, 6).to(torch.bfloat16).requires_grad_(True)
    target = torch.randn(1, 4, 5, 6)
    loss = content_loss(features, target)
    diff = features.detach().double() - target.double()
    assert loss.dtype == torch.float32
    assert abs(float(loss) - float(diff.pow(2).mean())) < 1e-6
    (grad,) = torch.autograd.grad(loss, features)
    assert grad.dtype == torch.bfloat16
    assert torch.allclose(grad.double(), 2 * diff / diff.numel(), rtol=1e-2, atol=1e-5)


def test_reuse_freed_memory_raises_malloc_thresholds_and_trims_even_on_error(monkeypatch):
    from painterly import device

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append(("mallopt", param, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    monkeypatch.setattr(device, "_glibc", lambda: FakeLibc())
    with pytest.raises(KeyboardInterrupt), device.reuse_freed_memory():
        assert [c[1] for c in calls] == [device._M_MMAP_THRESHOLD, device._M_TRIM_THRESHOLD]
        raise KeyboardInterrupt
    assert calls[-1] == ("trim", 0)
    monkeypatch.setattr(device, "_glibc", lambda: None)  # not glibc: nothing to do, no error
    with device.reuse_freed_memory():
        pass


def test_lbfgs_state_is_budgeted_and_the_largest_scales_use_adam():
    def pixels(h, w):
        return 3 * h * w

    assert optimize.history_at(20, pixels(1536, 2048)) == 20
    assert optimize.history_at(20, pixels(3072, 4096)) == 3
    assert optimize.optimizer_at("lbfgs", pixels(3072, 4096)) == "lbfgs"
    assert optimize.optimizer_at("lbfgs", pixels(6144, 8192)) == "adam"
    assert optimize.optimizer_at("adam", pixels(48, 64)) == "adam"


def test_the_adam_fallback_takes_the_scaled_step(monkeypatch):
    monkeypatch.setattr(optimize, "LBFGS_STATE_BYTES", 0)
    x = torch.zeros(1, 3, 8, 8, requires_grad=True)
    opt = optimize.make_optimizer("lbfgs", x, 1.0, 20)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == pytest.approx(optimize.ADAM_LR_RATIO)


def test_lbfgs_reads_the_gradient_in_place_and_steps_as_torch_does():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 8, 8)
    results = []
    for cls in (torch.optim.LBFGS, optimize._LBFGS):
        x = torch.zeros(1, 3, 8, 8, requires_grad=True)
        opt = cls([x], lr=1.0, max_iter=1, history_size=5, tolerance_grad=-1, tolerance_change=-1)

        def closure(x=x, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = ((x - target) ** 4).sum()
            loss.backward()
            return loss

        for _ in range(6):
            opt.step(closure)
        results.append(x.detach().clone())
    assert torch.equal(results[0], results[1])
