"""Feature visualization (C4): images that maximize a class, a channel, a neuron or any objective.

Gradient ascent in input space, as the lecture notes introduce it (000, 001: the class score before
softmax, an image from zeros, the weights unchanged, the normalized-gradient "trick"), with every
regularizer of the notes (002, 003: Simonyan's L2, Yosinski's decay, blur and clipping), Lucid's
image parameterizations and transformation robustness, objectives with algebra, batched over many
units at once and seeded. The pieces:

- :mod:`.objectives`  what to maximize (``"class:flamingo"``, ``"channel:_blocks.10:5"``, sums)
- :mod:`.param`       pixels, or Lucid's Fourier parameterization with decorrelated colour
- :mod:`.transforms`  pad, jitter, scale, rotate (one affine view per image)
- :mod:`.regularizers` penalties and Yosinski's pixel operators
- :mod:`.presets`     ``lucid``, ``simonyan``, ``yosinski``, ``fooling``
- :mod:`.render`      the optimization loop (the only one)

Front door: :func:`convscope.visualize`.
"""

from __future__ import annotations

from convscope.featurevis.api import visualize
from convscope.featurevis.objectives import (
    Objective,
    channel,
    class_score,
    custom,
    direction,
    diversity,
    l2,
    neuron,
    parse_objective,
    total_variation,
)
from convscope.featurevis.param import FourierParam, PixelParam
from convscope.featurevis.presets import PRESETS, presets
from convscope.featurevis.result import Visualization
from convscope.featurevis.transforms import STANDARD, Transforms

__all__ = [
    "PRESETS",
    "STANDARD",
    "FourierParam",
    "Objective",
    "PixelParam",
    "Transforms",
    "Visualization",
    "channel",
    "class_score",
    "custom",
    "direction",
    "diversity",
    "l2",
    "neuron",
    "parse_objective",
    "presets",
    "total_variation",
    "visualize",
]
