"""L-BFGS's fixed steps can blow a finite loss up; the loop steps back instead of painting on from there."""

from __future__ import annotations

import math

import pytest

from painterly import stylize
from painterly.config import Settings
from painterly.objective import Objective
from painterly.optimize import BLOWUP_RATIO, MAX_NONFINITE_RETRIES

FAST = dict(weights="random", model="vgg16", size=40, scales=(40,), iterations=8, style_layers=("relu1_1", "relu2_1"),
            content_layer="relu2_1", device="cpu", precision="float32")  # fmt: skip


def _poison(monkeypatch, calls: set[int] | None, factor: float = 1000.0) -> list[float]:
    """Multiply the total of the evaluations numbered in ``calls`` (1-based; None: from the third on)."""
    real, seen, count = Objective.__call__, [], [0]

    def poisoned(self, image):
        terms = real(self, image)
        count[0] += 1
        if (count[0] >= 3) if calls is None else (count[0] in calls):
            terms = {**terms, "total": terms["total"] * factor}
        seen.append(float(terms["total"].detach()))
        return terms

    monkeypatch.setattr(Objective, "__call__", poisoned)
    return seen


def _totals(result) -> list[float]:
    return [h["total"] for h in result.history]


def test_a_blown_up_lbfgs_evaluation_is_stepped_back_from_and_never_recorded(tiny_pair, monkeypatch):
    content, style = tiny_pair
    seen = _poison(monkeypatch, {4})
    out = stylize(content, style, Settings(**FAST))
    assert max(seen) > 100 * min(seen)  # the poisoned evaluation really ran
    totals = _totals(out)
    assert len(totals) == 8 and not out.interrupted  # every planned evaluation was still made
    lowest = math.inf
    for t in totals:  # none recorded above the guard's ratio of the lowest before it
        assert t <= BLOWUP_RATIO * lowest
        lowest = min(lowest, t)
    assert totals[-1] < totals[0]  # and the loss still fell after the step back


def test_adam_is_left_alone(tiny_pair, monkeypatch):
    content, style = tiny_pair
    _poison(monkeypatch, {4})
    totals = _totals(stylize(content, style, Settings(**FAST, optimizer="adam")))
    assert max(totals) > 100 * min(totals)  # Adam's rises are not mistaken for a blow-up


def test_a_loss_that_keeps_blowing_up_stops_with_the_last_good_image(tiny_pair, monkeypatch):
    content, style = tiny_pair
    _poison(monkeypatch, None)
    out = stylize(content, style, Settings(**FAST))
    assert out.interrupted and f"the loss kept blowing up after {MAX_NONFINITE_RETRIES} retries" in out.message
    assert len(out.history) == 2 and out.image.shape[-1] == 40


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_an_unpoisoned_run_is_unchanged_by_the_guard(tiny_pair, optimizer):
    content, style = tiny_pair
    totals = _totals(stylize(content, style, Settings(**FAST, optimizer=optimizer)))
    assert all(t <= BLOWUP_RATIO * min(totals[: i + 1]) for i, t in enumerate(totals))
