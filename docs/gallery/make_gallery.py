"""Make the pictures of docs/gallery.md with the painterly CLI, then lay them out as labelled figures.

    python docs/gallery/make_gallery.py            # every run not yet made, then the figures
    python docs/gallery/make_gallery.py masks ...  # (re)make only these runs, then the figures

Each run is exactly the command printed in docs/gallery.md (``painterly`` + its arguments); the
full-size results go to $PAINTERLY_GALLERY_WORK (default /tmp/painterly-gallery) and only the
small figure JPEGs land here. Needs the vgg16-hed weights (``--model vgg16-hed`` fetches them).
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("PAINTERLY_GALLERY_WORK", "/tmp/painterly-gallery"))
SIZE = 256
# The defaults' ladder: at 256 px it is one scale (it starts at 256 px, docs/quality.md). 100 evaluations
# there instead of the default 150 keep the gallery to minutes on a CPU.
COMMON = ["--model", "vgg16-hed", "--size", str(SIZE), "--iterations", "100", "--quiet"]
SKY, TOWN = HERE / "tubingen_sky.png", HERE / "tubingen_town.png"
TUB, STARRY, SCREAM, SHIP = (f"example:{n}" for n in ("tubingen", "starry_night", "the_scream", "shipwreck"))

# name -> the CLI arguments before COMMON and -o (paths relative to the repository root in the docs)
RUNS: dict[str, list[str]] = {
    "starry": [TUB, STARRY],
    "scream": [TUB, SCREAM],
    "luminance": [TUB, SCREAM, "--preserve-color", "luminance"],
    "histogram": [TUB, SCREAM, "--preserve-color", "histogram"],
    "masks": [TUB, STARRY, SHIP, "--mask", str(SKY), "--mask", str(TOWN)],
    "blend": [TUB, STARRY, SCREAM, "--style-blend-weights", "1,1"],
    "scale_half": [TUB, STARRY, "--style-scale", "0.5"],
    "scale_double": [TUB, STARRY, "--style-scale", "2"],
    "gatys_layers": [TUB, STARRY, "--style-layers", "gatys", "--content-layer", "gatys"],
    "sky_only": [TUB, STARRY, "--mask", str(SKY)],
}

# figure -> panels (run name, or "input:NAME" / "mask" for an input) with their labels
FIGURES: dict[str, list[tuple[str, str]]] = {
    "inputs": [("input:tubingen", "content: tubingen"), ("input:starry_night", "starry_night"),
               ("input:the_scream", "the_scream"), ("input:shipwreck", "shipwreck")],
    "blend": [("starry", "starry_night"), ("blend", "blend 1:1"), ("scream", "the_scream")],
    "color": [("scream", "--preserve-color none"), ("luminance", "luminance"), ("histogram", "histogram")],
    "scale": [("scale_half", "--style-scale 0.5"), ("starry", "1 (default)"), ("scale_double", "2")],
    "masks": [("mask", "mask: sky (white)"), ("masks", "sky starry_night, town shipwreck"),
              ("sky_only", "sky starry_night, town none")],
    "layers": [("starry", "layers: seed (default)"), ("gatys_layers", "--style-layers gatys --content-layer gatys")],
}  # fmt: skip
MAX_BYTES = 60_000


def make_masks() -> None:
    """Sky = blue, bright pixels in the upper 60 % of the content, holes closed, edge softened."""
    import torch
    import torch.nn.functional as F

    from painterly.image import as_image, resize, save_image

    content = resize(as_image(TUB, "content"), SIZE)
    r, _, b = content[0]
    rows = torch.arange(r.shape[0]).float()[:, None]
    sky = ((b > r + 0.12) & (b > 0.45) & (rows < 0.6 * r.shape[0])).float()[None, None]
    sky = (F.avg_pool2d(sky, 9, 1, 4) > 0.5).float()  # close small holes and specks
    sky = F.avg_pool2d(sky, 7, 1, 3)  # a soft edge, a few pixels wide
    save_image(sky.repeat(1, 3, 1, 1), SKY)
    save_image((1 - sky).repeat(1, 3, 1, 1), TOWN)


def run(name: str) -> dict:
    from painterly.cli import main

    out = WORK / f"{name}.png"
    start = time.perf_counter()
    code = main([*RUNS[name], *COMMON, "-o", str(out)])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{name}: painterly exited with {code}")
    print(f"{name}: {seconds:.0f} s", flush=True)
    return {"seconds": round(seconds, 1), "args": RUNS[name]}


def _panel(key: str):
    from PIL import Image

    from painterly.image import as_image, resize, to_pil

    if key == "mask":
        return Image.open(SKY).convert("RGB")
    if key.startswith("input:"):  # the height of a result, whatever the aspect ratio
        image = as_image("example:" + key.removeprefix("input:"), "input")
        height = round(SIZE * 3 / 4)  # tubingen is 4:3
        return to_pil(resize(image, round(height * max(image.shape[-2:]) / image.shape[-2])))
    return Image.open(WORK / f"{key}.png").convert("RGB")


def figure(name: str, panels: list[tuple[str, str]]) -> Path:
    """Panels side by side, bottom-aligned, each with its label above; a JPEG under MAX_BYTES."""
    from PIL import Image, ImageDraw, ImageFont

    images = [_panel(key) for key, _ in panels]
    font = ImageFont.load_default(size=13)
    gap, strip = 6, 20
    height = max(im.height for im in images)
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    sheet = Image.new("RGB", (width, height + strip), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for im, (_, label) in zip(images, panels):
        sheet.paste(im, (x, strip + height - im.height))
        draw.text((x + im.width / 2, strip / 2), label, fill="black", font=font, anchor="mm")
        x += im.width + gap
    out = HERE / f"{name}.jpg"
    for quality in range(88, 40, -4):
        buf = io.BytesIO()
        sheet.save(buf, "JPEG", quality=quality, optimize=True)
        if buf.tell() < MAX_BYTES:
            break
    out.write_bytes(buf.getvalue())
    return out


def main(argv: list[str]) -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    if not SKY.exists() or "masks" in argv:
        make_masks()
    log_path = WORK / "runs.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    for name in RUNS:
        if name in argv or (not argv and not (WORK / f"{name}.png").exists()):
            log[name] = run(name)
            log_path.write_text(json.dumps(log, indent=1))
    for name, panels in FIGURES.items():
        keys = [k for k, _ in panels if not k.startswith("input:") and k != "mask"]
        if all((WORK / f"{k}.png").exists() for k in keys):
            print(f"figure {figure(name, panels).name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
