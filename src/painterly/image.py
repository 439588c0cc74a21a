"""Image I/O: load any reasonable picture as sRGB floats, resize, and save atomically.

Images are the user's work, so this module is the trusted part: every bad input becomes one
:class:`~painterly.errors.InputError` line naming the file, and a save either leaves a complete new
file or the old one untouched. The Pillow behaviours handled here were measured in
``ECOSYSTEM.md`` §4 (EXIF rotation, ICC profiles, 16-bit clipping, dropped alpha, bombs).

Known limits, on purpose: a 16-bit RGB PNG is read at 8 bits (Pillow keeps the high byte and no
reader for it ships with our dependencies); 16-bit RGB TIFFs are read at full precision through
tifffile, but their ICC profile is not applied (assumed sRGB). Animated GIF/WebP give frame 0.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import struct
import warnings
import zlib
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, PngImagePlugin

from .errors import InputError
from .files import OUTPUT_EXTENSIONS, atomic_write, writable_folder

DEFAULT_MAX_PIXELS: int = 80_000_000
SUPPORTED_INPUT_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")

_PIL_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_PIL_FORMAT.update({".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"})
_SIXTEEN_BIT_EXTENSIONS = (".png", ".tif", ".tiff")
# Encoder limits (ECOSYSTEM.md §4): beyond them libjpeg/libwebp fail only after the run.
_MAX_SIDE = {".jpg": 65_500, ".jpeg": 65_500, ".webp": 16_383}
# What Pillow's own fuzz harness accepts from arbitrary bytes, plus colour-management errors.
# UnidentifiedImageError and FileNotFoundError are OSErrors.
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, MemoryError, NotImplementedError, OverflowError, EOFError,
    struct.error, Image.DecompressionBombError, Image.DecompressionBombWarning, ImageCms.PyCMSError,
)  # fmt: skip
# EXIF orientation (tag 0x0112) -> numpy ops on an (H, W, C) array, matching ImageOps.exif_transpose.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=1),
}


class NonFiniteImageError(InputError, ValueError):
    """Refusal to save an image holding NaN or infinity (it would be a broken picture)."""


def _fail(path: Path | str, problem: str) -> InputError:
    """The one-line error for ``path``: newlines in library messages are folded away."""
    return InputError(" ".join(f"{path}: {problem}".split()))


@lru_cache(maxsize=1)
def _srgb_icc() -> bytes:
    """The bytes of littlecms' built-in sRGB profile, embedded in everything we write."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ----------------------------------------------------------------------------------------- loading
def load_image(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, alpha: str = "composite"
) -> torch.Tensor:
    """Read an image file as a float32 ``(1, 3, H, W)`` sRGB tensor in ``[0, 1]``.

    EXIF orientation is applied and embedded ICC profiles are converted to sRGB (a broken profile
    warns and is ignored). Alpha is composited on white with ``alpha="composite"``; with
    ``alpha="keep"`` the result is ``(1, 4, H, W)``, the fourth channel the straight alpha (ones
    when the file has none). 16-bit grayscale keeps its precision; ``I`` images are read on the
    0..65535 scale and ``F`` images on 0..1. Raises :class:`InputError` (one line) for anything
    unreadable, and before decoding for images over ``max_pixels``.
    """
    if alpha not in ("composite", "keep"):
        raise InputError(f"alpha must be 'composite' or 'keep', not {alpha!r}")
    rgb, a = _read(Path(path), max_pixels)
    if alpha == "keep":
        arr = np.concatenate([rgb, (np.ones_like(rgb[..., :1]) if a is None else a[..., None])], axis=2)
    else:  # straight alpha over white, the same formula as Image.alpha_composite
        arr = rgb if a is None else rgb * a[..., None] + (1.0 - a[..., None])
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))[None]


def image_alpha(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor | None:
    """The alpha channel of an image file as ``(1, 1, H, W)`` in ``[0, 1]``, or None if it has none."""
    _, a = _read(Path(path), max_pixels)
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]


