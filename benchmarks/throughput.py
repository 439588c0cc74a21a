"""Arithmetic throughput: one forward and backward of VGG against this machine's matrix multiply.

Only the work the optimisation needs is counted: the convolutions up to the deepest tap, forward and
the gradient with respect to their *input* (the weights are frozen, so no weight gradients). ReLU,
pooling, bias and the loss are not counted, though their time is: the figure is honest arithmetic
per second of the whole evaluation. Matmul and VGG are timed alternately, in the same conditions,
and each reports the best of its repeats (a shared machine only ever makes a run slower).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from painterly.config import Settings
from painterly.network import VGGFeatures


@dataclass
class Rate:
    """GFLOP/s from the best and the median of several timed repeats."""

    gflop: float
    best_s: float
    median_s: float

    @property
    def best(self) -> float:
        return self.gflop / self.best_s

    @property
    def median(self) -> float:
        return self.gflop / self.median_s


def conv_gflop(net: VGGFeatures, height: int, width: int) -> float:
    """GFLOP of one forward plus input-gradient backward of ``net``'s convolutions at H×W."""
    flop = 0.0
    for module in net.features:
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            flop += 2 * module.in_channels * module.out_channels * k * height * width  # forward
        elif isinstance(module, torch.nn.MaxPool2d):
            height, width = height // 2, width // 2
    return 2 * flop / 1e9  # the input gradient of a convolution costs what its forward does


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def measure(
    arch: str = "vgg19",
    size: int = 512,
    repeats: int = 5,
    dtype: torch.dtype = torch.float32,
    matmul_n: int = 2048,
    channels_last: bool = True,
) -> dict[str, Rate]:
    """Matmul and VGG rates in ``dtype``, interleaved; VGG uses the seed's taps for ``arch``."""
    s = Settings(model=arch, weights="random").resolved()
    torch.manual_seed(0)
    net = VGGFeatures(arch, list(dict.fromkeys([s.content_layer, *s.style_layers])))
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.compute_dtype = dtype
    image = torch.rand(1, 3, size, size, requires_grad=True)
    grads: list[torch.Tensor] = []

    def vgg() -> None:
        out = list(net(image).values())
        if not grads:
            grads.extend(torch.ones_like(o) for o in out)
        torch.autograd.backward(out, grads)

    a, b = torch.randn(matmul_n, matmul_n, dtype=dtype), torch.randn(matmul_n, matmul_n, dtype=dtype)
    vgg(), a @ b  # warm up: oneDNN builds its kernels on first use
    mm_times, vgg_times = [], []
    for _ in range(repeats):
        mm_times += _timed(lambda: a @ b, 3)
        vgg_times += _timed(vgg, 1)
    return {
        "matmul": Rate(2 * matmul_n**3 / 1e9, min(mm_times), statistics.median(mm_times)),
        "vgg": Rate(conv_gflop(net, size, size), min(vgg_times), statistics.median(vgg_times)),
    }
