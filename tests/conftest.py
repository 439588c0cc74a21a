"""Shared test set-up: reproducible BLAS, and a tiny content/style pair on disk."""

import os

# Before the first MKL call (pytest loads this file before any test module runs torch): MKL's
# default kernels differ in the last bits between processes and even between calls, so "same seed,
# same pixels" and "a resumed run equals an uninterrupted one" would hold only by luck. The CLI
# sets the same (painterly.cli.main); a subprocess inherits it.
os.environ.setdefault("MKL_CBWR", "AUTO")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def smooth_noise(height: int, width: int, seed: int) -> np.ndarray:
    """An (H, W, 3) uint8 picture with photo-like smooth structure (noise blurred by a box filter)."""
    rng = np.random.default_rng(seed)
    big = rng.random((height + 4, width + 4, 3))
    box = sum(big[i : i + height, j : j + width] for i in range(5) for j in range(5)) / 25
    return np.round((box - box.min()) / (box.max() - box.min()) * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> tuple[str, str]:
    """(content.png 48x40, style.png 56x56) paths."""
    folder = tmp_path_factory.mktemp("tiny")
    Image.fromarray(smooth_noise(40, 48, 0)).save(folder / "content.png")
    Image.fromarray(smooth_noise(56, 56, 1)).save(folder / "style.png")
    return str(folder / "content.png"), str(folder / "style.png")


_base_threads: list[int] = []  # torch's thread count when the first test began


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """The CLI sets torch's thread count for its process (painterly.threads); a test's CLI run must not
    leave another test a different count (float sums, and so pixels, can depend on it). Every test
    starts on the first test's count, set again here because a module-scoped fixture that runs the
    CLI (set up before this one) would otherwise hand the rest of its module the count it chose
    from the machine's load, while an earlier fixture's reference pixels were made on another."""
    import torch

    if not _base_threads:
        _base_threads.append(torch.get_num_threads())
    torch.set_num_threads(_base_threads[0])
    yield
    torch.set_num_threads(_base_threads[0])