def _read(path: Path, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode ``path`` to (H, W, 3) sRGB floats and an optional (H, W) alpha, oriented upright."""
    _check_file(path)
    names = ", ".join(SUPPORTED_INPUT_FORMATS[:-1]) + f" or {SUPPORTED_INPUT_FORMATS[-1]}"
    try:
        # catch_warnings keeps the filter local to this call (process-wide while it runs, as
        # Python < 3.14 has no per-thread filters); max_pixels is the limit, so Pillow's bomb
        # warning is an error unless the caller raised max_pixels past Pillow's own limit.
        with warnings.catch_warnings():
            bomb = "error" if max_pixels <= Image.MAX_IMAGE_PIXELS else "ignore"
            warnings.simplefilter(bomb, Image.DecompressionBombWarning)
            with Image.open(path, formats=SUPPORTED_INPUT_FORMATS) as im:
                _check_pixels(path, im.size, max_pixels)
                im.load()
                orientation = _orientation(im)
                pixels = _tiff16(path, im) or _pixels(im, path)
    except Image.UnidentifiedImageError:
        raise _fail(path, f"is not a {names} image, or it is damaged") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _fail(path, f"refused as a possible decompression bomb: {exc}") from None
    except MemoryError:
        raise _fail(path, "is too large to decode in the available memory") from None
    except _DECODE_ERRORS as exc:
        raise _fail(path, f"cannot be decoded (truncated or corrupt?): {exc}") from None
    rgb, a = pixels
    if orientation in _ORIENT:
        rgb = _ORIENT[orientation](rgb)
        a = None if a is None else _ORIENT[orientation](a[..., None])[..., 0]
    if not np.isfinite(rgb).all():
        raise _fail(path, "holds NaN or infinite pixel values")
    return rgb, a


def _check_file(path: Path) -> None:
    """Clear messages for the failures that happen before any decoder runs."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise _fail(path, "is a folder, not an image file")
    if info.st_size == 0:
        raise _fail(path, "is an empty file (0 bytes)")


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    """Refuse from the header alone, before the pixels are decoded and memory is spent."""
    width, height = size
    if width < 1 or height < 1:
        raise _fail(path, f"has no pixels ({width}x{height})")
    if width * height > max_pixels:
        size = f"{width}x{height} = {width * height:,} pixels"
        raise _fail(path, f"is {size}, over the limit of {max_pixels:,}; raise max_pixels to load it")


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright); unreadable EXIF counts as upright."""
    try:
        value = im.getexif().get(0x0112, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) else 1


def _pixels(im: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Pillow image of any supported mode -> (H, W, 3) sRGB floats and optional (H, W) alpha."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        # convert("RGB") would clip these to white (ECOSYSTEM.md §4); scale explicitly.
        gray = np.asarray(im).astype(np.float32)
        gray = gray.clip(0.0, 1.0) if mode == "F" else gray.clip(0.0, 65535.0) / 65535.0
        return np.repeat(gray[..., None], 3, axis=2), None
    icc = im.info.get("icc_profile")
    if mode == "La":
        im = im.convert("LA")
    elif "transparency" in im.info or mode in ("PA", "RGBa"):
        im = im.convert("LA" if mode == "L" else "RGBA")
    elif mode in ("P", "1"):
        im = im.convert("RGB" if mode == "P" else "L")
    has_alpha = im.mode in ("LA", "RGBA")
    if icc and icc != _srgb_icc():
        im = _to_srgb(im, icc, path)
    try:
        im = im.convert("RGBA" if has_alpha else "RGB")
    except ValueError:
        raise _fail(path, f"has pixel mode {mode}, which painterly cannot convert to RGB") from None
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr[..., :3], (arr[..., 3] if has_alpha else None)


def _to_srgb(im: Image.Image, icc: bytes, path: Path) -> Image.Image:
    """Convert through the embedded profile; a profile that cannot be used warns and is ignored."""
    try:
        source, srgb = (ImageCms.ImageCmsProfile(io.BytesIO(data)) for data in (icc, _srgb_icc()))
        return ImageCms.profileToProfile(im, source, srgb, outputMode="RGBA" if "A" in im.mode else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        warnings.warn(f"{path}: ignoring its ICC profile ({exc}); assuming sRGB", stacklevel=5)
        return im


def _tiff16(path: Path, im: Image.Image) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Full precision for 16-bit RGB(A) TIFFs, which Pillow reduces to 8 bits; else None."""
    bits = im.tag_v2.get(258, (8,)) if im.format == "TIFF" else (8,)
    if im.mode not in ("RGB", "RGBA") or max(bits if isinstance(bits, tuple) else (bits,)) != 16:
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            arr, extras = page.asarray(), tuple(page.extrasamples)
            if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
                arr = np.moveaxis(arr, 0, -1)
    except (tifffile.TiffFileError, *_DECODE_ERRORS, KeyError, IndexError) as exc:
        warnings.warn(f"{path}: reading at 8 bits, tifffile failed ({exc})", stacklevel=4)
        return None
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[:2] != im.size[::-1] or arr.shape[2] < 3:
        return None
    arr = arr.astype(np.float32) / 65535.0
    if im.mode != "RGBA" or arr.shape[2] < 4:
        return arr[..., :3], None
    a = arr[..., 3]
    if extras[:1] == (1,):  # associated (premultiplied) alpha
        arr[..., :3] = np.divide(arr[..., :3], a[..., None], out=np.zeros_like(arr[..., :3]), where=a[..., None] > 0)
    return arr[..., :3].clip(0.0, 1.0), a


