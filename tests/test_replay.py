"""Every output records the run that made it, and ``--config`` makes it again."""

from __future__ import annotations

import json

import pytest
import torch

from painterly.cli import main
from painterly.image import load_image, read_metadata, save_image

FAST = ["--weights", "random", "--model", "vgg16", "--size", "32", "--iterations", "3", "--coarse-iterations", "2",
        "--style-layers", "relu1_1,relu2_1", "--content-layer", "relu2_1", "--quiet"]  # fmt: skip
RECORD = {"painterly": "0", "settings": {"size": 32, "style_layers": ["relu1_1"]}, "content": "c.png", "styles": ["s"]}


@pytest.mark.parametrize(("name", "bit_depth"), [("a.png", 8), ("a.png", 16), ("a.jpg", 8), ("a.webp", 8),
                                                 ("a.tif", 8), ("a.tif", 16)])  # fmt: skip
def test_metadata_round_trips_in_every_format_that_has_a_place_for_it(tmp_path, name, bit_depth):
    image = torch.rand(1, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    path = save_image(image, tmp_path / name, bit_depth=bit_depth, metadata=RECORD)
    assert read_metadata(path) == RECORD
    assert load_image(path).shape == (1, 3, 8, 10)  # still an ordinary picture


def test_a_picture_without_a_record_reads_as_none(tmp_path):
    path = save_image(torch.zeros(1, 3, 4, 4), tmp_path / "plain.png")
    assert read_metadata(path) is None


def test_a_run_replayed_from_its_own_picture_gives_the_same_pixels(tmp_path, tiny_pair):
    content, style = tiny_pair
    first = tmp_path / "first.png"
    assert main([content, style, "-o", str(first), *FAST, "--style-weight", "30", "--seed", "3"]) == 0
    record = read_metadata(first)
    assert record["content"] == content and record["styles"] == [style]
    assert record["settings"]["style_weight"] == 30 and record["settings"]["seed"] == 3
    again = tmp_path / "again.png"
    assert main(["--config", str(first), "-o", str(again), "--quiet"]) == 0
    assert torch.equal(load_image(again), load_image(first))
    # A flag given with --config wins over the record, and the JSON form works too.
    config = tmp_path / "run.json"
    config.write_text(json.dumps(record))
    other = tmp_path / "other.png"
    assert main(["--config", str(config), "-o", str(other), "--quiet", "--style-weight", "0"]) == 0
    assert read_metadata(other)["settings"]["style_weight"] == 0
    assert not torch.equal(load_image(other), load_image(first))


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (None, "no such file"),
        (lambda p: p.write_text("{not json"), "is not readable JSON"),
        (lambda p: p.write_text("[1, 2]"), "must hold a JSON object"),
        (lambda p: p.write_text('{"size": "big"}'), "setting size must be an integer, got 'big'"),
        (lambda p: p.write_text('{"bogus": 1}'), "unknown setting"),
    ],
    ids=["missing", "not-json", "not-object", "bad-value", "unknown-key"],
)
def test_a_bad_config_is_one_line_and_writes_nothing(tmp_path, tiny_pair, capsys, write, message):
    config = tmp_path / "run.json"
    if write is not None:
        write(config)
    content, style = tiny_pair
    assert main([content, style, "-o", str(tmp_path / "out.png"), "--config", str(config), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "out.png").exists()


def test_a_picture_not_made_by_painterly_is_refused_as_config(tmp_path, tiny_pair, capsys):
    plain = save_image(torch.zeros(1, 3, 8, 8), tmp_path / "plain.png")
    assert main(["--config", str(plain), "-o", str(tmp_path / "out.png")]) == 2
    assert "holds no painterly record" in capsys.readouterr().err
