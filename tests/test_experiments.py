"""`painterly experiment init|beta|plot` end to end on tiny images with seeded random weights."""

import json

import numpy as np
import pytest
from PIL import Image

from painterly import cli
from painterly.experiments import (
    TERMS,
    beta_figures,
    default_snapshots,
    evaluations,
    experiment_settings,
    init_figures,
)

QUICK = ["--model", "vgg16", "--weights", "random", "--size", "32", "--iterations", "4", "--quiet"]
BETAS = (0.01, 100.0, 10000.0)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A smooth content picture (gradient and a disc) and a striped style, 48x40 and 40x48."""
    folder = tmp_path_factory.mktemp("pair")
    y, x = np.mgrid[0:40, 0:48] / 48.0
    disc = ((x - 0.5) ** 2 + (y - 0.4) ** 2 < 0.05)[..., None]
    content = np.where(disc, [0.9, 0.2, 0.1], np.stack([x, y, 0.5 + 0 * x], axis=-1))
    stripes = (np.sin(np.mgrid[0:48, 0:40][1] * 1.3) > 0)[..., None]
    style = np.where(stripes, [0.1, 0.1, 0.6], [0.95, 0.85, 0.3])
    paths = []
    for name, arr in (("content.png", content), ("style.png", style)):
        Image.fromarray((arr * 255).astype(np.uint8)).save(folder / name)
        paths.append(str(folder / name))
    return paths


@pytest.fixture(scope="module")
def init_dir(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("init")
    assert cli.main(["experiment", "init", *pair, "-o", str(out), "--snapshots", "4,1,2", *QUICK]) == 0
    return out


@pytest.fixture(scope="module")
def beta_dir(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("beta")
    betas = ",".join(str(b) for b in reversed(BETAS))  # given unsorted: the record is sorted
    assert cli.main(["experiment", "beta", *pair, "-o", str(out), "--betas", betas, *QUICK]) == 0
    return out


def _landscape_jpeg(path):
    with Image.open(path) as im:
        assert im.format == "JPEG"
        assert im.width > im.height > 100


def test_init_record_holds_both_starts_with_snapshots(init_dir):
    record = json.loads((init_dir / "init.json").read_text())
    assert record["settings"]["scales"] == [32]  # the seed's single scale unless --scales is given
    assert record["snapshots"] == [1, 2, 4]
    assert [r["settings"]["init"] for r in record["runs"]] == ["noise", "content"]
    for run in record["runs"]:
        assert run["evaluations"] == 4
        assert [h["iteration"] for h in run["history"]] == [1, 2, 3, 4]
        assert set(run["final"]) == set(TERMS)
        assert run["final"] == {k: run["history"][-1][k] for k in TERMS}
        assert sorted(run["snapshots"], key=int) == ["1", "2", "4"]
        assert all((init_dir / name).is_file() for name in run["snapshots"].values())
        assert run["seconds"] > 0
        assert run["errors"]["content"] >= 0 and run["errors"]["style"] > 0
    noise, content = record["runs"]
    # From the content image the content term starts at exactly zero; from noise it does not.
    assert content["history"][0]["content"] == 0.0 < noise["history"][0]["content"]
    assert noise["history"][-1]["total"] < noise["history"][0]["total"]
    # The first snapshot is the starting image: the content picture itself, and not noise.
    start = np.asarray(Image.open(init_dir / content["snapshots"]["1"]), dtype=float)
    given = np.asarray(Image.open(init_dir / "input-content.png"), dtype=float)
    assert np.abs(start - given).max() <= 1
    assert np.abs(np.asarray(Image.open(init_dir / noise["snapshots"]["1"]), dtype=float) - given).mean() > 20


def test_init_figures_show_every_snapshot_and_term(init_dir):
    record = json.loads((init_dir / "init.json").read_text())
    for name in ("grid", "losses"):
        _landscape_jpeg(init_dir / f"init-{name}.jpg")
    figs = init_figures(record, init_dir)
    pictures = [ax for ax in figs["grid"].get_axes() if ax.images]
    assert len(pictures) == 2 + 2 * 3  # content and style, then 2 starts × 3 snapshots
    captions = [ax.get_xlabel() for ax in pictures]
    assert "init=noise, evaluation 2" in "\n".join(captions)
    curves = figs["losses"].get_axes()
    assert [ax.get_yscale() for ax in curves] == ["log"] * len(TERMS)
    for ax in curves:
        assert [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")] == [
            "init=noise",
            "init=content",
        ]


def test_beta_record_and_tradeoff(beta_dir):
    record = json.loads((beta_dir / "beta.json").read_text())
    assert record["betas"] == list(BETAS)
    runs = record["runs"]
    assert [r["settings"]["style_weight"] for r in runs] == list(BETAS)
    assert [r["weights"]["beta"] for r in runs] == list(BETAS)  # β is applied as given
    assert all(r["evaluations"] == 4 == len(r["history"]) for r in runs)
    ref = record["reference"]
    assert ref["content"] > 0 and ref["style"] > 0
    for run in runs:
        assert run["errors"] == {k: pytest.approx(run["final"][k] / ref[k]) for k in ("content", "style")}
    # A larger β pulls the image further from the content and closer to the style.
    assert runs[0]["errors"]["content"] < runs[-1]["errors"]["content"]
    assert runs[0]["errors"]["style"] > runs[-1]["errors"]["style"]


def test_beta_figures_show_every_beta(beta_dir):
    record = json.loads((beta_dir / "beta.json").read_text())
    for name in ("grid", "losses", "tradeoff"):
        _landscape_jpeg(beta_dir / f"beta-{name}.jpg")
    figs = beta_figures(record, beta_dir)
    pictures = [ax for ax in figs["grid"].get_axes() if ax.images]
    assert len(pictures) == 2 + len(BETAS)
    assert "β = 100 (default)" in "\n".join(ax.get_xlabel() for ax in pictures)
    for ax in figs["losses"].get_axes():
        assert len(ax.get_lines()) == len(BETAS)
    (tradeoff,) = figs["tradeoff"].get_axes()
    errors = [ln for ln in tradeoff.get_lines() if not ln.get_label().startswith("_")]
    assert [list(ln.get_xdata()) for ln in errors] == [list(BETAS)] * 2
    assert list(errors[0].get_ydata()) == [r["errors"]["content"] for r in record["runs"]]


def test_plot_redraws_from_the_record(init_dir, capsys):
    figure = init_dir / "init-grid.jpg"
    figure.unlink()
    assert cli.main(["experiment", "plot", str(init_dir)]) == 0
    _landscape_jpeg(figure)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["init", "--snapshots", "1,7"], "--snapshots 7 is outside 1..4"),
        (["init", "--init", "noise"], "--init is what the init experiment varies"),
        (["beta", "--style-weight", "5"], "give --betas instead"),
        (["beta", "--betas", "1,-2"], "--style-weight must be a finite number >= 0"),
    ],
)
def test_bad_settings_fail_before_any_run(pair, tmp_path, capsys, argv, expected):
    out = tmp_path / "never"
    assert cli.main(["experiment", argv[0], *pair, "-o", str(out), *QUICK, *argv[1:]]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [["init", "x", "--bogus"], ["init"], ["bogus"], [], ["beta", "a", "b", "-o", "d", "--size", "big"]],
    ids=["unknown-flag", "missing-args", "unknown-experiment", "nothing", "bad-number"],
)
def test_usage_errors_are_one_line_like_the_main_command(capsys, argv):
    assert cli.main(["experiment", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("painterly: error: ")


def test_plot_of_an_empty_folder_is_one_line(tmp_path, capsys):
    assert cli.main(["experiment", "plot", str(tmp_path)]) == 2
    assert "holds neither init.json nor beta.json" in capsys.readouterr().err


def test_experiment_defaults():
    assert default_snapshots(150) == (1, 10, 30, 75, 150)
    assert default_snapshots(1) == (1,)
    assert experiment_settings().scale_sizes() == [256]
    assert experiment_settings(size=128).scale_sizes() == [128]
    multi = experiment_settings(size=128, scales=(64, 128), iterations=5, coarse_iterations=3)
    assert multi.scale_sizes() == [64, 128]
    assert evaluations(multi) == 8
