"""The sanity check's picture: rank correlation with the original map as the model is randomized."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import Image

from convscope.viz.render import figure_image

__all__ = ["correlation_plot"]


def correlation_plot(runs: Mapping[str, Any], image: int = 0) -> Image.Image:
    """One line per method: the Spearman rank correlation of image ``image``'s map with the
    original one at each stage of :func:`convscope.metrics.model_randomization` (``runs``: the
    results by method name, all with the same stages)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    stages = next(iter(runs.values())).stages
    fig, ax = plt.subplots(figsize=(5.2, 3.0), dpi=110)
    for m, r in runs.items():
        ax.plot(range(len(stages)), r.correlations[:, image].numpy(), marker="o", label=m)
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xticks(range(len(stages)))
    ax.set_xticklabels(stages, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("Spearman ρ", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return figure_image(fig)
