"""Resolve the ``--device`` choice once, at the edge; inner code takes a ``torch.device``."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterator

import torch

from .errors import InputError, OutOfMemory


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but this torch has no usable CUDA; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r} asked for, but MPS is not available here; use --device cpu")
    return device


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Keep memory freed during a run for the run's next allocation; hand it back to the OS after.

    An evaluation allocates and frees the same large activations every time. glibc serves blocks
    over 32 MiB with fresh ``mmap`` pages and returns them on free, and trims the heap's top, so
    every evaluation paid a page fault per 4 KiB it touched: zero-filling the 25 MiB gradient of
    one 512 px conv1 activation took 15 ms. Raising both thresholds cut a 512 px vgg16-hed
    evaluation from 0.27 to 0.21 s. Peak memory is unchanged at 512 px; at 2048 px, where freed
    blocks are reused less snugly, it rose from 4.1 to 5.9 GiB (BENCHMARKS.md). Leaving, the
    freed memory is returned (``malloc_trim``), so a long-lived process (the studio) does not
    keep a big run's peak. Elsewhere than Linux/glibc this does nothing.

    The thresholds are process-wide and glibc cannot report their previous values, so only code
    that owns the process uses this: the ``painterly`` command (and its sub-commands) around each
    run. :func:`painterly.stylize` never calls it; a program of your own may, around its runs.
    """
    global _reusing
    libc = _glibc()
    if libc is not None:
        _set_thresholds(libc, _REUSE_MMAP_THRESHOLD, _REUSE_TRIM_THRESHOLD)
    _reusing += 1
    try:
        yield
    finally:
        _reusing -= 1
        if libc is not None:
            libc.malloc_trim(0)


def _set_thresholds(libc, mmap: int, trim: int) -> None:
    """glibc's mmap threshold (blocks from this size up are mapped for themselves and unmapped on
    free) and trim threshold (the heap's top is returned from this much free)."""
    libc.mallopt(_M_MMAP_THRESHOLD, mmap)
    libc.mallopt(_M_TRIM_THRESHOLD, trim)


# reuse_freed_memory's thresholds, and how many of them are open (a tiled scale lowers them while
# it runs and puts them back: large_blocks_returned).
_REUSE_MMAP_THRESHOLD = 2**30
_REUSE_TRIM_THRESHOLD = 2**31 - 1
_reusing = 0

# Blocks from this size up are mapped for themselves, and the heap's top is trimmed from this much
# free, while a tiled scale runs (BENCHMARKS.md, "Print size, fourth session").
TILED_MMAP_THRESHOLD = 2**20
# How many large_blocks_returned are open (the outermost one sets and restores the thresholds).
_returning = 0


@contextlib.contextmanager
def large_blocks_returned(device: torch.device) -> Iterator[None]:
    """Inside :func:`reuse_freed_memory`, give blocks of :data:`TILED_MMAP_THRESHOLD` and more back
    to the system when they are freed (glibc maps each for itself), for as long as this is open;
    nested, the outermost one counts. A tiled scale (painterly.optimize.run_scales) runs inside one,
    its optimiser step included, and so does each tiled evaluation.

    A tiled evaluation allocates and frees each tile's activations in an order that leaves the
    heap's freed blocks too small for the next ones, and between whole-picture buffers the heap
    kept too: with 32 MiB (glibc's own largest dynamic threshold) during the tiled evaluation only,
    a 2048x1536 tiled Adam evaluation held 1.73 GiB live (mallinfo2) at an RSS of 2.51 GiB, the
    heap's free blocks (0.6-0.7 GiB) resident; with 1 MiB over the whole scale, 1.73 at 1.94 GiB,
    the heap at 0.12 GiB and the rest of the excess the libraries' own pages (BENCHMARKS.md, "Print
    size, fourth session"). Outside reuse_freed_memory glibc's thresholds are left alone (they are
    process-wide; see there); on GPUs, and elsewhere than glibc, nothing to do."""
    global _returning
    libc = _glibc() if device.type == "cpu" and _reusing and not _returning else None
    if libc is not None:
        _set_thresholds(libc, TILED_MMAP_THRESHOLD, TILED_MMAP_THRESHOLD)
    _returning += 1
    try:
        yield
    finally:
        _returning -= 1
        if libc is not None and _reusing:
            _set_thresholds(libc, _REUSE_MMAP_THRESHOLD, _REUSE_TRIM_THRESHOLD)


def release_freed(device: torch.device) -> None:
    """Inside :func:`reuse_freed_memory`, hand the memory this process freed back to the system
    (glibc's ``malloc_trim``); outside it, nothing (glibc keeps nothing large there, and library
    calls leave malloc alone). The painterly command's runs call it before reading the memory free
    (painterly.tiling.available_bytes) and after each tile of a tiled evaluation
    (painterly.tiling.release_tile). The command keeps freed memory for reuse, which suits an
    evaluation that allocates the same blocks every time; tiles of a few sizes, allocated between
    long-lived whole-picture buffers, instead left the heap ever more fragmented: a 4096x3072 run's
    RSS ratcheted to 7 GiB of mostly free memory (BENCHMARKS.md, "Print size"). The next tile pays
    the page faults again (a few percent of its time). Elsewhere than Linux/glibc, and on GPUs,
    nothing to do."""
    libc = _glibc() if device.type == "cpu" and _reusing else None
    if libc is not None:
        libc.malloc_trim(0)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]  # fmt: skip


def kept_free_bytes() -> int:
    """Bytes this process has freed that glibc keeps resident for reuse (a diagnostic: the tests
    check with it that :func:`painterly.tiling.available_bytes` hands them back): inside
    :func:`reuse_freed_memory` a large scale's activations stay in the heap after it ends, which the
    next scale reuses but the system's MemAvailable counts as used. glibc's free bytes
    (``mallinfo2().fordblks``), at most the resident memory not in use (``malloc_trim`` hands free
    pages back while glibc still counts them free). 0 elsewhere than glibc 2.33+."""
    libc = _glibc()
    mallinfo2 = getattr(libc, "mallinfo2", None) if libc is not None else None
    if mallinfo2 is None:
        return 0
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    try:
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
    return int(max(0, min(info.fordblks, resident - info.uordblks - info.hblkhd)))


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (musl and others lack them)
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def memory_guard(at: Callable[[], tuple[int, int]]) -> Iterator[None]:
    """Turn running out of memory into :class:`OutOfMemory` naming the (height, width) ``at()`` that
    was being worked on, with what to try instead.

    CUDA raises ``torch.OutOfMemoryError``; the CPU allocator a plain ``RuntimeError`` ("can't
    allocate memory"); MPS a ``RuntimeError`` ("out of memory"); numpy and Python ``MemoryError``.
    """
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        text = str(err)
        oom = isinstance(err, MemoryError | torch.cuda.OutOfMemoryError)
        if not (oom or "out of memory" in text or "can't allocate memory" in text):
            raise
        height, width = at()
        smaller = max(16, round(max(height, width) / 2**0.5))  # half the pixels
        raise OutOfMemory(
            f"out of memory at {width}x{height} px ({type(err).__name__}); try a smaller --size (e.g. {smaller}), "
            "a smaller --history-size (e.g. 5) or --optimizer adam, which keep less state"
        ) from err
