"""What fusing and fewer passes over memory could buy a large evaluation (issue 15, item 4).

``python -m benchmarks.fusion [SIZE] [REPEATS] [DTYPE]`` (default 1024 px, 3 repeats, the dtype
``--precision auto`` picks here): vgg16-hed's layout with random weights (speed does not depend on
the weights), channels-last as painterly runs it, at SIZE x 3/4 SIZE. Four measurements, in one run:

1. **Where the time goes**: one forward + input-gradient backward (the taps' upstream gradients
   fixed, as ``benchmarks.throughput``) under ``torch.profiler``, its self CPU time summed by kind:
   convolutions, ReLU, max-pooling, casts and copies, gradient sums. What a fused ReLU-and-pool
   backward or fewer casts could save is at most the share of those kinds.
2. **In-place ReLU** in the gradient evaluation (every ReLU of vgg16-hed feeds a tap, which keeps
   its output anyway: in-place saves one activation-sized allocation and write per ReLU), timed
   against today's out-of-place ReLU, interleaved.
3. **A frozen TorchScript forward** (``torch.jit.trace`` + ``torch.jit.freeze``, which folds the
   weights and lets oneDNN fuse each convolution with its ReLU) against the eager forward, both
   without gradients: what the tiled evaluation's first pass and the targets run. Freezing needs
   no gradient, so the optimised image's own evaluation cannot use it. (torch 2.13 marks
   ``torch.jit.trace`` and ``torch.jit.freeze`` deprecated.)
4. The same with **oneDNN Graph fusion** (``torch.jit.enable_onednn_fusion``) where torch has it.

Each variant is timed REPEATS times, interleaved round by round; the fastest counts. Prints one
JSON line: seconds, ratios to the baseline, the profile's shares, and whether each variant's output
equals the baseline's (the same numbers, not only the same speed).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

import torch
from torch import nn

from painterly.layers import layer_names
from painterly.network import VGGFeatures, resolve_precision
from painterly.threads import configure_threads

TAPS = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]  # vgg16-hed's style taps (relu3_3 is content)

KINDS = {
    "convolution": ("conv", "mkldnn_convolution", "_convolution"),
    "relu": ("relu", "threshold", "clamp_min"),
    "max-pool": ("max_pool", "pool"),
    "cast / copy": ("to", "copy", "_to_copy", "contiguous", "clone"),
    "gradient sum": ("add", "sum", "accumulate"),
}


def kind_of(op: str) -> str:
    name = op.split("::")[-1].lower()
    for kind, keys in KINDS.items():
        if any(k in name for k in keys):
            return kind
    return "other"


def network(dtype: torch.dtype, inplace: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    net = VGGFeatures("vgg16", TAPS)
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    features = net.features.to(dtype).to(memory_format=torch.channels_last)
    if inplace:
        for i, m in enumerate(features):
            if isinstance(m, nn.ReLU):
                features[i] = nn.ReLU(inplace=True)
    return features


def run_taps(features: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    names, out = layer_names("vgg16")[: len(features)], []
    for name, module in zip(names, features):
        x = module(x)
        if name in TAPS:
            out.append(x)
    return out


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def fastest(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = defaultdict(list)
    for fn in fns.values():
        fn()  # warm up: oneDNN builds its kernels on first use
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main(argv: list[str]) -> dict:
    size = int(argv[0]) if argv else 1024
    repeats = int(argv[1]) if len(argv) > 1 else 3
    dtype = getattr(torch, argv[2]) if len(argv) > 2 else resolve_precision("auto", torch.device("cpu"))
    h, w = size * 3 // 4, size
    torch.manual_seed(1)
    image = torch.rand(1, 3, h, w).to(dtype).contiguous(memory_format=torch.channels_last)
    result: dict = {"size": [w, h], "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads()}

    base, inplace = network(dtype), network(dtype, inplace=True)
    with torch.no_grad():
        grads = [torch.randn_like(t) for t in run_taps(base, image)]

    def grad_eval(features: nn.Sequential) -> torch.Tensor:
        x = image.clone().requires_grad_(True)
        torch.autograd.backward(run_taps(features, x), grads)
        return x.grad

    # 1. where the time goes
    grad_eval(base)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        grad_eval(base)
    shares: dict[str, float] = defaultdict(float)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    for event in events:
        shares[kind_of(event.key)] += event.self_cpu_time_total
    total = sum(shares.values())
    result["top_ops"] = {e.key: round(e.self_cpu_time_total / total, 3) for e in events[:10]}
    result["profile_share"] = {k: round(v / total, 3) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}

    # 2. in-place ReLU
    same = torch.equal(grad_eval(base), grad_eval(inplace))
    t = fastest({"grad_eager": lambda: grad_eval(base), "grad_inplace_relu": lambda: grad_eval(inplace)}, repeats)
    result["grad_s"] = {k: round(v, 3) for k, v in t.items()}
    result["grad_inplace_relu_ratio"] = round(t["grad_inplace_relu"] / t["grad_eager"], 3)
    result["grad_inplace_relu_same"] = same

    # 3./4. frozen forward, without gradients
    class Taps(nn.Module):
        def __init__(self, features: nn.Sequential) -> None:
            super().__init__()
            self.features = features

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(run_taps(self.features, x))

    eager = Taps(base).eval()
    fns = {"forward_eager": lambda: eager(image)}
    fuser = getattr(torch.jit, "enable_onednn_fusion", None)
    fusing = torch.jit.onednn_fusion_enabled() if fuser else False
    with torch.no_grad():
        reference = eager(image)
        frozen = torch.jit.freeze(torch.jit.trace(eager, image, check_trace=False))
        # TorchScript optimises a graph on its first runs, reading the fuser's switch then: these runs
        # fix the frozen graph's plan without the oneDNN Graph fuser, whatever the switch says later.
        if fuser:
            fuser(False)
        frozen(image), frozen(image)
        fns["forward_frozen"] = lambda: frozen(image)
        try:
            if fuser:
                fuser(True)
                try:
                    graph = torch.jit.freeze(torch.jit.trace(Taps(network(dtype)).eval(), image, check_trace=False))
                    graph(image), graph(image)  # the fuser compiles on the first runs
                    fns["forward_onednn_graph"] = lambda: graph(image)
                except Exception as e:  # noqa: BLE001 -- a measurement: say what failed and go on
                    result["onednn_graph_error"] = f"{type(e).__name__}: {e}"[:200]
            diff = {}
            for name, fn in fns.items():
                out = fn()
                diff[name] = max(_relative(a, b) for a, b in zip(out, reference))
            t = fastest(fns, repeats)
        finally:
            if fuser:
                fuser(fusing)  # a process-wide switch: leave it as found
    result["forward_s"] = {k: round(v, 3) for k, v in t.items()}
    result["forward_ratio"] = {k: round(v / t["forward_eager"], 3) for k, v in t.items()}
    result["forward_max_rel_diff"] = {k: float(f"{v:.2g}") for k, v in diff.items()}
    return result


if __name__ == "__main__":
    configure_threads()  # this process is the benchmark's: painterly's thread policy, as the command's
    print(json.dumps(main(sys.argv[1:])))
