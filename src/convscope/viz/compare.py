"""Side-by-side comparison figures: one image, every method (rendering only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from PIL import Image

from convscope.core.maps import display_peak
from convscope.viz.render import figure_image

if TYPE_CHECKING:  # a renderer reads results, it never imports what makes them
    from convscope.result import Explanation

__all__ = ["comparison_figure"]


def comparison_figure(
    results: Mapping[str, Explanation], i: int, cmap: str = "jet", alpha: float = 0.5
) -> Image.Image:
    """A row of panels for image ``i``: the input, then each method's map over it.

    Each panel has its own colour scale (its colour bar gives the method's raw values), as in the
    comparison figures of the attribution papers: methods differ in units, so one shared scale
    would hide most of them.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    first = next(iter(results.values()))
    n = len(results) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.75), dpi=110, squeeze=False)
    axes = axes[0]
    if first.pixels is not None:
        axes[0].imshow(first.pixels[i].cpu().numpy())
    title = first.labels[i]
    if first.target_names:
        title += f"\n{first.target_names[i]}"
    axes[0].set_title(title, fontsize=9)
    for ax, (name, r) in zip(axes[1:], results.items()):
        heat = r.normalized()[i].cpu()
        shown = heat.clamp_min(0) if heat.min() >= 0 or r.display_norm == "max" else heat
        if r.pixels is not None:
            ax.imshow(r.pixels[i].cpu().numpy())
        lo, hi = (-1.0, 1.0) if shown.min() < 0 else (0.0, 1.0)
        im = ax.imshow(
            shown.numpy(),
            cmap=cmap if lo == 0 else "coolwarm",
            alpha=alpha if r.pixels is not None else 1.0,
            vmin=lo,
            vmax=hi,
        )
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, ticks=[lo, hi])
        cb.ax.set_yticklabels([f"{v:.2g}" for v in _raw_ticks(r, i, lo, hi)], fontsize=7)
        layer = f"\n@{r.layer}" if r.layer else ""
        ax.set_title(f"{name}{layer}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return figure_image(fig)


def _raw_ticks(r: Any, i: int, lo: float, hi: float) -> tuple[float, float]:
    """The raw values of map ``i`` that the display's ``lo`` and ``hi`` stand for (the 99th
    percentile of ``|map|`` for gradient maps, whose display is clipped there)."""
    raw = r.maps[i : i + 1]
    peak = float(display_peak(raw, r.display_norm)[0])
    return lo * peak, hi * peak