# ---------------------------------------------------------------------------------------- resizing
def resize(image: torch.Tensor, longest_side: int) -> torch.Tensor:
    """Scale ``(N, C, H, W)`` so its longer side is ``longest_side``, keeping the aspect ratio."""
    if longest_side < 1:
        raise InputError(f"the longest side must be at least 1 pixel, not {longest_side}")
    height, width = image.shape[-2:]
    scale = longest_side / max(height, width)
    return resize_to(image, (max(1, round(height * scale)), max(1, round(width * scale))))


def resize_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample ``(N, C, H, W)`` to ``size = (H, W)``: antialiased bicubic, clamped to [0, 1]."""
    if image.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) image, got shape {tuple(image.shape)}")
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise InputError(f"an image size must be at least 1x1 pixels, not {width}x{height}")
    if (height, width) == tuple(image.shape[-2:]):
        return image.clamp(0.0, 1.0)
    # Bicubic overshoots near edges, hence the clamp; antialias avoids moiré when shrinking.
    out = F.interpolate(image, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return out.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------- saving
def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of ``(N, C, H, W)`` blurred by a Gaussian of σ pixels: separable, its kernel cut at
    ±⌈3σ⌉ and summing to 1, edges reflected (a side of 1 pixel is left as it is along that side).
    Where a side is shorter than the kernel the kernel is cut to fit and renormalised, so a flat
    image stays flat. σ = 0 returns the image itself. The one blur of the package: the coarse
    scales' ``--carry-blur`` and :mod:`painterly.quality`'s measures both use it."""
    if sigma <= 0:
        return image
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(device=image.device, dtype=image.dtype)
    n, c, h, w = image.shape
    out = image.reshape(n * c, 1, h, w)
    for dim, length in ((3, w), (2, h)):
        pad = min(radius, length - 1)  # reflect needs pad < length; the kernel is cut to match
        if pad == 0:
            continue
        k = kernel[radius - pad : radius + pad + 1]
        padding = (pad, pad, 0, 0) if dim == 3 else (0, 0, pad, pad)
        shape = (1, 1, 1, -1) if dim == 3 else (1, 1, -1, 1)
        out = F.conv2d(F.pad(out, padding, mode="reflect"), (k / k.sum()).view(shape))
    return out.reshape(n, c, h, w)


def check_output_path(path: str | os.PathLike, *, bit_depth: int = 8) -> Path:
    """Validate an output path before a long run: extension, bit depth, folder exists and is writable."""
    out = Path(path).expanduser()
    ext = out.suffix.lower()
    if ext not in OUTPUT_EXTENSIONS:
        known = ", ".join(sorted(OUTPUT_EXTENSIONS))
        raise _fail(out, f"unknown image extension {ext or '(none)'!r}; use one of {known}")
    if bit_depth not in (8, 16):
        raise _fail(out, f"bit depth must be 8 or 16, not {bit_depth!r}")
    if bit_depth == 16 and ext not in _SIXTEEN_BIT_EXTENSIONS:
        raise _fail(out, f"16-bit output needs .png, .tif or .tiff, not {ext}")
    if out.is_dir():
        raise _fail(out, "is a folder; give a file name")
    problem = writable_folder(out.parent)
    if problem is not None:
        raise _fail(out, problem)
    return out


