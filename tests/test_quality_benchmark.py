"""benchmarks/quality.py's cache key: the same key exactly when the same painting would come out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from painterly.config import Settings


@pytest.fixture
def quality(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # benchmarks/ at the repo root
    # The module sets its thread count on import: keep this process's.
    monkeypatch.setenv("PAINTERLY_THREADS", str(torch.get_num_threads()))
    from benchmarks import quality

    return quality


def test_auto_precision_is_keyed_by_what_it_picks(quality, monkeypatch) -> None:
    s = Settings(model="vgg16-hed", size=512, device="cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    plain = quality.settings_key(s)
    assert plain["precision"] == "auto"  # float32: the key paintings were cached under before
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    amx = quality.settings_key(s)
    assert amx["precision"] == "auto:bfloat16"
    assert {k: v for k, v in amx.items() if k != "precision"} == {k: v for k, v in plain.items() if k != "precision"}
    # An explicit precision is its own key, on any machine.
    assert quality.settings_key(Settings(model="vgg16-hed", size=512, precision="float32"))["precision"] == "float32"


def test_the_taper_is_keyed_only_where_it_changes_the_schedule(quality) -> None:
    small = (384, 512)  # every scale of a 512 px run is under the taper's 1 MP
    a = quality.settings_key(Settings(size=512, taper_exponent=1.0), small)
    b = quality.settings_key(Settings(size=512, taper_exponent=0.5), small)
    assert a == b and "taper_exponent" not in a and "taper" not in a
    assert not quality.taper_acts(Settings(size=512), small)

    large = (1536, 2048)
    assert quality.taper_acts(Settings(size=2048), large)
    c = quality.settings_key(Settings(size=2048, taper_exponent=1.0), large)
    d = quality.settings_key(Settings(size=2048, taper_exponent=0.5), large)
    assert c["taper_exponent"] == 1.0 and d["taper_exponent"] == 0.5
    # Without a shape the key keeps every setting, as it did before.
    assert "taper_exponent" in quality.settings_key(Settings(size=512))
