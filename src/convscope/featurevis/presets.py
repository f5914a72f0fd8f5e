"""Presets: the literature's recipes in one word, and the options they set.

=============  =========================================================================================
``lucid``      Olah et al. 2017 (Distill, *Feature Visualization*) and Lucid's ``render_vis``: Fourier
               parameterization with decorrelated colour, sigmoid to the valid range, Lucid's standard
               transforms, Adam with learning rate 0.05 (Lucid's default); the default recipe.
``simonyan``   Simonyan et al. 2014 (*Deep Inside Convolutional Networks*, section 2): the class logit,
               the image initialized to zeros (the mean image), an L2 penalty ``lambda ||I||^2``, plain
               gradient ascent ``I <- I + lr * grad``.
``yosinski``   Yosinski et al. 2015 (*Understanding Neural Networks Through Deep Visualization*,
               Table 1 / Figure 3): four images per objective, one per row of the paper's table of
               regularization settings (L2 decay, Gaussian blur every few steps, clipping of pixels
               with small norm, clipping of pixels with small contribution), pixels, plain gradient
               ascent with the authors' learning-rate policies (``optimize_image.py`` of the
               deep-visualization toolbox).
``fooling``    Nguyen et al. 2015 (*Deep Neural Networks Are Easily Fooled*) and the lecture notes:
               no regularizer and no transform, pixels from zeros, the notes' normalized-gradient step
               ``I <- I + lr * grad / ||grad||``: noise that the model classifies with near certainty.
=============  =========================================================================================

A preset fixes the choices that define it (``fixed``) and suggests values for the rest
(``defaults``); an option that contradicts a fixed choice is an error, any other option overrides
the suggestion. Without a preset the defaults are lucid's and every option is free.

Learning rates are in display-pixel units (an image in [0, 1]) unless ``lr_units="input"``: then
the step is taken in the model's input units (after the bundle's preprocessing), where Yosinski et
al.'s Caffe code stepped (its input blob: BGR 0-255 minus the mean).

Yosinski's rates. Table 1 of the paper gives the regularizers (decay, blur width and period, the
two clipping percentiles); they are unit-free and kept exactly. The step rules come from the
authors' toolbox (``optimize_image.py``, README): a constant rate of 100, or the "progress" policy
(the step that would raise the objective by 2 if it were linear, at most 100 or 1e8), in CaffeNet's
input units and fc8 units. A gradient's size is a property of the network, so no change of pixel
units carries these rates to another model. Measured on EfficientNet-Lite0 (flamingo, 100 steps,
160 px): converted by the input scale (lr / 128^2 in Lite0's input units) every image stays within
1/255 of the mean image (blur and clipping erase the small steps); taken literally in Lite0's
input units the constant-rate images saturate (17-34 % of the pixels at 0 or 1) and lose the class.
The preset therefore runs the toolbox's rules in the model's input units on the objective divided
by ``YOSINSKI_OBJECTIVE_SCALE`` = 100 (constant rate 100 -> 1, progress 2 -> 200, caps
100 -> 1 and 1e8 -> 1e6): the one scale, found by a grid search on Lite0 (1, ~30, 100; the paper
chose its own settings by a random search of 300 combinations on CaffeNet), at which all four
images are image-like, reach the class and look as different as the paper's four rows (see
benchmarks/README.md). Another model may want another scale: pass ``lr`` and ``gain``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from convscope.errors import ConvscopeError
from convscope.featurevis.transforms import NONE, STANDARD, Transforms

__all__ = [
    "OPTIONS",
    "PRESETS",
    "YOSINSKI_OBJECTIVE_SCALE",
    "Preset",
    "Recipe",
    "presets",
    "resolve_options",
]

# Yosinski's toolbox rates run on the objective divided by this (see the module docstring).
YOSINSKI_OBJECTIVE_SCALE = 100.0
_K = YOSINSKI_OBJECTIVE_SCALE


@dataclass(frozen=True)
class Recipe:
    """Every option of a run, resolved. Options that may differ per copy of an objective (one
    image of each objective per copy) are tuples with one value per copy."""

    param: str = "fourier"
    decorrelate: bool = True
    init: str = "random"
    init_std: float = 0.01
    optimizer: str = "adam"
    lr: tuple[float, ...] = (0.05,)
    lr_units: str = "display"
    step: tuple[str, ...] = ("plain",)
    gain: tuple[float, ...] = (math.inf,)
    l2: float = 0.0
    tv: float = 0.0
    decay: tuple[float, ...] = (0.0,)
    blur_sigma: tuple[float, ...] = (0.0,)
    blur_every: tuple[int, ...] = (0,)
    clip_norm: tuple[float, ...] = (0.0,)
    clip_contribution: tuple[float, ...] = (0.0,)
    transforms: Transforms = STANDARD
    copies: int = 1

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in OPTIONS:
            v = getattr(self, k)
            if isinstance(v, tuple) and k in PER_COPY and len(set(v)) == 1:
                v = v[0]
            out[k] = v.describe() if isinstance(v, Transforms) else v
        out["copies"] = self.copies
        return out


# option -> (what it is, check)
OPTIONS = {
    "param": "image parameterization: 'fourier' (Lucid) or 'pixels'",
    "decorrelate": "fourier: decorrelated colour (True/False)",
    "init": "pixels: 'zeros' (the mean image) or 'random'; fourier: always random",
    "init_std": "standard deviation of a random start (pixels: display units; fourier: spectrum)",
    "optimizer": "'adam' or 'ascent' (gradient ascent with a `step` rule)",
    "lr": "learning rate (display-pixel units, or see lr_units), one or one per copy",
    "lr_units": "ascent on pixels: 'display' (lr and step in display pixels, [0, 1]) or 'input' "
    "(in the model's input after its preprocessing, as Yosinski et al.'s Caffe code)",
    "step": "ascent rule: 'plain' (lr * g), 'normalized' (lr * g / ||g||), 'progress' "
    "(min(lr, gain / ||g||^2) * g)",
    "gain": "the 'progress' rule's objective gain per step (Yosinski's desired_prog)",
    "l2": "weight of the L2 penalty on the image (Simonyan)",
    "tv": "weight of the total-variation penalty",
    "decay": "Yosinski's L2 decay per step (pixels)",
    "blur_sigma": "Yosinski's Gaussian blur, in pixels (pixels)",
    "blur_every": "blur every this many steps (0: never)",
    "clip_norm": "Yosinski: percentile of pixel norms set to 0 after each step (pixels)",
    "clip_contribution": "Yosinski: percentile of pixel contributions |x * grad| set to 0 (pixels)",
    "transforms": "'standard' (Lucid's), 'none', or a convscope.featurevis.Transforms",
}
PER_COPY = (
    "lr",
    "step",
    "gain",
    "decay",
    "blur_sigma",
    "blur_every",
    "clip_norm",
    "clip_contribution",
)
PARAMS = ("fourier", "pixels")
OPTIMIZERS = ("adam", "ascent")
LR_UNITS = ("display", "input")
STEPS = ("plain", "normalized", "progress")
INITS = ("zeros", "random")


@dataclass(frozen=True)
class Preset:
    name: str
    source: str
    fixed: Mapping[str, Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 256
    copies: int | None = None  # a preset that makes a fixed number of images per objective
    objective_hint: str = ""


_PIXEL_OPS_OFF = {
    "decay": 0.0,
    "blur_every": 0,
    "clip_norm": 0.0,
    "clip_contribution": 0.0,
}

PRESETS: dict[str, Preset] = {
    "lucid": Preset(
        "lucid",
        "Olah et al. 2017, Feature Visualization (Distill); Lucid's render_vis",
        fixed={
            "param": "fourier",
            "decorrelate": True,
            "optimizer": "adam",
            "transforms": "standard",
            **_PIXEL_OPS_OFF,
        },
        defaults={"lr": 0.05, "init_std": 0.01},
        steps=256,
    ),
    "simonyan": Preset(
        "simonyan",
        "Simonyan, Vedaldi & Zisserman 2014, Deep Inside Convolutional Networks",
        fixed={
            "param": "pixels",
            "init": "zeros",
            "optimizer": "ascent",
            "step": "plain",
            "transforms": "none",
            **_PIXEL_OPS_OFF,
        },
        # lambda and the rate are not given in the paper; chosen on EfficientNet-Lite0 (the
        # penalty then balances the logit's gradient near a mean-pixel deviation of ~0.1).
        defaults={"l2": 0.002, "lr": 0.5},
        steps=200,
    ),
    "yosinski": Preset(
        "yosinski",
        "Yosinski, Clune, Nguyen, Fuchs & Lipson 2015, Understanding Neural Networks Through "
        "Deep Visualization, Table 1",
        fixed={
            "param": "pixels",
            "init": "random",
            "optimizer": "ascent",
            "transforms": "none",
            "l2": 0.0,
            "tv": 0.0,
        },
        # The four rows of Table 1, with the learning-rate policies of the authors' README in the
        # model's input units on the objective / _K (module docstring).
        defaults={
            "init_std": 10 / 255,
            "decay": (0.0, 0.3, 0.0001, 0.0),
            "blur_sigma": (0.5, 0.0, 1.0, 0.5),
            "blur_every": (4, 0, 4, 4),
            "clip_norm": (50.0, 20.0, 0.0, 0.0),
            "clip_contribution": (0.0, 0.0, 0.0, 90.0),
            "step": ("progress", "plain", "plain", "progress"),
            "lr_units": "input",
            "lr": (100 / _K, 100 / _K, 100 / _K, 1e8 / _K),
            "gain": (2.0 * _K, math.inf, math.inf, 2.0 * _K),
        },
        steps=300,
        copies=4,
    ),
    "fooling": Preset(
        "fooling",
        "Nguyen, Yosinski & Clune 2015, Deep Neural Networks Are Easily Fooled; the lecture "
        "notes' normalized gradient step",
        fixed={
            "param": "pixels",
            "init": "zeros",
            "optimizer": "ascent",
            "step": "normalized",
            "transforms": "none",
            "l2": 0.0,
            "tv": 0.0,
            **_PIXEL_OPS_OFF,
        },
        defaults={"lr": 1.0},
        steps=200,
    ),
}


def presets() -> dict[str, str]:
    """Preset names -> their sources."""
    return {name: p.source for name, p in PRESETS.items()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Sequence) and not isinstance(a, str):
        a = tuple(a)
    if isinstance(b, Sequence) and not isinstance(b, str):
        b = tuple(b)
    return a == b


def resolve_options(
    preset: str | None, options: Mapping[str, Any], batch: int | None
) -> tuple[Recipe, int, Preset | None]:
    """``(recipe, default steps, preset)`` from a preset name and the user's options; every
    unknown option, bad value and contradiction is a ConvscopeError here, before any work."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConvscopeError(
            f"unknown option(s) {', '.join(unknown)}; feature visualization takes: "
            f"{', '.join(OPTIONS)}"
        )
    chosen: Preset | None = None
    if preset is not None:
        if not isinstance(preset, str) or preset.strip().lower() not in PRESETS:
            from convscope.errors import did_you_mean

            raise ConvscopeError(
                f"unknown preset {preset!r}{did_you_mean(str(preset), PRESETS)}; "
                f"presets: {', '.join(PRESETS)}"
            )
        chosen = PRESETS[preset.strip().lower()]
    base = chosen or PRESETS["lucid"]
    values: dict[str, Any] = {**base.defaults, **base.fixed}
    if chosen is not None:
        for k, v in options.items():
            if k in chosen.fixed and not _same(v, chosen.fixed[k]):
                raise ConvscopeError(
                    f"preset {chosen.name!r} sets {k}={chosen.fixed[k]!r}; {k}={v!r} contradicts "
                    f"it (use preset=None to combine options freely)"
                )
    values.update(options)
    if chosen is None:  # no preset: lucid's defaults, but options like param may switch kinds
        if values.get("param") == "pixels":
            values.setdefault("init", "zeros")
            if "init" not in options:
                values["init"] = "zeros"
            if "init_std" not in options:
                values["init_std"] = 10 / 255
        if values.get("optimizer") == "ascent" and "lr" not in options:
            values["lr"] = 1.0
            values.setdefault("step", "normalized")
    # copies: a preset's own count, per-copy sequences, or batch
    lengths = {
        k: len(v)
        for k, v in values.items()
        if k in PER_COPY and isinstance(v, Sequence) and not isinstance(v, str)
    }
    counts = set(lengths.values())
    if chosen is not None and chosen.copies is not None:
        if batch is not None and batch != chosen.copies:
            raise ConvscopeError(
                f"preset {chosen.name!r} makes {chosen.copies} images per objective (one per "
                f"setting of the paper); batch={batch} contradicts it"
            )
        counts.add(chosen.copies)
    if len(counts) > 1:
        detail = ", ".join(f"{k} has {n}" for k, n in sorted(lengths.items()))
        raise ConvscopeError(f"per-copy options must have the same length ({detail})")
    copies = counts.pop() if counts else (1 if batch is None else batch)
    if batch is not None and batch != copies:
        raise ConvscopeError(f"batch={batch} but the per-copy options have {copies} values")
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ConvscopeError(f"batch must be an integer >= 1, not {batch!r}")
    recipe = _build(values, copies, options)
    return recipe, (chosen or base).steps, chosen


