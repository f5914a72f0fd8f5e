"""Sheets of shapes-world samples: each image above its class mask, with its label. Pure rendering."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = ["mask_colours", "sample_sheet"]


def mask_colours(masks: torch.Tensor, classes: int) -> torch.Tensor:
    """(..., H, W) class masks (0 background, 1 + class) -> (..., H, W, 3) uint8 colours
    (black background, the ``tab10``/``tab20`` colour of each class)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if classes <= 10 else "tab20"]
    lut = np.zeros((classes + 1, 3), dtype=np.uint8)
    lut[1:] = (np.asarray([cmap(i)[:3] for i in range(classes)]) * 255).round()
    return torch.from_numpy(lut)[masks.clamp(0, classes).cpu()]


def sample_sheet(
    images: torch.Tensor,
    masks: torch.Tensor,
    captions: Sequence[str] | None = None,
    *,
    classes: int = 10,
    per_row: int = 8,
    scale: int = 2,
) -> Image.Image:
    """A grid of cells, each an image (N, C, H, W in [0, 1]) above its mask, with a caption."""
    n, _, h, w = images.shape
    rgb = (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    rgb = rgb.expand(n, 3, h, w).permute(0, 2, 3, 1)
    coloured = mask_colours(masks, classes)
    cols = min(per_row, max(n, 1))
    rows = (n + cols - 1) // cols
    cw, text_h, pad = w * scale, 14, 4
    ch = 2 * h * scale + text_h
    sheet = Image.new("RGB", (cols * (cw + pad) + pad, rows * (ch + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        x0 = pad + (i % cols) * (cw + pad)
        y0 = pad + (i // cols) * (ch + pad)
        for j, tile in enumerate((rgb[i], coloured[i])):
            im = Image.fromarray(tile.numpy()).resize((cw, h * scale), Image.NEAREST)
            sheet.paste(im, (x0, y0 + j * h * scale))
        if captions is not None:
            draw.text((x0 + 2, y0 + 2 * h * scale + 1), str(captions[i])[:22], fill=(0, 0, 0))
    return sheet
