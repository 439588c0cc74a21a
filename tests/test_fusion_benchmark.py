"""benchmarks.fusion measures variants that must compute what today's network computes."""

from __future__ import annotations

import pytest

fusion = pytest.importorskip("benchmarks.fusion")


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # the deprecation is what the benchmark reports
def test_every_variant_computes_the_same_numbers_and_the_profile_adds_up() -> None:
    import torch

    threads, fusing = torch.get_num_threads(), torch.jit.onednn_fusion_enabled()
    result = fusion.main(["64", "1", "float32"])
    assert (torch.get_num_threads(), torch.jit.onednn_fusion_enabled()) == (threads, fusing)  # left as found
    assert result["size"] == [64, 48]
    assert result["grad_inplace_relu_same"] is True
    assert set(result["forward_s"]) >= {"forward_eager", "forward_frozen"}
    for name, diff in result["forward_max_rel_diff"].items():
        assert diff < 1e-5, name
    shares = result["profile_share"]
    assert abs(sum(shares.values()) - 1) < 0.01
    assert max(shares, key=shares.get) == "convolution"


def test_a_relu_is_counted_as_a_relu() -> None:
    assert fusion.kind_of("aten::clamp_min") == "relu"
    assert fusion.kind_of("aten::threshold_backward") == "relu"
    assert fusion.kind_of("aten::max_pool2d_with_indices_backward") == "max-pool"
    assert fusion.kind_of("aten::mkldnn_convolution") == "convolution"