def _per_copy(name: str, v: Any, copies: int, kind: type) -> tuple[Any, ...]:
    seq = tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else (v,) * copies
    out = []
    for item in seq:
        if kind is str:
            if item not in STEPS:
                raise ConvscopeError(f"step must be one of {', '.join(STEPS)}, not {item!r}")
            out.append(item)
            continue
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ConvscopeError(f"{name} must be a number, not {item!r}")
        if kind is int:
            if item != int(item):
                raise ConvscopeError(f"{name} must be an integer, not {item!r}")
            item = int(item)
        if item < 0 or (item != item):
            raise ConvscopeError(f"{name} must be >= 0, not {item!r}")
        out.append(kind(item))
    return tuple(out)


def _number(name: str, v: Any, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ConvscopeError(f"{name} must be a finite number >= 0, not {v!r}")
    if positive and v == 0:
        raise ConvscopeError(f"{name} must be > 0")
    return float(v)


def _choice(name: str, v: Any, choices: Sequence[str]) -> str:
    if v not in choices:
        raise ConvscopeError(f"{name} must be one of {', '.join(choices)}, not {v!r}")
    return v


def _build(values: dict[str, Any], copies: int, explicit: Mapping[str, Any]) -> Recipe:
    param = _choice("param", values.get("param", "fourier"), PARAMS)
    optimizer = _choice("optimizer", values.get("optimizer", "adam"), OPTIMIZERS)
    transforms = values.get("transforms", "standard")
    if isinstance(transforms, str):
        transforms = {"standard": STANDARD, "none": NONE, "lucid": STANDARD}.get(transforms.lower())
        if transforms is None:
            raise ConvscopeError(
                f"transforms must be 'standard', 'none' or a Transforms, not {values['transforms']!r}"
            )
    elif transforms is None:
        transforms = NONE
    elif not isinstance(transforms, Transforms):
        raise ConvscopeError(
            f"transforms must be 'standard', 'none' or a Transforms, not {transforms!r}"
        )
    decorrelate = values.get("decorrelate", True)
    if not isinstance(decorrelate, bool):
        raise ConvscopeError(f"decorrelate must be True or False, not {decorrelate!r}")
    init = _choice("init", values.get("init", "random"), INITS)
    r = Recipe(
        param=param,
        decorrelate=decorrelate,
        init=init,
        init_std=_number("init_std", values.get("init_std", 0.01)),
        optimizer=optimizer,
        lr=_per_copy("lr", values.get("lr", 0.05), copies, float),
        lr_units=_choice("lr_units", values.get("lr_units", "display"), LR_UNITS),
        step=_per_copy("step", values.get("step", "plain"), copies, str),
        gain=_per_copy("gain", values.get("gain", math.inf), copies, float),
        l2=_number("l2", values.get("l2", 0.0)),
        tv=_number("tv", values.get("tv", 0.0)),
        decay=_per_copy("decay", values.get("decay", 0.0), copies, float),
        blur_sigma=_per_copy("blur_sigma", values.get("blur_sigma", 0.0), copies, float),
        blur_every=_per_copy("blur_every", values.get("blur_every", 0), copies, int),
        clip_norm=_per_copy("clip_norm", values.get("clip_norm", 0.0), copies, float),
        clip_contribution=_per_copy(
            "clip_contribution", values.get("clip_contribution", 0.0), copies, float
        ),
        transforms=transforms,
        copies=copies,
    )
    # contradictions between options
    if any(v == 0 for v in r.lr):
        raise ConvscopeError("lr must be > 0")
    if any(d >= 1 for d in r.decay):
        raise ConvscopeError("decay must be below 1 (it multiplies the image by 1 - decay)")
    if any(p > 100 for p in r.clip_norm + r.clip_contribution):
        raise ConvscopeError("clip_norm and clip_contribution are percentiles, 0-100")
    pixel_ops = [
        k for k in ("decay", "blur_every", "clip_norm", "clip_contribution") if any(getattr(r, k))
    ]
    if param != "pixels":
        if pixel_ops:
            raise ConvscopeError(
                f"{', '.join(pixel_ops)} act on pixels after each step: they need param='pixels', "
                f"not {param!r}"
            )
        if explicit.get("init") == "zeros":
            raise ConvscopeError("init='zeros' is for param='pixels' (a zero spectrum is grey)")
    elif explicit.get("decorrelate"):
        raise ConvscopeError("decorrelate=True is for param='fourier'")
    if r.lr_units == "input" and (optimizer != "ascent" or param != "pixels"):
        raise ConvscopeError(
            "lr_units='input' is for gradient ascent on pixels (optimizer='ascent', param='pixels')"
        )
    for i, every in enumerate(r.blur_every):
        if every and r.blur_sigma[i] <= 0:
            raise ConvscopeError("blur_every needs blur_sigma > 0")
    if optimizer == "adam":
        if len(set(r.lr)) > 1:
            raise ConvscopeError("per-copy learning rates need optimizer='ascent'")
        if any(s != "plain" for s in r.step):
            raise ConvscopeError(
                f"step={r.step[0]!r} is a gradient-ascent rule: it needs optimizer='ascent'"
            )
    for i, s in enumerate(r.step):
        if s == "progress" and not math.isfinite(r.gain[i]):
            raise ConvscopeError(
                "step='progress' needs a finite gain (the objective gain per step)"
            )
    return r
