"""Colour preservation (Gatys et al. 2017, "Controlling Perceptual Factors in NST", section 5).

Two ways to keep the content's colours:

* ``luminance``: stylise luminance only, then put the content's chroma back. Done in YIQ, where
  Y is luma and I, Q carry the chroma linearly, so the recombination is exact.
* ``histogram``: before stylising, match the style image's colour mean and covariance to the
  content's (a linear map x' = C_c^½ C_s^-½ (x − μ_s) + μ_c, symmetric square roots).
"""

from __future__ import annotations

import torch

_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.59590059, -0.27455667, -0.32134392], [0.21153661, -0.52273617, 0.31119955]]
)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> YIQ."""
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YIQ.to(image), image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) YIQ -> RGB (exact inverse of :func:`rgb_to_yiq`)."""
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB_TO_YIQ.double()).to(image), image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """The Y channel repeated to three channels, so the network sees a grey image."""
    return rgb_to_yiq(image)[:, :1].repeat(1, 3, 1, 1)


def with_chroma_of(output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The output's luma with the content's chroma (I, Q); content is resized to match first."""
    if content.shape[-2:] != output.shape[-2:]:
        content = torch.nn.functional.interpolate(content, size=output.shape[-2:], mode="bicubic").clamp(0, 1)
    y = rgb_to_yiq(output)[:, :1]
    iq = rgb_to_yiq(content)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0, 1)


def _sqrtm(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(cov)
    vals = vals.clamp_min(1e-8)
    power = -0.5 if inverse else 0.5
    return vecs @ torch.diag(vals**power) @ vecs.T


def match_color(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image with its colour mean and covariance matched to the content's."""
    s = style[0].reshape(3, -1).double()
    c = content[0].reshape(3, -1).double()
    mu_s, mu_c = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    eye = 1e-5 * torch.eye(3, dtype=torch.float64)
    cov_s = torch.cov(s) + eye
    cov_c = torch.cov(c) + eye
    transform = _sqrtm(cov_c) @ _sqrtm(cov_s, inverse=True)
    out = transform @ (s - mu_s) + mu_c
    return out.reshape_as(style[0]).unsqueeze(0).to(style.dtype).clamp(0, 1)
