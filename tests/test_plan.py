"""The scale plan: one schedule for stylize, the experiments, the studio and the progress line."""

from __future__ import annotations

import pytest
import torch

import painterly
from painterly.config import Settings
from painterly.errors import InputError
from painterly.plan import ScalePlan, evaluations, plan_scales, seconds_left


def test_the_default_ladder_and_its_evaluations():
    s = Settings(size=512).resolved()
    plans = plan_scales(s, (384, 512))
    assert [p.size for p in plans] == [(192, 256), (272, 362), (384, 512)]
    assert [p.evaluations for p in plans] == [50, 50, 150]
    assert evaluations(plans) == 250


def test_a_thin_picture_starts_at_the_first_scale_it_fits_and_a_too_small_one_is_refused():
    s = Settings(size=512, model="vgg16").resolved()  # the seed's taps reach pool4: 16 px at least
    plans = plan_scales(s, (20, 512))  # 128 px wide is 5 px tall: skipped until the side reaches 16
    assert [p.size for p in plans] == [(20, 512)]
    with pytest.raises(InputError, match="at 512 px the content is 512x10, smaller than the 16 px"):
        plan_scales(s, (10, 512))


def test_seconds_left_weights_later_scales_by_their_pixels():
    plans = [ScalePlan((64, 64), 150), ScalePlan((128, 128), 60)]
    assert seconds_left(plans, 0, 100, 1.0) == 50 + 60 * 4  # 50 more here, 60 at four times the cost
    assert seconds_left(plans, 1, 30, 2.0) == 60
    assert seconds_left(plans, 5, 0, 1.0) == 0.0


def test_each_step_carries_the_work_left():
    steps = []
    gen = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 32, 32, generator=gen), torch.rand(1, 3, 32, 32, generator=gen)
    tiny = dict(weights="random", model="vgg16", content_layer="relu1_2", style_layers=("relu1_2",))
    painterly.stylize(content, style, size=32, scales=(16, 32), iterations=3, coarse_iterations=2,
                      callback=steps.append, **tiny)  # fmt: skip
    assert [s.work_left for s in steps] == [1 + 3 * 4, 0 + 3 * 4, 2, 1, 0]
