"""Weights as pictures: convolution filters and linear-layer templates. Pure rendering: tensors in,
images out.

Every weight picture uses one rule, so a grey pixel always means a zero weight::

    pixel = round(127.5 * (1 + w / s))        clipped to 0..255

with ``s`` the symmetric scale (the largest ``|w|`` of what is drawn together, or of each filter):
``w = 0`` is mid-grey (128), ``w = -s`` black (0), ``w = +s`` white (255). Three-channel weights
(a first convolution reading R, G, B) are drawn as colour, each channel by this rule, as in the
first-layer figures of Krizhevsky et al. 2012; single-channel weights are grey, or go through a
matplotlib colormap at ``(1 + w / s) / 2`` when one is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw

from convscope.viz.render import colorize, figure_image

__all__ = [
    "symmetric_scale",
    "template_bars",
    "tile",
    "upscale",
    "weight_pixels",
]


def symmetric_scale(w: torch.Tensor, per: str = "all") -> torch.Tensor:
    """The scale ``s`` of the rule above: ``max |w|`` over everything (``per="all"``, a 0-d
    tensor) or over each item of the first dimension (``per="item"``, shape (n, 1, ...)). A zero
    scale becomes 1, so all-zero weights draw as mid-grey instead of dividing by zero."""
    w = w.detach().float()
    if per == "all":
        s = w.abs().amax() if w.numel() else torch.tensor(0.0)
    elif per == "item":
        s = w.abs().reshape(w.shape[0], -1).amax(dim=1).view(-1, *([1] * (w.ndim - 1)))
    else:
        raise ValueError(f"per is 'all' or 'item', not {per!r}")
    return torch.where(s > 0, s, torch.ones_like(s))


def weight_pixels(
    w: torch.Tensor, scale: torch.Tensor | float, cmap: str | None = None
) -> torch.Tensor:
    """(n, C, h, w) weights with C = 1 or 3 -> (n, h, w, 3) uint8 pixels by the rule above.

    ``scale`` broadcasts against ``w`` (a number, or (n, 1, 1, 1) per item). C = 3: the channels
    are R, G, B. C = 1: grey, or ``cmap`` at ``(1 + w / s) / 2``."""
    if w.ndim != 4 or w.shape[1] not in (1, 3):
        raise ValueError(f"weight_pixels takes (n, 1 or 3, h, w) weights, not {tuple(w.shape)}")
    v = (w.detach().float().cpu() / torch.as_tensor(scale, dtype=torch.float32)).clamp(-1, 1)
    if w.shape[1] == 1 and cmap is not None:
        return colorize((v[:, 0] + 1) / 2, cmap)
    pix = torch.round(127.5 * (1 + v)).clamp(0, 255).to(torch.uint8)
    if w.shape[1] == 1:
        pix = pix.expand(-1, 3, -1, -1)
    return pix.permute(0, 2, 3, 1).contiguous()


def upscale(pixels: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upscaling of (..., h, w, 3) pixels by an integer ``factor`` (each weight
    becomes a ``factor`` x ``factor`` block, so a 3 x 3 kernel stays nine visible squares)."""
    if factor == 1:
        return pixels
    return pixels.repeat_interleave(factor, dim=-3).repeat_interleave(factor, dim=-2)


def tile(
    cells: torch.Tensor,
    cols: int,
    *,
    pad: int = 2,
    background: int = 255,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    captions: Sequence[str] | None = None,
) -> Image.Image:
    """Lay (n, h, w, 3) uint8 cells out row by row, ``cols`` per row, with ``pad`` pixels around
    and between them: cell ``k`` has its top-left pixel at
    ``(top + pad + (k // cols) * (h + pad + cap), left + pad + (k % cols) * (w + pad))``, where
    ``top`` (14 with ``col_labels``), ``left`` (room for the ``row_labels``) and ``cap`` (12 with
    a caption under each cell) are 0 without labels."""
    n, h, w = cells.shape[:3]
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    top = 14 if col_labels else 0
    left = 6 * max((len(s) for s in row_labels), default=0) + 4 if row_labels else 0
    cap = 12 if captions else 0
    height = top + pad + rows * (h + pad + cap)
    width = left + pad + cols * (w + pad)
    canvas = torch.full((height, width, 3), background, dtype=torch.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = top + pad + r * (h + pad + cap), left + pad + c * (w + pad)
        canvas[y : y + h, x : x + w] = cells[k]
    image = Image.fromarray(canvas.numpy())
    if row_labels or col_labels or captions:
        draw = ImageDraw.Draw(image)
        grey = (60, 60, 60)
        for r, label in enumerate(row_labels or []):
            y = top + pad + r * (h + pad + cap) + max(0, h // 2 - 5)
            draw.text((2, y), label, fill=grey)
        for c, label in enumerate(col_labels or []):
            draw.text((left + pad + c * (w + pad), 1), label, fill=grey)
        for k, label in enumerate(captions or []):
            r, c = divmod(k, cols)
            y, x = top + pad + r * (h + pad + cap) + h, left + pad + c * (w + pad)
            draw.text((x, y), label[: max(3, (w + pad) // 6)], fill=grey)
    return image


def template_bars(
    pixels: torch.Tensor,
    weights: torch.Tensor,
    output_names: Sequence[str],
    titles: Sequence[str],
    *,
    cols: int = 2,
) -> Image.Image:
    """The hidden-unit figure of the lecture notes: for each hidden unit, its input template
    (``pixels``: (n, H, W, 3) uint8) beside a bar chart of its weights to every output unit
    (``weights``: (n, K), one row per hidden unit; bars labelled by ``output_names``, positive
    blue, negative red, one x-axis range for all units so bars compare across units). ``titles``:
    one line per unit (its name and bias)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n, k = weights.shape
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    bar_h = max(1.3, 0.2 * k + 0.5)
    fig = plt.figure(figsize=(4.4 * cols, bar_h * rows + 0.3), dpi=100, layout="constrained")
    grid = fig.add_gridspec(rows, 2 * cols, width_ratios=[1, 1.6] * cols)
    w = weights.detach().float().cpu()
    lim = float(w.abs().max()) * 1.08 or 1.0
    ys = list(range(k))
    for i in range(n):
        r, c = divmod(i, cols)
        ax_img = fig.add_subplot(grid[r, 2 * c])
        ax_img.imshow(pixels[i].cpu().numpy(), interpolation="nearest")
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax_img.set_title(titles[i], fontsize=8, loc="left")
        ax = fig.add_subplot(grid[r, 2 * c + 1])
        vals = w[i].tolist()
        ax.barh(ys, vals, color=["#2563eb" if v >= 0 else "#dc2626" for v in vals], height=0.7)
        ax.axvline(0, color="#555", lw=0.6)
        ax.set_xlim(-lim, lim)
        ax.set_yticks(ys)
        ax.set_yticklabels(list(output_names), fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=6)
        if r == rows - 1 or i + cols >= n:
            ax.set_xlabel("weight to each output", fontsize=7, color="#555")
    return figure_image(fig)
