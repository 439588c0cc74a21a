"""A tiled scale runs with glibc's large freed blocks handed back (device.large_blocks_returned), its
optimiser step included, and only inside reuse_freed_memory (the painterly command's opt-in)."""

import pytest
import torch

import painterly
from painterly import device

TINY = dict(weights="random", model="vgg16", size=48, scales=(48,), iterations=2, coarse_iterations=0,
            content_layer="relu2_2", style_layers=("relu1_2", "relu2_2"), precision="float32")  # fmt: skip


class FakeLibc:
    """Keeps glibc's two thresholds as mallopt last set them, and counts the trims."""

    def __init__(self) -> None:
        self.values: dict[int, int] = {}
        self.sets: list[tuple[int, int]] = []
        self.trims = 0

    def mallopt(self, param: int, value: int) -> int:
        self.values[param] = value
        self.sets.append((param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.trims += 1
        return 1

    @property
    def mmap(self) -> int | None:
        return self.values.get(device._M_MMAP_THRESHOLD)

    @property
    def trim(self) -> int | None:
        return self.values.get(device._M_TRIM_THRESHOLD)


@pytest.fixture
def libc(monkeypatch) -> FakeLibc:
    fake = FakeLibc()
    monkeypatch.setattr(device, "_glibc", lambda: fake)
    return fake


CPU = torch.device("cpu")


def test_large_blocks_returned_nests_and_restores_reuses_thresholds_even_on_error(libc):
    low = device.TILED_MMAP_THRESHOLD
    with device.reuse_freed_memory():
        assert (libc.mmap, libc.trim) == (device._REUSE_MMAP_THRESHOLD, device._REUSE_TRIM_THRESHOLD)
        with pytest.raises(KeyboardInterrupt), device.large_blocks_returned(CPU):
            assert (libc.mmap, libc.trim) == (low, low)
            before = len(libc.sets)
            with device.large_blocks_returned(CPU):  # a tiled evaluation inside a tiled scale
                assert len(libc.sets) == before  # the outermost one set them; nothing more
            assert (libc.mmap, libc.trim) == (low, low)  # the inner one's exit keeps them
            raise KeyboardInterrupt
        assert (libc.mmap, libc.trim) == (device._REUSE_MMAP_THRESHOLD, device._REUSE_TRIM_THRESHOLD)
        assert device._returning == 0


def test_large_blocks_returned_leaves_glibc_alone_outside_reuse_and_off_the_cpu(libc):
    with device.large_blocks_returned(CPU):
        pass
    with device.reuse_freed_memory():
        count = len(libc.sets)
        with device.large_blocks_returned(torch.device("meta")):
            pass
        assert len(libc.sets) == count
    assert libc.sets == [(device._M_MMAP_THRESHOLD, device._REUSE_MMAP_THRESHOLD),
                         (device._M_TRIM_THRESHOLD, device._REUSE_TRIM_THRESHOLD)]  # fmt: skip


@pytest.mark.parametrize("tile", [32, 0])
def test_a_tiled_scale_keeps_the_low_thresholds_through_its_optimiser_steps(tile, libc, tiny_pair):
    """The callback runs between optimiser steps, outside any evaluation: a tiled scale's thresholds
    are the low ones there too; an untiled scale keeps reuse's; either way reuse's come back after."""
    seen = []
    content, style = tiny_pair
    with device.reuse_freed_memory():
        result = painterly.stylize(content, style, tile=tile, optimizer="adam", callback=lambda step: seen.append(
            (libc.mmap, libc.trim)), **TINY)  # fmt: skip
        after = (libc.mmap, libc.trim)
    assert result.evaluations == 2 and len(seen) == 2
    low, reuse = device.TILED_MMAP_THRESHOLD, device._REUSE_MMAP_THRESHOLD
    assert seen == [(low, low)] * 2 if tile else [(reuse, device._REUSE_TRIM_THRESHOLD)] * 2
    assert after == (reuse, device._REUSE_TRIM_THRESHOLD)


def test_extra_terms_keep_the_objectives_tiling_visible(libc, tiny_pair):
    content, style = tiny_pair
    seen = []
    with device.reuse_freed_memory():
        painterly.stylize(content, style, tile=32, extra_terms=lambda x: {"zero": x.sum() * 0},
                          callback=lambda step: seen.append(libc.mmap), **TINY)  # fmt: skip
    assert seen and set(seen) == {device.TILED_MMAP_THRESHOLD}


def test_the_set_up_runs_with_large_blocks_handed_back(libc, tiny_pair, monkeypatch):
    """Reading, resizing and measuring at the output's size happen once: their whole-picture
    temporaries are mapped for themselves (no holes left in the heap for a tiled scale)."""
    from painterly import api

    seen = []
    build = api.build_problem
    monkeypatch.setattr(api, "build_problem", lambda *a, **k: seen.append(libc.mmap) or build(*a, **k))
    content, style = tiny_pair
    with device.reuse_freed_memory():
        painterly.stylize(content, style, tile=0, **TINY)
        assert libc.mmap == device._REUSE_MMAP_THRESHOLD  # put back for the evaluations
    assert seen == [device.TILED_MMAP_THRESHOLD]
