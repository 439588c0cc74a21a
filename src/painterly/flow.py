"""Optical flow between video frames, warping by it, and where it can be trusted.

Flow is OpenCV's DIS (Kroeger et al. 2016, "Fast optical flow using dense inverse search"), from
``opencv-python-headless`` (the ``video`` extra, imported only when flow is computed). Ruder et
al. (2016) used DeepFlow and EpicFlow, which take seconds a frame on a CPU and live in OpenCV's
contrib build; learned flow (RAFT, FlowNet2) needs weights fetched from the network and a GPU to be
fast. DIS at its ``medium`` preset takes tens of milliseconds for a 512 px frame on one core,
negligible beside a stylisation, and its errors where it is unsure are what the consistency mask
below removes.

Conventions: a flow is an ``(H, W, 2)`` float32 tensor of (dx, dy) in pixels; ``flow(a, b)`` maps
each pixel x of ``a`` to where it is in ``b``: ``a(x) ≈ b(x + flow(x))``. So the previous output
warped onto frame t is ``warp(previous, flow(frame_t, frame_t-1))``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

# The thresholds of Sundaram, Brox and Keutzer (2010), as Ruder et al. (2016, eqs. 5 and 6) use them:
# a pixel whose forward and backward flow do not cancel to within 1 % of their length (plus half
# a pixel) is occluded in one frame; one where the flow's gradient is large is on a motion boundary.
DISOCCLUSION_RELATIVE, DISOCCLUSION_ABSOLUTE = 0.01, 0.5
BOUNDARY_RELATIVE, BOUNDARY_ABSOLUTE = 0.01, 0.002


def _cv2():
    try:
        import cv2
    except ImportError:
        raise InputError("optical flow needs OpenCV: pip install 'painterly[video]'") from None
    return cv2


def _grey(image: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` in [0, 1] -> (H, W) uint8 luma (Rec. 601, as OpenCV's own conversion)."""
    rgb = image.detach()[0].to("cpu", torch.float32).clamp(0, 1)
    y = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return np.ascontiguousarray((y * 255.0).round().to(torch.uint8).numpy())


def optical_flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dense flow from frame ``a`` to frame ``b`` (both ``(1, 3, H, W)``): ``a(x) ≈ b(x + flow(x))``."""
    if a.shape != b.shape:
        raise ValueError(f"frames differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    cv2 = _cv2()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(_grey(a), _grey(b), None)
    return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))


def _grid(flow: torch.Tensor) -> torch.Tensor:
    """Sampling positions x + flow(x) in grid_sample's [-1, 1] coordinates (pixel centres)."""
    height, width = flow.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")  # fmt: skip
    x = (xs + flow[..., 0] + 0.5) * (2.0 / width) - 1.0
    y = (ys + flow[..., 1] + 0.5) * (2.0 / height) - 1.0
    return torch.stack([x, y], dim=-1)[None]


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bicubic") -> torch.Tensor:
    """``image`` ``(N, C, H, W)`` sampled at x + flow(x); outside the frame, the nearest edge.

    Bicubic by default: a frame is warped onto the next again and again, and bilinear sampling at
    sub-pixel shifts blurs a little each time, which the temporal term would then hold on to.
    Pictures are clamped to [0, 1] (bicubic overshoots); flows are sampled with ``mode="bilinear"``.
    """
    grid = _grid(flow).to(image.device, image.dtype).expand(image.shape[0], -1, -1, -1)
    out = F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.clamp(0, 1) if mode == "bicubic" else out


def consistency(backward: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Where the flow into frame t can be trusted: ``(H, W)`` of 1 (kept) and 0 (dropped).

    ``backward`` is the flow from frame t to t-1 (what warps t-1 onto t), ``forward`` from t-1 to
    t. With w = backward(x) and ŵ = forward(x + w), a pixel is dropped (Ruder et al. 2016, after
    Sundaram et al. 2010) where

    * it is disoccluded: |w + ŵ|² > 0.01 (|w|² + |ŵ|²) + 0.5 (the two flows do not cancel),
    * it is on a motion boundary: |∇u|² + |∇v|² > 0.01 |w|² + 0.002 (w = (u, v)),
    * or w points outside frame t-1 (Ruder et al. do not say; such a pixel has nothing to match).
    """
    height, width = backward.shape[:2]
    w = backward.float()
    w_hat = warp(forward.permute(2, 0, 1)[None].float(), w, mode="bilinear")[0].permute(1, 2, 0)
    cancel = (w + w_hat).pow(2).sum(-1)
    occluded = cancel > DISOCCLUSION_RELATIVE * (w.pow(2).sum(-1) + w_hat.pow(2).sum(-1)) + DISOCCLUSION_ABSOLUTE
    du_dy, du_dx = torch.gradient(w[..., 0])
    dv_dy, dv_dx = torch.gradient(w[..., 1])
    gradient = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2
    boundary = gradient > BOUNDARY_RELATIVE * w.pow(2).sum(-1) + BOUNDARY_ABSOLUTE
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")  # fmt: skip
    x, y = xs + w[..., 0], ys + w[..., 1]
    outside = (x < -0.5) | (x > width - 0.5) | (y < -0.5) | (y > height - 0.5)
    return (~(occluded | boundary | outside)).float()


def warping_error(current: torch.Tensor, previous: torch.Tensor, backward: torch.Tensor, mask: torch.Tensor) -> float:
    """Temporal warping error (Lai et al. 2018): the mean over kept pixels and channels of
    (current − previous warped onto current)², with ``backward`` the flow from current to previous."""
    warped = warp(previous.float(), backward)
    kept = mask.to(current.dtype)[None, None]
    denominator = float(kept.sum()) * current.shape[1]
    return float(((current.float() - warped).pow(2) * kept).sum()) / max(denominator, 1.0)
