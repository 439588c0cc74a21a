"""Every setting of a run, with its default, once.

The CLI, the Python API and the studio all build a :class:`Settings`; none of them repeats a
default. Per-model defaults (taps, layer weights, α β γ) live in :data:`MODEL_DEFAULTS` because
the networks' activations differ in scale.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError


@dataclass(frozen=True)
class ModelDefaults:
    arch: str
    content_layer: str
    style_layers: tuple[str, ...]
    style_layer_weights: tuple[float, ...]
    content_weight: float
    style_weight: float
    tv_weight: float


# Seed: content = conv3_4 activated (relu3_4); style = the outputs feeding each max-pool.
# Layer weights fall with depth, halving per block (the seed asks for falling weights without
# numbers): fine brush texture leads while the deep layers still arrange it. They act on terms
# that are normalised per image pair by default (Settings.normalize), so one set of α, β, γ suits
# every network; β = 100 was chosen by eye on vgg16-hed (docs/experiments.md shows the sweep).
_LAYER_WEIGHTS = (1.0, 0.5, 0.25, 0.125, 0.0625)
_SEED_STYLE_VGG19 = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")
_SEED_STYLE_VGG16 = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT = 1.0, 100.0, 1.0
# The coarsest scale's longest side. It was 128: at 128 px a face is ~40 px wide, too small for the
# content tap (relu3_3, stride 4) to hold its eyes, and the first 50 evaluations there painted the
# style's large structures over it (The Scream's sky bands across a face, Shipwreck's blobs over
# coins, coin-shaped discs in a sky), which no finer scale undid. From 256 px the subject survives;
# docs/quality.md shows both. It also costs fewer evaluations (187 instead of 197 at 512 px).
START_SIZE = 256

# λ of the Laplacian content term (objective.laplacian_loss) when the terms are normalised (the
# normalisers give it a meaning; with --no-normalize the default is 0, the seed's raw objective).
# 1, gated (LAPLACIAN_GATE): the term holds faces, windows and outlines on the 12 benchmark pairs where
# the photograph has structure and leaves its smooth regions to the style (docs/quality.md, session 5).
# Ungated, λ = 1 all but removed the style from very smooth photographs (a sky, a retina: session 4).
LAPLACIAN_WEIGHT = 1.0
# The style weights of blocks 1 and 2 (relu1_*, relu2_*) are multiplied by this at every scale but the
# final one (normalised terms): the coarse scales lay out the style's larger strokes and leave the
# pixel-level texture, which each upsampling would magnify, to the final scale (docs/quality.md, session 8).
COARSE_SHALLOW_WEIGHT = 0.3
# The default taper exponent (plan.fine_evaluations, --taper-exponent; BENCHMARKS.md, "Print size, ninth session").
TAPER_EXPONENT = 1.0
# The Laplacian term's gate (objective.laplacian_gate, --laplacian-gate): 0 = Li et al.'s term, every cell
# alike; t > 0 = only where the photograph has structure (cells at t × the picture's mean pooled
# Laplacian energy or more fully, smooth ones not at all), so skies and other smooth regions stay
# free for the style (docs/quality.md, session 5).
LAPLACIAN_GATE = 1.0

# --strength s in [0, 1], one knob from faithful to bold (docs/quality.md). 0.5 is the default
# picture: β = STYLE_WEIGHT and the default start size. Each step of 0.5 multiplies β by
# 10^STRENGTH_DECADES (β 3.2 at 0, 3162 at 1: the sweep in docs/experiments.md changes the picture
# between about 0.1 and 1000); above 0.5 the first scale also shrinks towards BOLD_START_SIZE, where
# the coarse scales lay out larger strokes of their own (and keep less of a face).
STRENGTH_DECADES = 1.5
BOLD_START_SIZE = 128


def strength_weights(strength: float) -> tuple[float, int]:
    """(β, start size) for a --strength in [0, 1]; 0.5 gives the defaults (STYLE_WEIGHT, START_SIZE)."""
    beta = STYLE_WEIGHT * 10 ** (2 * STRENGTH_DECADES * (strength - 0.5))
    bold = max(0.0, 2 * strength - 1)  # 0 up to the default, 1 at the boldest
    start = round(START_SIZE * (BOLD_START_SIZE / START_SIZE) ** bold) if START_SIZE > BOLD_START_SIZE else START_SIZE
    return beta, start


def strength_laplacian(strength: float) -> float:
    """λ of the Laplacian content term for a --strength in [0, 1] (normalised terms): LAPLACIAN_WEIGHT up to
    the default (0.5), falling linearly to 0 at 1, so the bold end lets the style's large strokes (Van Gogh's
    swirls) cross what the photograph has smooth, while the default keeps faces and windows."""
    bold = max(0.0, 2 * strength - 1)
    return LAPLACIAN_WEIGHT * (1.0 - bold)


MODEL_DEFAULTS: dict[str, ModelDefaults] = {
    "vgg19": ModelDefaults("vgg19", "relu3_4", _SEED_STYLE_VGG19, _LAYER_WEIGHTS, CONTENT_WEIGHT, STYLE_WEIGHT,
                           TV_WEIGHT),
    "vgg16": ModelDefaults("vgg16", "relu3_3", _SEED_STYLE_VGG16, _LAYER_WEIGHTS, CONTENT_WEIGHT, STYLE_WEIGHT,
                           TV_WEIGHT),
    "vgg16-hed": ModelDefaults("vgg16", "relu3_3", _SEED_STYLE_VGG16, _LAYER_WEIGHTS, CONTENT_WEIGHT,
                               STYLE_WEIGHT, TV_WEIGHT),
}  # fmt: skip

# Named layer presets for --style-layers / --content-layer ("seed" is the default).
STYLE_PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "vgg19": {
        "seed": _SEED_STYLE_VGG19,
        "gatys": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        "shallow": ("relu1_1", "relu1_2", "relu2_1", "relu2_2"),
        "deep": ("relu3_1", "relu4_1", "relu5_1"),
    },
    "vgg16": {
        "seed": _SEED_STYLE_VGG16,
        "gatys": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        "shallow": ("relu1_1", "relu1_2", "relu2_1", "relu2_2"),
        "deep": ("relu3_1", "relu4_1", "relu5_1"),
    },
}
CONTENT_PRESETS: dict[str, dict[str, str]] = {
    "vgg19": {"seed": "relu3_4", "gatys": "relu4_2"},
    "vgg16": {"seed": "relu3_3", "gatys": "relu4_2"},
}

OPTIMIZERS = ("lbfgs", "adam")
PRESERVE_COLOR = ("auto", "none", "luminance", "histogram")
STYLE_LOSSES = ("gram", "wasserstein")
PADDINGS = ("zeros", "replicate", "replicate-first")  # the network's convolutions at the picture's edge


@dataclass
class Settings:
    """One run of painterly. ``None`` means "the model's default" (see MODEL_DEFAULTS)."""

    size: int = field(default=512, metadata={"help": "longest side of the output, in pixels"})
    style_size: int | None = field(
        default=None,
        metadata={"help": "longest side of the style image(s); default: output size × style scale"},
    )
    style_scale: float = field(
        default=1.0, metadata={"help": "size of the style's brush strokes relative to the output"}
    )
    # The schedule (BENCHMARKS.md): the finest scale is where the seed's loss is won or lost, so it
    # gets the evaluations; short coarse stages in √2 steps (as crowsonkb's) lay out the large strokes
    # a single scale never finds, and leave the final scale a start only slightly blurred.
    iterations: int = field(default=150, metadata={"help": "optimiser evaluations at the final scale"})
    coarse_iterations: int = field(default=50, metadata={"help": "optimiser evaluations at each coarser scale"})
    start_size: int = field(
        default=START_SIZE,
        metadata={"help": "longest side of the first (coarsest) scale; a coarse scale whose shorter side is under "
                  "this / --scale-step is skipped (a wide or tall picture starts later)"},
    )  # fmt: skip
    scale_step: float = field(default=2**0.5, metadata={"help": "ratio between successive scales"})
    scales: tuple[int, ...] | None = field(
        default=None, metadata={"help": "explicit list of scale sizes (overrides start size and step)"}
    )
    optimizer: str = field(default="lbfgs", metadata={"help": "lbfgs or adam"})
    learning_rate: float | None = field(default=None, metadata={"help": "step size (L-BFGS: 1, Adam: 0.02 by default)"})
    init: str = field(default="content", metadata={"help": "content, noise, or an image file"})
    strength: float | None = field(
        default=None,
        metadata={"help": "from faithful (0) to bold (1); 0.5 is the default: sets β (and, above 0.5, a smaller "
                  "start size and a Laplacian λ falling to 0) unless --style-weight (--start-size, "
                  "--laplacian-weight) is given"},
    )  # fmt: skip
    content_weight: float | None = field(default=None, metadata={"help": "α, weight of the content term"})
    style_weight: float | None = field(default=None, metadata={"help": "β, weight of the style term"})
    tv_weight: float | None = field(default=None, metadata={"help": "γ, weight of total variation"})
    content_layer: str | None = field(default=None, metadata={"help": "content tap or preset name"})
    style_layers: tuple[str, ...] | None = field(default=None, metadata={"help": "style taps or a preset"})
    style_layer_weights: tuple[float, ...] | None = field(
        default=None, metadata={"help": "per-style-layer weights w_l"}
    )
    style_blend_weights: tuple[float, ...] | None = field(
        default=None, metadata={"help": "weights of several style images (normalised to sum 1)"}
    )
    preserve_color: str = field(
        default="auto",
        metadata={"help": "auto, none, luminance or histogram: auto is luminance when every style is grey, the "
                  "content is not and the terms are normalised (a grey style has no colour to give, and its "
                  "Gram term would turn the photograph grey), else none, the seed's"},
    )  # fmt: skip
    model: str = field(default="vgg19", metadata={"help": "vgg19, vgg16 or vgg16-hed"})
    weights: str | None = field(default=None, metadata={"help": "weights file, or 'random' (seeded, for tests only)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA, then MPS, then CPU), cpu, cuda, mps"})
    precision: str = field(
        default="auto",
        metadata={
            "help": "arithmetic while optimising: auto (bfloat16 on CPUs with AMX, else float32), float32 or bfloat16"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed for noise init and random weights"})
    normalize: bool = field(
        default=True, metadata={"help": "scale each term by its size for this image pair (off: the seed's raw terms)"}
    )
    style_loss: str = field(
        default="gram",
        metadata={"help": "gram (the seed's) or wasserstein (each style layer's mean and covariance, as "
                  "crowsonkb's style-transfer-pytorch); score always reports the seed's Gram term"},
    )  # fmt: skip
    iterate_average: float = field(
        default=0.0,
        metadata={"help": "decay of an exponential moving average of each scale's iterates, which becomes the "
                  "scale's result (0: off, the last iterate; crowsonkb uses 0.99)"},
    )  # fmt: skip
    padding: str = field(
        default="zeros",
        metadata={"help": "the network's convolutions at the picture's edge: zeros (the seed's), replicate "
                  "(every convolution) or replicate-first (conv1_1 only, as crowsonkb's)"},
    )  # fmt: skip
    carry_detail: bool = field(
        default=False,
        metadata={"help": "at each upsampling add back the content's detail the coarser scale lost "
                  "(content − up(down(content))), so a finer scale does not start blurry"},
    )  # fmt: skip
    carry_blur: float = field(
        default=0.0,
        metadata={"help": "blur each coarser scale's result by a Gaussian of this sigma (its own pixels) before it "
                  "is carried up to the next scale, so its pixel-level grain is not magnified (0: off)"},
    )  # fmt: skip
    coarse_content_weight: float = field(
        default=1.0, metadata={"help": "α is multiplied by this at every scale but the final one"}
    )
    coarse_style_layer_weights: tuple[float, ...] | None = field(
        default=None,
        metadata={"help": "per-style-layer weights w_l at every scale but the final one (default: --style-layer-"
                  "weights with blocks 1 and 2 x --coarse-shallow-weight); e.g. 0,0,0.25,0.125,0.0625 leaves the "
                  "shallow layers' pixel-level texture to the final scale"},
    )  # fmt: skip
    coarse_shallow_weight: float | None = field(
        default=None,
        metadata={"help": "the style-layer weights of blocks 1 and 2 (relu1_*, relu2_*) are multiplied by this at "
                  "every scale but the final one, so the coarse scales lay out larger strokes and leave pixel-level "
                  f"texture to the final scale (default: {COARSE_SHALLOW_WEIGHT:g} with the normalised terms, 1 with "
                  "--no-normalize, the seed's; --coarse-style-layer-weights, when given, wins)"},
    )  # fmt: skip
    laplacian_weight: float | None = field(
        default=None,
        metadata={"help": "λ of a Laplacian content term (Li et al. 2017): charges for edges and spots painted where "
                  "the photograph is smooth, at the --laplacian-pools scales (0: off, the seed's objective; default: "
                  f"{LAPLACIAN_WEIGHT:g} with the normalised terms, 0 with --no-normalize)"},
    )  # fmt: skip
    laplacian_pools: tuple[float, ...] = field(
        default=(4.0, 16.0),
        metadata={"help": "the Laplacian term's cell sizes, in output pixels at a 512 px output (scaled with it)"},
    )
    laplacian_gate: float = field(
        default=LAPLACIAN_GATE,
        metadata={"help": "where the Laplacian term acts: 0 everywhere (Li et al.); t > 0 only where the photograph "
                  "has structure, cells with t x the picture's mean Laplacian energy or more fully, smooth ones "
                  "(a sky) not at all, so the style may paint there"},
    )  # fmt: skip
    laplacian_gate_floor: float = field(
        default=0.0,
        metadata={"help": "with --laplacian-gate, the share of the term a smooth cell keeps (0 to 1)"},
    )
    lowpass_weight: float = field(
        default=0.0,
        metadata={"help": "μ of a coarse tone term: charges for large light or dark masses the photograph does not "
                  "have (its luminance averaged over --lowpass-pool cells, less its mean; 0: off)"},
    )  # fmt: skip
    lowpass_pool: float = field(
        default=16.0,
        metadata={"help": "the coarse tone term's cell size, in output pixels at a 512 px output (scaled with it)"},
    )
    history_size: int = field(default=20, metadata={"help": "L-BFGS memory (pairs kept)"})
    max_pixels: int | None = field(
        default=None, metadata={"help": "refuse input images with more pixels (default: 80 million)"}
    )
    tile: int | None = field(
        default=None,
        metadata={"help": "evaluate the network in tiles of this many pixels a side, exactly (0: never; "
                  "default: when the picture would not fit in memory)"},
    )  # fmt: skip
    memory_budget: float | None = field(
        default=None,
        metadata={"help": "GiB a scale may use: the automatic --tile evaluates untiled where the untiled estimate "
                  "fits, else in the largest tile whose modelled peak fits (BENCHMARKS.md, \"Print size\"); "
                  "default: untiled within 80 percent of the memory available, else 896 px tiles; a tiled scale "
                  "keeps as many tiles' graphs for its second pass (up to 4) as the budget holds"},
    )  # fmt: skip
    taper: bool = field(
        default=True,
        metadata={"help": "fewer evaluations at scales over 1 MP, x (1 MP / pixels)^E (--taper-exponent), at least "
                  "7 at the default E 1 (10 at E 0.5, falling to 4 at E 1.5; they only sharpen what the coarser "
                  "scales laid out: BENCHMARKS.md); "
                  "off: every scale gets --iterations / --coarse-iterations"},
    )  # fmt: skip
    taper_exponent: float = field(
        default=TAPER_EXPONENT,
        metadata={"help": "E of --taper: 1.0 keeps each tapered scale's time about constant (at 2048 px as good by "
                  "eye as 0.5's twice as many final evaluations: BENCHMARKS.md, \"Print size, ninth session\"); "
                  "0.5 (the default before) halves the evaluations each time a scale's pixels grow 4x; 1.5 (at "
                  "least 4 a scale) about halves a 4096 px print's time again, a little softer"},
    )  # fmt: skip

    def with_color_for(self, grey_styles: bool, grey_content: bool) -> Settings:
        """A copy whose ``preserve_color`` is concrete: ``auto`` becomes luminance when every style is
        grey (``grey_styles``), the content has colour to keep (not ``grey_content``) and the terms are
        normalised, else none (the seed's: ``--no-normalize`` stays the seed's objective exactly, and
        a grey photograph has no colour to lose); any other value is kept."""
        if self.preserve_color != "auto":
            return self
        keep = grey_styles and not grey_content and self.normalize
        return dataclasses.replace(self, preserve_color="luminance" if keep else "none")

    def model_defaults(self) -> ModelDefaults:
        if self.model not in MODEL_DEFAULTS:
            raise InputError(f"unknown model {self.model!r}; choose one of: {', '.join(MODEL_DEFAULTS)}")
        return MODEL_DEFAULTS[self.model]

    def resolved(self) -> Settings:
        """A copy with every model default filled in and every value checked."""
        d = self.model_defaults()
        arch = d.arch
        content_layer = self.content_layer or d.content_layer
        content_layer = CONTENT_PRESETS[arch].get(content_layer, content_layer)
        style_layers: tuple[str, ...] = self.style_layers or d.style_layers
        if isinstance(style_layers, str):  # from Python: style_layers="gatys" or "relu1_1,relu2_1"
            style_layers = tuple(n.strip() for n in style_layers.split(",") if n.strip())
        if len(style_layers) == 1 and style_layers[0] in STYLE_PRESETS[arch]:
            style_layers = STYLE_PRESETS[arch][style_layers[0]]
        layer_weights = self.style_layer_weights
        if layer_weights is None:
            layer_weights = tuple(
                _LAYER_WEIGHTS[i] if i < len(_LAYER_WEIGHTS) else _LAYER_WEIGHTS[-1] for i in range(len(style_layers))
            )
        style_weight, start_size = d.style_weight, self.start_size
        if self.strength is not None:
            if not _finite(self.strength) or not 0 <= self.strength <= 1:
                raise InputError(f"--strength must be a number from 0 to 1, got {self.strength!r}")
            style_weight, bold_start = strength_weights(self.strength)
            # A start size other than the default was chosen by hand: it wins (as --style-weight does).
            start_size = bold_start if self.start_size == START_SIZE else self.start_size
        out = dataclasses.replace(
            self,
            start_size=start_size,
            content_layer=content_layer,
            style_layers=tuple(style_layers),
            style_layer_weights=tuple(float(w) for w in layer_weights),
            content_weight=d.content_weight if self.content_weight is None else self.content_weight,
            style_weight=style_weight if self.style_weight is None else self.style_weight,
            tv_weight=d.tv_weight if self.tv_weight is None else self.tv_weight,
            laplacian_weight=self._laplacian_weight(),
            coarse_shallow_weight=self._coarse_shallow_weight(),
            learning_rate=self.learning_rate or (1.0 if self.optimizer == "lbfgs" else 0.02),
        )
        out.validate()
        return out

    def _laplacian_weight(self) -> float:
        """λ given by hand wins; else 0 with --no-normalize (the seed's raw objective), else the strength's
        (strength_laplacian) or LAPLACIAN_WEIGHT. Checked by validate()."""
        if self.laplacian_weight is not None:
            return self.laplacian_weight
        if not self.normalize:
            return 0.0
        return LAPLACIAN_WEIGHT if self.strength is None else strength_laplacian(self.strength)

    def _coarse_shallow_weight(self) -> float:
        """Given by hand wins; else 1 with --no-normalize (the seed's objective at every scale), else
        COARSE_SHALLOW_WEIGHT. Checked by validate()."""
        if self.coarse_shallow_weight is not None:
            return self.coarse_shallow_weight
        return COARSE_SHALLOW_WEIGHT if self.normalize else 1.0

    def coarse_layer_weights(self) -> tuple[float, ...] | None:
        """w_l at every scale but the final one (of resolved settings), or None where they are the final
        scale's: --coarse-style-layer-weights if given, else --style-layer-weights with blocks 1 and 2
        times --coarse-shallow-weight."""
        if self.coarse_style_layer_weights is not None:
            return self.coarse_style_layer_weights
        factor = 1.0 if self.coarse_shallow_weight is None else self.coarse_shallow_weight
        if factor == 1.0:
            return None
        weights = self.style_layer_weights or ()
        return tuple(w * factor if _block(n) <= 2 else w for n, w in zip(self.style_layers or (), weights))

    def validate(self) -> None:
        """Raise a one-line :class:`InputError` for any value out of range.

        Every number must be finite and below an upper bound (:data:`LIMITS`): a setting a few bytes
        long must not ask for a run that never ends or a size no machine holds. The sizes the run
        will allocate are checked against a pixel limit by :meth:`check_pixels`.
        """
        from .layers import PRECISIONS, check_layers

        def positive_int(name: str, value: Any, minimum: int = 1) -> None:
            flag = "--" + name.replace("_", "-")
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise InputError(f"{flag} must be an integer >= {minimum}, got {value!r}")
            if value > LIMITS[name]:
                raise InputError(f"{flag} must be at most {LIMITS[name]}, got {value!r}")

        positive_int("size", self.size, 16)
        positive_int("iterations", self.iterations, 0)
        positive_int("coarse_iterations", self.coarse_iterations, 0)
        positive_int("start_size", self.start_size, 16)
        positive_int("history_size", self.history_size, 1)
        positive_int("seed", self.seed, 0)
        if self.style_size is not None:
            positive_int("style_size", self.style_size, 16)
        if self.max_pixels is not None:
            positive_int("max_pixels", self.max_pixels, 1)
        if self.tile:
            positive_int("tile", self.tile, 16)
        elif self.tile is not None:
            positive_int("tile", self.tile, 0)
        if not _finite(self.taper_exponent) or not 0 < self.taper_exponent <= 4:
            raise InputError(f"--taper-exponent must be a number > 0 and <= 4, got {self.taper_exponent!r}")
        budget = self.memory_budget
        if budget is not None and (not _finite(budget) or not 0 < budget <= LIMITS["memory_budget"]):
            raise InputError(f"--memory-budget must be a number of GiB > 0 and <= {LIMITS['memory_budget']}, "
                             f"got {budget!r}")  # fmt: skip
        for name in (
            "content_weight",
            "style_weight",
            "tv_weight",
            "style_scale",
            "scale_step",
            "learning_rate",
            "coarse_content_weight",
            "laplacian_weight",
            "laplacian_gate",
            "laplacian_gate_floor",
            "lowpass_weight",
            "carry_blur",
            "coarse_shallow_weight",
        ):
            value = getattr(self, name)
            if value is not None and (not _finite(value) or value < 0):
                raise InputError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value!r}")
            if value is not None and value > LIMITS.get(name, math.inf):
                raise InputError(f"--{name.replace('_', '-')} must be at most {LIMITS[name]}, got {value!r}")
        if self.strength is not None and (not _finite(self.strength) or not 0 <= self.strength <= 1):
            raise InputError(f"--strength must be a number from 0 to 1, got {self.strength!r}")
        if self.style_scale <= 0:
            raise InputError(f"--style-scale must be > 0, got {self.style_scale!r}")
        if self.scale_step <= 1:
            raise InputError(f"--scale-step must be > 1, got {self.scale_step!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.preserve_color not in PRESERVE_COLOR:
            raise InputError(
                f"unknown --preserve-color {self.preserve_color!r}; choose one of: {', '.join(PRESERVE_COLOR)}"
            )
        if not _finite(self.iterate_average) or not 0 <= self.iterate_average < 1:
            raise InputError(f"--iterate-average must be a number >= 0 and < 1, got {self.iterate_average!r}")
        if self.padding not in PADDINGS:
            raise InputError(f"unknown --padding {self.padding!r}; choose one of: {', '.join(PADDINGS)}")
        if self.style_loss not in STYLE_LOSSES:
            raise InputError(f"unknown --style-loss {self.style_loss!r}; choose one of: {', '.join(STYLE_LOSSES)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown --precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        arch = self.model_defaults().arch
        if self.content_layer is not None:
            check_layers(arch, [self.content_layer])
        if self.style_layers is not None:
            check_layers(arch, self.style_layers)
            if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.style_layers):
                raise InputError(
                    f"--style-layer-weights has {len(self.style_layer_weights)} values "
                    f"for {len(self.style_layers)} style layers"
                )
            coarse = self.coarse_style_layer_weights
            if coarse is not None and len(coarse) != len(self.style_layers):
                raise InputError(
                    f"--coarse-style-layer-weights has {len(coarse)} values for {len(self.style_layers)} style layers"
                )
        lists = ("style_layers", "style_layer_weights", "style_blend_weights", "scales", "coarse_style_layer_weights")
        for name in lists:
            if len(getattr(self, name) or ()) > MAX_LIST:
                raise InputError(
                    f"--{name.replace('_', '-')} has {len(getattr(self, name))} values; at most {MAX_LIST}"
                )
        for name in ("style_layer_weights", "style_blend_weights", "coarse_style_layer_weights"):
            for w in getattr(self, name) or ():
                if not _finite(w) or w < 0:
                    raise InputError(f"--{name.replace('_', '-')} values must be finite numbers >= 0, got {w!r}")
        if self.style_blend_weights is not None and sum(self.style_blend_weights) <= 0:
            raise InputError("--style-blend-weights must not all be zero")
        if not self.laplacian_pools or len(self.laplacian_pools) > MAX_LIST:
            raise InputError(f"--laplacian-pools needs 1 to {MAX_LIST} values, got {len(self.laplacian_pools)}")
        for pool in self.laplacian_pools:
            if not _finite(pool) or not 1 <= pool <= LIMITS["laplacian_pools"]:
                raise InputError(f"--laplacian-pools values must be numbers from 1 to {LIMITS['laplacian_pools']}, "
                                 f"got {pool!r}")  # fmt: skip
        if not _finite(self.lowpass_pool) or not 1 <= self.lowpass_pool <= LIMITS["laplacian_pools"]:
            raise InputError(f"--lowpass-pool must be a number from 1 to {LIMITS['laplacian_pools']}, "
                             f"got {self.lowpass_pool!r}")  # fmt: skip
        if self.scales is not None:
            for s in self.scales:
                positive_int("scales", s, 16)

    def check_styles(self, count: int) -> None:
        """One-line :class:`InputError` unless the per-style lists fit ``count`` style images."""
        blend = self.style_blend_weights
        if blend is not None and len(blend) != count:
            raise InputError(f"--style-blend-weights has {len(blend)} values for {count} style images")

    def planned_sizes(
        self, content_shape: tuple[int, int] | None = None, style_shapes: Sequence[tuple[int, int]] = ()
    ) -> list[tuple[str, str, tuple[int, int]]]:
        """Every image size (H, W) a run of these (resolved) settings allocates, as (what, field, size).

        The output and each scale (masks are resized to each scale, so they are the same sizes) and
        each style at each scale: longest side ``style_size`` (or ``size × style_scale``) times the
        scale's share of the output, never with its shorter side under what the network needs
        (as :meth:`painterly.objective.Problem._style_images` does). Shapes are (H, W); without them the
        content is taken as square and each style as square (the most pixels for its longest side).
        """
        content = content_shape or (self.size, self.size)
        output = _scaled(*content, self.size)
        final = self.style_size or self.size * self.style_scale
        least_side = self._network_min_side()
        out: list[tuple[str, str, tuple[int, int]]] = [("the output", "size", output)]
        scale_field = "scales" if self.scales else "size"
        for n, longest in enumerate(self.scale_sizes(), 1):
            at = _scaled(*content, longest)
            out.append((f"scale {n}", scale_field, at))
            side = final * max(at) / max(output)
            for i, shape in enumerate(style_shapes or [(1, 1)], 1):
                least = math.ceil(least_side * max(shape) / min(shape))
                out.append((f"style {i} at scale {n}", "style_size" if self.style_size else "style_scale",
                            _scaled(*shape, max(round(side), least))))  # fmt: skip
        return out

    def check_pixels(
        self,
        max_pixels: int,
        content_shape: tuple[int, int] | None = None,
        style_shapes: Sequence[tuple[int, int]] = (),
    ) -> None:
        """One-line :class:`InputError` if any size :meth:`planned_sizes` lists exceeds ``max_pixels``."""
        for what, name, (h, w) in self.planned_sizes(content_shape, style_shapes):
            if h * w > max_pixels:
                raise InputError(
                    f"--{name.replace('_', '-')}: {what} would be {w}x{h} = {h * w:,} pixels; the limit is "
                    f"{max_pixels:,}"
                )

    def _network_min_side(self) -> int:
        """The smallest side the network takes for these (resolved) taps."""
        from .layers import min_side

        return min_side(self.model_defaults().arch, (self.content_layer, *self.style_layers))

    def scale_sizes(self) -> list[int]:
        """Longest side at each scale, coarse to fine, ending at ``size``.

        Departure from the seed (one scale): coarse-to-fine is how a CPU reaches a good picture in
        a minute; ``--scales 512`` gives the seed's single scale.
        """
        if self.scales:
            return sorted(set(self.scales))
        sizes = [self.size]
        while sizes[-1] / self.scale_step >= self.start_size * 0.999:
            sizes.append(round(sizes[-1] / self.scale_step))
        return sorted(set(sizes))

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (tuples as lists): what :meth:`from_dict` reads back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, allowed: Iterable[str] | None = None,
                  ignore_unknown: bool = False) -> Settings:  # fmt: skip
        """Settings from JSON-like values (a ``--config`` file, a studio form, a stored record).

        Each value is coerced to the type the field declares (JSON has no tuples, forms send
        numbers as strings) or refused with a one-line :class:`InputError` naming the field. Keys
        that are not fields, or not in ``allowed``, are refused, unless ``ignore_unknown`` (a record
        written by an older or newer version) drops them. The result is not yet resolved.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        permitted = names if allowed is None else names & set(allowed)
        unknown = sorted(set(values) - permitted)
        if unknown and not ignore_unknown:
            which = "settings" if allowed is None else "allowed settings"
            raise InputError(f"unknown setting(s) {', '.join(unknown)}; {which}: {', '.join(sorted(permitted))}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _coerce(k, v, hints[k]) for k, v in values.items() if k in permitted})


# Upper bounds of validate(): far past any real run, low enough that no setting asks for a run that
# never ends. Sides are pixels (check_pixels bounds their product); any seed fits torch.manual_seed.
LIMITS = {
    "size": 32768,
    "style_size": 32768,
    "start_size": 32768,
    "scales": 32768,
    "iterations": 100_000,
    "coarse_iterations": 100_000,
    "history_size": 1000,
    "seed": 2**63 - 1,
    "max_pixels": 2**40,
    "tile": 32768,
    "memory_budget": 2**20,
    "style_scale": 100.0,
    "scale_step": 16.0,
    "coarse_content_weight": 1e6,
    "coarse_shallow_weight": 1e6,
    "laplacian_weight": 1e6,
    "laplacian_pools": 512.0,
    "laplacian_gate": 1e3,
    "laplacian_gate_floor": 1.0,
    "lowpass_weight": 1e6,
    "carry_blur": 16.0,
}
MAX_LIST = 64  # values in any list setting (layers, layer weights, blend weights, scales)


def _scaled(height: int, width: int, longest: int) -> tuple[int, int]:
    from .plan import scaled  # plan imports this module

    return scaled(height, width, longest)


def _block(layer: str) -> int:
    """The VGG block a tap is in: relu1_2 and pool1 are in 1, conv3_4 in 3."""
    digits = "".join(c for c in layer.split("_")[0] if c.isdigit())
    return int(digits) if digits else 0


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """A JSON or form value as the type ``hint`` (a Settings annotation), or a one-line InputError."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or value == "":
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool and isinstance(value, bool):
            return value
        if hint is int and not isinstance(value, bool):
            number = float(value)
            if number.is_integer():
                return int(number)
        elif hint is float and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                return number
        elif hint is str and isinstance(value, str):
            return value
        elif typing.get_origin(hint) is tuple:
            if isinstance(value, str):  # the CLI's comma-separated form
                value = [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, list | tuple):
                return tuple(_coerce(key, v, typing.get_args(hint)[0]) for v in value)
    except (TypeError, ValueError, OverflowError):
        pass
    kind = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}.get(hint, "a list")
    raise InputError(f"setting {key} must be {kind}, got {value!r}")
