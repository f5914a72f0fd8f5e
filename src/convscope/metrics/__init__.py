"""Metrics for explanations: faithfulness (deletion/insertion AUC, Average Drop / Increase in
Confidence), localization against ground-truth masks (pointing game, energy, relevance mass and
rank accuracy) and the model-parameter randomization sanity check; :func:`evaluate` scores methods
with the faithfulness metrics in one table.

Modules: ``common`` (the model, inputs, maps and targets the metrics share), ``baselines``,
``faithfulness`` (the metrics), ``evaluation`` (scoring methods), ``localization``, ``sanity``."""

from __future__ import annotations

from convscope.metrics.baselines import black_input, gaussian_blur
from convscope.metrics.evaluation import evaluate, evaluate_comparison
from convscope.metrics.faithfulness import (
    ConfidenceResult,
    CurveResult,
    average_drop_increase,
    deletion,
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
    "evaluate_comparison",
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
