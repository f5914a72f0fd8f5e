"""Metrics for explanations: faithfulness (deletion/insertion AUC, Average Drop / Increase in
Confidence), localization against ground-truth masks (pointing game, energy, relevance mass and
rank accuracy) and the model-parameter randomization sanity check; :func:`evaluate` scores methods
with the faithfulness metrics in one table."""

from __future__ import annotations

from convscope.metrics.faithfulness import (
    ConfidenceResult,
    CurveResult,
    average_drop_increase,
    black_input,
    deletion,
    evaluate,
    gaussian_blur,
    insertion,
    pixel_ranks,
)
from convscope.metrics.localization import (
    PointingResult,
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    resize_masks,
)
from convscope.metrics.sanity import (
    RandomizationResult,
    model_randomization,
    rankdata,
    spearman,
    ssim,
)

__all__ = [
    "ConfidenceResult",
    "CurveResult",
    "PointingResult",
    "RandomizationResult",
    "average_drop_increase",
    "black_input",
    "deletion",
    "energy_pointing_game",
    "evaluate",
    "gaussian_blur",
    "insertion",
    "model_randomization",
    "pixel_ranks",
    "pointing_game",
    "rankdata",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "resize_masks",
    "spearman",
    "ssim",
]
