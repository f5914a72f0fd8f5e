"""The per-layer statistics across depth: one chart, two axes. Pure rendering."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from convscope.viz.render import figure_image

__all__ = ["depth_chart"]


def depth_chart(rows: Sequence[Any], title: str | None = None) -> Image.Image:
    """Activations per image (bars, log scale, left axis) and sparsity (right axis) for each layer
    in forward order (``rows``: :class:`convscope.inside.stats.LayerStat`). Sparsity is the
    fraction exactly zero for a rectified layer (filled dots) and the fraction ``<= 0`` for a
    layer with negative values (open circles: what a rectifier would silence), so the two kinds
    are never mixed up; a dotted line gives the fraction of dead channels."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(rows)
    xs = list(range(n))
    width = min(16.0, max(6.0, 0.11 * n + 3))
    fig, ax = plt.subplots(figsize=(width, 4.0), dpi=110, layout="constrained")
    ax.bar(xs, [r.count for r in rows], color="#cbd5e1", width=0.8, label="activations per image")
    ax.set_yscale("log")
    ax.set_ylabel("activations per image (C·h·w)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax2 = ax.twinx()
    rect = [(i, r.zero) for i, r in zip(xs, rows) if r.rectified]
    signed = [(i, r.nonpositive) for i, r in zip(xs, rows) if not r.rectified]
    if rect:
        ax2.plot(*zip(*rect), "o", color="#dc2626", ms=3.5, label="exactly 0 (rectified layers)")
    if signed:
        ax2.plot(
            *zip(*signed), "o", mfc="none", color="#2563eb", ms=3.5,
            label="<= 0 (layers with negative values)",
        )  # fmt: skip
    ax2.plot(xs, [r.dead for r in rows], ":", color="#555", lw=1, label="dead channels")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("fraction", fontsize=8)
    ax2.tick_params(axis="y", labelsize=7)
    step = max(1, -(-n // 40))
    ax.set_xticks(xs[::step])
    ax.set_xticklabels([r.layer for r in rows][::step], rotation=60, ha="right", fontsize=6)
    ax.set_xlim(-0.7, n - 0.3)
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    fig.legend(
        handles[0] + handles2[0], handles[1] + handles2[1], fontsize=7, frameon=False,
        loc="outside upper left", ncol=4 if width >= 10 else 2,
        title=title, title_fontsize=9, alignment="left",
    )  # fmt: skip
    return figure_image(fig)
