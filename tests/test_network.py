"""Tap names, shapes, truncation, freezing, and the forward against a plain conv chain."""

import pytest
import torch
import torch.nn.functional as F

from painterly.errors import InputError
from painterly.network import CONFIGS, IMAGENET_MEAN, IMAGENET_STD, VGGFeatures, build_features, layer_names


def random_state_dict(arch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        f"features.{k}": torch.randn(v.shape, generator=gen) * 0.05
        for k, v in build_features(arch).state_dict().items()
    }


def test_names_follow_the_torchvision_indices():
    names = layer_names("vgg19")
    assert len(names) == 37
    assert names[16] == "conv3_4" and names[17] == "relu3_4" and names[36] == "pool5"
    assert [names[i] for i in (3, 8, 17, 26, 35)] == ["relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4"]
    assert layer_names("vgg16")[15] == "relu3_3" and len(layer_names("vgg16")) == 31


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_every_tap_has_the_right_shape(arch):
    names = layer_names(arch)
    net = VGGFeatures(arch, names, random_state_dict(arch))
    out = net(torch.rand(1, 3, 64, 64))
    assert list(out) == names
    for name, value in out.items():
        block = int(name[4] if name.startswith("pool") else name[4 if name.startswith("conv") else 4])
        side = 64 // 2 ** (block if name.startswith("pool") else block - 1)
        channels = min(64 * 2 ** (block - 1), 512)
        assert value.shape == (1, channels, side, side), name


def test_truncated_after_the_deepest_tap_and_frozen():
    net = VGGFeatures("vgg19", ["relu1_2", "conv3_4"])
    assert len(net.features) == 17  # modules 0..16
    assert all(not p.requires_grad for p in net.parameters())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    out = net(x)
    assert (out["conv3_4"] < 0).any(), "a conv tap keeps its pre-ReLU values"
    out["conv3_4"].sum().backward()
    assert x.grad is not None and all(p.grad is None for p in net.parameters())


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(InputError, match="unknown layer 'relu9_9'.*conv1_1"):
        VGGFeatures("vgg19", ["relu9_9"])


def test_forward_equals_plain_conv_chain():
    sd = random_state_dict("vgg16", seed=4)
    net = VGGFeatures("vgg16", ["relu3_3"], sd)
    x = torch.rand(1, 3, 24, 24)
    h = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for i in (0, 2):
        h = F.relu(F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1))
    h = F.max_pool2d(h, 2)
    for i in (5, 7):
        h = F.relu(F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1))
    h = F.max_pool2d(h, 2)
    for i in (10, 12, 14):
        h = F.relu(F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1))
    assert torch.allclose(net(x)["relu3_3"], h, atol=1e-5)
