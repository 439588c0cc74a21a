"""How large the content target's activations get: may a large picture keep it in float16?

``python -m benchmarks.target_range [SIDE] [LAYER]`` (default 768 px, the model's content layer) runs
vgg16-hed's real weights (``~/.cache/painterly/vgg16-hed.pth``) in float32 on every picture in
``/work/shared/images`` (or ``src/painterly/examples``) resized to SIDE px on the longer side, and
on a few synthetic worst cases (uniform and binary noise, 1 and 2 px checkerboards, white, black),
and prints each one's maximum at LAYER beside float16's largest finite value (65504): the headroom
:data:`painterly.tiling.HALF_TARGET_ABOVE` relies on. One JSON line per picture.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGES = [Path("/work/shared/images"), Path(__file__).resolve().parents[1] / "src" / "painterly" / "examples"]


def main(side: int = 768, layer: str | None = None) -> list[dict]:
    from painterly.config import Settings
    from painterly.image import load_image
    from painterly.network import build_network

    s = Settings(model="vgg16-hed").resolved()
    layer = layer or s.content_layer
    net = build_network(dataclasses.replace(s, content_layer=layer), torch.device("cpu"), torch.float32)
    folder = next(p for p in IMAGES if p.is_dir())
    pictures = {}
    for path in sorted(folder.glob("*.*g")):
        x = load_image(path)
        h, w = x.shape[-2:]
        k = side / max(h, w)
        pictures[path.name] = F.interpolate(x, size=(round(h * k), round(w * k)), mode="bilinear",
                                            antialias=True, align_corners=False).clamp(0, 1)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    n = torch.arange(512)
    pictures.update({
        "uniform noise": torch.rand(1, 3, 512, 512, generator=g),
        "binary noise": (torch.rand(1, 3, 512, 512, generator=g) > 0.5).float(),
        "checker 1px": ((n[:, None] + n[None]) % 2).float().expand(1, 3, 512, 512).contiguous(),
        "checker 2px": ((n[:, None] // 2 + n[None] // 2) % 2).float().expand(1, 3, 512, 512).contiguous(),
        "white": torch.ones(1, 3, 512, 512),
        "black": torch.zeros(1, 3, 512, 512),
    })  # fmt: skip
    rows = []
    for name, x in pictures.items():
        with torch.no_grad():
            f = net(x)[layer]
        rows.append({"picture": name, "layer": layer, "max": round(float(f.max()), 1),
                     "float16_headroom": round(65504 / float(f.max()), 1)})  # fmt: skip
        print(json.dumps(rows[-1]))
    return rows


if __name__ == "__main__":
    a = sys.argv[1:]
    main(int(a[0]) if a else 768, a[1] if len(a) > 1 else None)