def save_image(
    image: torch.Tensor,
    path: str | os.PathLike,
    *,
    bit_depth: int = 8,
    alpha: torch.Tensor | None = None,
    metadata: dict | None = None,
) -> Path:
    """Write ``(1, 3, H, W)`` sRGB in [0, 1] atomically, with an sRGB ICC profile; returns the path.

    ``metadata`` (JSON-ready, with a ``"painterly"`` key) is stored in the file; :func:`read_metadata`
    reads it back (the CLI records the run's settings there, and ``--config`` replays them).

    A ``(1, 4, H, W)`` image carries its own alpha unless ``alpha`` (``(1, 1, H, W)``) is given.
    JPEG (quality 95, 4:4:4) has no alpha: it is composited on white, as load_image does. 16-bit
    goes to TIFF through tifffile and to PNG through the small writer below (Pillow cannot write
    16-bit RGB). NaN or infinity raises :class:`NonFiniteImageError` and nothing is written.
    """
    out = check_output_path(path, bit_depth=bit_depth)
    rgb, a = _to_hwc(image, alpha, out)
    ext = out.suffix.lower()
    if ext in _MAX_SIDE and max(rgb.shape[:2]) > _MAX_SIDE[ext]:
        raise _fail(out, f"{ext} allows at most {_MAX_SIDE[ext]} pixels a side; save as .png or .tif")
    if a is not None and ext in (".jpg", ".jpeg"):
        rgb, a = rgb * a[..., None] + (1.0 - a[..., None]), None
    arr = np.ascontiguousarray(rgb if a is None else np.concatenate([rgb, a[..., None]], axis=2))
    text = None if metadata is None else json.dumps(metadata, sort_keys=True)
    try:
        atomic_write(out, lambda f: _encode(f, arr, ext, bit_depth, text))
    except OSError as exc:
        raise _fail(out, f"could not be written: {exc}") from exc
    return out


# Where an output records the run that made it (``metadata``): a PNG iTXt chunk, the TIFF
# ImageDescription tag, or the EXIF ImageDescription of a JPEG or WebP. BMP has no such field.
METADATA_KEY = "painterly"
_EXIF_DESCRIPTION = 0x010E


