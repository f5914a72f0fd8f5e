"""Figures of the multi-task comparison: accuracy curves per task and the learned gates. Pure
rendering: summaries in (:func:`convscope.train.multitask_report.multitask_summary`), images out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import Image

__all__ = ["accuracy_curves", "gate_map"]

_STYLE = {"accumulate": "#1f77b4", "random": "#d62728", "gated": "#2ca02c"}


def accuracy_curves(summary: Mapping[str, Mapping[str, Any]], dpi: int = 90) -> Image.Image:
    """One panel per task: held-out accuracy against the examples seen, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convscope.viz.render import figure_image

    first = next(iter(summary.values()))
    tasks = [t for t in first["curves"] if t != "batches"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.4 * len(tasks), 2.4), dpi=dpi, sharey=True)
    for ax, task in zip(axes, tasks):
        for strategy, entry in summary.items():
            batches = entry["curves"]["batches"]
            ax.plot(
                batches,
                entry["curves"][task],
                color=_STYLE.get(strategy),
                label=strategy,
                lw=1.2,
            )
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("batches seen", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out accuracy", fontsize=8)
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return figure_image(fig)


def gate_map(gates: list, tasks: list[str], dpi: int = 90) -> Image.Image:
    """The gates of a gated run: one row per task, one column per channel, per layer (colours
    span the gates' own range; the colour bar gives the values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from convscope.viz.render import figure_image

    g = np.asarray(gates)  # (tasks, layers, channels)
    fig, axes = plt.subplots(1, g.shape[1], figsize=(4.2 * g.shape[1], 1.9), dpi=dpi)
    for layer, ax in enumerate(np.atleast_1d(axes)):
        im = ax.imshow(g[:, layer], cmap="viridis", vmin=g.min(), vmax=g.max(), aspect="auto")
        ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
        ax.set_xlabel(f"channel of trunk layer {layer + 2}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=axes, fraction=0.03, label="gate")
    return figure_image(fig)