def read_metadata(path: str | os.PathLike) -> dict | None:
    """The ``metadata`` that :func:`save_image` recorded in ``path``, or ``None`` if it holds none."""
    path = Path(path)
    _check_file(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                text = tif.pages[0].description
        else:
            with Image.open(path) as im:
                text = im.text.get(METADATA_KEY) if hasattr(im, "text") else None
                text = text or im.getexif().get(_EXIF_DESCRIPTION)
        record = json.loads(text) if text else None
    except (*_DECODE_ERRORS, json.JSONDecodeError, tifffile.TiffFileError, KeyError, IndexError):
        return None
    return record if isinstance(record, dict) and METADATA_KEY in record else None


def to_pil(image: torch.Tensor) -> Image.Image:
    """An 8-bit RGB Pillow image for previews (first three channels; NaN shows as black)."""
    t = image.detach()[0] if image.ndim == 4 else image.detach()
    t = torch.nan_to_num(t[:3].to("cpu", torch.float32), nan=0.0).clamp(0.0, 1.0)
    return Image.fromarray(np.ascontiguousarray((t.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)))


def _to_hwc(image: torch.Tensor, alpha: torch.Tensor | None, out: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Check shapes and finiteness; return (H, W, 3) and optional (H, W) float32 arrays in [0, 1]."""
    t = image.detach()
    t = t[0] if t.ndim == 4 and t.shape[0] == 1 else t
    if t.ndim != 3 or t.shape[0] not in (3, 4):
        raise ValueError(f"expected an image of shape (1, 3, H, W) or (1, 4, H, W), got {tuple(image.shape)}")
    if t.shape[0] == 4:
        t, alpha = t[:3], (t[3] if alpha is None else alpha)
    a = None
    if alpha is not None:
        a = alpha.detach().to("cpu", torch.float32)
        if a.numel() != t.shape[1] * t.shape[2] or tuple(a.shape[-2:]) != tuple(t.shape[1:]):
            raise ValueError(f"alpha of shape {tuple(alpha.shape)} does not match image {tuple(image.shape)}")
        a = a.reshape(t.shape[1:])
    t = t.to("cpu", torch.float32)
    for name, x in (("image", t), ("alpha", a)):
        if x is not None and not bool(torch.isfinite(x).all()):
            raise NonFiniteImageError(f"{out}: refusing to write: the {name} holds NaN or infinite values")
    rgb = t.clamp(0.0, 1.0).permute(1, 2, 0).numpy()
    return rgb, (None if a is None else a.clamp(0.0, 1.0).numpy())


def _encode(f: BinaryIO, arr: np.ndarray, ext: str, bit_depth: int, text: str | None = None) -> None:
    """Encode (H, W, 3|4) floats in [0, 1] into ``f`` in the format named by ``ext``, with ``text``
    as the painterly metadata where the format has a place for it."""
    icc = _srgb_icc()
    if bit_depth == 16:
        q = np.round(arr * 65535.0).astype(np.uint16)
        if ext == ".png":
            _write_png16(f, q, icc, text)
        else:
            extras = ("unassalpha",) if q.shape[2] == 4 else None
            tifffile.imwrite(f, q, photometric="rgb", extrasamples=extras, iccprofile=icc, compression="zlib",
                             description=text, metadata=None)  # fmt: skip
        return
    im = Image.fromarray(np.round(arr * 255.0).astype(np.uint8))
    fmt = _PIL_FORMAT.get(ext, "TIFF" if ext in (".tif", ".tiff") else "BMP")
    options = {
        "PNG": {"icc_profile": icc},
        "JPEG": {"quality": 95, "subsampling": 0, "icc_profile": icc},  # subsampling 0 = 4:4:4
        "WEBP": {"lossless": True, "exact": True, "icc_profile": icc},  # lossy WebP is always 4:2:0
        "TIFF": {"compression": "tiff_deflate", "icc_profile": icc},
        "BMP": {},  # BMP has no ICC support in Pillow; BMP is sRGB by convention
    }[fmt]
    if text is not None and fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(METADATA_KEY, text, zip=True)
        options["pnginfo"] = info
    elif text is not None and fmt in ("JPEG", "WEBP"):
        exif = Image.Exif()
        exif[_EXIF_DESCRIPTION] = text
        options["exif"] = exif.tobytes()
    elif text is not None and fmt == "TIFF":
        options["description"] = text
    im.save(f, format=fmt, **options)


def _write_png16(f: BinaryIO, q: np.ndarray, icc: bytes, text: str | None = None) -> None:
    """A minimal 16-bit RGB(A) PNG writer (PNG spec §11): IHDR, iCCP, iTXt, IDAT with the Sub filter, IEND."""

    def chunk(tag: bytes, data: bytes) -> None:
        f.write(struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data)))

    height, width, channels = q.shape
    raw = np.ascontiguousarray(q, dtype=">u2").view(np.uint8).reshape(height, width * channels * 2)
    bpp = channels * 2
    rows = raw.copy()
    rows[:, bpp:] -= raw[:, :-bpp]  # Sub filter: each byte minus the one a pixel left, mod 256
    filtered = np.concatenate([np.ones((height, 1), np.uint8), rows], axis=1)  # filter type 1 per row
    f.write(b"\x89PNG\r\n\x1a\n")
    chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6 if channels == 4 else 2, 0, 0, 0))
    chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc))
    if text is not None:  # keyword, NUL, compressed, method 0, no language, no translated keyword
        chunk(b"iTXt", METADATA_KEY.encode() + b"\x00\x01\x00\x00\x00" + zlib.compress(text.encode()))
    data = zlib.compress(filtered.tobytes(), 6)
    for start in range(0, len(data), 1 << 24):  # chunks of 16 MiB, well under PNG's 2**31 - 1
        chunk(b"IDAT", data[start : start + (1 << 24)])
    chunk(b"IEND", b"")


# ------------------------------------------------------------------------------ run inputs
ImageLike = str | os.PathLike | torch.Tensor
EXAMPLES = Path(__file__).parent / "examples"
EXAMPLE_PREFIX = "example:"


def examples() -> dict[str, Path]:
    """The images shipped with painterly, by name (the file's stem): ``example:NAME`` refers to one."""
    return {p.stem: p for p in sorted(EXAMPLES.iterdir()) if p.suffix.lower() in (".jpg", ".png")}


def example_path(value: str | os.PathLike) -> str | os.PathLike:
    """``example:NAME`` (NAME a stem from :func:`examples`) as the path of that file; anything else as is."""
    if isinstance(value, str) and value.startswith(EXAMPLE_PREFIX):
        name = value.removeprefix(EXAMPLE_PREFIX)
        shipped = examples()
        if name not in shipped:
            raise InputError(f"no shipped example {name!r}; examples: {', '.join(shipped)}")
        return shipped[name]
    return value


def as_image(value: ImageLike, what: str, max_pixels: int | None = None) -> torch.Tensor:
    """A run's input as (1, 3, H, W) floats in [0, 1]: a file, ``example:NAME`` or a tensor."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 3:
            value = value.unsqueeze(0)
        if value.dim() != 4 or value.shape[1] != 3:
            raise InputError(f"{what} tensor must have shape (1, 3, H, W), got {tuple(value.shape)}")
        return value.float().clamp(0, 1)
    return load_image(example_path(value), max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)


def as_mask(value: ImageLike | None, max_pixels: int | None = None) -> torch.Tensor | None:
    """A guide mask as (1, 1, H, W) in [0, 1] (grey level: white = applies); ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.dim() >= 3 and value.shape[-3] == 1:
        mask = value if value.dim() == 4 else value.unsqueeze(0)
        return mask.float()
    return as_image(value, "mask", max_pixels).mean(dim=1, keepdim=True)
